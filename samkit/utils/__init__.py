"""Shared helpers: logging, paths, devices, downloads, atomic writes."""

from __future__ import annotations

import logging
from pathlib import Path

#: The package logger. Library code logs here and never prints; the CLI attaches a handler.
LOGGER = logging.getLogger("samkit")
LOGGER.addHandler(logging.NullHandler())

#: The installed package folder (``samkit/``).
PACKAGE_DIR = Path(__file__).resolve().parent.parent
#: The source checkout holding the package (has ``weights/`` and ``assets/`` when run from a clone).
REPO_DIR = PACKAGE_DIR.parent
