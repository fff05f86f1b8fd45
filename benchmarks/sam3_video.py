"""SAM 3 concept tracking over a long video: resident memory and time per frame, samkit against Meta's video model.

Both run the test-size SAM 3 (``sam3_test``, 224 px) with the same shaped random weights (several objects found,
tracked and removed, as with a trained model; see ``benchmarks/sam3_video_reference.shape_weights_``) on the same JPEG
folder of a synthetic clip, each in a fresh Python process. Meta's model runs on the CPU with the patches of
``benchmarks/sam3_video_reference.video_cpu_patches`` and reads the folder with its own loader (every frame up front, as
it always does); samkit streams it (``model(folder, texts=..., stream=True)``). Each video length runs in fresh
processes. Reported: resident set size at the end of an N-frame video minus the RSS right before it was opened,
raw and after glibc's ``malloc_trim`` (the memory still in use: the raw figure also holds heap pages the allocator
freed but kept, which follow fragmentation rather than what is held), and the time per frame (the whole pass
divided by the frames, so the reference's up-front loading counts).

Run ``python -m benchmarks --skip-image --everything "" --sam3-video 100,1000``; one system on one video:
``python -m benchmarks.sam3_video SYSTEM CHECKPOINT FRAMES_DIR FRAMES`` (prints JSON).
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
from benchmarks.video_memory import rss_mb

TEXT = "a red disc"
SETTINGS = dict(score_threshold=0.5, new_threshold=0.7)


def disc_frames(n: int, h: int = 180, w: int = 260) -> list[np.ndarray]:
    """``n`` BGR frames: a gradient with three discs moving a few pixels per frame (wrapping around the edges)."""
    yy, xx = np.mgrid[0:h, 0:w]
    out = []
    for t in range(n):
        img = np.stack([xx * 255 // w, yy * 255 // h, np.full_like(xx, 80)], -1).astype(np.uint8)
        for cx, cy, r, col in (((60 + 3 * t) % w, 60, 25, (255, 40, 40)), ((180 - 2 * t) % w, 110, 35, (30, 220, 60)),
                               (130, (40 + 2 * t) % h, 18, (250, 250, 250))):
            img[(xx - cx) ** 2 + (yy - cy) ** 2 <= r * r] = col
        out.append(np.ascontiguousarray(img[..., ::-1]))
    return out


def make_clip(folder: Path, n: int) -> Path:
    """``n`` JPEG frames of :func:`disc_frames` in ``folder``, and the same frames as ``folder``.mp4."""
    folder.mkdir(parents=True, exist_ok=True)
    frames = disc_frames(n)
    for t, f in enumerate(frames):
        cv2.imwrite(str(folder / f"{t:05d}.jpg"), f)
    h, w = frames[0].shape[:2]
    video = cv2.VideoWriter(str(folder.with_suffix(".mp4")), cv2.VideoWriter_fourcc(*"mp4v"), 30, (w, h))
    for p in sorted(folder.glob("*.jpg")):  # the same frames as an mp4, for Ultralytics' video reader
        video.write(cv2.imread(str(p)))
    video.release()
    return folder


def live_rss_mb() -> float:
    """RSS after a garbage collection and glibc's ``malloc_trim``: memory the process still uses, not heap pages
    it freed but kept (which grow and shrink with the allocator's fragmentation, not with what is held)."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:  # not glibc
        pass
    return rss_mb()


def _measure(gen, at: list[int], t0: float, base: float) -> dict:
    out, n, spent, objects = {}, 0, 0.0, 0
    for n, item in enumerate(gen, 1):
        shown = len(item[1]["out_obj_ids"]) if isinstance(item, tuple) else len(item)
        objects = max(objects, shown)
        if n in at:
            t = time.perf_counter()
            out[n] = {"rss": rss_mb() - base, "live": live_rss_mb() - base}
            spent += time.perf_counter() - t
    return {"mb": out, "ms": (time.perf_counter() - t0 - spent) / max(n, 1) * 1000, "frames": n,
            "most_objects_on_a_frame": objects}


def run_samkit(ckpt: str, frames: str, at: list[int]) -> dict:
    from samkit import SAM

    model = SAM(ckpt, device="cpu", verbose=False)
    model.predict(np.zeros((64, 64, 3), np.uint8), texts=TEXT)  # warm up the text encoder and the kernels
    base, t0 = live_rss_mb(), time.perf_counter()
    return _measure(model.track(frames, texts=TEXT, stream=True, **SETTINGS), at, t0, base)


def run_reference(ckpt: str, frames: str, at: list[int]) -> dict:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from benchmarks import sam3_video_reference as vref
    from samkit.nn.registry import model_registry

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

        base, t0 = live_rss_mb(), time.perf_counter()
        return _measure(gen(), at, t0, base)


def run_ultralytics(ckpt: str, frames: str, at: list[int]) -> dict:
    """Ultralytics' ``SAM3VideoSemanticPredictor`` given the same network and weights (its builders make the full
    size only): its detector and tracker are samkit's network built from Ultralytics' modules without samkit's
    replacements, the tracker with Ultralytics' own memory logic. It reads the clip as an mp4 (a folder of images is
    not a video to it); its algorithm differs from Meta's in defaults and steps, so this is a timing comparison."""
    import logging

    from ultralytics.models.sam.predict import SAM3SemanticPredictor, SAM3VideoSemanticPredictor

    from samkit.nn import build_network
    from samkit.nn.build import network_tensors
    from samkit.nn.registry import model_registry

    logging.getLogger("ultralytics").setLevel(logging.ERROR)
    net = build_network("sam3_test", replacements=False)
    arch = model_registry().architecture("sam3_test")
    net.load_state_dict(network_tensors(arch, torch.load(ckpt, weights_only=True)["model"]), strict=True)
    del net.tracker._prepare_memory_conditioned_features  # Ultralytics' memory logic, not SAM 3's selection
    threads = torch.get_num_threads()

    class Injected(SAM3VideoSemanticPredictor):
        def setup_model(self, model=None, verbose=True):
            SAM3SemanticPredictor.setup_model(self, model=net.detector, verbose=False)
            self.tracker.setup_model(model=net.tracker, verbose=False)

    pred = Injected(overrides=dict(task="segment", mode="predict", imgsz=224, model="sam3.pt", device="cpu",
                                   verbose=False, save=False, conf=SETTINGS["score_threshold"]))
    torch.set_num_threads(threads)
    mp4 = str(Path(frames).with_suffix(".mp4"))
    base, t0 = live_rss_mb(), time.perf_counter()

    def gen():
        for r in pred(source=mp4, text=[TEXT], stream=True):
            torch.set_num_threads(threads)  # Ultralytics lowers the thread count for the whole process
            yield r

    return _measure(gen(), at, t0, base)


def run(table: Table, memory: Table, folder: Path, counts: list[int]) -> None:
    """Adds resident memory rows (MB) to ``memory`` and the time per frame (ms) to ``table``: one video of each
    length in ``counts``, each system in its own process per video (the reference loads the whole video first)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from benchmarks import sam3_video_reference as vref
    from samkit.nn.registry import model_registry

    arch = model_registry().architecture("sam3_test")
    with vref.video_cpu_patches():
        meta = vref.build_video_reference(arch)
    vref.shape_weights_(meta, offset=3.0)
    ckpt = folder / "sam3-video.pt"
    torch.save({"model": meta.state_dict()}, ckpt)
    got: dict[str, dict] = {"samkit": {}, "reference": {}, "ultralytics": {}}
    for n in counts:
        frames = make_clip(folder / f"sam3-clip-{n}", n)
        for system in got:
            if system == "ultralytics" and n > 100:  # it keeps every detection as an object here: seconds a frame
                continue
            cmd = [sys.executable, "-m", "benchmarks.sam3_video", system, str(ckpt), str(frames), str(n)]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode:
                print(f"  {system} failed:\n{proc.stderr[-2000:]}")
                continue
            got[system][n] = json.loads(proc.stdout.strip().splitlines()[-1])
            print(f"  {system}, {n} frames: {got[system][n]}", flush=True)
    for n in counts:
        for kind, label in (("rss", "resident memory"), ("live", "resident memory after malloc_trim")):
            memory.add("SAM 3 test size, a phrase", f"{label}, {n}-frame video",
                       **{s: (g[n]["mb"][str(n)][kind] if n in g else None) for s, g in got.items()
                          if s != "ultralytics"})
        most = ", ".join(f"{s} {g[n]['most_objects_on_a_frame']}" for s, g in got.items() if n in g)
        table.add(f"SAM 3 test size, a phrase ({n}-frame video)", f"per frame (most objects on a frame: {most})",
                  **{s: (g[n]["ms"] if n in g else None) for s, g in got.items()})


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    torch.set_num_threads(min(torch.get_num_threads(), 2))
    system, ckpt, frames, at = sys.argv[1:5]
    counts = [int(v) for v in at.split(",")]
    fn = {"samkit": run_samkit, "reference": run_reference, "ultralytics": run_ultralytics}[system]
    with torch.inference_mode():
        result = fn(ckpt, frames, counts)
    print(json.dumps(result))
