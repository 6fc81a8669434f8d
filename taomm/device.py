"""The device to run on, and bf16 autocast only where the hardware has it.

``resolve_device`` is the one place the default device is chosen: cuda when torch sees a
GPU, else cpu. This module imports torch only inside its functions, so that a quick command
(``taomm search`` on a CPU machine) can choose its device without importing torch.

bf16 pays on GPUs and on CPUs with bf16 instructions (AVX-512 BF16, AMX): a train step
there runs about 2.5x faster than fp32. A CPU without them (AVX2 only, as many AMD EPYC
and older Intel parts) falls back to scalar code: measured on a 2-core AVX2 EPYC, a 2048³
bf16 matmul ran at 0.3 GFLOP/s against 105 GFLOP/s in fp32, and one detector step took
73 s instead of 2.4 s. So ``--bf16`` (the default of every command) means "bf16 where it is
fast": on such a CPU the work runs in fp32, with one warning.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

log = logging.getLogger("taomm")


def resolve_device(device: str | None = None) -> str:
    """``device`` when given; else cuda when torch sees a GPU, else cpu. With no NVIDIA device
    node (then CUDA cannot be there) and torch not yet imported, cpu without importing torch."""
    if device:
        return device
    if not os.path.exists("/dev/nvidiactl") and "torch" not in sys.modules:
        return "cpu"
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


@functools.cache
def cpu_has_bf16() -> bool:
    """True when oneDNN has native bf16 kernels on this CPU (AVX-512 BF16 or AMX)."""
    import torch

    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def bf16_supported(device: torch.device | str) -> bool:
    """Whether bf16 autocast is fast on ``device``."""
    import torch

    kind = torch.device(device).type
    if kind == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if kind == "cpu":
        return cpu_has_bf16()
    return False


def use_bf16(requested: bool, device: torch.device | str) -> bool:
    """``requested`` where the device runs bf16 fast; otherwise False, warned once per device kind."""
    import torch

    if not requested:
        return False
    if bf16_supported(device):
        return True
    _warn_no_bf16(torch.device(device).type)
    return False


@functools.cache
def _warn_no_bf16(kind: str) -> None:
    log.warning("this %s has no native bf16: running in fp32 (bf16 would be far slower here)", kind)


def autocast(device: torch.device | str, enabled: bool = True) -> Any:
    """``torch.autocast`` to bf16 on ``device`` when ``enabled`` and the device runs bf16 fast."""
    import torch

    kind = torch.device(device).type
    return torch.autocast(device_type=kind, dtype=torch.bfloat16, enabled=use_bf16(enabled, device))


__all__ = ["autocast", "bf16_supported", "cpu_has_bf16", "resolve_device", "use_bf16"]
