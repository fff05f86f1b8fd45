"""samkit: one front end for the Segment Anything family (SAM 3, SAM 2.1, SAM 2, SAM, MobileSAM)."""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"
__all__ = ["SAM", "Results", "auto_annotate", "__version__"]

if TYPE_CHECKING:
    from samkit.annotate import auto_annotate
    from samkit.model import SAM
    from samkit.results import Results


def __getattr__(name: str):
    # Imported on first use so that `samkit help` and `samkit.cfg` do not pay for importing torch. A torchvision
    # whose operators did not load fails its own import; that error says what to reinstall instead.
    from samkit.utils.requirements import install_errors

    with install_errors():
        if name == "SAM":
            from samkit.model import SAM

            return SAM
        if name == "Results":
            from samkit.results import Results

            return Results
        if name == "auto_annotate":
            from samkit.annotate import auto_annotate

            return auto_annotate
    raise AttributeError(f"module 'samkit' has no attribute {name!r}")
