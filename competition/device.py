"""The device rule, stated once: which device a process uses, and the autocast that goes with it.

    device = pick_device("auto", local_rank)      # the GPU of this process when CUDA is there, else the CPU
    with autocast_for(device): logits = model(x)  # bf16 on CUDA, a no-op on CPU (no `if` at the call sites)
"""
from contextlib import nullcontext

import torch

from competition.errors import SettingsError


def wants_cuda(name: str) -> bool:
    """--device cuda, or auto on a machine with CUDA."""
    return name == "cuda" or (name == "auto" and torch.cuda.is_available())


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    """auto: the GPU of this process (local rank modulo the GPUs) when CUDA is there, else the CPU."""
    if wants_cuda(name):
        if not torch.cuda.is_available():
            raise SettingsError("--device cuda, but no CUDA device is available (use --device cpu).")
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device("cpu")


def tune_for(device: torch.device) -> None:
    """On CUDA, let cuDNN pick the fastest convolution for our fixed 48x48 shapes (once per shape); the CPU
    path is left as it is, bit-identical on resume."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True


def autocast_for(device: torch.device):
    """bf16 autocast on CUDA; a no-op context on CPU."""
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()
