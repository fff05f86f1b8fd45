"""The training loop of ``samkit train``: AdamW on the parts ``tune=`` unfreezes, the prompt simulation and the
multistep loss per image, a checkpoint after every epoch, ``samkit val`` on the val split, and resuming.

Reproducible by construction: the order of an epoch, each image's objects and prompts, and the torch seed of every
step follow from ``(seed, epoch, image)`` and ``(seed, step)`` alone, so a run resumed from ``last.pt`` draws what an
uninterrupted one draws, and a sample is drawn the same whichever process takes it. Distributed (``torchrun``): each
process takes ``batch`` images of every global step, gradients are averaged across processes (``torch.distributed``
all-reduce, gloo on CPUs, nccl on GPUs) before each optimizer step, the loss is normalised by the objects of the
global batch, and only rank 0 writes.
"""

from __future__ import annotations

import io
import math
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from samkit.train.data import Sample, Splits, load_sample
from samkit.train.loss import TERMS, multistep_loss
from samkit.train.prompts import PromptSettings
from samkit.train.settings import TUNES, TrainSettings
from samkit.train.step import predict_steps
from samkit.utils import LOGGER

#: The share of ``lr0`` the image encoder trains at (Meta's SAM 2.1 fine-tuning: vision 3e-6 against 5e-6).
ENCODER_LR = 0.6


class TrainError(RuntimeError):
    """Training stopped: a NaN loss, out of memory, or a checkpoint that cannot be resumed (the message says what
    to change)."""


@dataclass
class TrainResults:
    """What a training run produced.

    Attributes:
        save_dir: The run folder (``weights/last.pt``, ``weights/best.pt``, ``results.csv``...).
        rows: One dict per epoch (``results.csv``'s rows; epoch 0 is the starting model).
        before, after: The val metrics of the starting model and of ``best.pt`` (empty without validation).
        best_epoch: The epoch ``best.pt`` holds.
    """

    save_dir: Path
    rows: list[dict]
    before: dict = field(default_factory=dict)
    after: dict = field(default_factory=dict)
    best_epoch: int = 0

    @property
    def best(self) -> Path:
        return self.save_dir / "weights" / "best.pt"

    @property
    def last(self) -> Path:
        return self.save_dir / "weights" / "last.pt"

    def table(self) -> str:
        from samkit.train.report import before_after

        return before_after(self.before, self.after, self.best_epoch)

    def __str__(self) -> str:
        return self.table()


# ---------------------------------------------------------------------- distribution
def world() -> tuple[int, int]:
    """(rank, world size) of this process (0, 1 outside ``torchrun``)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_distributed(device: torch.device) -> None:
    """Join the process group ``torchrun`` describes (``WORLD_SIZE`` > 1), once."""
    import torch.distributed as dist

    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")


def _all_sum(values: torch.Tensor) -> torch.Tensor:
    import torch.distributed as dist

    if world()[1] > 1:
        dist.all_reduce(values)
    return values


def _barrier() -> None:
    import torch.distributed as dist

    if world()[1] > 1:
        dist.barrier()


# ---------------------------------------------------------------------- parameters
def assign_parts(net, parts: dict[str, tuple[str, ...]]) -> dict[str, str]:
    """Parameter name -> its part (the first of ``encoder``, ``prompt``, ``decoder`` whose prefix it has; ``other``
    for the rest: SAM 2's memory, which images do not train)."""
    out = {}
    for name, _ in net.named_parameters():
        out[name] = next((part for part in ("encoder", "prompt", "decoder")
                          if any(name.startswith(p) for p in parts.get(part, ()))), "other")
    return out


def _no_decay(name: str, p: torch.Tensor) -> bool:
    return p.ndim <= 1 or name.endswith(".bias") or "pos_embed" in name or "norm" in name or "embed" in name


def param_groups(net, trained: dict[str, torch.nn.Parameter], part_of: dict[str, str], s: TrainSettings):
    groups = {}
    for name, p in trained.items():
        encoder = part_of.get(name, "encoder") == "encoder" or "lora_" in name
        decay = 0.0 if _no_decay(name, p) else s.weight_decay
        key = (encoder, decay)
        groups.setdefault(key, {"params": [], "weight_decay": decay, "lr_scale": ENCODER_LR if encoder else 1.0,
                                "names": []})
        groups[key]["params"].append(p)
        groups[key]["names"].append(name)
    return [{k: v for k, v in g.items() if k != "names"} for _, g in sorted(groups.items())]


def lr_at(step: int, total: int, warmup: int, s: TrainSettings) -> float:
    """The learning rate of optimizer step ``step`` (0-based) of ``total``."""
    if s.schedule == "constant":
        return s.lr0
    if s.schedule == "meta":  # Meta's CosineParamScheduler from lr0 to lr0 / 10
        return s.lr0 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / max(total, 1))))
    if step < warmup:
        return s.lr0 * (step + 1) / (warmup + 1)
    t = (step - warmup) / max(total - warmup, 1)
    return s.lr0 * (s.lrf + (1 - s.lrf) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0))))


