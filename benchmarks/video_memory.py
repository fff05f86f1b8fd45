"""Resident memory while tracking a long video: samkit against Meta's video predictor.

Each system runs in a fresh Python process (so one system's freed memory cannot hide the other's growth) on the
same JPEG folder (the one kind of input the reference reads) with the same random weights, in the tiny test
architecture (256 px input) for both: the reference is built from its tiny config with the trunk, neck and input
size overridden to match, and loads the same checkpoint strictly. Reported: resident set size (VmRSS) after N
frames, minus the RSS right before the video was opened (the model and libraries already loaded), and the median
per-frame time.

Run ``python -m benchmarks --video-memory 100,500,1000``; one system alone:
``python -m benchmarks.video_memory SYSTEM CHECKPOINT FRAMES_DIR 100,500,1000`` (prints JSON).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import Table
from benchmarks.video import make_frames

# The reference's tiny config changed to the test architecture samkit's registry calls "sam2_test".
REFERENCE_TINY = [
    "++model.image_size=256",
    "++model.image_encoder.trunk.embed_dim=16",
    "++model.image_encoder.trunk.num_heads=1",
    "++model.image_encoder.trunk.stages=[1,1,2,1]",
    "++model.image_encoder.trunk.global_att_blocks=[3]",
    "++model.image_encoder.trunk.window_pos_embed_bkg_spatial_size=[4,4]",
    "++model.image_encoder.trunk.window_spec=[8,4,4,2]",
    "++model.image_encoder.neck.backbone_channel_list=[128,64,32,16]",
]
BOX = [40, 60, 200, 200]


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def _measure(gen, at: list[int]) -> dict:
    """RSS after each frame count in ``at`` and the median time per frame (first frame excluded)."""
    base = rss_mb()
    out, times, t = {}, [], time.perf_counter()
    for n, _ in enumerate(gen, 1):
        now = time.perf_counter()
        times.append(now - t)
        t = now
        if n in at:
            out[n] = rss_mb() - base
    return {"rss": out, "ms": float(np.median(times[1:]) * 1000), "base": base}


def run_samkit(ckpt: str, frames: str, at: list[int]) -> dict:
    import PIL.Image  # noqa: F401 - imported up front, as the reference imports everything it uses when built
    import torchvision.transforms.functional  # noqa: F401

    import samkit.engine.video  # noqa: F401
    import samkit.results  # noqa: F401
    from samkit import SAM

    model = SAM(ckpt, device="cpu", verbose=False)

    def gen():
        with model.video(frames) as v:
            v.add(frame=0, obj_id=1, box=BOX)
            yield from v.propagate()

    return _measure(gen(), at)


def run_reference(ckpt: str, frames: str, at: list[int]) -> dict:
    import sam2.sam2_video_predictor as svp
    from sam2.build_sam import build_sam2_video_predictor

    proxy = types.ModuleType("torch_fp32_memories")  # its bf16 memories cannot run in fp32 attention on the CPU
    proxy.__dict__.update(torch.__dict__)
    proxy.bfloat16 = torch.float32
    svp.torch = proxy
    ref = build_sam2_video_predictor("configs/sam2.1/sam2.1_hiera_t.yaml", ckpt_path=ckpt, device="cpu",
                                     hydra_overrides_extra=REFERENCE_TINY)

    def gen():
        state = ref.init_state(frames)  # inside the measurement: loading the video is part of its footprint
        ref.add_new_points_or_box(state, frame_idx=0, obj_id=1, box=np.array(BOX, np.float32))
        yield from ref.propagate_in_video(state)

    return _measure(gen(), at)


def run(table: Table, memory: Table, folder: Path, counts: list[int]) -> None:
    """Adds resident memory rows to ``memory`` (MB) and the per-frame time to ``table`` (ms)."""
    from samkit.nn import build_network

    ckpt = folder / "tiny-memory.pt"
    torch.manual_seed(0)
    sd = build_network("sam2_test", "2.1").state_dict()
    sd["sam_mask_decoder.pred_obj_score_head.layers.2.bias"] += 20.0  # the object stays present: real masks
    torch.save({"model": sd}, ckpt)
    frames = make_frames(folder / "long", max(counts))
    got = {}
    for system in ("samkit", "reference"):
        cmd = [sys.executable, "-m", "benchmarks.video_memory", system, str(ckpt), str(frames),
               ",".join(map(str, counts))]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode:
            print(f"  {system} failed:\n{proc.stderr[-2000:]}")
            got[system] = None
            continue
        got[system] = json.loads(proc.stdout.strip().splitlines()[-1])
    for n in counts:
        memory.add("tiny video, 1 object", f"resident memory after {n} frames",
                   **{s: (g["rss"][str(n)] if g else None) for s, g in got.items()})
    table.add(f"tiny video ({max(counts)} frames)", "per frame, 1 object",
              **{s: (g["ms"] if g else None) for s, g in got.items()})


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    system, ckpt, frames, at = sys.argv[1:5]
    counts = [int(v) for v in at.split(",")]
    fn = {"samkit": run_samkit, "reference": run_reference}[system]
    with torch.inference_mode():
        result = fn(ckpt, frames, counts)
    print(json.dumps(result))
