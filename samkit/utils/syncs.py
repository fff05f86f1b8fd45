"""Count the places where Python waits for the device: reading a tensor's value on the host.

On a GPU, every ``.item()``, ``.cpu()``, ``.tolist()``, ``.numpy()``, Python ``if`` / ``int()`` / ``float()`` on a
tensor, ``nonzero`` and boolean-mask indexing (whose output size depends on values) stops the host until the
device has finished everything queued before it: the host cannot queue the next kernels meanwhile, and CUDA graphs
cannot capture across it. :class:`count_host_syncs` records each such call with the line of code that made it, on
any device (on a CPU the same calls are where a GPU run would wait), so a hot loop can be audited and its count
held by a test::

    with count_host_syncs() as syncs:
        next(frames)
    print(syncs.total, syncs.by_site())

On a CPU run, ``.cpu()`` is counted (it is where a device run would download) but ``.to(device)`` is not (it
cannot tell an upload from a download there). Uploads are not counted either: a blocking ``.to("cuda")`` of host
memory also waits for the device, which is why samkit's hot paths upload with
:func:`samkit.utils.devices.upload`. It sees eager PyTorch calls made from Python (not the inside of compiled
graphs or C++ kernels). On CUDA, ``torch.cuda.set_sync_debug_mode("warn")`` gives the driver's own view, uploads
included.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import torch
from torch.overrides import TorchFunctionMode

#: Tensor methods and torch functions that hand a value to the host (or size an output by values). ``.numpy()``
#: is not among them: a device tensor must go through ``.cpu()`` (counted) first.
HOST_READS = frozenset({
    "item", "tolist", "cpu", "__bool__", "__int__", "__float__", "__index__", "nonzero", "masked_select", "unique",
    "unique_consecutive", "argwhere",
})


def _names(func) -> str:
    return getattr(func, "__name__", "") or str(func)


def _bool_index(args) -> bool:
    """``t[mask]`` with a boolean tensor mask (its output size is a count of the mask's values)."""
    index = args[1] if len(args) > 1 else None
    items = index if isinstance(index, tuple) else (index,)
    return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in items)


def _to_host(args, kwargs) -> bool:
    """``t.to("cpu")`` of a tensor on a device (a copy back to the host). On a CPU run ``.to(device)`` is a no-op
    that cannot tell an upload from a download, and is not counted."""
    if not args or not isinstance(args[0], torch.Tensor) or args[0].device.type == "cpu":
        return False
    for a in (*args[1:], kwargs.get("device")):
        if isinstance(a, (str, torch.device)) and torch.device(a).type == "cpu":
            return True
    return False


class count_host_syncs(TorchFunctionMode):
    """A context manager counting host reads of tensor values (see the module docstring).

    Attributes:
        sites: ``(file:line, call)`` -> count, where ``file:line`` is the innermost frame outside torch and this
            module (the code that asked for the value).
        total: All of them.
    """

    def __init__(self):
        super().__init__()
        self.sites: Counter = Counter()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = _names(func)
        if name in HOST_READS or (name in ("__getitem__", "__setitem__") and _bool_index(args)) or (
                name == "to" and _to_host(args, kwargs)):
            self.sites[(_caller(), name)] += 1
        return func(*args, **kwargs)

    @property
    def total(self) -> int:
        return sum(self.sites.values())

    def by_site(self) -> list[tuple[str, str, int]]:
        """``(file:line, call, count)``, most frequent first."""
        return [(site, name, n) for (site, name), n in self.sites.most_common()]


_TORCH = str(Path(torch.__file__).parent)
_HERE = __file__


def _caller() -> str:
    f = sys._getframe(2)
    while f is not None and (f.f_code.co_filename.startswith(_TORCH) or f.f_code.co_filename == _HERE):
        f = f.f_back
    if f is None:
        return "?"
    path = Path(f.f_code.co_filename)
    parts = path.parts
    for root in ("samkit", "ultralytics"):
        if root in parts:
            path = Path(*parts[len(parts) - 1 - parts[::-1].index(root):])
            break
    return f"{path}:{f.f_lineno}"
