"""What a training run writes beside its weights: ``results.csv`` (every loss term and val metric per epoch),
``results.png`` (their curves), and the before / after table; and the val of each epoch."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

from samkit.writers.atomic import atomic_write_bytes, atomic_write_text

#: The val metrics the before / after table shows, in order: (kind, key, column).
SHOWN = (("box", "miou", "box mIoU"), ("click", "miou@1", "mIoU@1"), ("click", "miou@3", "mIoU@3"),
         ("click", "miou@5", "mIoU@5"), ("click", "noc@85", "NoC@85"), ("click", "noc@90", "NoC@90"))


def fitness(metrics: dict) -> float:
    """What ``best.pt`` is chosen by: the mean of box mIoU and of the clicks' mean of mIoU@1, @3, @5 (those
    measured); NaN without metrics."""
    parts = []
    if "miou" in metrics.get("box", {}):
        parts.append(metrics["box"]["miou"])
    clicks = [metrics.get("click", {}).get(k) for k in ("miou@1", "miou@3", "miou@5")]
    clicks = [c for c in clicks if c is not None]
    if clicks:
        parts.append(sum(clicks) / len(clicks))
    return float(sum(parts) / len(parts)) if parts else float("nan")


def validate(model, dataset, s, wrapper=None, keep_embeddings: bool = False):
    """``samkit val``'s metrics of the network ``model`` is training, on ``dataset`` (nothing written), and the
    model they were measured with. ``keep_embeddings``: the encoder is frozen, so ``wrapper`` (the model of an
    earlier epoch, over the same network) is measured again with its image embeddings kept."""
    import torch

    from samkit.model import SAM
    from samkit.val import measure

    net = model.net
    was_training = net.training
    if wrapper is None or not keep_embeddings:
        wrapper = SAM.from_network(net, model.arch, model.version, device=model.device,
                                   cache=len(dataset.items) if keep_embeddings else 0)
    net.eval()  # as inference runs it (SAM 2's decoder picks its single mask by stability only in eval mode)
    try:
        with torch.no_grad():
            return measure(wrapper, dataset, s.prompts, max_clicks=s.max_clicks), wrapper
    finally:
        net.train(was_training)


def write_results(save_dir: Path, rows: list[dict], plots: bool = True) -> list[Path]:
    """``results.csv`` (rewritten whole, atomically, after every epoch) and ``results.png``."""
    cols = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    for r in rows:
        w.writerow(["" if r.get(c) is None or (isinstance(r.get(c), float) and math.isnan(r[c])) else
                    (f"{r[c]:.6g}" if isinstance(r[c], float) else r[c]) for c in cols])
    files = [atomic_write_text(save_dir / "results.csv", buf.getvalue())]
    if plots:
        files.append(plot_results(save_dir / "results.png", rows))
    return files


def plot_results(path: Path, rows: list[dict]) -> Path:
    """One panel per loss term and val metric, against the epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [k for k in dict.fromkeys(k for r in rows for k in r) if k.startswith(("train/", "metrics/"))
            or k in ("fitness", "lr")]
    keys = [k for k in keys if any(isinstance(r.get(k), float) and not math.isnan(r[k]) for r in rows)]
    cols = 4
    nrows = max(1, math.ceil(len(keys) / cols))
    fig, axes = plt.subplots(nrows, cols, figsize=(3.2 * cols, 2.4 * nrows), squeeze=False)
    for ax, k in zip(axes.flat, keys):
        pts = [(r["epoch"], r[k]) for r in rows if isinstance(r.get(k), float) and not math.isnan(r[k])]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=3)
        ax.set_title(k, fontsize=9)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())


def before_after(before: dict, after: dict, best_epoch: int) -> str:
    """The starting model's val metrics against ``best.pt``'s, with the change."""
    if not before or not after:
        return "no val metrics (val=False)"
    cols = [(kind, key, col) for kind, key, col in SHOWN if key in before.get(kind, {}) and key in after.get(kind, {})]
    head = ["", *[c for _, _, c in cols], "fitness"]
    lines = [["start", *[f"{before[k][m]:.4f}" for k, m, _ in cols], f"{fitness(before):.4f}"],
             [f"best (epoch {best_epoch})", *[f"{after[k][m]:.4f}" for k, m, _ in cols], f"{fitness(after):.4f}"],
             ["change", *[f"{after[k][m] - before[k][m]:+.4f}" for k, m, _ in cols],
              f"{fitness(after) - fitness(before):+.4f}"]]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *lines)]
    return "\n".join("  ".join(str(x).rjust(w) for x, w in zip(line, widths)) for line in (head, *lines))
