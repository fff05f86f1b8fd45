"""``python -m benchmarks.val``: samkit val's click robot against a loop of one-line calls, same model, same clicks.

A synthetic YOLO-seg dataset (``--images`` images of 640x480 with ``--objects`` shapes each) measured with
``prompts=click`` and ``max_clicks`` clicks per object, three ways:

- ``samkit val``: each image encoded once, its objects decoded together at every click;
- a loop of ``model(image, points=..., labels=..., masks=previous logits)`` calls, one per object and click, the
  embedding cached (samkit's default ``cache=8``);
- the same loop with ``cache=0``: the image encoded again at every call (what a loop over Ultralytics' predictor
  without ``set_image`` does).

Prints objects per second for each and the ratios (above 1: val is faster), and checks that the loops' IoUs are
val's (the same clicks, the same masks).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch


def make_dataset(root: Path, images: int, objects: int, seed: int = 0) -> Path:
    from samkit.writers.formats import write_dataset, write_image

    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    for i in range(images):
        h, w = 480, 640
        img = rng.integers(20, 90, (h, w, 3), dtype=np.uint8)
        masks = np.zeros((objects, h, w), np.uint8)
        for k in range(objects):
            cx, cy, r = int(rng.integers(80, w - 80)), int(rng.integers(80, h - 80)), int(rng.integers(25, 70))
            cv2.circle(masks[k], (cx, cy), r, 1, -1)
            cv2.rectangle(masks[k], (cx, cy), (cx + r, cy + r // 2), 1, -1)
            img[masks[k] > 0] = rng.integers(120, 255, 3)
        cv2.imwrite(str(root / "images" / f"im{i}.jpg"), img)
        write_image("yolo", root / "labels", f"im{i}", masks.astype(bool), list(range(objects)), list(range(objects)))
    write_dataset("yolo", root, {k: f"shape{k}" for k in range(objects)}, by="benchmarks.val", train="images")
    return root


def loop(model, dataset, max_clicks: int) -> tuple[list[list[float]], float]:
    """The one-line-call loop: per object, per click, one predict call."""
    from samkit.data.sources import read_image
    from samkit.val.clicks import first_click, next_click
    from samkit.val.metrics import iou

    per_object, t0 = [], time.perf_counter()
    for item in dataset.items:
        image = read_image(item.path)
        for o in item.read(image.shape[:2]):
            clicks, ious, logits = [first_click(o.mask)], [], None
            for k in range(max_clicks):
                pts = [[[c.x, c.y] for c in clicks]]
                labs = [[int(c.positive) for c in clicks]]
                if k == 0:
                    r = model(image, points=pts, labels=labs, multimask=True)[0]
                    best = int(r.iou.argmax())
                else:
                    r = model(image, points=pts, labels=labs, masks=logits)[0]
                    best = 0
                pred = r.masks.data[best].cpu().numpy()
                logits = r.low_res_logits[best : best + 1].float().cpu().numpy()
                ious.append(iou(pred, o.mask))
                c = next_click(o.mask, pred)
                if c is None:
                    break
                clicks.append(c)
            per_object.append(ious)
    return per_object, time.perf_counter() - t0


def main(argv=None) -> None:
    from samkit import SAM
    from samkit.val import open_dataset, run

    p = argparse.ArgumentParser(prog="python -m benchmarks.val", description=__doc__.splitlines()[0])
    p.add_argument("--model", default="sam2.1_t", help="registry architecture, random weights (default sam2.1_t)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--images", type=int, default=4)
    p.add_argument("--objects", type=int, default=3)
    p.add_argument("--clicks", type=int, default=5)
    p.add_argument("--skip-uncached", action="store_true", help="skip the loop that encodes at every call (slow)")
    args = p.parse_args(argv)
    torch.set_grad_enabled(False)
    with tempfile.TemporaryDirectory() as tmp:
        data = make_dataset(Path(tmp) / "shapes", args.images, args.objects)
        dataset = open_dataset(data)
        model = SAM.untrained(args.model, device=args.device, verbose=False)
        model(np.zeros((64, 64, 3), np.uint8), bboxes=[0, 0, 10, 10])  # warm-up
        t0 = time.perf_counter()
        res = run([model], data, prompts="click", max_clicks=args.clicks, project=Path(tmp) / "runs", plots=False,
                  worst=0, verbose=False)
        t_val = time.perf_counter() - t0
        fresh = SAM.untrained(args.model, device=args.device, verbose=False)  # the same weights, nothing cached
        fresh(np.zeros((64, 64, 3), np.uint8), bboxes=[0, 0, 10, 10])
        cached, t_cached = loop(fresh, dataset, args.clicks)
        uncached, t_uncached = cached, None
        if not args.skip_uncached:
            uncached_model = SAM.untrained(args.model, device=args.device, verbose=False, cache=0)
            uncached, t_uncached = loop(uncached_model, dataset, args.clicks)
    n = res.runs[0]["counts"]["objects"]
    print(f"{args.model} (random weights) on {args.device}, {args.images} images x {args.objects} objects, "
          f"{args.clicks} clicks each, {torch.get_num_threads()} threads")
    print(f"  samkit val:                       {n / t_val:6.2f} objects/s ({t_val:.1f} s)")
    print(f"  loop of calls, embedding cached:  {n / t_cached:6.2f} objects/s ({t_cached:.1f} s): "
          f"val is {t_cached / t_val:.2f}x faster")
    if t_uncached is not None:
        print(f"  loop of calls, encoder every call: {n / t_uncached:6.2f} objects/s ({t_uncached:.1f} s): "
              f"val is {t_uncached / t_val:.2f}x faster")
    want = [float(np.mean([o[min(k, len(o)) - 1] for o in cached])) for k in (1, 3)]
    got = [res.metrics["click"]["miou@1"], res.metrics["click"]["miou@3"]]
    print(f"  mIoU@1, @3: val {got[0]:.4f} {got[1]:.4f}; loop {want[0]:.4f} {want[1]:.4f} "
          f"(same seed, same clicks; the uncached loop {'agrees' if uncached == cached else 'DIFFERS'})")


if __name__ == "__main__":
    main()
