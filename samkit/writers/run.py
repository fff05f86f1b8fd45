"""A run's output folder and the writer that fills it, one Results at a time.

Layout of ``project/name`` (default ``runs/<mode>/exp``, then ``exp-2``, ``exp-3``... as Ultralytics numbers its
runs, unless ``exist_ok``):

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

from ultralytics.utils.files import increment_path

from samkit.utils import LOGGER


def claim_run_dir(path: str | Path, exist_ok: bool = False) -> Path:
    """Create and return the run folder ``path`` or, when it exists (and not ``exist_ok``), the first free of
    ``path-2``, ``path-3``... (Ultralytics' numbering). The folder is claimed by creating it, so two runs started
    at once never share one: the one that loses the race takes the next number.

    Raises:
        OutputError: The folder cannot be created (a file in the way, permissions...), naming it.
    """
    from samkit.writers.atomic import OutputError, make_dirs

    path = Path(path)
    if exist_ok:
        return make_dirs(path)
    try:
        make_dirs(path.parent)
    except OutputError:
        make_dirs(path)  # raises again, naming the run folder that was asked for
        raise
    while True:
        candidate = increment_path(path)
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:  # another run took it between the check and the creation: the next number
            continue
        except OSError as e:
            make_dirs(candidate)  # raises OutputError naming the folder and the reason
            raise OutputError(f"cannot create the output folder {candidate}: {e}", candidate, e.errno) from e


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
        verbose: Log where the outputs went when the run ends.
    """

    def __init__(self, save_dir: str | Path, save: bool = False, save_txt: bool = False, save_coco: bool = False,
                 save_masks: bool = False, rle: bool | None = None, verbose: bool = True):
        self.save_dir = Path(save_dir)
        self.save, self.save_txt, self.save_coco, self.save_masks = save, save_txt, save_coco, save_masks
        self.rle = rle
        self.verbose = verbose
        self._videos: dict[str, object] = {}
        from samkit.writers.coco import CocoBuilder, HoleWarning

        self._coco = CocoBuilder()  # the images' document, written when the run ends
        self._coco_names: dict[int, str] = {}
        self._holes = HoleWarning()  # polygons lose holes: one warning per run
        self._bases: dict[str, str] = {}  # source path -> the name its outputs have in this run
        self._taken: set[str] = set()
        self.written: list[Path] = []
        self.count = 0

    def __call__(self, r) -> None:
        """Write one Results (an image, or one frame of a video when ``r.frame`` is set)."""
        from samkit.writers.atomic import make_dirs

        make_dirs(self.save_dir)
        video = r.frame is not None
        base = self._base(r)
        stem = f"{base}_{r.frame:06d}" if video else base
        if self.save:
            if video:
                self._video_writer(r, base).write(r.frame, r.plot())
            else:
                suffix = Path(str(r.path)).suffix.lower()
                name = f"{base}{suffix}" if suffix in (".jpg", ".jpeg", ".png", ".bmp", ".webp") else f"{base}.jpg"
                self.written.append(Path(r.save(self.save_dir / name)))
        if self.save_txt:
            self.written.append(Path(r.save_txt(self.save_dir / "labels" / f"{stem}.txt", warn_empty=not video)))
        if self.save_masks:
            self.written += [Path(p) for p in r.save_masks(self.save_dir / "masks", stem=stem)]
        if self.save_coco:
            if video:
                rle = True if self.rle is None else self.rle
                self.written.append(Path(r.save_coco(self.save_dir / "labels" / f"{stem}.json", rle=rle,
                                                     holes=self._holes)))
            else:
                doc = r.to_coco(rle=bool(self.rle), image_id=self._coco.next_image_id,
                                first_id=self._coco.next_annotation_id, holes=self._holes)
                (image,) = doc["images"]
                self._coco.add(image, doc["annotations"])
                self._coco_names.update({c["id"]: c["name"] for c in doc["categories"]})
        self.count += 1

    def _base(self, r) -> str:
        """The name of ``r``'s source in this run's files: its stem, or ``<stem>_2``, ``<stem>_3``... when an
        earlier source of the run had that stem (``a.jpg`` and ``a.png``, ``d1/x.jpg`` and ``d2/x.jpg``), so no
        source's outputs replace another's."""
        key = str(r.path)
        base = self._bases.get(key)
        if base is None:
            want = safe_stem(key) if r.frame is not None else (Path(key).stem or "image")
            base, k = want, 2
            while base.lower() in self._taken:  # case-insensitive file systems too
                base, k = f"{want}_{k}", k + 1
            if base != want:
                LOGGER.warning("%s has the same name as an earlier source of this run: its outputs are named %s",
                               key, base)
            self._taken.add(base.lower())
            self._bases[key] = base
        return base

    def _video_writer(self, r, base: str):
        from samkit.writers.video import VideoOverlayWriter

        w = self._videos.get(r.path)
        if w is None:
            w = self._videos[r.path] = VideoOverlayWriter(self.save_dir / f"{base}.mp4", fps=r.fps)
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
        if len(self._coco):
            from samkit.writers.coco import CocoBuilder

            self.written.append(self._coco.write(self.save_dir / "coco.json", self._coco_names))
            self._coco = CocoBuilder()
        if self.count and self.verbose:
            LOGGER.info("results saved to %s", self.save_dir)
        if errors:
            raise errors[0]

    def __enter__(self) -> ResultSaver:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def saving(results, saver: ResultSaver | None, show: bool = False):
    """Yield ``results`` one by one, writing each first (``saver``) and showing it in a window (``show``); the saver
    is closed when the iteration ends or stops."""
    done = False
    try:
        for r in results:
            if saver is not None:
                saver(r)
            if show:
                show_result(r)
            yield r
        done = True
    finally:
        if saver is not None:
            saver.close()
            if not done:
                _drop_if_empty(saver.save_dir)


def _drop_if_empty(folder: Path) -> None:
    """Remove a run folder that a failed run left empty (the next run would otherwise take the next number)."""
    try:
        folder.rmdir()  # only succeeds when empty
    except OSError:
        pass


def show_result(r) -> None:
    """Show one Results in an OpenCV window named after its source (an image waits 300 ms, a video frame 1 ms, as
    Ultralytics' predictor does)."""
    import cv2

    cv2.imshow(str(r.path), r.plot())
    cv2.waitKey(1 if r.frame is not None else 300)
