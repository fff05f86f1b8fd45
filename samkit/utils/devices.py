"""Choosing the torch device from what a user types."""

from __future__ import annotations

import re

import torch

#: Torch's CPU thread count when samkit was imported. Ultralytics' predictor lowers the whole process's count to
#: ``cpu_count - 1`` on the CPU; samkit's YOLO integration runs SAM with this count instead.
DEFAULT_THREADS = torch.get_num_threads()


class default_threads:
    """Context manager: run with :data:`DEFAULT_THREADS` CPU threads, then put the previous count back."""

    def __enter__(self):
        self.before = torch.get_num_threads()
        if self.before != DEFAULT_THREADS:
            torch.set_num_threads(DEFAULT_THREADS)
        return self

    def __exit__(self, *exc):
        if torch.get_num_threads() != self.before:
            torch.set_num_threads(self.before)


_FORMS = "'' (automatic), 'cpu', 'cuda', 'cuda:N', 'N' (a CUDA index) or 'mps'"


def select_device(device: str | int | torch.device | None = "") -> torch.device:
    """Turn a device request into a ``torch.device`` that exists on this machine.

    Args:
        device: ``""`` or ``None`` picks ``cuda:0`` when CUDA is available, else the CPU; ``"cpu"``; ``"cuda"``
            (``cuda:0``); ``"cuda:N"``; ``N`` or ``"N"`` (``cuda:N``, as in Ultralytics); ``"mps"``; or a
            ``torch.device``.

    Returns:
        The device.

    Raises:
        ValueError: The request is not one of the forms above, or names a device this machine does not have.
    """
    if isinstance(device, torch.device):
        spec = str(device)
    elif device is None:
        spec = ""
    elif isinstance(device, bool) or not isinstance(device, (str, int)):
        raise ValueError(f"device {device!r} is not understood; expected {_FORMS}")
    else:
        spec = str(device).strip().lower()
    if spec == "":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "mps":
        if not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise ValueError("device 'mps' was requested but Apple MPS is not available on this machine")
        return torch.device("mps")
    m = re.fullmatch(r"(?:cuda)?:?(\d+)?", spec) if spec.startswith("cuda") or spec.isdigit() else None
    if m is None:
        raise ValueError(f"device {device!r} is not understood; expected {_FORMS}")
    index = int(m.group(1) or 0)
    if not torch.cuda.is_available():
        raise ValueError(
            f"device {device!r} was requested but CUDA is not available on this machine "
            f"(torch {torch.__version__}); use device='cpu'"
        )
    count = torch.cuda.device_count()
    if index >= count:
        raise ValueError(f"device {device!r} was requested but this machine has {count} CUDA device(s): 0..{count - 1}")
    return torch.device(f"cuda:{index}")


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX); elsewhere bf16 is emulated and slow."""
    cpu = getattr(torch, "cpu", None)
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(cpu, c)()) for c in checks if hasattr(cpu, c))


def half_dtype(device: torch.device) -> tuple[torch.dtype | None, str]:
    """The autocast dtype ``half=True`` uses on ``device``, or None with the reason it cannot be used.

    CUDA: bf16 where the GPU supports it (Ampere and newer), else fp16. CPU: bf16 when the CPU has native bf16.
    MPS: fp16.
    """
    if device.type == "cuda":
        return (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16), ""
    if device.type == "cpu":
        if cpu_has_bf16():
            return torch.bfloat16, ""
        return None, "this CPU has no native bf16 (AVX512-BF16 or AMX), where bf16 would be slower than fp32"
    if device.type == "mps":
        return torch.float16, ""
    return None, f"no half precision autocast is known for device type {device.type!r}"


def upload(x, device: torch.device | str, pin: bool = False) -> torch.Tensor:
    """``x`` (a tensor or an array) on ``device`` without making the host wait for the work queued there.

    A plain ``.to("cuda")`` of host memory waits for the device to finish everything queued before it returns; a
    ``non_blocking`` copy does not (small host buffers are staged at once). ``pin=True`` first copies ``x`` to
    page-locked memory, for large uploads (an image) whose staged copy would otherwise wait for the device. On the
    CPU this is ``torch.as_tensor(x)``.
    """
    t = torch.as_tensor(x)
    device = torch.device(device)
    if device.type != "cuda" or t.device == device:
        return t.to(device)
    if pin and t.device.type == "cpu" and not t.is_pinned():
        t = t.pin_memory()
    return t.to(device, non_blocking=True)
