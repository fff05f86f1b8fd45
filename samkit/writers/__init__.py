"""Writers for segmentation results: YOLO-seg txt, COCO JSON, PNG masks. Every file is written atomically."""

from samkit.writers.atomic import atomic_write_bytes, atomic_write_text
from samkit.writers.formats import FORMATS

__all__ = ["FORMATS", "atomic_write_bytes", "atomic_write_text"]
