"""The settings of ``samkit train``, every one checked before any dataset is read or any network work is done."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields

#: What ``tune=`` unfreezes (the parts are the adapter's :meth:`~samkit.families.network.TrainNetwork.train_parts`).
TUNES = {
    "decoder": ("decoder",),
    "prompt_decoder": ("prompt", "decoder"),
    "all": ("encoder", "prompt", "decoder"),
    "none": (),  # only LoRA adapters (lora=r)
}
SCHEDULES = ("cosine", "meta", "constant")
#: Settings a resumed run may change (only what is drawn); every other one must be the run's own.
RESUME_FREE = ("plots",)


@dataclass
class TrainSettings:
    """Every setting of a training run (``args.yaml`` writes them; ``resume=True`` reads them back).

    Attributes:
        epochs: Passes over the train images.
        batch: Images per step (on each process when distributed).
        objects: At most this many objects of an image per step (drawn at random when it has more).
        lr0, lrf: The learning rate, and its final value as a fraction of ``lr0`` (``cosine``).
        warmup_epochs: Epochs of linear warm-up from 0 to ``lr0`` (``cosine``).
        weight_decay: AdamW's (none on biases, norms and embeddings).
        grad_clip: Gradient norm clip (Meta's 0.1; 0: none).
        accumulate: Steps whose gradients are summed before each optimizer step.
        schedule: ``cosine`` (warm-up, then cosine to ``lr0 * lrf``), ``meta`` (Meta's: cosine from ``lr0`` to
            ``lr0 / 10``, no warm-up) or ``constant``.
        tune: What is trained: ``decoder`` (image embeddings computed once), ``prompt_decoder``, ``all``, or
            ``none`` (only the LoRA adapters of ``lora``).
        lora: LoRA rank on the image encoder's attention projections (0: none; through peft).
        amp: bf16 autocast on a CUDA device that has it (the CPU trains in fp32).
        seed: Every random draw (order, objects, prompts, the held-out split) follows from it.
        val: Measure the val split with ``samkit val`` after every epoch (and the starting model before).
        val_fraction: Held out for validation when the dataset has no val split.
        patience: Stop after this many epochs without a better val fitness.
        box_prob, corrections, gt_click_prob: The prompt simulation (:mod:`samkit.train.prompts`).
        prompts, max_clicks: What each epoch's val measures (``samkit val``'s settings).
        plots: Write ``results.png``.
        project, name, exist_ok: The run folder (default ``runs/train/exp``, numbered).
    """

    epochs: int = 20
    batch: int = 1
    objects: int = 8
    lr0: float = 1e-4
    lrf: float = 0.1
    warmup_epochs: float = 1.0
    weight_decay: float = 0.1
    grad_clip: float = 0.1
    accumulate: int = 1
    schedule: str = "cosine"
    tune: str = "decoder"
    lora: int = 0
    amp: bool = True
    seed: int = 0
    val: bool = True
    val_fraction: float = 0.2
    patience: int = 100
    box_prob: float = 0.5
    corrections: int = 7
    gt_click_prob: float = 0.1
    prompts: str = "box,click"
    max_clicks: int = 20
    plots: bool = True
    project: str | None = None
    name: str | None = None
    exist_ok: bool = False

    def dict(self) -> dict:
        return asdict(self)

    @property
    def encoder_trained(self) -> bool:
        return "encoder" in TUNES[self.tune] or self.lora > 0


NAMES = tuple(f.name for f in fields(TrainSettings))


def _int(name, v, low, high=None):
    if isinstance(v, bool) or not isinstance(v, int) or v < low or (high is not None and v > high):
        span = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{name}={v!r} must be an integer {span}")


def _num(name, v, low, high, low_open=False):
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not (
            (v > low if low_open else v >= low) and v <= high):
        raise ValueError(f"{name}={v!r} must be a number in {'(' if low_open else '['}{low}, {high}]")


def _bool(name, v):
    if not isinstance(v, bool):
        raise TypeError(f"{name}={v!r} must be True or False")


def check(**given) -> TrainSettings:
    """The settings from keyword arguments, each checked (an unknown key is named with the close ones)."""
    from samkit.cfg import suggest

    unknown = [k for k in given if k not in NAMES]
    if unknown:
        raise ValueError(f"unknown train setting {unknown[0]!r}{suggest(unknown[0], NAMES)}; settings: "
                         f"{', '.join(NAMES)}")
    s = TrainSettings(**given)
    _int("epochs", s.epochs, 1, 100000)
    _int("batch", s.batch, 1, 4096)
    _int("objects", s.objects, 1, 1024)
    _num("lr0", s.lr0, 0, 1, low_open=True)
    _num("lrf", s.lrf, 0, 1)
    _num("warmup_epochs", s.warmup_epochs, 0, 1e6)
    _num("weight_decay", s.weight_decay, 0, 10)
    _num("grad_clip", s.grad_clip, 0, 1e6)
    _int("accumulate", s.accumulate, 1, 4096)
    if s.schedule not in SCHEDULES:
        raise ValueError(f"schedule={s.schedule!r} must be one of {', '.join(SCHEDULES)}")
    if s.tune not in TUNES:
        raise ValueError(f"tune={s.tune!r} must be one of {', '.join(TUNES)} (what is trained)")
    _int("lora", s.lora, 0, 1024)
    if s.tune == "none" and s.lora == 0:
        raise ValueError("tune='none' with lora=0 trains nothing: every weight would stay frozen; give lora=r (LoRA "
                         "adapters on the image encoder) or tune=decoder / prompt_decoder / all")
    if s.tune == "all" and s.lora:
        raise ValueError(f"tune='all' trains the whole image encoder, lora={s.lora} adapts it: choose one (LoRA "
                         "goes with tune=decoder, prompt_decoder or none)")
    for name in ("amp", "val", "plots", "exist_ok"):
        _bool(name, getattr(s, name))
    _int("seed", s.seed, 0)
    _num("val_fraction", s.val_fraction, 0, 1, low_open=True)
    if s.val_fraction >= 1:
        raise ValueError(f"val_fraction={s.val_fraction!r} must be below 1 (some images must be trained on)")
    _int("patience", s.patience, 1)
    _num("box_prob", s.box_prob, 0, 1)
    _int("corrections", s.corrections, 0, 64)
    _num("gt_click_prob", s.gt_click_prob, 0, 1)
    _int("max_clicks", s.max_clicks, 1, 100)
    from samkit.val import IMAGE_PROMPTS, check_prompts

    s.prompts = ",".join(check_prompts(s.prompts, tuple(k for k in IMAGE_PROMPTS if k != "text")))
    if s.project is not None and not isinstance(s.project, (str, os.PathLike)):
        raise TypeError(f"project={s.project!r} must be a folder path (str or Path)")
    if s.project is not None:
        s.project = str(s.project)
    if s.name is not None and (not isinstance(s.name, str) or not s.name.strip()):
        raise ValueError(f"name={s.name!r} must be a folder name (non-empty text), or None for 'exp'")
    return s
