"""``samkit checks``: what is installed, and whether what samkit needs actually runs here.

Reading versions is not enough: a torch and a torchvision from two package indexes install side by side and then
fail on the first operator. So besides versions, devices, extras and folders, the checks *run* tiny versions of
what samkit does: torchvision's operators (``nms``, ``batched_nms``, ``roi_align``, ``resize``) on every device, a
convolution in every dtype samkit computes in on that device, and an mp4 written and read back with OpenCV. Each
failure is a line ``ERROR: <what is broken>: <why>; <the command that mends it>`` and ``samkit checks`` exits 1.
"""

from __future__ import annotations

import platform
import tempfile
from pathlib import Path

from samkit.utils.requirements import (
    EXTRAS,
    ULTRALYTICS_PACKAGES,
    broken_torchvision,
    installed_version,
    is_torchvision_ops_error,
)

#: The packages samkit requires, as ``samkit checks`` lists them.
CORE = ("torch", "torchvision", "ultralytics", "opencv-python", "numpy", "pyyaml", "pycocotools", "tqdm")
#: Test-only packages (the reference implementations the tests compare with), listed when present.
ORACLES = (("sam2", "Meta's SAM 2 reference, a test oracle"), ("segment-anything", "Meta's SAM reference"),
           ("sam3", "Meta's SAM 3 reference"))


def _error(what: str, e: BaseException, fix: str) -> str:
    reason = " ".join(f"{type(e).__name__}: {e}".split())
    return f"ERROR: {what}: {reason[:300]}; {fix}"


def _devices() -> list:
    import torch

    out = [torch.device("cpu")]
    if torch.cuda.is_available():
        out += [torch.device("cuda", i) for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        out.append(torch.device("mps"))
    return out


def _dtypes(device) -> list:
    """The dtypes samkit computes in on ``device``: fp32, and its half-precision autocast dtype where it has one."""
    import torch

    from samkit.utils.devices import half_dtype

    half, _ = half_dtype(device)
    out = [torch.float32] + ([half] if half is not None else [])
    if device.type == "cuda" and torch.float16 not in out:
        out.append(torch.float16)  # fp16 autocast on GPUs without bf16, and exported fp16 graphs
    return out


def torchvision_lines() -> list[str]:
    """torchvision imports and its operators run on every device (what samkit and Ultralytics' NMS call)."""
    fix = "reinstall torch and torchvision together from one index"
    try:
        import torch
        import torchvision
        from torchvision.ops import batched_nms, nms, roi_align
        from torchvision.transforms.v2 import functional as TF
    except Exception as e:
        if is_torchvision_ops_error(e):
            return [f"ERROR: {broken_torchvision(e)}"]
        return [_error("torchvision cannot be imported", e, fix)]
    lines = []
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 11.0, 11.0], [20.0, 20.0, 30.0, 30.0]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    for device in _devices():
        try:
            kept = nms(boxes.to(device), scores.to(device), 0.5).cpu().tolist()
            kept_b = batched_nms(boxes.to(device), scores.to(device), torch.tensor([0, 1, 0], device=device),
                                 0.5).cpu().tolist()
            small = TF.resize(torch.rand(1, 3, 8, 8, device=device), [4, 4], antialias=True)
            pooled = roi_align(torch.ones(1, 1, 8, 8, device=device), [boxes[:1].to(device) / 2], output_size=2)
            if kept != [0, 2] or sorted(kept_b) != [0, 1, 2] or tuple(small.shape) != (1, 3, 4, 4) or \
                    not torch.allclose(pooled.cpu(), torch.ones(1, 1, 2, 2)):
                raise RuntimeError(f"wrong results: nms kept {kept}, batched_nms kept {kept_b}")
            lines.append(f"torchvision {torchvision.__version__} operators on {device}: nms, batched_nms, roi_align "
                         "(SAM 3's exemplar boxes), resize ok")
        except Exception as e:
            if is_torchvision_ops_error(e):
                lines.append(f"ERROR: torchvision on {device}: {broken_torchvision(e)}")
            else:
                lines.append(_error(f"torchvision's operators on {device}", e, fix))
    return lines


def compute_lines() -> list[str]:
    """A tiny convolution and matrix product in each dtype samkit computes in, on every device."""
    import torch

    lines = []
    for device in _devices():
        done = []
        for dtype in _dtypes(device):
            name = str(dtype).replace("torch.", "")
            try:
                x = torch.rand(1, 3, 8, 8, device=device, dtype=dtype)
                w = torch.rand(4, 3, 3, 3, device=device, dtype=dtype)
                y = torch.nn.functional.conv2d(x, w, padding=1)
                z = y.flatten(1) @ y.flatten(1).T
                if not torch.isfinite(z.float()).all():
                    raise RuntimeError("non-finite result")
                done.append(name)
            except Exception as e:
                lines.append(_error(f"a {name} convolution on {device}", e,
                                    "this device cannot run samkit in that precision (half=True uses it)"))
        if done:
            lines.append(f"device {device}{_device_name(device)}: convolution in {', '.join(done)} ok")
    return lines


