"""Writers for segmentation results: YOLO-seg txt, COCO JSON, PNG masks. Every file is written atomically."""

from samkit.writers.atomic import atomic_write_bytes, atomic_write_text

#: The dataset formats samkit writes (auto-annotation, the app): YOLO-seg txt, one COCO JSON, PNG masks.
FORMATS = ("yolo", "coco", "png")

__all__ = ["FORMATS", "atomic_write_bytes", "atomic_write_text"]
