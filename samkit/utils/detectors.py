"""Ultralytics detectors used with SAM: loaded from a name or path (or given loaded), and open-vocabulary ones
(YOLOE, YOLO-World) given phrases as their classes."""

from __future__ import annotations

from samkit.utils.requirements import no_autoinstall, require_package


def check_phrase_detector(det_model=None) -> None:
    """Whether ``det_model`` (a loaded model, or a name not loaded yet) can take phrases: a loaded detector must be an
    open-vocabulary one, and YOLOE / YOLO-World need Ultralytics' CLIP package, checked before any model loads
    (Ultralytics would pip-install it from GitHub the first time its text model is imported)."""
    if hasattr(det_model, "predict") and not callable(getattr(det_model, "set_classes", None)):
        raise ValueError(f"texts= needs an open-vocabulary detector (YOLOE, YOLO-World) or a SAM 3 model without "
                         f"det_model=; {type(det_model).__name__} detects a fixed set of classes")
    require_package("clip")


def load_detector(det_model):
    """An Ultralytics model: ``det_model`` itself when it is loaded (it has ``predict``), else ``YOLO(det_model)``
    (a weights name or path; Ultralytics picks YOLOE / YOLO-World from the name)."""
    if hasattr(det_model, "predict"):
        return det_model
    from ultralytics import YOLO

    with no_autoinstall():  # a checkpoint naming a missing module fails instead of installing it
        return YOLO(str(det_model))


def set_detector_classes(det, texts: list[str]) -> None:
    """Give an open-vocabulary Ultralytics detector (YOLOE, YOLO-World) the phrases as its classes, in order: its
    class ids are then the phrases' indices."""
    if not callable(getattr(det, "set_classes", None)):
        check_phrase_detector(det)  # raises: not an open-vocabulary detector
    check_phrase_detector()
    with no_autoinstall():
        det.set_classes(list(texts))
