"""Progress bars for long runs (Ultralytics' bar when present, else tqdm, else none)."""

from __future__ import annotations

import sys
from collections.abc import Iterable


def progress(iterable: Iterable, total: int | None = None, desc: str = "", unit: str = "it",
             enabled: bool = True) -> Iterable:
    """Wrap ``iterable`` in a progress bar on stderr; ``enabled=False`` returns it unchanged."""
    if not enabled:
        return iterable
    try:
        from ultralytics.utils import TQDM as bar
    except ImportError:  # pragma: no cover - depends on the ultralytics release
        try:
            from tqdm import tqdm as bar
        except ImportError:
            return iterable
    return bar(iterable, total=total, desc=desc, unit=unit, file=sys.stderr)  # stdout keeps the command's result
