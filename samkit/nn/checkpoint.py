"""Reading checkpoints safely and loading them strictly.

Every checkpoint goes through ``torch.load(..., weights_only=True)``: a file that would import or call anything
when unpickled is refused before any of it runs. Loading into a network is strict: a missing, unexpected or
wrongly shaped tensor is an error that names the file and the first offending keys.
"""

from __future__ import annotations

import pickle
import re
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

#: Prefixes that wrappers (DistributedDataParallel, torch.compile) put before every key.
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")
_SHOWN_KEYS = 5


class CheckpointError(ValueError):
    """A checkpoint file cannot be used: unreadable, not a checkpoint, or not matching the network."""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint asked to import or call Python objects when unpickled; it was refused without running them."""


def _torch_load_reason(err: BaseException) -> str:
    """The informative line of a torch.load error, without torch's generic advice."""
    text = str(err)
    for pattern in (r"(Trying to load unsupported GLOBAL [^\n]*)", r"(Unsupported global: [^\n]*)",
                    r"WeightsUnpickler error: *\n*\s*([^\n]+)", r"(failed finding central directory)",
                    r"(invalid load key[^\n]*)"):
        m = re.search(pattern, text)
        if m:
            return m.group(1).strip().rstrip(".")
    if isinstance(err, (KeyError, EOFError)) or not text.strip():
        return f"invalid pickle data ({type(err).__name__} {text})".replace(" )", ")")
    return text.strip().splitlines()[0][:200]


def read_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """Read the state dict of a checkpoint file without running any code in it.

    Accepts a bare state dict or a dict holding it under ``"model"`` (Meta's and Ultralytics' layout) or
    ``"state_dict"``; strips a ``module.`` / ``_orig_mod.`` prefix shared by every key.

    Args:
        path: A ``.pt`` / ``.pth`` file written by ``torch.save``.

    Returns:
        Parameter name -> tensor (on the CPU; memory-mapped when the file allows it).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        UnsafeCheckpointError: The pickle asks for Python globals (code); nothing of it was executed.
        CheckpointError: Empty, truncated, corrupt or not a PyTorch file, or holding no state dict.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"{path}: the file is empty (0 bytes), not a checkpoint; delete it and download again")
    try:
        with warnings.catch_warnings():  # torch's note on unusual pickle protocols: the error below says more
            warnings.simplefilter("ignore", UserWarning)
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except pickle.UnpicklingError as e:
        reason = _torch_load_reason(e)
        imports = _pickle_imports(path) if "GLOBAL" not in reason and "global" not in reason else []
        if imports:  # an opcode the weights-only reader does not take, in a pickle that imports code
            reason = f"it imports {', '.join(imports[:3])}"
        if "GLOBAL" in reason or "global" in reason or imports:
            yolo = _ultralytics_model_class(path, reason)
            if yolo is not None:
                raise CheckpointError(
                    f"{path} is an Ultralytics model file ({yolo}), not Segment Anything weights: load it with "
                    "ultralytics.YOLO (for auto-annotation, pass it as det_model=) and give SAM a SAM checkpoint "
                    "(e.g. sam2.1_b.pt)"
                ) from None
            hint = ""
            raise UnsafeCheckpointError(
                f"{path}: refused to load: the file asks to import and run Python objects when unpickled "
                f"({reason}); samkit loads weights only (torch.load weights_only=True), and nothing in the file "
                f"was executed.{hint}"
            ) from None
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({reason})") from None
    except (RuntimeError, EOFError, KeyError, ValueError, OSError, IndexError, TypeError) as e:
        raise CheckpointError(
            f"{path}: not a readable PyTorch checkpoint, or truncated/corrupt ({size} bytes): {_torch_load_reason(e)}"
        ) from None
    return _extract_state_dict(obj, path)


def _pickle_imports(path: Path) -> list[str]:
    """The Python objects a pickle file names for import (``module.name``), read from its opcodes without running
    any of it: the file itself, or a torch zip archive's ``data.pkl``. Empty when it names none or is unreadable."""
    import pickletools

    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                name = next((n for n in z.namelist() if n.endswith("data.pkl")), None)
                data = z.read(name) if name else b""
        else:
            data = path.read_bytes()[: 1 << 26]
    except (OSError, zipfile.BadZipFile):
        return []
    found, strings = [], []
    try:
        for op, arg, _ in pickletools.genops(data):
            if op.name in ("GLOBAL", "INST"):
                found.append(str(arg).replace(" ", "."))
            elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                found.append(f"{strings[-2]}.{strings[-1]}")
            elif isinstance(arg, str):
                strings.append(arg)
    except Exception:  # a truncated or corrupt pickle: what was read so far
        pass
    # What every torch checkpoint names (tensor rebuilding, ordered dicts) is not a sign of code.
    harmless = ("torch.", "collections.OrderedDict", "_codecs.encode")
    return [n for n in dict.fromkeys(found) if not n.startswith(harmless)]


