"""The ``SAM`` facade: one object for every Segment Anything model, whatever its family or file name."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from samkit.nn.checkpoint import load_state_dict_strict, read_checkpoint
from samkit.nn.build import build_network
from samkit.nn.detect import detect_architecture
from samkit.nn.registry import model_registry
from samkit.utils import LOGGER
from samkit.utils.devices import select_device
from samkit.utils.downloads import resolve_weights

_FAMILY_NAMES = {"sam2": "SAM 2", "sam": "SAM", "mobile_sam": "MobileSAM"}


class SAM:
    """A Segment Anything model (SAM 2.1, SAM 2, SAM or MobileSAM) ready for inference.

    The architecture is read from the checkpoint's weights, so any file name works, and the weights are loaded
    safely (``torch.load(weights_only=True)``) and strictly (every tensor must fit).

    Args:
        model: A registry name (``"sam2.1_b.pt"``, Meta's ``"sam2.1_hiera_base_plus.pt"``, ``"mobile_sam.pt"``),
            or the path of any SAM-family checkpoint (``"runs/my-finetune.pth"``). Registry models missing on
            disk are downloaded (see ``samkit.utils.downloads``).
        device: ``""`` (cuda:0 when available, else cpu), ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``N`` or ``"mps"``.
        verbose: Log the loaded model and show download progress.

    Attributes:
        net: The underlying ultralytics ``SAM2Model`` / ``SAMModel`` (eval mode).
        arch: The registry :class:`~samkit.nn.registry.Architecture` the weights were recognised as.
        version: ``"2.1"``, ``"2.0"`` or ``"1"``.
        ckpt_path: The checkpoint file that was loaded.

    Examples:
        >>> model = SAM("sam2.1_b.pt")
        >>> model.info()["family"]
        'SAM 2.1'
    """

    def __init__(self, model: str | os.PathLike = "sam2.1_b.pt", device: str | int | torch.device = "", verbose: bool = True):
        if not isinstance(model, (str, os.PathLike)):
            raise TypeError(f"model must be a checkpoint path or registry name (str or Path), got {type(model).__name__}")
        self.verbose = verbose
        self.ckpt_path = resolve_weights(model, progress=verbose)
        state_dict = read_checkpoint(self.ckpt_path)
        self.arch, self.version = detect_architecture(state_dict, str(self.ckpt_path))
        self._warn_if_name_disagrees(Path(model).name)
        net = build_network(self.arch, self.version)
        load_state_dict_strict(net, state_dict, str(self.ckpt_path))
        del state_dict
        self.net: nn.Module = net
        self.device = torch.device("cpu")
        self.to(device)
        if verbose:
            LOGGER.info("loaded %s", self._summary())

    def _warn_if_name_disagrees(self, name: str) -> None:
        entry = model_registry().find_model(name)
        if entry is not None and (entry.arch.name, entry.version) != (self.arch.name, self.version):
            LOGGER.warning(
                "%s is named like %s (%s %s) but its weights are %s %s; using what the weights say",
                self.ckpt_path, entry.name, entry.arch.name, entry.version, self.arch.name, self.version,
            )

    # ------------------------------------------------------------------ device
    def to(self, device: str | int | torch.device) -> SAM:
        """Move the network to ``device`` (any form :func:`~samkit.utils.devices.select_device` takes); returns self."""
        dev = select_device(device)
        self.net.to(dev)
        self.device = dev
        return self

    @property
    def dtype(self) -> torch.dtype:
        """Parameter dtype of the network."""
        return next(self.net.parameters()).dtype

    # ------------------------------------------------------------------ description
    @property
    def family(self) -> str:
        """``"SAM 2.1"``, ``"SAM 2"``, ``"SAM"`` or ``"MobileSAM"``."""
        if self.arch.family == "sam2":
            return "SAM 2.1" if self.version == "2.1" else "SAM 2"
        return _FAMILY_NAMES[self.arch.family]

    def info(self) -> dict[str, Any]:
        """Describe the loaded model.

        Returns:
            ``family`` (e.g. ``"SAM 2.1"``), ``size`` (``"tiny"``, ``"base_plus"``, ``"vit_h"``...), ``version``,
            ``architecture`` (registry key), ``parameters`` (count), ``device``, ``dtype``, ``image_size`` (network
            input side in pixels) and ``checkpoint`` (path).
        """
        info = {
            "family": self.family,
            "size": self.arch.size,
            "version": self.version,
            "architecture": self.arch.name,
            "parameters": sum(p.numel() for p in self.net.parameters()),
            "device": str(self.device),
            "dtype": str(self.dtype).replace("torch.", ""),
            "image_size": self.arch.image_size,
            "checkpoint": str(self.ckpt_path),
        }
        if self.verbose:
            LOGGER.info(self._summary(info))
        return info

    def _summary(self, info: dict[str, Any] | None = None) -> str:
        i = info or {
            "family": self.family, "size": self.arch.size, "checkpoint": self.ckpt_path, "device": self.device,
            "dtype": str(self.dtype).replace("torch.", ""),
            "parameters": sum(p.numel() for p in self.net.parameters()),
        }
        return (
            f"{i['family']} {i['size']} from {i['checkpoint']}: {i['parameters'] / 1e6:.1f}M parameters, "
            f"{i['device']}, {i['dtype']}"
        )

    def __repr__(self) -> str:
        return f"SAM({str(self.ckpt_path)!r}, family={self.family!r}, size={self.arch.size!r}, device='{self.device}')"