def build_lines() -> list[str]:
    """A note when torch is a CUDA build on a machine without a CUDA device (gigabytes of GPU libraries that cannot
    be used here)."""
    import torch

    from samkit.utils.requirements import torchvision_fix

    if torch.version.cuda and not torch.cuda.is_available():
        return [f"NOTE: torch {torch.__version__} is a CUDA {torch.version.cuda} build and there is no CUDA device "
                f"here; the CPU build runs the same and is a tenth of the size: {torchvision_fix(cpu=True)}"]
    return []


def _device_name(device) -> str:
    import torch

    if device.type == "cuda":
        return f" ({torch.cuda.get_device_name(device)})"
    if device.type == "cpu":
        return " (CUDA not available)" if not torch.cuda.is_available() else ""
    return ""


def video_lines() -> list[str]:
    """An mp4 written with samkit's overlay writer and read back with samkit's video reader (both OpenCV)."""
    import numpy as np

    from samkit.data.video import open_video
    from samkit.writers.video import VideoOverlayWriter

    fix = "install an OpenCV build with video support: pip install --force-reinstall opencv-python"
    try:
        with tempfile.TemporaryDirectory(prefix="samkit-checks-") as tmp:
            path = Path(tmp) / "check.mp4"
            with VideoOverlayWriter(path, fps=10) as w:
                for i in range(3):
                    w.write(i, np.full((32, 48, 3), 60 * i, np.uint8))
            with open_video(str(path)) as v:
                n = len(v)
                shapes = [v.read(i).shape for i in range(n)]
            if n != 3 or any(s != (32, 48, 3) for s in shapes):
                raise RuntimeError(f"wrote 3 frames of 48x32, read back {n}: {shapes}")
    except Exception as e:
        return [_error("writing and reading an mp4 with OpenCV", e, fix)]
    import cv2

    return [f"video: OpenCV {cv2.__version__} wrote and read back an mp4 ok"]


def extra_lines() -> list[str]:
    lines = []
    for extra in EXTRAS.values():
        have = [(dist, installed_version(dist)) for _, dist in extra.packages if "[" not in dist]
        state = ", ".join(f"{d} {v}" if v else f"{d} not installed" for d, v in have)
        lines.append(f"extra [{extra.name}] for {extra.feature}: {state}"
                     + ("" if all(v for _, v in have) else f" ({extra.install})"))
    import importlib.util

    for module, (what, install) in ULTRALYTICS_PACKAGES.items():
        try:
            found = importlib.util.find_spec(module) is not None  # the module, whatever distribution brought it
        except (ImportError, ValueError):
            found = False
        lines.append(f"optional {module} for {what}: {'installed' if found else 'not installed (' + install + ')'}")
    for dist, what in ORACLES:
        v = installed_version(dist)
        if v:
            lines.append(f"test oracle {dist} {v} ({what})")
    return lines


def replacement_lines() -> list[str]:
    try:
        from samkit.nn.replacements import TESTED_ULTRALYTICS, active

        used, skipped = active()
    except Exception as e:
        if is_torchvision_ops_error(e):
            return []  # said once, by the torchvision lines
        return [_error("Ultralytics cannot be imported", e,
                       "pip install --force-reinstall 'ultralytics>=8.4.190,<8.5'")]
    lines = [f"faster Ultralytics methods (tested with ultralytics {TESTED_ULTRALYTICS}): "
             f"{len(used)} of {len(used) + len(skipped)} in use"]
    lines += [f"WARNING: {r.name} runs Ultralytics' own code: {why}" for r, why in skipped]
    return lines


def run_checks() -> list[str]:
    """Lines describing the environment and what ran; the lines of failures start with ``ERROR:``."""
    from samkit import __version__
    from samkit.utils.downloads import offline, weights_dirs

    lines = [f"samkit {__version__}", f"python {platform.python_version()} ({platform.platform()})"]
    lines += [f"{dist} {installed_version(dist) or 'NOT INSTALLED'}" for dist in CORE]
    lines += [f"ERROR: {dist} is not installed; pip install -e . (or pip install samkit) installs it"
              for dist in CORE if not installed_version(dist)]
    lines += torchvision_lines()
    broken = any(line.startswith("ERROR: torchvision") for line in lines)
    lines += replacement_lines()
    lines += compute_lines()
    lines += build_lines()
    if not broken:
        lines += video_lines()
    lines += extra_lines()
    try:
        from ultralytics import ASSETS

        lines.append(f"sample images: {ASSETS}")
    except Exception:
        pass
    lines.append(f"offline mode: {'on' if offline() else 'off'} (SAMKIT_OFFLINE)")
    lines.append("weights folders: " + ", ".join(str(d) for d in weights_dirs()))
    return lines


def failures(lines: list[str]) -> list[str]:
    return [line for line in lines if line.startswith("ERROR:")]