# ---------------------------------------------------------------------- checkpoints
def save_checkpoint(path: Path, doc: dict) -> Path:
    """``torch.save`` ``doc`` to ``path`` atomically: a reader (or a run killed meanwhile) sees the old file or the
    new one, never a part of one."""
    from samkit.writers.atomic import atomic_write_bytes

    buf = io.BytesIO()
    torch.save(doc, buf)
    return atomic_write_bytes(path, buf.getvalue())


def read_training_state(path: str | Path) -> dict:
    """The ``train`` entry of a checkpoint ``samkit train`` wrote (``weights/last.pt``), read safely."""
    from samkit.nn.checkpoint import CheckpointError

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"resume: {str(path)!r} does not exist (give the last.pt of a samkit train run)")
    try:
        doc = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a damaged or foreign file: one line, naming it
        raise CheckpointError(f"resume: {path} is not a readable checkpoint ({str(e).splitlines()[0][:200]})") \
            from None
    if not isinstance(doc, dict) or not isinstance(doc.get("train"), dict):
        raise TrainError(f"resume: {path} holds no training state (a plain SAM checkpoint, or a best.pt); resume from "
                         "the run's weights/last.pt, or start a new run from it without resume")
    if doc["train"].get("finished"):
        raise TrainError(f"resume: the run of {path} finished all its {doc['train']['args']['epochs']} epochs; "
                         "nothing to resume (start a new run from its best.pt to train longer)")
    return doc


