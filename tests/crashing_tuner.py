"""Tuners that fail the way real ones do: a process that dies, crashes, is killed for its memory or
hangs, and logits that are not numbers. Imported by module path, as a plugin's would be, in Ray
workers and in the process executor's child alike."""

import os
import signal
import time

import torch
from torch import nn

from vptbench.protocol import TunerConfig
from vptbench.tuners.zero_shot import ZeroShot


class DyingTuner(nn.Module):
    """Dies while it is built: stands in for a Ray worker crash or node loss."""

    Config = TunerConfig

    def __init__(self, config, clip, task):
        super().__init__()
        os._exit(1)


class _FailsInForward(ZeroShot):
    """Zero-shot until its forward runs: then `fail()`."""

    caches_features = False  # the forward, not a cached encoder, must run

    def forward(self, pixel_values):
        self.fail()
        return super().forward(pixel_values)


class SegfaultTuner(_FailsInForward):
    def fail(self):
        os.kill(os.getpid(), signal.SIGSEGV)


class KilledTuner(_FailsInForward):
    """As the operating system's out-of-memory killer ends a process."""

    def fail(self):
        os.kill(os.getpid(), signal.SIGKILL)


class HangingTuner(_FailsInForward):
    def fail(self):
        time.sleep(3600)


class NanTuner(_FailsInForward):
    """Nothing to train, and logits of NaN: an argmax of them is no prediction."""

    def fail(self):
        pass

    def forward(self, pixel_values):
        return torch.full((len(pixel_values), self.head.text_features.shape[0]), float("nan"))


class NanWhenEvaluatedTuner(nn.Module):
    """Trains (a finite loss) but gives NaN logits in eval mode: every evaluation is broken."""

    Config = TunerConfig

    def __init__(self, config, clip, task):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(task.num_classes))

    def forward(self, pixel_values):
        logits = pixel_values.mean(dim=(1, 2, 3))[:, None] * self.scale
        return logits if self.training else logits * float("nan")
