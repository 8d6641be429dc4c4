"""vptbench tuner plugin: LoRA on the CLIP vision tower (entry point `lora`)."""

from vptbench_lora.tuner import LoRA, LoRAConfig

__all__ = ["LoRA", "LoRAConfig"]
