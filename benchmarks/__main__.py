"""``python -m benchmarks``: samkit against ultralytics.SAM and Meta's reference, in one process, same weights.

Prints a markdown table of medians with reference/samkit and ultralytics/samkit ratios (above 1: samkit is
faster) and writes it, with the machine, versions and this command, to ``--out``.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import warnings
from pathlib import Path

import torch

from benchmarks import image, live, precision, sam3, sam3_video, video, video_memory
from benchmarks.common import Table, command, machine


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--models", default="t", help="comma-separated SAM 2.1 sizes: t, b+ (default t)")
    p.add_argument("--everything", default="16", help="segment-everything grids, e.g. 16,32 ('' to skip)")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per case (median reported)")
    p.add_argument("--half", action="store_true", help="also run every case under bf16 autocast, and compare samkit's "
                   "half-precision encoder and masks with its fp32 ones")
    p.add_argument("--compile", action="store_true", help="also run samkit with torch.compile (CUDA)")
    p.add_argument("--video-frames", type=int, default=0, help="also track a video of this many frames (0: skip)")
    p.add_argument("--video-objects", default="1,3", help="objects per video case (default 1,3)")
    p.add_argument("--video-memory", default="", help="resident memory after these frame counts, e.g. 100,500,1000 "
                   "(tiny architecture, each system in its own process; '' to skip)")
    p.add_argument("--live-frames", type=int, default=0, help="also track a paced 720p stream of this many frames (one "
                   "object, overlay written): FPS kept and latency from arrival to mask (0: skip)")
    p.add_argument("--sam3", default="", help="also SAM 3 concept prompts against Ultralytics' SAM3SemanticPredictor: "
                   "'sam3_test' (small network) or 'sam3' (real size, ~1 min a call on a CPU); '' to skip")
    p.add_argument("--sam3-video", default="", help="also SAM 3 phrases through a long video against Meta's video "
                   "model (test size, cpu): resident memory after these frame counts and time per frame, e.g. 100,1000")
    p.add_argument("--skip-image", action="store_true", help="skip the image cases")
    p.add_argument("--out", default=None, help="markdown file to write (default: print only)")
    args = p.parse_args(argv)
    warnings.filterwarnings("ignore")
    logging.getLogger("ultralytics").setLevel(logging.ERROR)
    grids = [int(v) for v in args.everything.split(",") if v.strip()]
    table = Table(["samkit", "reference", "ultralytics"])
    memory = Table(["samkit", "reference"], unit="MB", ratio_floor=1.0)
    objects = [int(v) for v in args.video_objects.split(",") if v.strip()]
    variants = [(False, False)] + ([(True, False)] if args.half else []) + ([(True, True)] if args.compile else [])
    half_rows: list[str] = []
    live_rows: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.models.split(","):
            if args.half:
                print(f"sam2.1 {size} on {args.device}: half precision against fp32 (samkit, 10 boxes on bus.jpg)")
                precision.run(half_rows, Path(tmp), size.strip(), args.device, args.repeats)
            for half, comp in variants:
                print(f"sam2.1 {size} on {args.device}{' bf16' if half else ''}{' compiled' if comp else ''}")
                if not args.skip_image:
                    image.run(table, Path(tmp), size.strip(), args.device, half, args.repeats, grids, compile_=comp)
                if args.video_frames:
                    video.run(table, Path(tmp), size.strip(), args.device, half, args.video_frames, objects, comp)
                if args.live_frames:
                    live_rows.append(live.run(Path(tmp), size.strip(), args.device, half, comp, args.live_frames))
                    print("  " + live_rows[-1], flush=True)
        if args.sam3:
            print(f"SAM 3 concepts ({args.sam3}) on {args.device}")
            sam3.run(table, args.sam3, args.device, args.repeats)
        if args.sam3_video:
            print("SAM 3 phrases over a long video (test size, cpu)")
            sam3_video.run(table, memory, Path(tmp), [int(v) for v in args.sam3_video.split(",")])
        if args.video_memory:
            print("resident memory over a long video (tiny architecture, cpu)")
            video_memory.run(table, memory, Path(tmp), [int(v) for v in args.video_memory.split(",")])
    text = f"Machine: {machine()}\n\nCommand: `{command()}`\n"
    if table.rows:
        text += f"\nMedians in milliseconds; ratios above 1 mean samkit is faster.\n\n{table.markdown()}\n"
    if half_rows:
        text += (f"\nsamkit in half precision against samkit in fp32 (same weights, same run): encoder medians and the "
                 f"IoU of the 10 box masks with the fp32 ones.\n\n{precision.HEADER}\n" + "\n".join(half_rows) + "\n")
    if live_rows:
        text += (f"\nLive tracking (samkit only): a paced stream, one object, overlay video written; latency from a "
                 f"frame's arrival to its Results.\n\n{live.HEADER}\n" + "\n".join(live_rows) + "\n")
    if memory.rows:
        text += (f"\nResident memory above the loaded model (MB); ratios above 1 mean samkit holds less (no ratio "
                 f"where samkit's growth is under 1 MB).\n\n{memory.markdown()}\n")
    print("\n" + text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
