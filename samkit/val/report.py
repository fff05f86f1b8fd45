"""What ``samkit val`` writes to its run folder (``runs/val/exp``): ``metrics.json``, ``per_item.csv`` (one row per
object and prompt kind), ``summary.md``, and the plots a person would rather look at: ``clicks.png`` (mean IoU
against the number of clicks), ``iou_hist.png`` (the IoU distribution per prompt kind) and ``worst.jpg`` (the
worst objects drawn with their prompts: ground truth outlined in green, the prediction filled in red, positive
clicks green, negative red, boxes yellow). Every file is written atomically."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import numpy as np

from samkit.val.metrics import miou_at, noc
from samkit.writers.atomic import atomic_write_bytes, atomic_write_text

#: The IoU thresholds of NoC (NoC@85, NoC@90).
NOC_THRESHOLDS = (0.85, 0.90)


def summarize(scores, max_clicks: int) -> dict:
    """The metrics of every prompt kind in ``scores`` (:class:`~samkit.val.images.ObjectScore`)."""
    out = {}
    box = [s.ious[0] for s in scores if s.prompt == "box"]
    if box:
        out["box"] = {"objects": len(box), "miou": float(np.mean(box))}
    clicks = [s.ious for s in scores if s.prompt == "click"]
    if clicks:
        c = {"objects": len(clicks)}
        for k in (1, 3, 5):
            if k <= max_clicks:
                c[f"miou@{k}"] = miou_at(clicks, k)
        for thr in NOC_THRESHOLDS:
            c[f"noc@{round(thr * 100)}"] = float(np.mean([noc(o, thr, max_clicks) for o in clicks]))
        within = min(5, max_clicks)
        c[f"reach85@{within}"] = float(np.mean([any(v >= 0.85 for v in o[:within]) for o in clicks]))
        c["max_clicks"] = max_clicks
        out["click"] = c
    return out


def table_rows(metrics: dict) -> list[tuple[str, str]]:
    """(column, value) pairs for the printed table."""
    cols = []
    for kind, m in metrics.items():
        if "cgF1" in m:  # concepts
            cols += [("mask AP", f"{m['AP']:.4f}"), ("AP50", f"{m['AP50']:.4f}"), ("cgF1", f"{m['cgF1']:.4f}"),
                     ("pmF1", f"{m['pmF1']:.4f}"), ("IL_MCC", f"{m['IL_MCC']:.4f}")]
        if "J&F" in m:  # video
            cols += [(f"{kind} J&F", f"{m['J&F']:.4f}"), (f"{kind} J", f"{m['J']:.4f}"), (f"{kind} F", f"{m['F']:.4f}")]
    if "miou" in metrics.get("box", {}):
        cols.append(("box mIoU", f"{metrics['box']['miou']:.4f}"))
    if "noc@90" in metrics.get("click", {}):
        c = metrics["click"]
        for key in ("miou@1", "miou@3", "miou@5"):
            if key in c:
                cols.append((key.replace("miou", "mIoU"), f"{c[key]:.4f}"))
        cols += [("NoC@85", f"{c['noc@85']:.2f}"), ("NoC@90", f"{c['noc@90']:.2f}")]
        cols += [(k.replace("reach85@", ">=85%@"), f"{c[k]:.3f}") for k in c if k.startswith("reach85@")]
    return cols


def per_item_csv(scores, max_clicks: int) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    if scores and isinstance(scores[0], tuple):  # concepts: one row per image and phrase
        w.writerow(["item", "phrase", "objects", "detections", "tp@50", "fp@50", "fn@50", "image_level"])
        for item, phrase, n_g, n_d, c in scores:
            w.writerow([item, phrase, n_g, n_d, int(c["tp"][0]), int(c["fp"][0]), int(c["fn"][0]), c["level"]])
        return buf.getvalue()
    if scores and hasattr(scores[0], "j"):  # video: one row per object and prompt kind
        w.writerow(["video", "object", "prompt", "J", "F", "J&F", "frames"])
        for s in scores:
            w.writerow([s.item, s.object, s.prompt, f"{s.j:.6f}", f"{s.f:.6f}", f"{(s.j + s.f) / 2:.6f}", s.frames])
        return buf.getvalue()
    w.writerow(["item", "object", "class", "area", "prompt", "iou", *(f"iou_{k}" for k in range(1, max_clicks + 1)),
                "noc85", "noc90", "box", "clicks"])
    for s in scores:  # iou: the final IoU (the box's, or the last click's)
        if s.prompt == "box":
            w.writerow([s.item, s.object, s.cls, s.area, "box", f"{s.ious[0]:.6f}", *[""] * max_clicks, "", "",
                        " ".join(f"{v:g}" for v in s.box), ""])
        else:
            per = [f"{v:.6f}" for v in s.ious] + [""] * (max_clicks - len(s.ious))
            w.writerow([s.item, s.object, s.cls, s.area, "click", f"{s.ious[-1]:.6f}", *per,
                        noc(s.ious, 0.85, max_clicks), noc(s.ious, 0.90, max_clicks), "",
                        " ".join(f"{x},{y},{'+' if p else '-'}" for x, y, p in s.clicks)])
    return buf.getvalue()


def summary_md(runs: list[dict]) -> str:
    """A Markdown summary of one or several models' runs on one dataset."""
    first = runs[0]
    lines = [f"# samkit val: {first['data']}", "",
             f"Split: {first['split'] or '-'}; format: {first['format']}; "
             + (f"{first['counts']['videos']} videos, {first['counts']['images']} frames, " if "videos" in
                first["counts"] else f"{first['counts']['images']} images, ")
             + f"{first['counts']['objects']} objects.", ""]
    cols = [c for c, _ in table_rows(first["metrics"])]
    lines.append("| model | " + " | ".join(cols) + " | ms / object | peak memory (MB) |")
    lines.append("|---" * (len(cols) + 3) + "|")
    for r in runs:
        vals = [v for _, v in table_rows(r["metrics"])]
        lines.append(f"| {r['model']} | " + " | ".join(vals) + f" | {r['speed']['ms_per_object']:.1f} | "
                     f"{r['memory']['peak_mb']:.0f} |")
    notes = first.get("notes") or []
    if notes:
        lines += ["", "Left out:", *[f"- {n}" for n in notes]]
    if len(runs) > 1:
        lines += ["", f"worst.jpg draws {first['model']}'s worst objects; per_item_<model>.csv per model."]
    lines += ["", "Definitions (docs/val.md in samkit's repository): box mIoU; mIoU@k: IoU after k clicks of the click "
              "robot; NoC@85 / NoC@90: clicks to reach that IoU, capped at the click budget; J&F: DAVIS's region and "
              "boundary measures; cgF1: SAM 3's concept F1."]
    return "\n".join(lines) + "\n"


