"""The distributed annotation engine: the same per-image work as the local engine, on Ray Data.

Image paths become a Ray dataset; the work runs in a pool of actors (``map_batches`` with a callable class, one GPU
per actor when the cluster has GPUs), each holding one worker that the caller's factory builds (for
``auto_annotate``: an :class:`~samkit.annotate.Annotator`, with its SAM and detector, which writes its images' files
with the same writers as the local engine). The output folder must therefore be reachable by every worker (a shared
file system on a real cluster; any folder on a local instance). Needs ``pip install 'samkit[ray]'``.

This module knows nothing of annotation: a worker is any callable that turns one item (an image path) into a
record, a JSON-able dict, which comes back to the caller unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

BATCH = 4  # images per actor call


def _import_ray():
    """``ray`` with Ray Data, or an ImportError saying how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise ImportError("engine='ray' needs Ray Data: pip install 'samkit[ray]'") from None
    return ray


class _Actor:
    """One worker per actor (built on the actor by ``make_worker``), run on batches of items."""

    def __init__(self, make_worker: Callable, gpu: bool):
        self.worker = make_worker(gpu=gpu)

    def __call__(self, batch: dict) -> dict:
        return {"record": [json.dumps(self.worker(str(item))) for item in batch["item"]]}


def annotate_on_ray(items: list[str], make_worker: Callable, address: str | None = None,
                    actors: int = 1) -> Iterator[dict]:
    """Run a worker on each of ``items`` (image paths) on Ray; yields each item's record, in no particular order.

    Args:
        items: The work, one string (an image path) per item.
        make_worker: A picklable callable (a module-level class or function, or a ``functools.partial`` of one)
            that each actor calls once, as ``make_worker(gpu=<whether the actor holds a GPU>)``, to build its worker:
            a callable taking one item and returning its record, a JSON-able dict (string keys).
        address: The Ray cluster to use; None starts a local instance unless one is running.
        actors: How many actors (workers) to run at once; each gets a GPU when the cluster has one per actor.
    """
    ray = _import_ray()
    if isinstance(actors, bool) or not isinstance(actors, int) or actors < 1:
        raise ValueError(f"ray_actors={actors!r} must be a positive integer")
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
    gpus = 1 if ray.cluster_resources().get("GPU", 0) >= actors else 0
    ds = ray.data.from_items([{"item": str(p)} for p in items])
    out = ds.map_batches(_Actor, fn_constructor_kwargs={"make_worker": make_worker, "gpu": bool(gpus)},
                         batch_size=BATCH, concurrency=actors, num_gpus=gpus, batch_format="numpy")
    for row in out.iter_rows():
        yield json.loads(row["record"])
