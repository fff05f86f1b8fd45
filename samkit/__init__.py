"""samkit: one front end for the Segment Anything family (SAM 2.1, SAM 2, SAM, MobileSAM)."""

from __future__ import annotations

__version__ = "0.1.0"

from samkit.model import SAM  # noqa: E402

__all__ = ["SAM", "__version__"]
