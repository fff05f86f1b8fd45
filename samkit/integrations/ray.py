"""The distributed annotation engine: the same per-image work as the local engine, on Ray Data.

Image paths become a Ray dataset; SAM (and the detector) run in a pool of actors (``map_batches`` with a callable
class, one GPU per actor when the cluster has GPUs), and each actor writes its images' files with the same writers
as the local engine. The output folder must therefore be reachable by every worker (a shared file system on a
real cluster; any folder on a local instance). Needs ``pip install samkit[ray]``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

BATCH = 4  # images per actor call


def _import_ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise ImportError("engine='ray' needs Ray Data: pip install samkit[ray]") from None
    return ray


class _AnnotateActor:
    """One SAM (and detector) per actor, annotating batches of image paths."""

    def __init__(self, kw: dict):
        from samkit.annotate import Annotator

        self.annotator = Annotator(**kw)

    def __call__(self, batch: dict) -> dict:
        records = [self.annotator(str(p)) for p in batch["path"]]
        names = json.dumps({str(k): v for k, v in self.annotator.names.items()})
        return {
            "path": [r["path"] for r in records],
            "status": [r["status"] for r in records],
            "reason": [r.get("reason", "") for r in records],
            "objects": [int(r.get("objects", 0)) for r in records],
            "empty": [int(r.get("empty", 0)) for r in records],
            "holes": [int(r.get("holes", 0)) for r in records],
            "redone": [r.get("redone") or "" for r in records],
            "names": [names] * len(records),
        }


def annotate_on_ray(images: list[str], kw: dict, address: str | None = None, actors: int = 1) -> Iterator[dict]:
    """Annotate ``images`` with :class:`~samkit.annotate.Annotator` settings ``kw`` on Ray; yields each image's
    record (as the local engine's). Starts a local Ray instance unless one is running or ``address`` is given."""
    ray = _import_ray()
    if isinstance(actors, bool) or not isinstance(actors, int) or actors < 1:
        raise ValueError(f"ray_actors={actors!r} must be a positive integer")
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
    gpus = 1 if ray.cluster_resources().get("GPU", 0) >= actors else 0
    if kw.get("device") in ("", None) and not gpus:
        kw = {**kw, "device": "cpu"}
    ds = ray.data.from_items([{"path": str(p)} for p in images])
    out = ds.map_batches(_AnnotateActor, fn_constructor_kwargs={"kw": kw}, batch_size=BATCH, concurrency=actors,
                         num_gpus=gpus, batch_format="numpy")
    for row in out.iter_rows():
        rec = {k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}
        yield rec
