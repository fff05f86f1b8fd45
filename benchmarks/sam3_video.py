"""SAM 3 concept tracking over a long video: resident memory and time per frame, samkit against Meta's video model.

Both run the test-size SAM 3 (``sam3_test``, 224 px) with the same shaped random weights (several objects found,
tracked and removed, as with a trained model; see ``tests/sam3_video_reference.shape_weights_``) on the same JPEG
folder of a synthetic clip, each in a fresh Python process. Meta's model runs on the CPU with the patches of
``tests/sam3_video_reference.video_cpu_patches`` and reads the folder with its own loader (every frame up front, as
it always does); samkit streams it (``model(folder, texts=..., stream=True)``). Reported: resident set size after N
frames minus the RSS right before the video was opened, and the median time per frame (whole pass / frames, so the
reference's up-front loading counts).

Run ``python -m benchmarks --sam3-video 100,1000``; one system alone:
``python -m benchmarks.sam3_video SYSTEM CHECKPOINT FRAMES_DIR 100,1000`` (prints JSON).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from benchmarks.common import Table

TEXT = "a red disc"
SETTINGS = dict(score_threshold=0.5, new_threshold=0.7)


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def make_clip(folder: Path, n: int, h: int = 180, w: int = 260) -> Path:
    """``n`` JPEG frames of discs moving (and wrapping around) over a gradient."""
    folder.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:h, 0:w]
    for t in range(n):
        img = np.stack([xx * 255 // w, yy * 255 // h, np.full_like(xx, 80)], -1).astype(np.uint8)
        for cx, cy, r, col in (((60 + 3 * t) % w, 60, 25, (255, 40, 40)), ((180 - 2 * t) % w, 110, 35, (30, 220, 60)),
                               (130, (40 + 2 * t) % h, 18, (250, 250, 250))):
            img[(xx - cx) ** 2 + (yy - cy) ** 2 <= r * r] = col
        cv2.imwrite(str(folder / f"{t:05d}.jpg"), img[..., ::-1])
    return folder


def _measure(gen, at: list[int], t0: float, base: float) -> dict:
    out, n = {}, 0
    for n, _ in enumerate(gen, 1):
        if n in at:
            out[n] = rss_mb() - base
    return {"rss": out, "ms": (time.perf_counter() - t0) / max(n, 1) * 1000, "frames": n}


def run_samkit(ckpt: str, frames: str, at: list[int]) -> dict:
    from samkit import SAM

    model = SAM(ckpt, device="cpu", verbose=False)
    model.predict(np.zeros((64, 64, 3), np.uint8), texts=TEXT)  # warm up the text encoder and the kernels
    base, t0 = rss_mb(), time.perf_counter()
    return _measure(model.track(frames, texts=TEXT, stream=True, **SETTINGS), at, t0, base)


def run_reference(ckpt: str, frames: str, at: list[int]) -> dict:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from samkit.nn.registry import model_registry
    from tests import sam3_video_reference as vref

    os.environ["TQDM_DISABLE"] = "1"
    arch = model_registry().architecture("sam3_test")
    with vref.video_cpu_patches():
        meta = vref.build_video_reference(arch, score_threshold_detection=SETTINGS["score_threshold"],
                                          new_det_thresh=SETTINGS["new_threshold"])
        meta.load_state_dict(torch.load(ckpt, weights_only=True)["model"])

        def gen():
            state = meta.init_state(resource_path=frames, offload_video_to_cpu=True)  # every frame, up front
            meta.add_prompt(state, frame_idx=0, text_str=TEXT)
            yield from meta.propagate_in_video(state, start_frame_idx=0)

        base, t0 = rss_mb(), time.perf_counter()
        return _measure(gen(), at, t0, base)


def run(table: Table, memory: Table, folder: Path, counts: list[int]) -> None:
    """Adds resident memory rows (MB) to ``memory`` and the time per frame (ms) to ``table``."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from samkit.nn.registry import model_registry
    from tests import sam3_video_reference as vref

    arch = model_registry().architecture("sam3_test")
    with vref.video_cpu_patches():
        meta = vref.build_video_reference(arch)
    vref.shape_weights_(meta, offset=3.0)
    ckpt = folder / "sam3-video.pt"
    torch.save({"model": meta.state_dict()}, ckpt)
    frames = make_clip(folder / "sam3-clip", max(counts))
    got = {}
    for system in ("samkit", "reference"):
        cmd = [sys.executable, "-m", "benchmarks.sam3_video", system, str(ckpt), str(frames),
               ",".join(map(str, counts))]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode:
            print(f"  {system} failed:\n{proc.stderr[-2000:]}")
            got[system] = None
            continue
        got[system] = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"  {system}: {got[system]}", flush=True)
    for n in counts:
        memory.add("SAM 3 test size, a phrase", f"resident memory after {n} frames",
                   **{s: (g["rss"].get(str(n)) if g else None) for s, g in got.items()})
    table.add(f"SAM 3 test size, a phrase ({max(counts)} frames)", "per frame",
              **{s: (g["ms"] if g else None) for s, g in got.items()})


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    torch.set_num_threads(min(torch.get_num_threads(), 2))
    system, ckpt, frames, at = sys.argv[1:5]
    counts = [int(v) for v in at.split(",")]
    fn = {"samkit": run_samkit, "reference": run_reference}[system]
    with torch.inference_mode():
        result = fn(ckpt, frames, counts)
    print(json.dumps(result))