def _ultralytics_model_class(path: Path, reason: str) -> str | None:
    """The Ultralytics model class a refused pickle asks for (``DetectionModel``...), found without unpickling."""
    names = [reason]
    try:
        names += list(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    except Exception:  # an older torch, or a file it cannot list: the error text is all there is
        pass
    for name in names:
        m = re.search(r"ultralytics\.nn\.tasks\.(\w+)", name)
        if m:
            return m.group(1)
    return "ultralytics" if any("ultralytics" in n for n in names) else None


def _extract_state_dict(obj: object, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(obj, Mapping):
        for key in ("model", "state_dict"):
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError(f"{path}: holds a {type(obj).__name__}, not a state dict (a dict of name -> tensor)")
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(
            f"{path}: not a state dict: {len(bad)} entries are not name -> tensor, e.g. {', '.join(map(repr, bad[:3]))}"
        )
    sd = dict(obj)
    for prefix in _WRAPPER_PREFIXES:
        if all(k.startswith(prefix) for k in sd):
            sd = {k[len(prefix) :]: v for k, v in sd.items()}
    return sd


def _listed(keys: list[str]) -> str:
    more = f" (and {len(keys) - _SHOWN_KEYS} more)" if len(keys) > _SHOWN_KEYS else ""
    return ", ".join(keys[:_SHOWN_KEYS]) + more


def load_state_dict_strict(net: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    """Copy ``state_dict`` into ``net``, requiring exactly the same keys and shapes, and floating-point weights
    where the network has them, every value finite (NaN or infinite weights would only show later as NaN scores).

    Raises:
        CheckpointError: Naming ``source`` and listing the first missing, unexpected, mis-shaped, non-float or
            non-finite keys.
    """
    expected = net.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    shapes = [
        f"{k} {tuple(state_dict[k].shape)} != {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state_dict and state_dict[k].shape != v.shape
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys: {_listed(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys: {_listed(unexpected)}")
    if shapes:
        problems.append(f"{len(shapes)} shape mismatches (file != network): {_listed(shapes)}")
    if not problems:
        kinds = [f"{k} ({str(state_dict[k].dtype).replace('torch.', '')})" for k, v in expected.items()
                 if v.is_floating_point() and not state_dict[k].is_floating_point()]
        if kinds:
            problems.append(f"{len(kinds)} tensors are not floating point: {_listed(kinds)}")
        bad = [k for k, v in state_dict.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
        if bad:
            problems.append(f"{len(bad)} tensors hold NaN or infinite values: {_listed(bad)}")
    if problems:
        raise CheckpointError(f"{source}: weights do not fit the network: " + "; ".join(problems))
    net.load_state_dict(state_dict, strict=True)


def load_checkpoint(net: nn.Module, path: str | Path) -> nn.Module:
    """Read ``path`` safely and load it strictly into ``net``; returns ``net``."""
    load_state_dict_strict(net, read_checkpoint(path), str(path))
    return net
