"""Results: ultralytics-compatible, plus SAM's extras (predicted IoU, object ids, the prompts)."""

from __future__ import annotations

import copy
from pathlib import Path

import cv2
import numpy as np
import torch
from ultralytics.engine.results import Results as _UltralyticsResults

from samkit.ops import masks_to_boxes
from samkit.prompts import ObjectPrompts
from samkit.utils.devices import upload
from samkit.writers.atomic import atomic_write_bytes


class Results(_UltralyticsResults):
    """Segmentation of one image, readable by any code that reads Ultralytics results.

    Ultralytics attributes: ``masks.data`` (N, H, W) bool, ``masks.xy`` (polygons), ``boxes.xyxy`` (boxes enclosing
    each mask, pixels; SAM 3's concept detections: the detector's own boxes), ``boxes.conf`` (the detector's
    confidence when prompts came from YOLO, SAM 3's detection score, else the predicted IoU), ``boxes.cls``,
    ``boxes.id`` (object ids of tracked objects: video frames and YOLO tracks; None for images, as in
    Ultralytics), ``names``, ``orig_img`` (BGR), ``plot()``, ``show()``, ``save()``, ``to_json()``.

    ``masks`` and ``boxes`` live on the model's device (``cpu()`` moves them, as in Ultralytics), and so do
    ``iou``, ``presence`` and ``low_res_logits``: nothing is read back to the host while the model runs, so a GPU
    is never made to wait per image or frame. ``obj_ids`` and the other extras are on the CPU.

    Extras:
        iou: (N,) float predicted IoU of each mask.
        obj_ids: (N,) int object ids (the prompt's ``id`` / YOLO track id / video object id, else the object's
            index); they pick each object's colour and mask file name. ``boxes.id`` shows them only when
            ``tracked``.
        prompts: The :class:`~samkit.prompts.ObjectPrompts` that produced the masks (None without prompts).
        low_res_logits: (N, r, r) mask logits, reusable as a mask prompt for refinement.
        stability_score: (N,) float, segment-everything only (None otherwise).
        point_coords: (N, 2) float xy pixels of the grid click behind each mask, segment-everything only.
        crop_boxes: (N, 4) int xyxy pixels of the crop each mask came from, segment-everything only.
        frame: The frame index for a video frame (None for images); ``path`` is then the video's.
        presence: (N,) float object presence probability per object, video frames only.
        fps: The video's frame rate when it says, video frames only.
        concepts: Whether the masks are SAM 3 detections of phrases / exemplars (plotted one colour per class).

    Every extra is a constructor argument.
    """

    def __init__(
        self,
        orig_img: np.ndarray,
        path: str,
        masks: torch.Tensor,
        iou: torch.Tensor,
        obj_ids: torch.Tensor | None = None,
        cls: torch.Tensor | None = None,
        conf: torch.Tensor | None = None,
        names: dict[int, str] | None = None,
        prompts: ObjectPrompts | None = None,
        low_res_logits: torch.Tensor | None = None,
        speed: dict[str, float] | None = None,
        stability_score: torch.Tensor | None = None,
        point_coords: torch.Tensor | None = None,
        crop_boxes: torch.Tensor | None = None,
        tracked: bool = False,
        boxes: torch.Tensor | None = None,
        frame: int | None = None,
        presence: torch.Tensor | None = None,
        fps: float | None = None,
        concepts: bool = False,
    ):
        n, dev = masks.shape[0], masks.device
        # Scores and logits stay where they were computed (as Ultralytics' Results do): reading them here would
        # make the host wait for the device on every image and frame; a consumer reads them when it needs them.
        obj_ids = torch.arange(n) if obj_ids is None else torch.as_tensor(obj_ids).long()
        cls = torch.zeros(n) if cls is None else torch.as_tensor(cls).float()
        iou = torch.as_tensor(iou).float()
        conf = iou if conf is None else torch.as_tensor(conf).float()
        names = names or {0: "object"}
        # Ultralytics' Boxes: (x1, y1, x2, y2, [id,] conf, cls); an id column only for tracked objects.
        extra = torch.stack([upload(t, dev) for t in ([obj_ids.float(), conf, cls] if tracked else [conf, cls])], 1)
        xyxy = masks_to_boxes(masks).to(dev) if boxes is None else upload(boxes.float(), dev)
        boxes = torch.cat([xyxy, extra], 1)
        super().__init__(orig_img, path=path, names=names, boxes=boxes, masks=masks.bool(), speed=speed)
        self.iou = iou
        self.obj_ids = obj_ids
        self.tracked = tracked
        self.concepts = concepts  # SAM 3 detections of phrases / exemplars (plotted in one colour per class)
        self.prompts = prompts
        self.low_res_logits = low_res_logits
        self.stability_score = None if stability_score is None else stability_score.cpu()
        self.point_coords = None if point_coords is None else point_coords.cpu()
        self.crop_boxes = None if crop_boxes is None else crop_boxes.cpu()
        self.frame: int | None = frame
        self.presence: torch.Tensor | None = presence
        self.fps: float | None = fps

    @property
    def stem(self) -> str:
        """A file-name stem for this result: the image's stem, or ``<video stem>_<frame, 6 digits>``."""
        if self.frame is None:
            return Path(self.path).stem or "image"
        from samkit.writers.run import safe_stem

        return f"{safe_stem(self.path)}_{self.frame:06d}"

    def new(self) -> Results:
        """An empty copy keeping the SAM extras (used by ``cpu()``, ``cuda()``, ``to()``, ``numpy()``)."""
        r = copy.copy(self)
        for k in self._keys:
            setattr(r, k, None)
        return r

    #: The SAM extras that are tensors, moved with ``masks`` and ``boxes`` by ``cpu()``, ``cuda()``, ``to()`` and
    #: ``numpy()``.
    TENSOR_EXTRAS = ("iou", "presence", "low_res_logits", "stability_score", "point_coords", "crop_boxes")

    def _apply(self, fn: str, *args, **kwargs) -> Results:
        r = super()._apply(fn, *args, **kwargs)
        for k in self.TENSOR_EXTRAS:
            v = getattr(self, k, None)
            if isinstance(v, torch.Tensor):
                setattr(r, k, getattr(v, fn)(*args, **kwargs))
        return r

    def __len__(self) -> int:
        return 0 if self.masks is None else len(self.masks)

    # ------------------------------------------------------------------ writers
    def save_txt(self, txt_file: str | Path, save_conf: bool = False, warn_empty: bool = True) -> str:
        """Write YOLO-seg polygon rows (``cls x1 y1 x2 y2 ...`` normalised), replacing any existing file.

        Ultralytics' own ``save_txt`` appends, so a re-run doubles the labels; this one overwrites atomically.
        Empty masks have no polygon and write no row (logged unless ``warn_empty=False``, as for video frames where
        an object is out of view); the other rows keep their own class ids.
        """
        from samkit.writers.yolo import write_yolo_seg

        polys = self.masks.xyn if len(self) else []
        write_yolo_seg(txt_file, polys, self.boxes.cls.int().tolist(), self.boxes.conf.tolist() if save_conf else None,
                       warn_empty=warn_empty)
        return str(txt_file)

    def to_coco(self, rle: bool = False, image_id: int = 1, first_id: int = 1, holes=None) -> dict:
        """This image as a COCO instances document.

        Args:
            rle: Compressed RLE segmentations (pycocotools) instead of polygons.
            image_id: The image's id.
            first_id: The first annotation's id (the others follow).
            holes: The run's :class:`~samkit.writers.coco.HoleWarning` (polygons cannot hold a mask's holes: it
                warns once per run); default one warning per process.

        Returns:
            ``{"images": [...], "annotations": [...], "categories": [...]}``: one annotation per non-empty mask with
            ``category_id`` = the class id (unshifted), ``bbox`` xywh pixels, ``area`` in pixels, ``iscrowd`` 0,
            ``score`` (the detector's confidence, else the predicted IoU) and, for tracked objects, ``track_id``.
            A video frame's image is ``{"id": <frame index>, "file_name": <the video's file name>, "video":
            <its path>, "frame_index": <frame index>}`` (``image_id`` is then ignored).
        """
        from samkit.writers.coco import coco_annotations, coco_document

        h, w = self.orig_shape
        if self.frame is not None:
            image_id = int(self.frame)
        image = {"id": image_id, "file_name": Path(str(self.path)).name, "height": int(h), "width": int(w)}
        if self.frame is not None:
            image.update(video=str(self.path), frame_index=int(self.frame))
        if not len(self):
            return coco_document([image], [], self.names)
        anns = coco_annotations(
            self.masks.data.cpu().numpy() > 0.5,
            self.boxes.cls.int().tolist(),
            self.boxes.conf.tolist(),
            image_id=image_id,
            first_id=first_id,
            rle=rle,
            track_ids=self.obj_ids.tolist() if self.tracked else None,
            holes=holes,
            where=Path(str(self.path)).name + ("" if self.frame is None else f" frame {self.frame}"),
        )
        return coco_document([image], anns, self.names)

    def save_coco(self, path: str | Path, rle: bool = False, holes=None) -> str:
        """Write :meth:`to_coco` as JSON to ``path`` (atomically, replacing it)."""
        from samkit.writers.coco import write_coco

        write_coco(path, self.to_coco(rle=rle, holes=holes))
        return str(path)

    def save_masks(self, folder: str | Path, stem: str | None = None) -> list[str]:
        """Write one PNG per mask (0 / 255, image size) to ``folder/<stem>_<object id>.png`` (``stem`` default
        :attr:`stem`: the image's, or the video's with the frame index).

        With several masks per object (``multimask=True``) files are numbered by mask index instead.
        """
        from samkit.writers.masks import save_mask_pngs

        if not len(self):
            return []
        masks = self.masks.data.cpu().numpy() > 0.5
        return [str(p) for p in save_mask_pngs(masks, folder, stem or self.stem, self.obj_ids.tolist())]

    # ------------------------------------------------------------------ plotting
    def plot(self, *args, prompts: bool = True, color_mode: str | None = None, show: bool = False,
             save: bool = False, filename: str | None = None, pil: bool = False, **kwargs):
        """Ultralytics' plot (masks, boxes, labels) plus the prompts: positive clicks as green dots, negative clicks
        as red dots, prompt boxes as white rectangles. Colours follow object ids (``color_mode="instance"``), so an
        object keeps its colour from frame to frame; SAM 3's concept detections are coloured by class (every
        instance of a phrase alike, ``color_mode="class"``).

        Returns:
            The annotated image, BGR HxWx3 uint8 (a PIL image with ``pil=True``).
        """
        view = self
        if len(self):  # an object with no mask here (out of view on a video frame) gets no box or label either
            present = self.masks.data.flatten(1).any(1)
            if not bool(present.all()):
                view = self[present]
        if color_mode is None:
            color_mode = "class" if self.concepts else "instance"
        img = super(Results, view).plot(*args, color_mode=color_mode, pil=False, **kwargs)
        if isinstance(img, np.ndarray) and prompts and self.prompts is not None:
            img = draw_prompts(img, self.prompts, kwargs.get("line_width"))
        if show:
            from ultralytics.utils.plotting import Annotator

            Annotator(img).show(self.path)
        if save:
            self._save_image(img, filename or f"results_{Path(self.path).name}")
        if pil:
            from PIL import Image

            return Image.fromarray(img[..., ::-1])
        return img

    def save(self, filename: str | None = None, *args, **kwargs) -> str:
        """Write the plotted image (masks, boxes, prompts) to ``filename`` atomically; returns the file name."""
        filename = str(filename or f"results_{Path(self.path).name}")
        self.plot(*args, save=True, filename=filename, **kwargs)
        return filename

    @staticmethod
    def _save_image(img: np.ndarray, filename: str | Path) -> None:
        suffix = Path(filename).suffix.lower() or ".jpg"
        try:
            ok, buf = cv2.imencode(suffix, img)
        except cv2.error:
            ok = False
        if not ok:
            raise ValueError(f"cannot write an image as {suffix!r} ({filename}); use .jpg, .png, .bmp or .webp")
        atomic_write_bytes(filename, buf.tobytes())


def draw_prompts(img: np.ndarray, prompts: ObjectPrompts, line_width: int | None = None) -> np.ndarray:
    """Draw clicks (positive green, negative red, white outline) and prompt boxes (white) on a BGR image copy."""
    img = np.ascontiguousarray(img).copy()
    lw = line_width or max(round(sum(img.shape[:2]) / 2 * 0.003), 2)
    radius = max(3, 2 * lw)
    for i in range(len(prompts)):
        box = prompts.boxes[i]
        if not np.isnan(box).any():
            p1, p2 = (int(box[0]), int(box[1])), (int(box[2]), int(box[3]))
            cv2.rectangle(img, p1, p2, (0, 0, 0), lw + 2, cv2.LINE_AA)
            cv2.rectangle(img, p1, p2, (255, 255, 255), lw, cv2.LINE_AA)
        for (x, y), lab in zip(prompts.points[i], prompts.labels[i]):
            if lab < 0:
                continue
            centre = (int(round(x)), int(round(y)))
            cv2.circle(img, centre, radius + 2, (255, 255, 255), -1, cv2.LINE_AA)
            cv2.circle(img, centre, radius, (0, 200, 0) if lab == 1 else (0, 0, 230), -1, cv2.LINE_AA)
    return img
