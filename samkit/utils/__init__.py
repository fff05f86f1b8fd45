"""Shared helpers: logging, paths, devices, downloads, atomic writes."""

from __future__ import annotations

import logging
import sys
from pathlib import Path


class _Formatter(logging.Formatter):
    """``message`` for information, ``WARNING ⚠️ message`` for warnings and errors (Ultralytics' look)."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        return text if record.levelno < logging.WARNING else f"{record.levelname} ⚠️ {text}"


class DefaultHandler(logging.StreamHandler):
    """samkit's messages on standard error, as long as the application has not set up logging itself.

    Once the root logger has a handler (``logging.basicConfig(...)``, a framework's logging set-up, pytest's log
    capture), the records reach it by propagation instead and this handler stays quiet, so nothing is shown twice.
    The stream is looked up on every record, so a redirected ``sys.stderr`` is followed.
    """

    def __init__(self):
        super().__init__(sys.stderr)
        self.setFormatter(_Formatter("%(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        if logging.getLogger().handlers:
            return
        self.stream = sys.stderr
        super().emit(record)


#: The package logger. Library code logs here and never prints. Warnings show on standard error by default (and
#: information, which samkit logs only when ``verbose`` is on); ``logging.getLogger("samkit").setLevel(...)``
#: changes that, and an application's own logging configuration takes over the output.
LOGGER = logging.getLogger("samkit")
LOGGER.setLevel(logging.INFO)
LOGGER.addHandler(DefaultHandler())

#: The installed package folder (``samkit/``).
PACKAGE_DIR = Path(__file__).resolve().parent.parent
#: The source checkout holding the package (has ``weights/`` and ``assets/`` when run from a clone).
REPO_DIR = PACKAGE_DIR.parent