def write_run(save_dir: Path, runs: list[dict], scores: list, max_clicks: int) -> list[Path]:
    """``metrics.json`` (every model), ``per_item.csv`` and ``summary.md``; returns the files written."""
    doc = json.dumps(runs if len(runs) > 1 else runs[0], indent=2, default=_plain) + "\n"
    written = [atomic_write_text(save_dir / "metrics.json", doc),
               atomic_write_text(save_dir / "summary.md", summary_md(runs))]
    if len(runs) == 1:
        written.append(atomic_write_text(save_dir / "per_item.csv", per_item_csv(scores, max_clicks)))
    else:
        for r, s in zip(runs, scores):
            written.append(atomic_write_text(save_dir / f"per_item_{r['slug']}.csv", per_item_csv(s, max_clicks)))
    return written


def _plain(v):
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    if isinstance(v, Path):
        return str(v)
    raise TypeError(f"{type(v).__name__} is not JSON")


# ---------------------------------------------------------------------- plots
def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    return buf.getvalue()


def plot_clicks(path: Path, curves: dict[str, list[list[float]]], max_clicks: int) -> Path:
    """Mean IoU after k clicks, k = 1..max_clicks, one line per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ks = list(range(1, max_clicks + 1))
    for label, per_object in curves.items():
        ax.plot(ks, [miou_at(per_object, k) for k in ks], marker="o", ms=3, label=label)
    ax.set_xlabel("clicks")
    ax.set_ylabel("mean IoU")
    ax.set_xticks(ks if max_clicks <= 20 else ks[::max(1, max_clicks // 20)])
    ax.set_ylim(0, 1)
    ax.axhline(0.85, color="grey", lw=0.6, ls="--")
    ax.axhline(0.90, color="grey", lw=0.6, ls=":")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title("mean IoU against the number of clicks")
    data = _png(fig)
    plt.close(fig)
    return atomic_write_bytes(path, data)


def plot_hist(path: Path, per_kind: dict[str, list[float]]) -> Path:
    """The distribution of the IoU per prompt kind (the last click's for clicks)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    bins = np.linspace(0, 1, 21)
    for label, values in per_kind.items():
        ax.hist(values, bins=bins, alpha=0.6, label=f"{label} (n={len(values)})")
    ax.set_xlabel("IoU")
    ax.set_ylabel("objects")
    ax.legend(fontsize=8)
    ax.set_title("IoU per prompt kind")
    data = _png(fig)
    plt.close(fig)
    return atomic_write_bytes(path, data)


def draw_worst(path: Path, worst: list[tuple], tile: int = 320) -> Path:
    """``worst``: (image BGR, ground truth mask, predicted mask, score) tuples -> one grid image."""
    import cv2

    tiles = []
    for image, gt, pred, s in worst:
        im = image.copy()
        red = np.zeros_like(im)
        red[..., 2] = 255
        im = np.where(pred[..., None], (0.55 * im + 0.45 * red).astype(np.uint8), im)
        contours, _ = cv2.findContours(gt.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(im, contours, -1, (0, 255, 0), max(1, round(max(im.shape[:2]) / 300)))
        if s.box is not None:
            x1, y1, x2, y2 = (int(round(v)) for v in s.box)
            cv2.rectangle(im, (x1, y1), (x2 - 1, y2 - 1), (0, 255, 255), 2)
        r = max(3, round(max(im.shape[:2]) / 120))
        for x, y, p in s.clicks:
            cv2.circle(im, (int(x), int(y)), r, (0, 200, 0) if p else (0, 0, 230), -1)
            cv2.circle(im, (int(x), int(y)), r, (255, 255, 255), 1)
        scale = tile / max(im.shape[:2])
        im = cv2.resize(im, (max(1, round(im.shape[1] * scale)), max(1, round(im.shape[0] * scale))),
                        interpolation=cv2.INTER_AREA)
        canvas = np.full((tile + 24, tile, 3), 32, np.uint8)
        canvas[: im.shape[0], : im.shape[1]] = im
        text = f"{Path(s.item).name} #{s.object} {s.prompt} IoU {s.ious[-1]:.2f}"
        cv2.putText(canvas, text[:44], (4, tile + 17), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1,
                    cv2.LINE_AA)
        tiles.append(canvas)
    cols = min(4, len(tiles))
    rows = math.ceil(len(tiles) / cols)
    grid = np.full((rows * (tile + 24), cols * tile, 3), 32, np.uint8)
    for i, t in enumerate(tiles):
        r, c = divmod(i, cols)
        grid[r * (tile + 24) : (r + 1) * (tile + 24), c * tile : (c + 1) * tile] = t
    ok, buf = cv2.imencode(".jpg", grid, [cv2.IMWRITE_JPEG_QUALITY, 90])
    if not ok:
        raise OSError(f"could not encode {path}")
    return atomic_write_bytes(path, buf.tobytes())
