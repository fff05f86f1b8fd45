"""The ``SAM`` facade: one object for every Segment Anything model, whatever its family or file name."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from samkit import families
from samkit.cfg import DEFAULT_MODEL
from samkit.engine.concepts import DEFAULT_CONF
from samkit.engine.image import ImageEmbedding, ImageEngine
from samkit.nn.build import build_network, network_tensors, require_family
from samkit.nn.checkpoint import CheckpointError, load_state_dict_strict, read_checkpoint
from samkit.nn.detect import detect_architecture
from samkit.nn.registry import model_registry
from samkit.nn.runtime import Runtime
from samkit.runners.images import Images, detect_concepts, everything_cfg, per_image_boxes, segment_images
from samkit.runners.output import call_settings, finish
from samkit.runners.settings import (
    MAX_DET,
    NOT_FOR_SAM,
    check_batch,
    check_conf,
    check_max_det,
    concept_keys_used,
    ultralytics_settings,
)
from samkit.runners.video import concept_tracking, track_concepts, track_detections, track_prompts
from samkit.utils import LOGGER
from samkit.utils.downloads import resolve_weights
from samkit.utils.requirements import check_torchvision, require_phrases


class SAM:
    """A Segment Anything model (SAM 3, SAM 2.1, SAM 2, SAM, MobileSAM, or any family registered in
    :mod:`samkit.families`) ready for inference.

    The architecture is read from the checkpoint's weights, so any file name works, and the weights are loaded
    safely (``torch.load(weights_only=True)``) and strictly (every tensor must fit).

    Args:
        model: A registry name (``"sam2.1_b.pt"``, Meta's ``"sam2.1_hiera_base_plus.pt"``, ``"mobile_sam.pt"``),
            or the path of any SAM-family checkpoint (``"runs/my-finetune.pth"``). Registry models missing on
            disk are downloaded (see ``samkit.utils.downloads``).
        device: ``""`` (cuda:0 when available, else cpu), ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``N`` or ``"mps"``.
        verbose: Log the loaded model and show download progress.
        cache: Image embeddings kept for prompting the same image again (LRU, keyed by content); 0 disables.
        half: Run under bf16 / fp16 autocast where the device supports it (CUDA; CPUs with native bf16); the
            weights stay fp32. Where it is not supported a warning says why and fp32 is used.
        compile: ``torch.compile`` the image encoder, the memory attention (SAM 2) and the mask decoder. The first
            call of each shape compiles (tens of seconds); later calls are faster on GPUs. Needs a C++ compiler
            on the CPU (Inductor).

    Attributes:
        net: The underlying ultralytics ``SAM2Model`` / ``SAMModel`` (eval mode); also ``model.model``, as in
            Ultralytics.
        arch: The registry :class:`~samkit.nn.registry.Architecture` the weights were recognised as.
        version: One of its family's versions (``"2.1"``, ``"2.0"``, ``"1"``, ``"3"``).
        ckpt_path: The checkpoint file that was loaded.

    Examples:
        >>> model = SAM("sam2.1_b.pt")
        >>> model.info()["family"]
        'SAM 2.1'
    """

    def __init__(
        self,
        model: str | os.PathLike = DEFAULT_MODEL,
        device: str | int | torch.device = "",
        verbose: bool = True,
        cache: int = 8,
        half: bool = False,
        compile: bool = False,
    ):
        if not isinstance(model, (str, os.PathLike)):
            raise TypeError("model must be a checkpoint path or registry name (str or Path), got "
                            f"{type(model).__name__}")
        self.verbose = verbose
        check_torchvision()
        entry = model_registry().find_model(Path(model).name)
        if entry is not None:  # a registry model's packages are checked before it is downloaded
            require_family(entry.arch.family)
        self.ckpt_path = resolve_weights(model, progress=verbose)
        try:
            state_dict = read_checkpoint(self.ckpt_path)
        except CheckpointError as e:  # a broken download in a weights folder: say that deleting it fixes it
            from samkit.utils.downloads import corrupt_hint

            hint = corrupt_hint(self.ckpt_path)
            if not hint:
                raise
            raise type(e)(f"{e}{hint}") from None
        self.arch, self.version = detect_architecture(state_dict, str(self.ckpt_path))
        self._warn_if_name_disagrees(Path(model).name)
        net = build_network(self.arch, self.version)
        load_state_dict_strict(net, network_tensors(self.arch, state_dict), str(self.ckpt_path))
        del state_dict
        self._setup(net, device, cache, half, compile)

    @classmethod
    def untrained(cls, model: str = DEFAULT_MODEL, device: str | int | torch.device = "", verbose: bool = True,
                  cache: int = 8, half: bool = False, compile: bool = False, seed: int | None = 0) -> SAM:
        """The registry architecture of ``model`` (a registry name such as ``"sam2.1_t.pt"``, or an architecture
        such as ``"sam2_t"``) with random weights: nothing is read or downloaded. For measuring speed and memory,
        which weights do not change; its masks mean nothing. ``seed`` (None: torch's current state) makes the
        weights repeatable. :attr:`ckpt_path` is None. The other arguments are :class:`SAM`'s."""
        from samkit.nn.build import resolve_name

        if not isinstance(model, (str, os.PathLike)):
            raise TypeError(f"model must be a registry name (str), got {type(model).__name__}")
        check_torchvision()
        arch, version = resolve_name(Path(model).name)
        self = cls.__new__(cls)
        self.verbose, self.ckpt_path = verbose, None
        self.arch, self.version = arch, version
        if seed is None:
            net = build_network(arch, version)
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                net = build_network(arch, version)
        self._setup(net, device, cache, half, compile)
        return self

    @classmethod
    def from_network(cls, net: nn.Module, arch, version: str, device: str | int | torch.device = "",
                     verbose: bool = False, cache: int = 8, ckpt_path=None) -> SAM:
        """A model over an already built network ``net`` of registry architecture ``arch`` (the network is shared,
        not copied: what changes it changes the model). :mod:`samkit.train` measures the network it trains this
        way."""
        self = cls.__new__(cls)
        self.verbose, self.ckpt_path = verbose, ckpt_path
        self.arch, self.version = arch, version
        self._setup(net, device, cache, False, False)
        return self

    def _setup(self, net: nn.Module, device, cache: int, half: bool, compile: bool) -> None:
        self.runtime = Runtime(net, self.arch, self.version, device=device, half=half)
        self.engine = ImageEngine(self.runtime, cache_size=cache)
        self.concepts = None  # SAM 3: the concept engine (texts, exemplars)
        if "concepts" in self.capabilities:
            from samkit.engine.concepts import ConceptEngine

            self.concepts = ConceptEngine(self.runtime, cache_size=cache)
        if compile:
            self.compile()
        # set_image's image, its path, its embedding and the runtime generation it was computed under
        self._image: tuple[np.ndarray, str, ImageEmbedding, int] | None = None
        self.save_dir: Path | None = None  # the folder of the last run that wrote outputs
        self.skipped: list[tuple[str, str]] = []  # (image, reason) for the unreadable images of the last call
        if self.verbose:
            LOGGER.info("%s %s", "loaded" if self.ckpt_path else "built", self._summary(self._describe()))

    def _warn_if_name_disagrees(self, name: str) -> None:
        entry = model_registry().find_model(name)
        if entry is not None and (entry.arch.name, entry.version) != (self.arch.name, self.version):
            LOGGER.warning(
                "%s is named like %s (%s %s) but its weights are %s %s; using what the weights say",
                self.ckpt_path, entry.name, entry.arch.name, entry.version, self.arch.name, self.version,
            )

    @property
    def net(self) -> nn.Module:
        """The network (Ultralytics ``SAM2Model`` / ``SAMModel``, eval mode); owned by :attr:`runtime`."""
        return self.runtime.net

    @property
    def model(self) -> nn.Module:
        """The network (``self.net``), under the name Ultralytics users reach for."""
        return self.runtime.net

    # ------------------------------------------------------------------ device and precision
    @property
    def device(self) -> torch.device:
        """Where the network is."""
        return self.runtime.device

    def to(self, device: str | int | torch.device) -> SAM:
        """Move the network to ``device`` (any form :func:`~samkit.utils.devices.select_device` takes); returns self.
        Half precision is resolved again for the new device; embeddings computed before are not reused."""
        self.runtime.to(device)
        return self

    def compile(self, **options) -> SAM:
        """``torch.compile`` the image encoder, the memory attention (SAM 2 / 2.1) and the mask decoder in place
        (``options`` go to ``torch.compile``; see :meth:`samkit.nn.runtime.Runtime.compile`); returns self."""
        self.runtime.compile(**options)
        return self

    @property
    def compiled(self) -> bool:
        return self.runtime.compiled

    @property
    def half(self) -> bool:
        """Whether the network runs under half-precision autocast (set it to switch)."""
        return self.runtime.half_dtype is not None

    @half.setter
    def half(self, value: bool) -> None:
        self.runtime.set_half(value)

    @property
    def dtype(self) -> torch.dtype:
        """Parameter dtype of the network."""
        return self.runtime.weights_dtype

    # ------------------------------------------------------------------ images
    def __call__(self, source=None, **kwargs) -> list:
        """Segment the image(s) of ``source`` with prompts; see :meth:`predict`."""
        return self.predict(source, **kwargs)

    def set_image(self, image) -> SAM:
        """Encode one image (any single-image source) and keep it for :meth:`predict` calls without a source."""
        from samkit.data.sources import iter_images, load_frame

        items = iter_images(image)
        if len(items) != 1:
            raise ValueError(f"set_image takes one image, the source gave {len(items)}")
        frame = load_frame(items[0])
        self._image = (frame.image, frame.path, self.engine.encode([frame.image])[0], self.runtime.generation)
        return self

    def predict(
        self,
        source=None,
        bboxes=None,
        points=None,
        labels=None,
        masks=None,
        prompts: list[dict] | None = None,
        multimask: bool | None = None,
        batch: int = 1,
        stream: bool = False,
        save: bool = False,
        save_txt: bool = False,
        save_coco: bool = False,
        save_masks: bool = False,
        rle: bool | None = None,
        project: str | os.PathLike | None = None,
        name: str | None = None,
        exist_ok: bool = False,
        verbose: bool | None = None,
        device: str | int | torch.device | None = None,
        show: bool = False,
        max_pixels: float | None = None,
        texts=None,
        exemplars=None,
        exemplar_labels=None,
        conf: float | None = None,
        max_det: int = MAX_DET,
        **everything,
    ) -> list:
        """Segment objects on images: the prompted objects, or everything when no prompt is given.

        Args:
            source: Image(s): a path, folder, glob, URL, numpy array (HWC BGR), PIL image (RGB), torch tensor
                (BCHW RGB 0-1) or a list of these. ``None`` uses the image given to :meth:`set_image`. An image of a
                folder / list that cannot be read is skipped with a warning naming it (listed in ``model.skipped``);
                the call fails only when no image could be read.
            bboxes: xyxy pixel box(es), an (N, 4) array, or Ultralytics ``Boxes`` / ``Results`` (their classes,
                names, confidences and track ids carry over); a list of YOLO ``Results`` (what ``yolo(images)``
                returns) gives each image its own boxes.
            points: xy pixel click(s): a flat list is one click per object, (N, P, 2) is P clicks per object.
            labels: 1 (positive) / 0 (negative) per click; default all positive.
            masks: Mask prompt(s): HxW / NxHxW binary at image size, or low-resolution logits.
            prompts: The explicit per-object form ``[{"points": ..., "labels": ..., "box": ..., "mask": ...}]``.
            multimask: Return the three candidate masks per object (object-major), with their predicted IoU.
                Default: False with prompts; True for segment-everything (the reference's default there).
            batch: Images per encoder batch.
            stream: Return a generator (one Results at a time, nothing kept) instead of a list.
            save: Write the plotted images (masks, boxes, prompts) to ``project/name``; a video gives one mp4.
            save_txt: Write YOLO-seg labels to ``project/name/labels/``.
            save_coco: Write COCO instances JSON (one ``coco.json`` for images, one file per video frame).
            save_masks: Write one PNG per mask to ``project/name/masks/``.
            rle: COCO masks as RLE (True) or polygons (False); default polygons for images, RLE for video.
            project, name, exist_ok: The output folder, ``project/name``: default ``runs/predict/exp``, numbered
                (``exp-2``...) when it exists unless ``exist_ok``. The folder used is kept in ``model.save_dir``.
                See :mod:`samkit.writers.run` for the layout.
            verbose: Log this call's information (where outputs went); default the model's ``verbose``. Warnings
                are shown either way.
            device: Move the model to this device first (it stays there), as Ultralytics' ``device=`` does.
            show: Show each result in a window (where a display is available).
            max_pixels: Most pixels an image file may declare before it is decoded (None: 120 million, see
                :data:`samkit.data.sources.MAX_PIXELS`; 0: no limit). A larger one is skipped as unreadable.
            texts: SAM 3: a phrase or a list of phrases; every instance of each is found (``boxes.cls`` is the
                phrase's index, ``names`` the phrases).
            exemplars: SAM 3: xyxy pixel boxes around examples of what to find ("more like this"), alone or with
                ``texts``; ``exemplar_labels``: 1 (positive) / 0 (negative) per box, default all positive.
            conf: SAM 3: the detection score (class score times presence) to keep an instance; default 0.5, the
                reference's.
            max_det: SAM 3: keep at most this many instances per image, best first.
            **everything: Without prompts, the automatic mask generator's settings (``points_per_side``,
                ``points_per_batch``, ``pred_iou_thresh``, ``stability_score_thresh``, ``stability_score_offset``,
                ``box_nms_thresh``, ``crop_n_layers``, ``crop_nms_thresh``, ``crop_overlap_ratio``,
                ``crop_n_points_downscale_factor``, ``point_grids``, ``min_mask_region_area``); see
                :class:`~samkit.engine.everything.EverythingConfig`.

        Returns:
            One :class:`~samkit.results.Results` per image read. The same prompts apply to every image. Without
            prompts, each Results holds every mask found, best first per crop, with ``stability_score``,
            ``point_coords`` and ``crop_boxes`` besides the predicted ``iou``.
        """
        from samkit.data.sources import is_video_path, iter_images
        from samkit.data.video import is_live
        from samkit.engine.concepts import concept_query

        multimask = ultralytics_settings("predict", everything, multimask, self.arch.image_size, self.family)
        batch = check_batch(batch)
        out = call_settings(self, locals(), verbose, device)
        given = dict(bboxes=bboxes, points=points, labels=labels, masks=masks, prompts=prompts)
        query = concept_query(texts, exemplars, exemplar_labels)
        video = source is not None and (is_video_path(source) or is_live(source))
        if query is not None or concept_keys_used(conf, max_det):
            self._check_concepts(query, given, everything, conf, max_det)
        if query is not None:
            conf = check_conf(DEFAULT_CONF if conf is None else conf)
            max_det = check_max_det(max_det)
            if video:
                if len(query.boxes):
                    raise ValueError("exemplars= are for images; on a video give texts= (phrases)")
                return self.track(source, texts=query.texts, conf=conf, max_det=max_det, stream=stream,
                                  _mode="predict", **out)
            if query.texts:
                require_phrases()
        elif video:
            if everything or multimask:
                raise ValueError("a video takes bboxes=, points= / labels=, masks= or prompts= (tracked from "
                                 "frame 0); segment-everything and multimask are for images")
            return self.track(source, **given, stream=stream, _mode="predict", **out)
        prompted = any(v is not None for v in given.values())
        cfg = None if query is not None else everything_cfg(everything, multimask, prompted=prompted)  # fail early
        if source is None and self._image is None:
            raise ValueError("no source given and no image set: call model(source, ...) or set_image() first")
        images = Images(None if source is None else iter_images(source), max_pixels, self._image)
        self.skipped = images.skipped
        if query is not None:
            results = detect_concepts(self.concepts, images, query, conf, max_det)
        else:
            per_image = per_image_boxes(bboxes, 1 if images.items is None else len(images.items),
                                        isinstance(source, (list, tuple)))
            results = segment_images(self.engine, images, given, per_image, cfg, bool(multimask), batch, stream)
        return finish(self, results, "predict", out, stream)

    def _check_concepts(self, query, given: dict, everything: dict, conf, max_det) -> None:
        """Concept prompts (or their settings) given to predict: a model that has them, and nothing else given."""
        key = concept_keys_used(conf, max_det)
        if "concepts" not in self.capabilities:
            if query is None:
                raise TypeError(f"{key!r}: {key}= applies to SAM 3's concept prompts (texts=, exemplars=); "
                                f"{self.family} {NOT_FOR_SAM[key][4:]}")
            raise ValueError(f"texts= and exemplars= need a SAM 3 model (sam3.pt); {self.family} takes bboxes=, "
                             "points= / labels= and masks=. For phrases with SAM 2, give an open-vocabulary "
                             "detector's boxes (YOLOE, YOLO-World) as bboxes=")
        if query is None:  # clicks, boxes, masks or everything: SAM 3's tracker heads, as any SAM
            raise TypeError(f"{key!r}: {key}= applies to concept prompts (texts=, exemplars=); clicks, boxes "
                            "and masks give one mask per prompt (filter by r.iou)")
        if any(v is not None for v in given.values()) or everything:
            extra = [k for k, v in given.items() if v is not None] + list(everything)
            raise ValueError(f"give concept prompts (texts=, exemplars=) without {', '.join(extra)}")

    # ------------------------------------------------------------------ video
    def track(self, source, bboxes=None, points=None, labels=None, masks=None, prompts: list[dict] | None = None,
              frame: int = 0, stream: bool = False, max_frames: int | None = None, save: bool = False,
              save_txt: bool = False, save_coco: bool = False, save_masks: bool = False, rle: bool | None = None,
              project: str | os.PathLike | None = None, name: str | None = None, exist_ok: bool = False,
              verbose: bool | None = None, device: str | int | torch.device | None = None, show: bool = False,
              texts=None, conf: float | None = None, max_det: int = MAX_DET, det_model=None, det_every: int = 10,
              _mode: str = "track", **session):
        """Prompt frame ``frame`` of a video and track the objects through it.

        Prompts take the image forms of :meth:`predict` (boxes, clicks, binary masks at frame size, the
        ``prompts=[...]`` form, YOLO boxes with their classes and names), in pixels of the video's frames, checked
        by the same normaliser as image prompts. Frames from ``frame`` to the end come first, then (when
        ``frame`` > 0) frames ``frame - 1`` down to 0; each Results says its frame index in ``frame``.

        Args:
            source: A video file, a folder of frames, a list of arrays, a webcam index or a stream URL.
            frame: The frame the prompts are on.
            stream: Return a generator instead of a list (for long videos: results are not kept).
            max_frames: Track at most this many frames after ``frame`` in each direction.
            save, save_txt, save_coco, save_masks, rle, project, name, exist_ok: Outputs, as in :meth:`predict`
                (default folder ``runs/track/exp``): an mp4 with every frame in order and the prompts drawn on
                their frame, labels and masks per frame.
            verbose, device, show: As in :meth:`predict` (``show`` plays the tracked frames in a window).
            texts: SAM 3: a phrase or a list of phrases; every instance is found on every frame and tracked (new
                instances get new ids; ``boxes.cls`` is the phrase's index). Results come 15 frames behind the
                tracker (see :mod:`samkit.engine.concept_video`).
            conf: SAM 3 with ``texts``: the detection score to keep a detection (default 0.5, the reference's);
                new objects need at least 0.7 (or ``conf`` when higher).
            max_det: SAM 3 with ``texts``: at most this many objects per phrase at once (the lowest-scoring
                newcomers are dropped); with ``det_model``: the detector's ``max_det``.
            det_model: SAM 2 / 2.1 with ``texts``: an open-vocabulary Ultralytics detector (YOLOE, YOLO-World; a
                weights name or path, or a loaded model), given the phrases as its classes. It runs on ``frame`` and
                on every ``det_every``-th frame from it (both ways); a detection whose box overlaps no tracked
                object's box by IoU 0.5 starts a new object there ("Grounded SAM 2"). ``conf``: its confidence
                threshold (default Ultralytics' 0.25).
            det_every: Frames between two detector runs with ``det_model``.
            **session: :class:`~samkit.engine.video.VideoSession` settings (``fill_hole_area``,
                ``correct_as_cond``, ``max_prompt_frames``); for SAM 3, :class:`~samkit.engine.concept_video.
                ConceptTracking` settings (``hotstart_delay``, ``new_threshold``...).

        Returns:
            One :class:`~samkit.results.Results` per frame (object ids in ``boxes.id``), or a generator of them.
        """
        ultralytics_settings("track", session, None, self.arch.image_size, self.family)
        given = dict(bboxes=bboxes, points=points, labels=labels, masks=masks, prompts=prompts)
        if "concept_video" in self.capabilities:
            run = lambda: track_concepts(self.runtime, self.concepts, source, given, texts, conf,  # noqa: E731
                                         max_det, frame, max_frames, session)
        elif det_model is not None or texts is not None:
            if texts is None or det_model is None:
                raise ValueError(f"texts= on video needs a SAM 3 model (sam3.pt), or det_model= (an open-vocabulary "
                                 f"detector: YOLOE, YOLO-World) with {self.family}" if det_model is None else
                                 "det_model= needs texts=: the phrases the detector looks for")
            prompted = [k for k, v in given.items() if v is not None]
            if prompted:
                raise ValueError(f"give texts= with det_model=, or {', '.join(prompted)}, not both")
            run = lambda: track_detections(self.runtime, source, texts, det_model, det_every, conf,  # noqa: E731
                                           max_det, frame, max_frames, session)
        else:
            key = concept_keys_used(conf, max_det)
            if key:
                raise ValueError(f"{key}= on video applies to phrases (texts=) with SAM 3 or det_model=; "
                                 f"{self.family} tracks the objects given by bboxes=, points= / labels=, masks= or "
                                 "prompts=")
            run = lambda: track_prompts(self.runtime, source, given, frame, max_frames, session)  # noqa: E731
        out = call_settings(self, locals(), verbose, device)
        return finish(self, run(), _mode, out, stream)

    def video(self, source, **kwargs):
        """An interactive session on ``source`` (a video file, a folder of frames, a list of arrays, a webcam index or
        a stream URL); use it as a context manager. SAM 2 / 2.1: a :class:`~samkit.engine.video.VideoSession`;
        SAM 3: a :class:`~samkit.engine.concept_video.ConceptVideoSession` (``add(frame, texts=[...])`` finds and
        tracks phrases, ``add(frame, obj_id=, points=)`` corrects one instance); ``kwargs`` are its settings."""
        from samkit.engine.video import VideoSession

        if "concept_video" in self.capabilities:
            from samkit.engine.concept_video import ConceptVideoSession

            interactive = kwargs.pop("interactive", True)
            return ConceptVideoSession(self.runtime, source, engine=self.concepts,
                                       settings=concept_tracking(None, None, kwargs), interactive=interactive)
        return VideoSession(self.runtime, source, **kwargs)

    # ------------------------------------------------------------------ val
    def val(self, data, prompts="box,click", split: str | None = None, max_clicks: int = 20,
            stop_iou: float | None = None, min_area: int = 0, worst: int = 8, plots: bool = True,
            project: str | os.PathLike | None = None, name: str | None = None, exist_ok: bool = False,
            verbose: bool | None = None):
        """Measure this model on a dataset with the prompts annotators give (see :mod:`samkit.val`).

        Args:
            data: A YOLO-seg ``data.yaml`` or folder, a COCO ``.json``, a folder of PNG masks, or a DAVIS folder
                (video).
            prompts: ``"box,click"`` on images (box mIoU; the click robot's mIoU@1/3/5, NoC@85, NoC@90);
                ``"mask,box,click"`` on video (J&F from a first-frame prompt).
            split, max_clicks, stop_iou, min_area, worst, plots: See :func:`samkit.val.run`.
            project, name, exist_ok: The run folder (default ``runs/val/exp``, numbered); kept in ``save_dir``.
            verbose: Log the table and a progress bar; default the model's ``verbose``.

        Returns:
            :class:`~samkit.val.ValResults`: ``metrics`` (per prompt kind), ``results_dict``, ``save_dir``.
        """
        from samkit.val import run

        res = run([self], data, prompts=prompts, split=split, max_clicks=max_clicks, stop_iou=stop_iou,
                  min_area=min_area, worst=worst, plots=plots, project=project, name=name, exist_ok=exist_ok,
                  verbose=self.verbose if verbose is None else bool(verbose))
        self.save_dir = res.save_dir
        return res

    def train(self, data=None, resume=False, verbose: bool | None = None, **settings):
        """Fine-tune this model on a dataset (see :mod:`samkit.train` and ``docs/train.md``); the model holds the
        best weights afterwards, and ``ckpt_path`` / ``save_dir`` point at the run.

        Args:
            data: A YOLO-seg ``data.yaml`` (``train`` and ``val``), a COCO ``.json``, or a folder of YOLO-seg labels
                or PNG masks (a ``val_fraction`` of it held out).
            resume: True to go on with the run this model was loaded from (``weights/last.pt``), or a ``last.pt``
                path.
            verbose: Progress bars and the before / after table; default the model's ``verbose``.
            **settings: ``epochs``, ``batch``, ``tune`` (``decoder``, ``prompt_decoder``, ``all``, ``none``),
                ``lora``, ``lr0``... (:class:`~samkit.train.settings.TrainSettings`).

        Returns:
            :class:`~samkit.train.TrainResults`: ``save_dir``, ``rows`` (``results.csv``), ``before`` / ``after``
            val metrics, ``best``, ``last``.
        """
        from samkit.train import train

        res = train(self, data, resume=resume, verbose=self.verbose if verbose is None else bool(verbose), **settings)
        self.save_dir = res.save_dir
        return res

    # ------------------------------------------------------------------ description
    @property
    def family(self) -> str:
        """The family's display name for this version: ``"SAM 2.1"``, ``"SAM 2"``, ``"SAM"``, ``"MobileSAM"``,
        ``"SAM 3"``..."""
        return families.of(self.arch).display[self.version]

    @property
    def capabilities(self) -> frozenset[str]:
        """What this model can do: a subset of :data:`samkit.families.CAPABILITIES` (``"prompts"``,
        ``"everything"``, ``"video"``, ``"concepts"``, ``"concept_video"``)."""
        return families.of(self.arch).capabilities

    def info(self, verbose: bool | None = None) -> dict[str, Any]:
        """Describe the loaded model (and log it when ``verbose``, default the model's).

        Returns:
            ``family`` (e.g. ``"SAM 2.1"``), ``size`` (``"tiny"``, ``"base_plus"``, ``"vit_h"``...), ``version``,
            ``architecture`` (registry key), ``parameters`` (count), ``device``, ``dtype`` (what the network
            computes in: ``bfloat16`` / ``float16`` with ``half=True`` where supported, else ``float32``),
            ``weights_dtype`` (the parameters' dtype), ``image_size`` (network input side in pixels) and
            ``checkpoint`` (path).
        """
        info = self._describe()
        if self.verbose if verbose is None else verbose:
            LOGGER.info(self._summary(info))
        return info

    def _describe(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "size": self.arch.size,
            "version": self.version,
            "architecture": self.arch.name,
            "parameters": sum(p.numel() for p in self.net.parameters()),
            "device": str(self.device),
            "dtype": str(self.runtime.compute_dtype).replace("torch.", ""),  # what the network computes in
            "weights_dtype": str(self.dtype).replace("torch.", ""),
            "image_size": self.arch.image_size,
            "checkpoint": str(self.ckpt_path) if self.ckpt_path else "random weights",
        }

    @staticmethod
    def _summary(i: dict[str, Any]) -> str:
        return (
            f"{i['family']} {i['size']} from {i['checkpoint']}: {i['parameters'] / 1e6:.1f}M parameters, "
            f"{i['device']}, {i['dtype']}"
        )

    def __repr__(self) -> str:
        name = str(self.ckpt_path) if self.ckpt_path else f"{self.arch.name} (random weights)"
        return f"SAM({name!r}, family={self.family!r}, size={self.arch.size!r}, device='{self.device}')"
