"""``python -m benchmarks.train``: does a fine-tune help, measured by samkit val, and what does it cost on this machine.

Random-weight models of real-size architectures (``--models``, default SAM 2.1 tiny and MobileSAM; nothing is
downloaded) are fine-tuned decoder-only on the synthetic shapes dataset (``samkit.data.synthetic``: ``--train``
and ``--val`` images of 320x240 with 1 to 4 shapes each) for ``--epochs`` epochs. Printed per model: the val split's
box mIoU and mIoU@1 click of the starting model and of ``best.pt``, their change, seconds for caching the
embeddings and per epoch, and a markdown table for ``benchmarks/README.md``.

Beside them, the anchors' answer to the same request: Ultralytics' ``SAM(...).train()`` on the same checkpoint file
(it has no trainer for SAM; the error it raises is printed).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def fine_tune(name: str, data: Path, epochs: int, lr0: float, project: Path, max_clicks: int) -> dict:
    from samkit import SAM

    model = SAM.untrained(name, device="cpu", verbose=False, seed=0)
    t0 = time.perf_counter()
    res = model.train(data=data, epochs=epochs, lr0=lr0, max_clicks=max_clicks, project=project,
                      name=Path(name).stem, verbose=True)
    seconds = time.perf_counter() - t0
    times = [r["time"] for r in res.rows[1:]]
    return {"model": name, "before": res.before, "after": res.after, "best_epoch": res.best_epoch,
            "seconds": seconds, "epoch_s": sum(times) / len(times), "table": res.table()}


def ultralytics_train(name: str, data: Path, folder: Path) -> str:
    """What ``ultralytics.SAM(<the same architecture>).train(data=...)`` does."""
    import torch

    from samkit.nn.build import build_network, resolve_name

    arch, version = resolve_name(name)
    path = folder / Path(name).name
    torch.save({"model": build_network(arch, version).state_dict()}, path)
    try:
        from ultralytics import SAM as UltralyticsSAM

        UltralyticsSAM(str(path)).train(data=str(data), epochs=1)
    except Exception as e:  # what a user gets
        return f"{type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''}"
    return "trained"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="sam2.1_t.pt,mobile_sam.pt")
    p.add_argument("--train", type=int, default=32)
    p.add_argument("--val", type=int, default=16)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--lr0", type=float, default=1e-3)
    p.add_argument("--max-clicks", type=int, default=5)
    args = p.parse_args(argv)
    from samkit.data.synthetic import make_shapes

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = make_shapes(tmp / "shapes", train=args.train, val=args.val, size=(320, 240), seed=0)
        rows = []
        for name in args.models.split(","):
            r = fine_tune(name, data, args.epochs, args.lr0, tmp / "runs", args.max_clicks)
            r["ultralytics"] = ultralytics_train(name, data, tmp)
            print(f"\n{name}\n{r['table']}\nultralytics SAM.train: {r['ultralytics']}")
            rows.append(r)
    print("\n| model | box mIoU start | box mIoU best | mIoU@1 start | mIoU@1 best | best epoch | s / epoch | "
          "total s | Ultralytics' SAM.train |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        b, a = r["before"], r["after"]
        print(f"| {r['model']} | {b['box']['miou']:.3f} | {a['box']['miou']:.3f} | {b['click']['miou@1']:.3f} | "
              f"{a['click']['miou@1']:.3f} | {r['best_epoch']} | {r['epoch_s']:.0f} | {r['seconds']:.0f} | "
              f"{r['ultralytics']} |")


if __name__ == "__main__":
    main()
