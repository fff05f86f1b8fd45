"""Writers for segmentation results: YOLO-seg txt, COCO JSON, PNG masks. Every file is written atomically."""

from samkit.writers.atomic import atomic_write_bytes, atomic_write_text

__all__ = ["atomic_write_bytes", "atomic_write_text"]
