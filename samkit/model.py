"""The ``SAM`` facade: one object for every Segment Anything model, whatever its family or file name."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from samkit import families
from samkit.cfg import DEFAULT_MODEL, OUTPUT_KEYS, WRITE_KEYS
from samkit.engine.image import ImageEmbedding, ImageEngine
from samkit.nn.build import build_network, network_tensors, require_family
from samkit.nn.checkpoint import CheckpointError, load_state_dict_strict, read_checkpoint
from samkit.nn.detect import detect_architecture
from samkit.nn.registry import model_registry
from samkit.nn.runtime import Runtime
from samkit.prompts import boxes_per_image
from samkit.utils import LOGGER
from samkit.utils.downloads import resolve_weights
from samkit.utils.requirements import check_torchvision, require_phrases

#: Per-call settings of predict() / track(), for close-match suggestions.
_CALL_KEYS = ("source", "bboxes", "points", "labels", "masks", "prompts", "multimask", "batch", "stream",
              *OUTPUT_KEYS, "verbose", "device", "show", "max_pixels")
#: Ultralytics predict settings that have no meaning for SAM, and why (their errors say so).
_NOT_FOR_SAM = {
    "imgsz": "SAM models resize every image to their own input size: imgsz= equal to it is accepted",
    "conf": "SAM returns one mask per prompt; filter by r.iou, or give YOLO's boxes (bboxes=yolo(img))",
    "iou": "there is no NMS on prompted masks (segment-everything has box_nms_thresh=)",
    "classes": "SAM has no classes; give YOLO's boxes (bboxes=yolo(img)) to keep theirs",
    "max_det": "SAM returns one mask per prompt",
    "half": "set it on the model: SAM(..., half=True) or model.half = True",
    "augment": "there is no test-time augmentation",
    "agnostic_nms": "there is no NMS on prompted masks",
    "vid_stride": "video is tracked frame by frame (max_frames= bounds a run)",
    "save_conf": "COCO files hold each mask's score",
    "save_crop": "masks are saved whole (save_masks=True)",
}
NEW_OBJECT_IOU = 0.5  # a detector box overlapping a tracked object's box this much is that object (Grounded SAM 2)


def _track_through(session, frame: int, max_frames: int | None):
    """Forward from ``frame``, then backward from ``frame - 1`` to 0 (every frame of a video file once); closes the
    session at the end."""
    try:
        yield from session.propagate(start=frame, max_frames=max_frames)
        if frame > 0 and not session.video.live and (max_frames is None or max_frames > 0):
            back = None if max_frames is None else max_frames - 1  # frames frame-1 .. frame-max_frames
            yield from session.propagate(start=frame - 1, reverse=True, max_frames=back)
    finally:
        session.close()


def _concepts_through(session, frame: int, max_frames: int | None):
    """SAM 3: forward from ``frame``, then backward from it (the reference's "both" direction: frames ``frame - 1``
    down to 0); closes the session at the end."""
    back = frame > 0 and not session.video.live and (max_frames is None or max_frames > 0)
    if back:
        session.anchors.add(frame)  # a one-way session keeps what the backward pass will attend to
    try:
        yield from session.propagate(start=frame, max_frames=max_frames)
        if back:
            yield from session.propagate(start=frame, reverse=True, max_frames=max_frames)
    finally:
        session.close()


def _unknown_keyword(method: str, key: str, known) -> str:
    """The error text for an unknown keyword: why, for Ultralytics settings that do not apply to SAM; else the
    closest known settings."""
    from samkit.cfg import suggest

    if key in _NOT_FOR_SAM:
        return f"{method}() got an unknown keyword argument {key!r}: Ultralytics' {key}= does not apply to SAM " \
               f"({_NOT_FOR_SAM[key]})"
    return f"{method}() got an unknown keyword argument {key!r}{suggest(key, known)}"


def _can_show() -> bool:
    """Whether result windows can be shown here (Ultralytics' check; it warns when they cannot)."""
    from ultralytics.utils.checks import check_imshow

    return bool(check_imshow(warn=True))


def _is_yolo_results(value) -> bool:
    return hasattr(value, "boxes") and hasattr(value, "names") and hasattr(value, "orig_shape")


def _per_image_boxes(bboxes, n_images: int, source_is_list: bool):
    """Boxes given image by image -> one entry per image; anything else -> None (the same prompts for every image).

    Per image: a list of YOLO Results (what ``YOLO(...)(images)`` returns), or, when the source is a list, a list
    holding one list of boxes per image (``[[b1], [b2, b3], []]``, any lengths; an (N, K, 4) array too)."""
    if not isinstance(bboxes, (list, tuple, np.ndarray)) and not hasattr(bboxes, "detach"):
        return None
    if isinstance(bboxes, (list, tuple)) and bboxes and all(_is_yolo_results(b) for b in bboxes):
        if len(bboxes) != n_images:
            raise ValueError(f"bboxes= holds {len(bboxes)} YOLO Results but the source has {n_images} image(s): give "
                             "one Results per image, in the source's order")
        return list(bboxes)
    if not boxes_per_image(bboxes) or (not source_is_list and all(len(b) == 0 for b in bboxes)):
        return None
    if not source_is_list:
        raise ValueError("bboxes= holds one list of boxes per image, but the source is not a list of images: give a "
                         "list of images (one list of boxes each), or [[x1, y1, x2, y2], ...] for every image")
    if len(bboxes) != n_images:
        raise ValueError(f"bboxes= holds {len(bboxes)} lists of boxes (one per image) but the source has {n_images} "
                         "image(s): give one list per image, in the source's order ([] for an image without boxes)")
    return list(bboxes)


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
        max_det: int = 300,
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

        multimask = self._ultralytics_settings("predict", everything, multimask)
        if multimask is not None and not isinstance(multimask, (bool, np.bool_)):
            raise TypeError(f"multimask={multimask!r} must be True, False or None (the default)")
        if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 1:
            raise ValueError(f"batch={batch!r} must be a positive integer (images per encoder pass)")
        out = self._call_settings(locals(), verbose, device)
        given = dict(bboxes=bboxes, points=points, labels=labels, masks=masks, prompts=prompts)
        query = concept_query(texts, exemplars, exemplar_labels)
        if query is not None or conf is not None or max_det != 300:
            found = self._predict_concepts(source, query, given, everything, conf, max_det, stream, max_pixels, out)
            if found is not None:
                return found
        if source is not None and (is_video_path(source) or is_live(source)):
            if everything or multimask:
                raise ValueError("a video takes bboxes=, points= / labels=, masks= or prompts= (tracked from "
                                 "frame 0); segment-everything and multimask are for images")
            return self.track(source, **given, stream=stream, _mode="predict", **out)
        prompted = any(v is not None for v in given.values())
        everything_cfg = self._everything_cfg(everything, multimask, prompted=prompted)  # fail before any work
        if source is None and self._image is None:
            raise ValueError("no source given and no image set: call model(source, ...) or set_image() first")
        items = None if source is None else iter_images(source)
        per_image = _per_image_boxes(bboxes, 1 if items is None else len(items), isinstance(source, (list, tuple)))
        results = self._segment_images(items, given, per_image, everything_cfg, bool(multimask), batch, stream,
                                       max_pixels)
        results = self._saving(results, "predict", out)
        return results if stream else list(results)

    def _predict_concepts(self, source, query, given: dict, everything: dict, conf, max_det, stream: bool,
                          max_pixels, out: dict):
        """predict with concept prompts (SAM 3): every instance of the phrases / exemplars on each image."""
        from samkit.data.sources import is_video_path, iter_images
        from samkit.data.video import is_live
        from samkit.engine.concepts import DEFAULT_CONF

        if "concepts" not in self.capabilities:
            if query is None:
                key = "conf" if conf is not None else "max_det"
                raise TypeError(f"{key!r}: {key}= applies to SAM 3's concept prompts (texts=, exemplars=); "
                                f"{self.family} {_NOT_FOR_SAM[key][4:]}")
            raise ValueError(f"texts= and exemplars= need a SAM 3 model (sam3.pt); {self.family} takes bboxes=, "
                             "points= / labels= and masks=. For phrases with SAM 2, give an open-vocabulary "
                             "detector's boxes (YOLOE, YOLO-World) as bboxes=")
        if query is None:  # clicks, boxes, masks or everything: SAM 3's tracker heads, as any SAM
            if conf is not None or max_det != 300:
                key = "conf" if conf is not None else "max_det"
                raise TypeError(f"{key!r}: {key}= applies to concept prompts (texts=, exemplars=); clicks, boxes "
                                "and masks give one mask per prompt (filter by r.iou)")
            return None
        if any(v is not None for v in given.values()) or everything:
            extra = [k for k, v in given.items() if v is not None] + list(everything)
            raise ValueError(f"give concept prompts (texts=, exemplars=) without {', '.join(extra)}")
        if query.texts:
            require_phrases()
        conf = DEFAULT_CONF if conf is None else conf
        if isinstance(conf, bool) or not isinstance(conf, (int, float)) or not 0.0 <= conf < 1.0:
            raise ValueError(f"conf={conf!r} must be a number in [0, 1) (a detection score)")
        if max_det is not None and (isinstance(max_det, bool) or not isinstance(max_det, (int, np.integer))
                                    or max_det < 1):
            raise ValueError(f"max_det={max_det!r} must be a positive integer or None")
        if source is not None and (is_video_path(source) or is_live(source)):
            if len(query.boxes):
                raise ValueError("exemplars= are for images; on a video give texts= (phrases)")
            return self.track(source, texts=query.texts, conf=conf, max_det=max_det, stream=stream,
                              _mode="predict", **out)
        if source is None and self._image is None:
            raise ValueError("no source given and no image set: call model(source, ...) or set_image() first")
        items = None if source is None else iter_images(source)
        self.skipped = []
        results = (self.concepts.detect(image, path, query, float(conf), max_det)
                   for chunk in self._chunks(items, 1, max_pixels) for _, image, path in chunk)
        results = self._saving(self._fail_if_nothing_read(results, items), "predict", out)
        return results if stream else list(results)

    def _ultralytics_settings(self, method: str, extra: dict, multimask):
        """Ultralytics' SAM settings that mean what samkit does anyway, taken out of ``extra`` (the call's other
        keywords): ``imgsz`` equal to the network's input size, ``retina_masks=True`` (masks are at the image's
        resolution), ``multimask_output`` (``multimask``'s other name, on images). Any other value of them is an error
        saying what samkit does instead. Returns ``multimask``."""
        size = self.arch.image_size
        if "imgsz" in extra:
            v = extra.pop("imgsz")
            sizes = list(v) if isinstance(v, (list, tuple)) else [v]
            if not sizes or any(isinstance(x, bool) or not isinstance(x, (int, np.integer)) or x != size
                                for x in sizes):
                raise ValueError(f"imgsz={v!r}: {self.family} runs at its own input size {size} (every image is "
                                 f"resized to it, and masks come back at the image's size); imgsz= is accepted only "
                                 f"as {size}")
        if "retina_masks" in extra:
            v = extra.pop("retina_masks")
            if v is not True:
                raise ValueError(f"retina_masks={v!r}: samkit's masks are always at the image's resolution (what "
                                 "retina_masks=True asks for); the network's low-resolution logits are "
                                 "r.low_res_logits")
        if "multimask_output" in extra:
            v = extra.pop("multimask_output")
            if method != "predict":
                raise TypeError(f"{method}() got multimask_output={v!r}: a tracked object has one mask per frame")
            if multimask is not None and v is not None and bool(v) != bool(multimask):
                raise ValueError(f"multimask={multimask!r} and multimask_output={v!r} disagree: they are one "
                                 "setting (give multimask=)")
            multimask = v if multimask is None else multimask
        return multimask

    def _call_settings(self, given: dict, verbose: bool | None, device) -> dict:
        """A call's output settings (``given`` holds the call's arguments), after applying its ``device``."""
        if device is not None:
            self.to(device)
        out = {k: given[k] for k in (*OUTPUT_KEYS, "show")}
        out["verbose"] = self.verbose if verbose is None else bool(verbose)
        return out

    def _segment_images(self, items, given: dict, per_image, everything_cfg, multimask: bool, batch: int,
                        stream: bool, max_pixels):
        """Results for the images of ``items`` (None: the image of :meth:`set_image`): a generator with ``stream``
        (one image read at a time), else a list (every image read, then encoded in batches)."""
        self.skipped = []
        if stream:
            results = (r for chunk in self._chunks(items, 1, max_pixels) for r in self._predict_chunk(
                chunk, given, per_image, everything_cfg, multimask, batch))
            return self._fail_if_nothing_read(results, items)
        loaded = list(self._chunks(items, None, max_pixels))
        results = self._predict_chunk(loaded[0], given, per_image, everything_cfg, multimask, batch) if loaded else []
        if not results and self.skipped:
            self._raise_unreadable(items)
        return results

    def _chunks(self, items, size: int | None, max_pixels: float | None = None):
        """Frames of ``items`` as lists of ``(index, image, path)`` (``size`` at a time; None: all at once), the
        unreadable ones skipped with a warning and recorded in ``self.skipped``."""
        from samkit.data.sources import SourceError, load_frame

        if items is None:
            yield [(0, self._image[0], self._image[1])]
            return
        chunk = []
        for i, item in enumerate(items):
            try:
                f = load_frame(item, i, max_pixels=max_pixels)
            except SourceError as e:
                name = item if isinstance(item, (str, Path)) else f"image {i} of the source"
                self.skipped.append((str(name), str(e)))
                LOGGER.warning("skipped %s: %s", name, e)
                continue
            chunk.append((i, f.image, f.path))
            if size is not None and len(chunk) == size:
                yield chunk
                chunk = []
        if chunk or size is None:
            yield chunk

    def _raise_unreadable(self, items) -> None:
        from samkit.data.sources import SourceError

        if len(items) == 1:
            raise SourceError(self.skipped[0][1])
        raise SourceError(f"none of the {len(items)} images could be read (first: {self.skipped[0][0]}: "
                          f"{self.skipped[0][1]})")

    def _fail_if_nothing_read(self, results, items):
        n = 0
        for r in results:
            n += 1
            yield r
        if not n and self.skipped:
            self._raise_unreadable(items)

    def _predict_chunk(self, frames, given, per_image, everything_cfg, multimask, batch) -> list:
        """Results for ``frames`` (``(index in the source, image, path)``): every image's prompts checked, then one
        encoder pass over the images that have objects, then the prompts decoded."""
        if not frames:
            return []
        from samkit.prompts import check_unique_ids, normalize_prompts

        t0 = time.perf_counter()
        objects: list = [None] * len(frames)
        if everything_cfg is None:  # every prompt is checked before any network work
            for j, (index, image, _) in enumerate(frames):
                prompts = given if per_image is None else {**given, "bboxes": per_image[index]}
                objects[j] = normalize_prompts(image.shape[:2], low_res=self.engine.low_res, **prompts)
                if objects[j] is not None:
                    check_unique_ids(objects[j])
        t_prompts = (time.perf_counter() - t0) * 1000 / len(frames)
        todo = [j for j, obj in enumerate(objects) if everything_cfg is not None or (obj is not None and len(obj))]
        embeddings: dict[int, ImageEmbedding] = {}
        timing = {"preprocess": 0.0, "inference": 0.0}
        if todo and frames[0][0] == 0 and self._image is not None and frames[0][1] is self._image[0] and \
                self._image[3] == self.runtime.generation:
            embeddings[0] = self._image[2]  # the image of set_image: its embedding was kept (same device, precision)
        elif todo:
            for j, emb in zip(todo, self.engine.encode([frames[j][1] for j in todo], batch=batch)):
                embeddings[j] = emb
            timing = dict(self.engine.timing)
        timing["preprocess"] += t_prompts
        results = []
        for j, (index, image, path) in enumerate(frames):
            if everything_cfg is not None:
                results.append(self._everything_results(image, path, embeddings[j], everything_cfg, timing))
            elif j not in embeddings:  # no objects on this image (an empty list, a detector that found nothing)
                names = getattr(per_image[index] if per_image is not None else given["bboxes"], "names", None)
                results.append(self._no_objects(image, path, names, timing))
            else:
                results.append(self._prompted_results(image, path, embeddings[j], objects[j], multimask, timing))
        return results

    @staticmethod
    def _no_objects(image: np.ndarray, path: str, names, timing: dict):
        from samkit.results import Results

        h, w = image.shape[:2]
        return Results(image, path=path, masks=torch.zeros((0, h, w), dtype=torch.bool), iou=torch.zeros(0),
                       names=dict(names) if names else None, speed={**timing, "postprocess": 0.0})

    def _prompted_results(self, image: np.ndarray, path: str, emb: ImageEmbedding, obj, multimask: bool,
                          timing: dict):
        """One image's Results for its checked prompts ``obj`` (:class:`~samkit.prompts.ObjectPrompts`)."""
        from samkit.results import Results

        t1 = time.perf_counter()
        dec = self.engine.decode(emb, obj, multimask=multimask)
        n, k = dec.scores.shape
        tracked = bool(len(obj)) and bool((obj.track_id >= 0).all())
        ids = torch.as_tensor(np.where(obj.track_id >= 0, obj.track_id, np.arange(n)))
        return Results(
            image,
            path=path,
            masks=dec.masks.reshape(n * k, *dec.masks.shape[2:]),
            iou=dec.scores.reshape(-1),
            obj_ids=ids.repeat_interleave(k),
            cls=torch.as_tensor(obj.cls).repeat_interleave(k),
            conf=torch.as_tensor(obj.conf).repeat_interleave(k) if obj.names else None,
            names=obj.names or None,
            prompts=obj,
            low_res_logits=dec.low_res_logits.reshape(n * k, *dec.low_res_logits.shape[2:]),
            speed={**timing, "postprocess": (time.perf_counter() - t1) * 1000},
            tracked=tracked,
        )

    def _saving(self, results, mode: str, out: dict):
        """``results`` unchanged when nothing is to be written or shown; else a generator that writes (and shows)
        each Results as it passes (see :mod:`samkit.writers.run`) and sets ``self.save_dir``."""
        from samkit.writers.run import ResultSaver, claim_run_dir, saving

        show = bool(out.get("show")) and _can_show()
        writes = any(out[k] for k in WRITE_KEYS)
        if not show and not writes:
            return results
        saver = None
        if writes:
            project, name = out["project"], out["name"]
            if project is not None and not isinstance(project, (str, os.PathLike)):
                raise TypeError(f"project={project!r} must be a folder path (str or Path)")
            if name is not None and (not isinstance(name, str) or not name.strip()):
                raise (ValueError if isinstance(name, str) else TypeError)(
                    f"name={name!r} must be a folder name (non-empty text), or None for 'exp'")
            project = Path(project) if project is not None else Path("runs") / mode
            self.save_dir = claim_run_dir(project / (name or "exp"), out["exist_ok"])  # two runs never share one
            saver = ResultSaver(self.save_dir, verbose=out.get("verbose", True),
                                **{k: out[k] for k in (*WRITE_KEYS, "rle")})
        return saving(results, saver, show=show)

    @staticmethod
    def _everything_cfg(options: dict, multimask: bool | None, prompted: bool):
        """The automatic mask generator's settings, or None when prompts were given."""
        from samkit.engine.everything import EverythingConfig

        known = EverythingConfig.keys()
        for key in options:
            if key not in known or key == "multimask":
                raise TypeError(_unknown_keyword("predict", key, (*known, *_CALL_KEYS)))
        if prompted:
            if options:
                raise ValueError(f"{', '.join(options)} only apply to segment-everything (no prompt), but prompts "
                                 "were given")
            return None
        return EverythingConfig(**options, multimask=True if multimask is None else multimask)

    def _everything_results(self, image: np.ndarray, path: str, emb, cfg, timing: dict):
        from samkit.engine.everything import segment_everything
        from samkit.results import Results

        t1 = time.perf_counter()
        found = segment_everything(self.engine, image, cfg, embedding=emb)
        return Results(
            image,
            path=path,
            masks=found.masks,
            iou=found.iou,
            stability_score=found.stability_score,
            point_coords=found.point_coords,
            crop_boxes=found.crop_boxes,
            speed={**timing, "postprocess": (time.perf_counter() - t1) * 1000},
        )

    # ------------------------------------------------------------------ video
    def track(self, source, bboxes=None, points=None, labels=None, masks=None, prompts: list[dict] | None = None,
              frame: int = 0, stream: bool = False, max_frames: int | None = None, save: bool = False,
              save_txt: bool = False, save_coco: bool = False, save_masks: bool = False, rle: bool | None = None,
              project: str | os.PathLike | None = None, name: str | None = None, exist_ok: bool = False,
              verbose: bool | None = None, device: str | int | torch.device | None = None, show: bool = False,
              texts=None, conf: float | None = None, max_det: int = 300, det_model=None, det_every: int = 10,
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
        from samkit.engine.video import VideoSession, check_max_frames
        from samkit.prompts import normalize_prompts

        self._ultralytics_settings("track", session, None)
        if "concept_video" in self.capabilities:
            return self._track_sam3(source, dict(bboxes=bboxes, points=points, labels=labels, masks=masks,
                                                 prompts=prompts), texts, conf, max_det, frame, stream, max_frames,
                                    self._call_settings(locals(), verbose, device), _mode, session)
        if det_model is not None or texts is not None:
            if texts is None or det_model is None:
                raise ValueError(f"texts= on video needs a SAM 3 model (sam3.pt), or det_model= (an open-vocabulary "
                                 f"detector: YOLOE, YOLO-World) with {self.family}" if det_model is None else
                                 "det_model= needs texts=: the phrases the detector looks for")
            given = {k: v for k, v in dict(bboxes=bboxes, points=points, labels=labels, masks=masks,
                                           prompts=prompts).items() if v is not None}
            if given:
                raise ValueError(f"give texts= with det_model=, or {', '.join(given)}, not both")
            return self._track_grounded(source, texts, det_model, det_every, conf, max_det, frame, stream, max_frames,
                                        self._call_settings(locals(), verbose, device), _mode, session)
        if conf is not None or max_det != 300:
            key = "conf" if conf is not None else "max_det"
            raise ValueError(f"{key}= on video applies to phrases (texts=) with SAM 3 or det_model=; {self.family} "
                             "tracks the objects given by bboxes=, points= / labels=, masks= or prompts=")
        known = ("fill_hole_area", "correct_as_cond", "max_prompt_frames", "names")
        for key in session:
            if key not in known:
                raise TypeError(_unknown_keyword("track", key, (*known, *_CALL_KEYS, "frame", "max_frames")))
        max_frames = check_max_frames(max_frames)
        out = self._call_settings(locals(), verbose, device)
        session = VideoSession(self.runtime, source, **session)
        try:
            obj = normalize_prompts(session.frame_hw(frame), bboxes=bboxes, points=points, labels=labels,
                                    masks=masks, prompts=prompts, low_res=None)
            if obj is None:
                raise ValueError("tracking needs prompts: bboxes=, points= (with labels=), masks= or prompts=")
            if not len(obj):
                raise ValueError("tracking needs at least one object, but the prompts given are empty (an empty "
                                 "list of boxes or points)")
            if obj.names:
                session.names = dict(obj.names)
            ids = np.where(obj.track_id >= 0, obj.track_id, np.arange(len(obj)))
            values, counts = np.unique(ids, return_counts=True)
            if (counts > 1).any():
                raise ValueError(f"object id {int(values[counts > 1][0])} is given to {int(counts.max())} objects: "
                                 "each tracked object needs its own id (prompts' 'id', YOLO track ids, or their order)")
            session.add_prompts(frame, obj, ids)
        except BaseException:
            session.close()
            raise
        gen = self._saving(_track_through(session, frame, max_frames), _mode, out)
        return gen if stream else list(gen)

    def _track_sam3(self, source, given: dict, texts, conf, max_det, frame: int, stream: bool, max_frames,
                    out: dict, mode: str, settings: dict):
        """track() for SAM 3: phrases found and tracked, or clicked / boxed objects through SAM 3's tracker."""
        from samkit.engine.concept_video import ConceptVideoSession
        from samkit.engine.video import check_max_frames
        from samkit.prompts import normalize_prompts

        max_frames = check_max_frames(max_frames)
        prompted = [k for k, v in given.items() if v is not None]
        if texts is not None and prompted:
            raise ValueError(f"give texts= or {', '.join(prompted)}, not both: phrases find their own instances")
        if texts is None and not prompted:
            raise ValueError("tracking needs prompts: texts= (SAM 3 phrases), bboxes=, points= (with labels=) or "
                             "prompts=")
        if given["masks"] is not None:
            raise ValueError("SAM 3's video tracker takes clicks and boxes (points=, bboxes=), not masks=")
        if texts is None and (conf is not None or max_det != 300):
            raise ValueError("conf= and max_det= apply to phrases (texts=); clicks and boxes give one object each")
        tracking = self._concept_tracking(conf, max_det, settings)
        if texts is not None:
            require_phrases()
        session = ConceptVideoSession(self.runtime, source, engine=self.concepts, settings=tracking,
                                      interactive=texts is None)
        try:
            if texts is not None:
                session.add(frame, texts=texts)
            else:
                obj = normalize_prompts(session.frame_hw(frame), **given, low_res=None)
                ids = np.where(obj.track_id >= 0, obj.track_id, np.arange(len(obj)))
                for i in range(len(obj)):
                    pts, labs = obj.object_points(i)
                    box = obj.boxes[i] if obj.has_box[i] else None
                    session.add(frame, obj_id=int(ids[i]), points=pts if len(pts) else None,
                                labels=labs if len(pts) else None, box=box)
        except BaseException:
            session.close()
            raise
        gen = self._saving(_concepts_through(session, frame, max_frames), mode, out)
        return gen if stream else list(gen)

    def _track_grounded(self, source, texts, det_model, every, conf, max_det, frame: int, stream: bool, max_frames,
                        out: dict, mode: str, settings: dict):
        """track() for SAM 2 with phrases: an open-vocabulary detector's boxes start objects on keyframes."""
        from samkit.engine.concepts import concept_query
        from samkit.engine.video import VideoSession, check_max_frames
        from samkit.prompts import normalize_prompts
        from samkit.utils.detectors import check_phrase_detector, load_detector, set_detector_classes

        check_phrase_detector(det_model)  # before the detector loads (or downloads)
        max_frames = check_max_frames(max_frames)
        if isinstance(every, bool) or not isinstance(every, (int, np.integer)) or every < 1:
            raise ValueError(f"det_every={every!r} must be a positive integer (frames between detector runs)")
        phrases = concept_query(texts=texts).texts
        known = ("fill_hole_area", "correct_as_cond", "max_prompt_frames")
        for key in settings:
            if key not in known:
                raise TypeError(_unknown_keyword("track", key, (*known, *_CALL_KEYS, "frame", "max_frames", "texts",
                                                                "det_model", "det_every", "conf", "max_det")))
        det = load_detector(det_model)
        set_detector_classes(det, phrases)
        names = dict(enumerate(phrases))
        session = VideoSession(self.runtime, source, names=names, **settings)
        count = [0]
        args = {k: v for k, v in (("conf", conf), ("max_det", max_det)) if v is not None}

        def discover(res):
            if abs(res.frame - frame) % every:
                return None
            found = det.predict(res.orig_img, verbose=False, **args)[0].boxes.cpu()
            tracked = res.boxes.xyxy.float().cpu()[res.masks.data.flatten(1).any(1).cpu()] if len(res) else None
            if len(found) and tracked is not None and len(tracked):
                from ultralytics.utils.metrics import box_iou

                found = found[box_iou(found.xyxy.float(), tracked).amax(1) < NEW_OBJECT_IOU]
            if not len(found):
                return None
            prompts = normalize_prompts(res.orig_img.shape[:2], bboxes=found, low_res=None)
            ids = list(range(count[0], count[0] + len(prompts)))
            count[0] += len(prompts)
            return prompts, ids

        def gen():
            try:
                yield from session.propagate(start=frame, max_frames=max_frames, discover=discover)
                if frame > 0 and not session.video.live and (max_frames is None or max_frames > 0):
                    back = None if max_frames is None else max_frames - 1
                    yield from session.propagate(start=frame - 1, reverse=True, max_frames=back, discover=discover)
            finally:
                session.close()

        session.frame_hw(frame)  # a bad source or frame fails here, before any output
        results = self._saving(gen(), mode, out)
        return results if stream else list(results)

    @staticmethod
    def _concept_tracking(conf, max_det, settings: dict):
        from dataclasses import fields

        from samkit.engine.concept_video import ConceptTracking

        known = [f.name for f in fields(ConceptTracking)]
        for key in settings:
            if key not in known:
                raise TypeError(_unknown_keyword("track", key, (*known, *_CALL_KEYS, "frame", "max_frames", "texts",
                                                                "conf", "max_det")))
        settings = dict(settings)
        if conf is not None:
            if isinstance(conf, bool) or not isinstance(conf, (int, float)) or not 0.0 <= conf < 1.0:
                raise ValueError(f"conf={conf!r} must be a number in [0, 1) (a detection score)")
            settings["score_threshold"] = float(conf)
            settings["new_threshold"] = max(float(conf), settings.get("new_threshold", 0.7))
        if max_det is not None:
            if isinstance(max_det, bool) or not isinstance(max_det, (int, np.integer)) or max_det < 1:
                raise ValueError(f"max_det={max_det!r} must be a positive integer or None")
            settings["max_objects"] = int(max_det)
        return ConceptTracking(**settings)

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
                                       settings=self._concept_tracking(None, None, kwargs), interactive=interactive)
        return VideoSession(self.runtime, source, **kwargs)

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
