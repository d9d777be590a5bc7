"""The device rule, stated once: which device a process uses, and the precision and autocast that go with it.

    device = pick_device("auto", local_rank)      # the GPU of this process when CUDA is there, else the CPU
    precision = pick_precision(device, "auto")    # bf16 / fp16 / fp32, by what the GPU can do
    with autocast_for(device, precision): logits = model(x)   # no `if` at the call sites

Precision by what the GPU can do: bf16 autocast where the compute capability is 8.0 or more (A100, H100/H200,
L4, RTX 30xx/40xx: fast bfloat16, fp32's range, no loss scaling); below that (Kaggle's T4 7.5 and P100 6.0,
Colab's T4, V100 7.0) bf16 is emulated or slow, so fp16 autocast with a torch.amp.GradScaler (fp16's small
range needs the loss scaled). fp32 by flag (--precision fp32). On the CPU, auto is bf16 autocast where the CPU
has native bf16 dot products (AVX512-BF16 or AMX: recent Xeons and EPYCs): measured on this project's 2-core EPYC,
1.9x the training images/s of fp32 for air_fer_s at the same fold-0 accuracy (docs/accuracy-per-minute.md);
elsewhere fp32, as before, since emulated bf16 is slower. Both stay deterministic, so a resumed CPU run ends
bit-identical either way. The same rule sets the dtype of Muon's Newton-Schulz iterations (newton_schulz_dtype):
timm iterates in bf16 always, 15x slower than fp32 on a CPU that emulates it.
"""
import functools
from contextlib import nullcontext

import torch

from competition.errors import SettingsError

PRECISIONS = ("auto", "bf16", "fp16", "fp32")
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
BF16_CAPABILITY = (8, 0)  # Ampere and later: native bfloat16 tensor cores


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


def pick_precision(device: torch.device, requested: str = "auto") -> str:
    """'bf16', 'fp16' or 'fp32': auto is bf16 at compute capability >= 8.0, fp16 below; on the CPU bf16 where it
    is native (cpu_has_bf16), else fp32."""
    if requested not in PRECISIONS:
        raise SettingsError(f"--precision {requested!r}: choose one of {', '.join(PRECISIONS)}")
    if requested != "auto":
        return requested
    if device.type != "cuda":
        return "bf16" if cpu_has_bf16() else "fp32"
    capability = torch.cuda.get_device_capability(device)
    return "bf16" if tuple(capability) >= BF16_CAPABILITY else "fp16"


@functools.cache
def newton_schulz_dtype(device: torch.device) -> torch.dtype:
    """The dtype of Muon's Newton-Schulz iterations on `device`: bf16 where the device's auto precision is bf16
    (native bf16 matmuls), else fp32. timm's Muon always iterates in bf16, which a CPU without native bf16
    emulates: on a 2-core AVX2 EPYC (no AVX-512) air_fer's seven weight matrices took 752 ms a step in bf16
    against 51 ms in fp32, so Muon cost 0.75x the forward and backward pass instead of 0.05x
    (docs/accuracy-per-minute.md). fp32 iterations are the more exact ones; only their speed differs."""
    return torch.bfloat16 if pick_precision(device) == "bf16" else torch.float32


def add_precision_arg(parser) -> None:
    """The --precision flag, stated once for every command that trains."""
    parser.add_argument("--precision", default="auto", choices=PRECISIONS,
                        help="auto: bf16 autocast on GPUs of compute capability >= 8.0, fp16 with a GradScaler "
                             "below (T4, P100, V100); on the CPU bf16 where it is native, else fp32")


def cpu_has_bf16() -> bool:
    """Native bf16 on this CPU (torch's own check; a torch without it says no)."""
    check = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    amx = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return bool((check and check()) or (amx and amx()))


def describe_precision(device: torch.device, precision: str) -> str:
    """One line for the start of a run: what precision, and why."""
    if device.type != "cuda":
        return f"precision {precision} on the CPU"
    major, minor = torch.cuda.get_device_capability(device)
    why = {"bf16": "bf16 autocast", "fp16": "fp16 autocast with a GradScaler", "fp32": "fp32, no autocast"}
    return (f"precision {precision} ({why[precision]}) on {torch.cuda.get_device_name(device)}, "
            f"compute capability {major}.{minor}")


def tune_for(device: torch.device) -> None:
    """On CUDA, let cuDNN pick the fastest convolution for our fixed 48x48 shapes (once per shape); the CPU
    path is left as it is, bit-identical on resume."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True


def autocast_for(device: torch.device, precision: str | None = None):
    """The precision's autocast (None: the device's auto choice); fp32 is a no-op context."""
    precision = pick_precision(device) if precision is None else precision
    if precision == "fp32":
        return nullcontext()
    return torch.autocast(device.type, dtype=DTYPES[precision])


def grad_scaler(device: torch.device, precision: str) -> torch.amp.GradScaler:
    """Loss scaling for fp16 (its range underflows small gradients); a pass-through for bf16 and fp32."""
    return torch.amp.GradScaler(device.type, enabled=precision == "fp16")
