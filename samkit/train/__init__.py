"""``samkit train``: fine-tune a SAM model on your own masks, judged by ``samkit val`` before and after.

:func:`train` (``SAM.train(...)`` and ``samkit train`` call it) trains a loaded model in place on the images of a
dataset ``samkit val`` reads (:mod:`samkit.train.data`), with the prompts Meta's SAM 2 training simulates
(:mod:`samkit.train.prompts`: a noisy box or a click, then correction clicks from the errors) and Meta's loss
(:mod:`samkit.train.loss`). The run folder, ``runs/train/exp`` (numbered), holds ``weights/last.pt`` (after every
epoch, with the optimizer, schedule and position for ``resume=True``) and ``weights/best.pt`` (the best val fitness),
both plain SAM checkpoints (``{"model": state_dict}``, LoRA merged) that ``SAM(...)`` and Meta's builders load;
``results.csv``, ``results.png``, ``args.yaml``, ``split.yaml`` and ``summary.md`` (the before / after
table). See ``docs/train.md``.
"""

from __future__ import annotations

from pathlib import Path

from samkit.train.settings import NAMES, RESUME_FREE, TUNES, TrainSettings, check
from samkit.train.trainer import TrainError, TrainResults, read_training_state
from samkit.utils import LOGGER


def train(model, data=None, resume=False, verbose: bool = True, **settings) -> TrainResults:
    """Fine-tune ``model`` (a :class:`~samkit.SAM`, changed in place: it holds ``best.pt``'s weights afterwards).

    Args:
        model: The model to train; its family must have the ``train`` capability.
        data: A dataset ``samkit val`` reads (a YOLO ``data.yaml`` with ``train`` / ``val``, a COCO ``.json``, a
            folder of YOLO-seg labels or PNG masks).
        resume: True: go on with the run whose ``last.pt`` the model was loaded from; or the path of a ``last.pt``.
            The run's own settings are used; a setting given that differs from them is an error naming it.
        verbose: Progress bars, each epoch's line and the before / after table.
        **settings: See :class:`~samkit.train.settings.TrainSettings`.
    """
    import torch

    from samkit.nn.checkpoint import load_state_dict_strict
    from samkit.train.data import open_splits
    from samkit.train.trainer import Trainer, init_distributed, world

    doc = None
    if resume:
        path = model.ckpt_path if resume is True else resume
        if path is None:
            raise ValueError("resume=True needs a model loaded from a run's weights/last.pt (or give resume= that "
                             "path)")
        doc = read_training_state(path)
        stored = dict(doc["train"]["args"])
        stored_data = stored.pop("data")
        differ = [f"{k}={settings[k]!r} (the run has {stored.get(k)!r})" for k in settings
                  if k not in RESUME_FREE and stored.get(k) != settings[k]]
        if data is not None and str(data) != stored_data:
            differ.insert(0, f"data={str(data)!r} (the run has {stored_data!r})")
        if differ:
            raise TrainError(f"resume: {path} was trained with other settings: {'; '.join(differ)}. A resumed run "
                             "keeps its own settings: leave these out, or start a new run")
        s, data = check(**{k: v for k, v in stored.items() if k in NAMES}), stored_data
    else:
        if data is None:
            raise ValueError("train needs data=: a data.yaml, a COCO .json or a dataset folder (the layouts samkit "
                             "val reads)")
        s = check(**settings)
    if "train" not in model.capabilities:
        from samkit import families

        families.require_capability(model.arch, "train", "samkit train")
    if s.lora:
        from samkit.utils.requirements import require

        require("lora")
    splits = open_splits(data, s.val_fraction, s.seed, s.val)
    init_distributed(model.device)
    rank, _ = world()
    save_dir = Path(path).resolve().parent.parent if doc else _claim(s, rank)
    if doc is None and rank == 0:
        _write_args(save_dir, model, data, s, splits)
    net = model.net
    if doc is not None:
        load_state_dict_strict(net, doc["model"], str(path))
    trainer = Trainer(model, data, s, splits, save_dir, doc["train"] if doc else None, verbose)
    try:
        trainer.setup()
        if doc is not None and doc["train"].get("network") is not None:
            net.load_state_dict(doc["train"]["network"], strict=True)  # LoRA: the adapters as they were
        results = trainer.run()
    finally:
        _restore(model, trainer)
    best = save_dir / "weights" / "best.pt"
    if best.is_file():
        load_state_dict_strict(model.net, torch.load(best, map_location="cpu", weights_only=True)["model"],
                               str(best))
        model.ckpt_path = best
    if rank == 0:
        from samkit.writers.atomic import atomic_write_text

        atomic_write_text(save_dir / "summary.md", f"# samkit train: {save_dir.name}\n\nval split of {data}; "
                          f"best.pt is epoch {results.best_epoch} of {len(results.rows) - 1}\n\n```\n"
                          f"{results.table()}\n```\n")
        if verbose:
            LOGGER.info("%s\nresults saved to %s (best: %s)", results.table(), save_dir, best)
    return results


def _claim(s: TrainSettings, rank: int) -> Path:
    """The run folder, claimed by rank 0 and told to the others."""
    from samkit.train.trainer import from_rank0
    from samkit.writers.run import claim_run_dir

    where = None
    if rank == 0:
        where = str(claim_run_dir(Path(s.project or Path("runs") / "train") / (s.name or "exp"), s.exist_ok))
    return Path(from_rank0(where))


def _write_args(save_dir: Path, model, data, s: TrainSettings, splits) -> None:
    import yaml

    from samkit.writers.atomic import atomic_write_text

    args = {"model": str(model.ckpt_path) if model.ckpt_path else model.arch.name, "data": str(data), **s.dict()}
    atomic_write_text(save_dir / "args.yaml", yaml.safe_dump(args, sort_keys=False))
    atomic_write_text(save_dir / "split.yaml", yaml.safe_dump(splits.listing(s.val_fraction, s.seed),
                                                              sort_keys=False))


def _restore(model, trainer) -> None:
    """The model as inference wants it whatever happened: plain layers, eval mode, and no embedding of the old
    weights served again."""
    if trainer.lora is not None:
        from samkit.train.lora import remove_lora

        remove_lora(model.net)
    for p in model.net.parameters():
        p.requires_grad_(True)
    model.net.eval()
    model.runtime.generation += 1
    trainer.val_model = None


__all__ = ["TUNES", "TrainError", "TrainResults", "TrainSettings", "check", "train"]