# ---------------------------------------------------------------------- the loop
class Trainer:
    """One training run of ``model`` (a :class:`~samkit.SAM`), trained in place."""

    def __init__(self, model, data, s: TrainSettings, splits: Splits, save_dir: Path, state: dict | None,
                 verbose: bool):
        self.model, self.data, self.s, self.splits, self.save_dir = model, data, s, splits, save_dir
        self.verbose, self.state = verbose, state
        self.rank, self.world = world()
        self.device = model.device
        self.net = model.net
        self.network = model.runtime.network
        self.transforms = model.engine.transforms
        self.prompts = PromptSettings(s.box_prob, s.corrections, s.gt_click_prob)
        self.amp = None
        if s.amp and self.device.type == "cuda" and torch.cuda.is_bf16_supported():
            self.amp = torch.bfloat16
        self.lora = None
        self.val_model = None  # the model the val split is measured with (its embeddings kept when they can be)

    # ------------------------------------------------------------------ set-up
    def setup(self) -> None:
        s = self.s
        parts = self.network.train_parts()
        if s.lora:
            from samkit.train.lora import add_lora

            with torch.random.fork_rng(devices=[]):  # the adapters' initial weights follow from the seed
                torch.manual_seed(s.seed)
                self.lora = add_lora(self.net, self.network.lora_targets, s.lora, self.model.family)
        self.part_of = assign_parts(self.net, parts)
        wanted = set(TUNES[s.tune])
        self.trained = {}
        for name, p in self.net.named_parameters():
            on = ("lora_" in name) or (self.part_of[name] in wanted and not (self.lora and "base_layer" in name))
            p.requires_grad_(on)
            if on:
                self.trained[name] = p
        if not self.trained:
            raise TrainError(f"tune={s.tune!r}: no parameter of {self.model.family} would be trained")
        self.optimizer = torch.optim.AdamW(param_groups(self.net, self.trained, self.part_of, s), lr=s.lr0,
                                           betas=(0.9, 0.999))
        n = len(self.splits.train.items)
        self.steps_per_epoch = math.ceil(math.ceil(n / (s.batch * self.world)) / s.accumulate)
        self.total_steps = self.steps_per_epoch * s.epochs
        self.warmup = int(round(s.warmup_epochs * self.steps_per_epoch))
        self.cached = not s.encoder_trained
        self.samples = self._load_samples()

    def _load_samples(self) -> list[Sample | None]:
        """Every train image read once: its targets, and its image embedding when the encoder is frozen."""
        from samkit.utils.progress import progress

        items = self.splits.train.items
        out = []
        bar = progress(items, total=len(items), desc="caching embeddings" if self.cached else "reading targets",
                       unit="image", enabled=self.verbose and self.rank == 0)
        with torch.no_grad(), self._autocast():
            for item in bar:
                sample = load_sample(item, self.transforms, self.device, keep_input=self.cached)
                if sample is not None and self.cached:
                    x = self.model.runtime.encoder_layout(sample.x[None])
                    sample.features = [f.detach().float() for f in self.network.encode_image(x)]
                    sample.x = None
                out.append(sample)
        if not any(out):
            raise TrainError(f"{self.data}: no train image has an object with pixels to learn from")
        return out

    def _autocast(self):
        import contextlib

        if self.amp is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp)

    def _train_mode(self) -> None:
        self.net.train()
        for m in self.net.modules():  # frozen statistics: a batch of one image would ruin them
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.eval()

    # ------------------------------------------------------------------ one step
    def _sample_loss(self, index: int, epoch: int, num_objects: float) -> dict:
        sample = self.samples[index]
        rng = np.random.default_rng([self.s.seed, epoch, index])
        gen = torch.Generator(device=self.device).manual_seed(int(rng.integers(2**62)))
        gt = sample.gt
        if len(gt) > self.s.objects:
            gt = gt[torch.from_numpy(np.sort(rng.choice(len(gt), self.s.objects, replace=False))).to(gt.device)]
        with self._autocast():
            if self.cached:
                features = sample.features
            else:
                fresh = load_sample(self.splits.train.items[index], self.transforms, self.device, keep_input=True)
                features = self.network.encode_image(self.model.runtime.encoder_layout(fresh.x[None]))
            steps = predict_steps(self.network, features, gt, sample.hw, self.transforms.size, self.prompts, rng, gen)
        h, w = sample.hw
        return multistep_loss(steps, gt[:, :h, :w], num_objects)

    def _objects(self, index: int) -> int:
        sample = self.samples[index]
        return 0 if sample is None else min(len(sample.gt), self.s.objects)

    # ------------------------------------------------------------------ the run
    def run(self) -> TrainResults:
        from samkit.train.report import fitness, write_results
        from samkit.utils.progress import progress

        s, st = self.s, self.state or {}
        start_epoch, position = st.get("epoch", 0), st.get("position", 0)
        step = st.get("step", 0)
        rows = list(st.get("rows", []))
        before = st.get("before", {})
        best_fit, best_epoch = st.get("best_fitness"), st.get("best_epoch", 0)
        sums = dict(st.get("sums", {}))
        if st.get("optimizer"):
            self.optimizer.load_state_dict(st["optimizer"])
        if not st and s.val:
            before = from_rank0(self._validate() if self.rank == 0 else {})
            rows.append({"epoch": 0, **{f"train/{k}": float("nan") for k in (*TERMS, "loss")},
                         **_flat(before), "fitness": fitness(before), "lr": 0.0, "time": 0.0})
            best_fit, best_epoch = fitness(before), 0
            if self.rank == 0:  # until an epoch does better, the best weights are the starting ones
                save_checkpoint(self.save_dir / "weights" / "best.pt", {"model": self.plain_state_dict(), "epoch": 0})
        n = len(self.samples)
        per_step = s.batch * self.world
        stale = 0 if not rows else epoch_since_best(rows, best_epoch)
        for epoch in range(start_epoch, s.epochs):
            order = np.random.default_rng([s.seed, epoch, 2**31]).permutation(n)
            chunks = [order[i:i + per_step] for i in range(0, n, per_step)]
            groups = [chunks[i:i + s.accumulate] for i in range(0, len(chunks), s.accumulate)]
            self._train_mode()
            t0 = time.time()
            bar = progress(range(position, len(groups)), total=len(groups) - position,
                           desc=f"epoch {epoch + 1}/{s.epochs}", unit="step",
                           enabled=self.verbose and self.rank == 0)
            done = position
            try:
                for g in bar:
                    self._set_lr(step)
                    torch.manual_seed(hash((s.seed, step)) % 2**63)
                    totals = self._optimizer_step(groups[g], epoch, step)
                    step, done = step + 1, g + 1
                    for k, v in totals.items():
                        sums[k] = sums.get(k, 0.0) + v
                    sums["steps"] = sums.get("steps", 0) + 1
                    if hasattr(bar, "set_postfix_str"):
                        bar.set_postfix_str(f"loss {sums['loss'] / sums['steps']:.4f}")
            except KeyboardInterrupt:  # the last finished step is kept: resuming goes on from the next
                self._save_last(epoch, done, step, rows, before, best_fit, best_epoch, sums)
                last = self.save_dir / "weights" / "last.pt"
                if self.rank == 0:
                    LOGGER.warning("interrupted in epoch %d after step %d of %d: %s saved; resume with: samkit train "
                                   "resume=True model=%s", epoch + 1, done, len(groups), last, last)
                raise
            position = 0
            losses = {k: sums.get(k, 0.0) / max(sums.get("steps", 1), 1) for k in (*TERMS, "loss")}
            sums = {}
            metrics = self._validate() if s.val and self.rank == 0 else {}
            row = {"epoch": epoch + 1, **{f"train/{k}": v for k, v in losses.items()}, **_flat(metrics),
                   "fitness": fitness(metrics) if metrics else float("nan"),
                   "lr": self.optimizer.param_groups[0]["lr"], "time": time.time() - t0}
            row = from_rank0(row)
            rows.append(row)
            better = not s.val or best_fit is None or row["fitness"] > best_fit
            if better:
                best_fit, best_epoch, stale = row["fitness"], epoch + 1, 0
            else:
                stale += 1
            finished = epoch + 1 == s.epochs or stale >= s.patience
            self._save_last(epoch + 1, 0, step, rows, before, best_fit, best_epoch, {}, finished=finished,
                            best=better)
            if self.rank == 0:
                write_results(self.save_dir, rows, plots=s.plots)
                if self.verbose:
                    shown = "  ".join(f"{k.split('/', 1)[1]} {row[k]:.4f}" for k in row
                                      if k.startswith("metrics/") and k.endswith(("box_miou", "click_miou@1")))
                    LOGGER.info("epoch %d/%d: loss %.4f  %s  fitness %.4f%s", epoch + 1, s.epochs, row["train/loss"],
                                shown, row["fitness"], "  (best so far)" if better and s.val else "")
            if stale >= s.patience:
                if self.rank == 0:
                    LOGGER.info("no better val fitness for %d epochs (patience=%d): stopping after epoch %d", stale,
                                s.patience, epoch + 1)
                break
        after = next((r for r in rows if r["epoch"] == best_epoch), {})
        return TrainResults(self.save_dir, rows, before, _unflat(after) if s.val else {}, best_epoch)

    def _set_lr(self, step: int) -> None:
        lr = lr_at(step, self.total_steps, self.warmup, self.s)
        for g in self.optimizer.param_groups:
            g["lr"] = lr * g.get("lr_scale", 1.0)

    def _optimizer_step(self, chunks: list[np.ndarray], epoch: int, step: int) -> dict:
        """One optimizer step over ``accumulate`` global batches; returns the mean loss terms (all processes)."""
        self.optimizer.zero_grad(set_to_none=True)
        totals = torch.zeros(len(TERMS) + 1, dtype=torch.float64)
        for chunk in chunks:
            mine = chunk[self.rank * self.s.batch:(self.rank + 1) * self.s.batch]
            count = sum(self._objects(int(i)) for i in chunk)  # the global batch's objects, known to every rank
            if count == 0:
                continue
            num_objects = count / self.world  # Meta's normalisation: averaged over processes
            for i in mine:
                if self.samples[int(i)] is None:
                    continue
                try:
                    out = self._sample_loss(int(i), epoch, num_objects)
                    loss = out["loss"] / len(chunks)
                    if not torch.isfinite(loss):
                        raise TrainError(
                            f"the loss is {float(loss.detach())} at step {step + 1} of the run (epoch {epoch + 1}, "
                            f"image {self.samples[int(i)].name}); training stopped and weights/last.pt keeps the last "
                            f"finished epoch; lower lr0={self.s.lr0}, or clip harder with a lower "
                            f"grad_clip={self.s.grad_clip}")
                    loss.backward()
                except torch.OutOfMemoryError:
                    raise TrainError(self._oom_message()) from None
                except RuntimeError as e:
                    if "out of memory" in str(e) or "can't allocate memory" in str(e):
                        raise TrainError(self._oom_message()) from None
                    raise
                values = [float(out[k].detach()) for k in (*TERMS, "loss")]
                totals += torch.tensor(values, dtype=torch.float64) / len(chunks)
        self._reduce_gradients()
        if self.s.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(list(self.trained.values()), self.s.grad_clip)
        self.optimizer.step()
        totals = _all_sum(totals) / self.world  # each process divided by its share of the objects
        return dict(zip((*TERMS, "loss"), totals.tolist()))

    def _reduce_gradients(self) -> None:
        if self.world == 1:
            return
        import torch.distributed as dist

        params = list(self.trained.values())
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        flat = torch.cat([p.grad.reshape(-1) for p in params])
        dist.all_reduce(flat)
        flat /= self.world
        offset = 0
        for p in params:
            p.grad.copy_(flat[offset:offset + p.numel()].view_as(p))
            offset += p.numel()

    def _oom_message(self) -> str:
        s = self.s
        lower = [f"batch={max(1, s.batch // 2)} (now {s.batch}) with accumulate={s.accumulate * 2}",
                 f"objects={max(1, s.objects // 2)} (now {s.objects})",
                 f"corrections={max(0, s.corrections // 2)} (now {s.corrections})"]
        if s.encoder_trained:
            lower.append(f"tune=decoder (now {s.tune}{f', lora={s.lora}' if s.lora else ''}: the encoder's "
                         "activations are kept for its gradients)")
        if self.device.type == "cuda" and self.amp is None:
            lower.append("amp=True")
        return f"out of memory on {self.device} while training; settings that lower memory: " + "; ".join(lower)

    # ------------------------------------------------------------------ validation and checkpoints
    def _validate(self) -> dict:
        from samkit.train.report import validate

        keep = self.lora is None and self.cached
        metrics, self.val_model = validate(self.model, self.splits.val, self.s, self.val_model if keep else None,
                                           keep)
        return metrics

    def plain_state_dict(self) -> dict:
        """The network's weights under their own names (LoRA merged in)."""
        if self.lora is None:
            return {k: v.detach().to("cpu", copy=True) for k, v in self.net.state_dict().items()}
        from samkit.train.lora import merged_state_dict

        return merged_state_dict(self.net)

    def _save_last(self, epoch, position, step, rows, before, best_fit, best_epoch, sums, finished=False,
                   best=False) -> None:
        if self.rank == 0:
            from samkit.utils.requirements import installed_version

            weights = self.plain_state_dict()
            meta = {"epoch": epoch, "samkit": installed_version("samkit"), "date": time.strftime("%Y-%m-%dT%H:%M:%S")}
            train = {"epoch": epoch, "position": position, "step": step, "rows": rows, "before": before,
                     "best_fitness": best_fit, "best_epoch": best_epoch, "sums": sums, "finished": finished,
                     "optimizer": self.optimizer.state_dict(), "args": {**self.s.dict(), "data": str(self.data)},
                     "scheduler": {"step": step, "total": self.total_steps, "warmup": self.warmup},
                     "rng": {"seed": self.s.seed, "torch": torch.get_rng_state()},
                     "network": self.net.state_dict() if self.lora is not None else None}
            folder = self.save_dir / "weights"
            save_checkpoint(folder / "last.pt", {"model": weights, **meta, "train": train})
            if best:
                save_checkpoint(folder / "best.pt", {"model": weights, **meta})
        _barrier()


def from_rank0(obj):
    """Rank 0's ``obj`` on every process (what only rank 0 measured: val metrics)."""
    import torch.distributed as dist

    if world()[1] == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def epoch_since_best(rows: list[dict], best_epoch: int) -> int:
    return max(0, rows[-1]["epoch"] - best_epoch) if rows else 0


def _flat(metrics: dict) -> dict:
    return {f"metrics/{kind}_{k}": float(v) for kind, m in metrics.items() for k, v in m.items()
            if isinstance(v, (int, float)) and k not in ("objects", "max_clicks")}


def _unflat(row: dict) -> dict:
    out: dict = {}
    for k, v in row.items():
        m = re.match(r"metrics/(\w+?)_(.+)", k)
        if m:
            out.setdefault(m.group(1), {})[m.group(2)] = v
    return out
