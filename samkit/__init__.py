"""samkit: one front end for the Segment Anything family (SAM 2.1, SAM 2, SAM, MobileSAM)."""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"
__all__ = ["SAM", "__version__"]

if TYPE_CHECKING:
    from samkit.model import SAM


def __getattr__(name: str):
    # Imported on first use so that `samkit help` and `samkit.cfg` do not pay for importing torch.
    if name == "SAM":
        from samkit.model import SAM

        return SAM
    raise AttributeError(f"module 'samkit' has no attribute {name!r}")
