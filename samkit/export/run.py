"""A run's output folder and the writer that fills it, one Results at a time.

Layout of ``project/name`` (default ``runs/<mode>/exp``, then ``exp2``, ``exp3``... unless ``exist_ok``):

- ``save``: the plotted image (masks, boxes, prompts) as ``<image name>``; for a video, ``<video stem>.mp4`` with
  every frame in order (object colours follow object ids, so they stay the same from frame to frame);
- ``save_txt``: YOLO-seg rows in ``labels/<image stem>.txt`` (video: ``labels/<video stem>_<frame>.txt``);
- ``save_masks``: one PNG per object in ``masks/`` (``<image stem>_<id>.png``, video
  ``<video stem>_<frame>_<id>.png``);
- ``save_coco``: images -> one COCO document for the run, ``coco.json`` (polygons, RLE with ``rle=True``), written
  when the run ends; video -> one COCO document per frame, ``labels/<video stem>_<frame>.json`` (RLE unless
  ``rle=False``), written as each frame is done, so memory stays flat on long videos.

Every file is written atomically; re-running into the same folder replaces files, never appends.
"""

from __future__ import annotations

import re
from pathlib import Path

from samkit.utils import LOGGER


def increment_path(path: str | Path, exist_ok: bool = False) -> Path:
    """``path`` when it does not exist yet (or ``exist_ok``), else ``path2``, ``path3``... (the first free one)."""
    path = Path(path)
    if exist_ok or not path.exists():
        return path
    n = 2
    while Path(f"{path}{n}").exists():
        n += 1
    return Path(f"{path}{n}")


def safe_stem(name: str) -> str:
    """A file-name stem for a source: the file or folder stem, or a cleaned-up URL / camera name."""
    stem = Path(str(name).rstrip("/\\")).stem if "://" not in str(name) else str(name).split("://", 1)[1]
    stem = re.sub(r"[^\w.-]+", "_", stem).strip("._")
    return stem or "video"


class ResultSaver:
    """Write the outputs a run asked for into ``save_dir``.

    Args:
        save_dir: The run's folder (created on the first write).
        save, save_txt, save_coco, save_masks: Which outputs (see the module docstring).
        rle: COCO segmentations as RLE (True) or polygons (False); None: polygons for images, RLE for video frames.
    """

    def __init__(self, save_dir: str | Path, save: bool = False, save_txt: bool = False, save_coco: bool = False,
                 save_masks: bool = False, rle: bool | None = None):
        self.save_dir = Path(save_dir)
        self.save, self.save_txt, self.save_coco, self.save_masks = save, save_txt, save_coco, save_masks
        self.rle = rle
        self._videos: dict[str, object] = {}
        self._coco_images: list[dict] = []
        self._coco_annotations: list[dict] = []
        self._coco_names: dict[int, str] = {}
        self.written: list[Path] = []
        self.count = 0

    @property
    def active(self) -> bool:
        return bool(self.save or self.save_txt or self.save_coco or self.save_masks)

    def __call__(self, r) -> None:
        """Write one Results (an image, or one frame of a video when ``r.frame`` is set)."""
        self.save_dir.mkdir(parents=True, exist_ok=True)
        video = r.frame is not None
        stem = r.stem
        if self.save:
            if video:
                self._video_writer(r).write(r.frame, r.plot())
            else:
                name = Path(r.path).name if Path(r.path).suffix.lower() in (".jpg", ".jpeg", ".png", ".bmp",
                                                                            ".webp") else f"{stem}.jpg"
                self.written.append(Path(r.save(self.save_dir / name)))
        if self.save_txt:
            self.written.append(Path(r.save_txt(self.save_dir / "labels" / f"{stem}.txt", warn_empty=not video)))
        if self.save_masks:
            self.written += [Path(p) for p in r.save_masks(self.save_dir / "masks")]
        if self.save_coco:
            if video:
                rle = True if self.rle is None else self.rle
                self.written.append(Path(r.save_coco(self.save_dir / "labels" / f"{stem}.json", rle=rle)))
            else:
                image_id = len(self._coco_images) + 1
                doc = r.to_coco(rle=bool(self.rle), image_id=image_id, first_id=len(self._coco_annotations) + 1)
                self._coco_images += doc["images"]
                self._coco_annotations += doc["annotations"]
                self._coco_names.update({c["id"]: c["name"] for c in doc["categories"]})
        self.count += 1

    def _video_writer(self, r):
        from samkit.export.video import VideoOverlayWriter

        w = self._videos.get(r.path)
        if w is None:
            w = self._videos[r.path] = VideoOverlayWriter(self.save_dir / f"{safe_stem(r.path)}.mp4", fps=r.fps)
        return w

    def close(self) -> None:
        """Finish the videos and write the run's COCO document (also after an error: nothing produced is lost)."""
        errors = []
        for w in self._videos.values():
            try:
                path = w.close()
                if path is not None:
                    self.written.append(path)
            except Exception as e:  # finish the other outputs, then report
                errors.append(e)
        self._videos.clear()
        if self._coco_images:
            from samkit.export.coco import coco_document, write_coco

            doc = coco_document(self._coco_images, self._coco_annotations, self._coco_names)
            self.written.append(write_coco(self.save_dir / "coco.json", doc))
            self._coco_images, self._coco_annotations = [], []
        if self.count:
            LOGGER.info("results saved to %s", self.save_dir)
        if errors:
            raise errors[0]

    def __enter__(self) -> ResultSaver:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def saving(results, saver: ResultSaver):
    """Yield ``results`` one by one, writing each first; the saver is closed when the iteration ends or stops."""
    try:
        for r in results:
            saver(r)
            yield r
    finally:
        saver.close()
