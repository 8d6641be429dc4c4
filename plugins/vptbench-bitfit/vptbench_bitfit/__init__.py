"""vptbench tuner plugin: BitFit on the CLIP vision tower (entry point `bitfit`)."""

from vptbench_bitfit.tuner import BitFit, BitFitConfig

__all__ = ["BitFit", "BitFitConfig"]
