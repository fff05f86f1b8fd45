"""The one owner of a built network at inference time: its device, precision, memory layout and compilation.

The image engine and every video session receive the same :class:`Runtime` and run the network only through its
family's adapter (``runtime.network``), inside ``runtime.autocast()`` on ``runtime.device``. Whatever changes how the
network computes (moving it, switching half precision, compiling) goes through the runtime and moves its
:attr:`Runtime.generation`, which the engines' caches are keyed on: an embedding computed before a change is never
served after it.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from samkit.nn.registry import Architecture
from samkit.utils import LOGGER
from samkit.utils.devices import half_dtype, select_device


class Runtime:
    """A network in eval mode with the settings it runs under.

    Args:
        net: The built network (replacements already installed by :func:`samkit.nn.build.build_network`).
        arch: Its registry architecture.
        version: ``"2.1"``, ``"2.0"`` or ``"1"``.
        device: Anything :func:`~samkit.utils.devices.select_device` takes.
        half: Run under bf16 / fp16 autocast where the device supports it (the weights stay fp32).

    Attributes:
        net, arch, version: As given.
        network: The family's adapter over ``net`` (:mod:`samkit.families.network`): what the engines call.
        device: Where the network is.
        half_dtype: The autocast dtype in use, or None (fp32).
        compiled: Whether :meth:`compile` ran.
        generation: Moves whenever the device, the precision or the compilation changes.
    """

    def __init__(self, net: nn.Module, arch: Architecture, version: str, device="cpu", half: bool = False):
        from samkit import families

        self.net = net.eval()
        self.arch = arch
        self.network = families.of(arch).network(self.net)
        self.version = version
        self.device = torch.device("cpu")
        self.half_dtype: torch.dtype | None = None
        self.half_requested = False
        self.compiled = False
        self.generation = 0
        self.to(device)
        self.set_half(half)

    # ------------------------------------------------------------------ placement and precision
    def to(self, device) -> Runtime:
        """Move the network to ``device``; half precision is resolved again for it."""
        dev = select_device(device)
        if dev != self.device or next(self.net.parameters()).device != dev:
            self.net.to(dev)
            self.device = dev
            self.generation += 1
        self.set_half(self.half_requested)
        return self

    def set_half(self, value: bool) -> None:
        """Run under half-precision autocast (bf16 / fp16, whichever the device does best) or in fp32.

        Where the device cannot, a warning says why and fp32 is used. In half precision the image encoder's
        convolutions also run channels-last (measured faster on the CPU; the usual layout for bf16 convolutions
        on GPUs); fp32 keeps the standard layout, whose results are bit-identical to the reference's.
        """
        if not isinstance(value, bool):
            raise TypeError(f"half={value!r} must be True or False")
        self.half_requested = value
        dtype = None
        if value:
            dtype, why = half_dtype(self.device)
            if dtype is None:
                LOGGER.warning("half=True is not used on %s: %s; running in fp32", self.device, why)
        if dtype != self.half_dtype:
            self.half_dtype = dtype
            self.generation += 1
            layout = torch.contiguous_format if dtype is None else torch.channels_last
            for module in self.encoder_modules():
                for conv in module.modules():  # only convolutions: other 4-D parameters keep their layout
                    if isinstance(conv, (nn.Conv2d, nn.ConvTranspose2d)):
                        conv.to(memory_format=layout)

    def encoder_modules(self) -> list[nn.Module]:
        """The modules an image-encoder pass runs (SAM 2 projects its high-resolution features in the decoder)."""
        dec = getattr(self.net, "sam_mask_decoder", None)
        extra = [getattr(dec, n) for n in ("conv_s0", "conv_s1") if dec is not None and hasattr(dec, n)]
        return [self.net.image_encoder, *extra]

    def encoder_layout(self, x: torch.Tensor) -> torch.Tensor:
        """A (B, 3, S, S) encoder input in the layout the encoder runs in (channels-last in half precision)."""
        return x if self.half_dtype is None else x.contiguous(memory_format=torch.channels_last)

    def autocast(self):
        """The precision context every network call runs in."""
        if self.half_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.half_dtype)

    @property
    def compute_dtype(self) -> torch.dtype:
        """What the network computes in: the autocast dtype, else the parameters' dtype."""
        return self.half_dtype or self.weights_dtype

    @property
    def weights_dtype(self) -> torch.dtype:
        return next(self.net.parameters()).dtype

    # ------------------------------------------------------------------ compilation
    def compile(self, **options) -> Runtime:
        """``torch.compile`` the image encoder, the memory attention (SAM 2) and the mask decoder in place
        (``options`` go to ``torch.compile``). The decoder's compiled ``forward`` calls samkit's ``predict_masks``
        (see :mod:`samkit.nn.decoder`), so compilation covers the decoder every prompt goes through. Parameters and
        state-dict keys are unchanged; compiling twice changes nothing more."""
        if not self.compiled:
            for name in ("image_encoder", "memory_attention", "sam_mask_decoder", "mask_decoder"):
                module = getattr(self.net, name, None)
                if isinstance(module, nn.Module):
                    module.forward = torch.compile(module.forward, **options)
            self.compiled = True
            self.generation += 1
        return self
