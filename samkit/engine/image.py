"""The image engine: preprocess exactly as the reference, encode once (cached), decode prompts in batches.

SAM 2 / 2.1 resize the RGB image to a square (``image_size`` x ``image_size``, bilinear with antialiasing, as
Meta's ``SAM2Transforms``) and normalise with ImageNet statistics in 0-1. SAM and MobileSAM resize the long side
to ``image_size`` (bilinear, as Meta's ``ResizeLongestSide`` through PIL), normalise in 0-255 and pad the bottom
and right with zeros. Prompts are mapped with the same transform; masks are mapped back to the original size.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from samkit.engine.prompts import ObjectPrompts
from samkit.nn.registry import Architecture
from samkit.nn.shared_decoder import can_share, decode_shared

SAM2_MEAN, SAM2_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
CPU_DECODE_CHUNK = 4  # objects per mask-decoder call on the CPU (see ImageEngine.decode_clicks)


@dataclass
class ImageEmbedding:
    """The encoder's output for one image: computed once, decoded against any number of prompts.

    Attributes:
        image_embed: (1, 256, S/16, S/16) float tensor on the model's device.
        high_res_feats: SAM 2's two higher-resolution feature maps, (1, 32, S/4, S/4) and (1, 64, S/8, S/8);
            empty for SAM / MobileSAM.
        orig_hw: (height, width) of the original image.
        input_hw: (height, width) of the image inside the network input before padding (SAM: long side = S;
            SAM 2: S x S).
        key: Content hash of the image (the cache key together with the model).
    """

    image_embed: torch.Tensor
    high_res_feats: list[torch.Tensor]
    orig_hw: tuple[int, int]
    input_hw: tuple[int, int]
    key: str


@dataclass
class Decoded:
    """Decoder output for N objects and K candidate masks each (K = 3 with multimask, else 1).

    Attributes:
        masks: (N, K, H, W) bool at the original image size.
        scores: (N, K) float predicted IoU.
        low_res_logits: (N, K, r, r) float mask logits (clamped to +-32), reusable as mask prompts.

    All on the model's device.
    """

    masks: torch.Tensor
    scores: torch.Tensor
    low_res_logits: torch.Tensor


def image_key(image: np.ndarray) -> str:
    """Content hash of an image array (shape, dtype and bytes)."""
    h = hashlib.blake2b(digest_size=16)
    h.update(str((image.shape, image.dtype.str)).encode())
    h.update(np.ascontiguousarray(image).data)
    return h.hexdigest()


class ImageEngine:
    """Encode images and decode prompts for one network.

    Args:
        net: ultralytics ``SAM2Model`` or ``SAMModel`` in eval mode.
        arch: Its registry architecture.
        cache_size: How many image embeddings to keep (least recently used dropped first); 0 disables caching.
    """

    def __init__(self, net: nn.Module, arch: Architecture, cache_size: int = 8):
        if not isinstance(cache_size, int) or isinstance(cache_size, bool) or cache_size < 0:
            raise ValueError(f"cache={cache_size!r} must be a non-negative integer (0 disables the cache)")
        self.net = net
        self.arch = arch
        self.is_sam2 = arch.family == "sam2"
        if self.is_sam2:
            from samkit.nn.speedups import speed_up

            speed_up(net)
        self.size = arch.image_size
        self.low_res = self.size // 4
        self.cache_size = cache_size
        self._cache: OrderedDict[str, ImageEmbedding] = OrderedDict()
        self.images_encoded = 0  # how many images went through the encoder (cache misses)
        self.half_dtype: torch.dtype | None = None  # autocast dtype of half precision, None for fp32

    def set_half(self, dtype: torch.dtype | None) -> None:
        """Run the network under autocast to ``dtype`` (bf16 / fp16), or in fp32 with None; clears the cache.

        In half precision the image encoder's convolutions also run channels-last (measured faster on the CPU;
        the usual layout for bf16 convolutions on GPUs); fp32 keeps the standard layout, whose results are
        bit-identical to the reference's.
        """
        if dtype != self.half_dtype:
            self.half_dtype = dtype
            self.clear_cache()
            layout = torch.contiguous_format if dtype is None else torch.channels_last
            for module in self._encoder_modules():
                for conv in module.modules():  # only convolutions: other 4-D parameters keep their layout
                    if isinstance(conv, (nn.Conv2d, nn.ConvTranspose2d)):
                        conv.to(memory_format=layout)

    def encoder_layout(self, x: torch.Tensor) -> torch.Tensor:
        """A (B, 3, S, S) encoder input in the memory layout the encoder runs in (channels-last in half precision)."""
        return x if self.half_dtype is None else x.contiguous(memory_format=torch.channels_last)

    def _encoder_modules(self) -> list[nn.Module]:
        """The modules the image encoder pass runs (SAM 2 projects its high-resolution features in the decoder)."""
        if not self.is_sam2:
            return [self.net.image_encoder]
        dec = self.net.sam_mask_decoder
        return [self.net.image_encoder] + [getattr(dec, n) for n in ("conv_s0", "conv_s1") if hasattr(dec, n)]

    def autocast(self):
        """The precision context every network call runs in."""
        if self.half_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.half_dtype)

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    # ------------------------------------------------------------------ preprocessing
    def input_hw(self, orig_hw: tuple[int, int]) -> tuple[int, int]:
        """Size of the resized image inside the network input (before padding)."""
        if self.is_sam2:
            return self.size, self.size
        h, w = orig_hw
        scale = self.size / max(h, w)
        return int(h * scale + 0.5), int(w * scale + 0.5)

    def preprocess(self, image: np.ndarray) -> torch.Tensor:
        """BGR uint8 HxWx3 -> normalised (3, S, S) float32 network input on the model's device.

        SAM 2 uploads the uint8 image first and resizes on the device (on a GPU that is several times faster than
        resizing on the CPU); SAM 1 resizes through PIL on the CPU, as its reference does.
        """
        from torchvision.transforms import functional as TF

        rgb = np.ascontiguousarray(image[..., ::-1])
        if self.is_sam2:
            x = torch.from_numpy(rgb).to(self.device).permute(2, 0, 1).float().div(255.0)
            x = TF.resize(x, [self.size, self.size], antialias=True)
            return TF.normalize(x, SAM2_MEAN, SAM2_STD)
        from PIL import Image

        h, w = self.input_hw(rgb.shape[:2])
        resized = np.asarray(Image.fromarray(rgb).resize((w, h), Image.BILINEAR))
        x = torch.from_numpy(resized.copy()).to(self.device).permute(2, 0, 1).float()
        mean = torch.tensor([123.675, 116.28, 103.53], device=x.device).view(3, 1, 1)
        std = torch.tensor([58.395, 57.12, 57.375], device=x.device).view(3, 1, 1)
        x = (x - mean) / std
        return F.pad(x, (0, self.size - w, 0, self.size - h))

    # ------------------------------------------------------------------ encoding
    @torch.inference_mode()
    def encode(self, images: list[np.ndarray], batch: int = 1) -> list[ImageEmbedding]:
        """Embeddings for BGR images, from the cache when the same image was encoded before.

        Args:
            images: HxWx3 uint8 BGR arrays.
            batch: How many uncached images go through the encoder together.
        """
        keys = [image_key(im) for im in images]
        out: dict[int, ImageEmbedding] = {}
        todo = []
        for i, k in enumerate(keys):
            if k in self._cache:
                self._cache.move_to_end(k)
                out[i] = self._cache[k]
            else:
                todo.append(i)
        for start in range(0, len(todo), max(1, batch)):
            idx = todo[start : start + max(1, batch)]
            x = self.encoder_layout(torch.stack([self.preprocess(images[i]) for i in idx]))
            with self.autocast():
                feats = self._run_encoder(x)
            self.images_encoded += len(idx)
            for j, i in enumerate(idx):
                emb = ImageEmbedding(
                    image_embed=feats[-1][j : j + 1],
                    high_res_feats=[f[j : j + 1] for f in feats[:-1]],
                    orig_hw=tuple(images[i].shape[:2]),
                    input_hw=self.input_hw(images[i].shape[:2]),
                    key=keys[i],
                )
                out[i] = emb
                if self.cache_size:
                    self._cache[keys[i]] = emb
                    while len(self._cache) > self.cache_size:
                        self._cache.popitem(last=False)
        return [out[i] for i in range(len(images))]

    def _run_encoder(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Network input batch -> feature maps, highest resolution first, lowest (the image embedding) last."""
        if not self.is_sam2:
            return [self.net.image_encoder(x)]
        net = self.net
        backbone_out = net.forward_image(x)
        _, vision_feats, _, feat_sizes = net._prepare_backbone_features(backbone_out)
        if net.directly_add_no_mem_embed:
            vision_feats[-1] = vision_feats[-1] + net.no_mem_embed
        b = x.shape[0]
        return [f.permute(1, 2, 0).reshape(b, -1, *s) for f, s in zip(vision_feats, feat_sizes)]

    def clear_cache(self) -> None:
        """Forget every cached embedding."""
        self._cache.clear()

    # ------------------------------------------------------------------ decoding
    def _to_input_coords(self, xy: np.ndarray, orig_hw, input_hw) -> np.ndarray:
        """xy pixel coordinates on the original image -> float32 coordinates in network-input pixels.

        The arithmetic follows each reference: SAM 2 normalises in float32 (``x / w * S``); SAM 1 scales in
        float64 by the resize ratio (``x * (new_w / w)``) and casts afterwards.
        """
        h, w = orig_hw
        ih, iw = input_hw
        if self.is_sam2:
            out = xy.astype(np.float32).copy()
            out[..., 0] = out[..., 0] / w * iw
            out[..., 1] = out[..., 1] / h * ih
            return out
        out = xy.astype(np.float64).copy()
        out[..., 0] = out[..., 0] * (iw / w)
        out[..., 1] = out[..., 1] * (ih / h)
        return out.astype(np.float32)

    def _mask_prompt_logits(self, masks: np.ndarray, is_logits: bool, emb: ImageEmbedding) -> torch.Tensor:
        """(n, h, w) mask prompts -> (n, 1, r, r) low-resolution logits in network-input space."""
        m = torch.from_numpy(np.ascontiguousarray(masks)).float()[:, None]
        if is_logits:
            return m.to(self.device)
        ih, iw = emb.input_hw
        m = F.interpolate(m, size=(ih, iw), mode="bilinear", align_corners=False)
        m = F.pad(m, (0, self.size - iw, 0, self.size - ih))
        m = F.interpolate(m, size=(self.low_res, self.low_res), mode="bilinear", align_corners=False, antialias=True)
        return (m * 20.0 - 10.0).to(self.device)

    @torch.inference_mode()
    def decode(self, emb: ImageEmbedding, prompts: ObjectPrompts, multimask: bool = False) -> Decoded:
        """Masks for every object of ``prompts`` on the embedded image.

        Objects whose prompts have the same structure (number of clicks, box or not, mask or not) are decoded in
        batched calls (a few objects a call on the CPU, see :meth:`decode_clicks`); the structures are kept apart so that no object gets padding tokens the reference
        would not give it, which keeps masks identical to one-object-at-a-time decoding.
        """
        n = len(prompts)
        k = 3 if multimask else 1
        dev = self.device
        masks = torch.zeros((n, k, *emb.orig_hw), dtype=torch.bool, device=dev)
        scores = torch.zeros((n, k), device=dev)
        low = torch.zeros((n, k, self.low_res, self.low_res), device=dev)
        groups: dict[tuple, list[int]] = {}
        has_box, has_mask, npts = prompts.has_box, prompts.has_mask, prompts.num_points
        for i in range(n):
            groups.setdefault((int(npts[i]), bool(has_box[i]), bool(has_mask[i])), []).append(i)
        step = CPU_DECODE_CHUNK if self.device.type == "cpu" else n
        for (p, box, mask), group in groups.items():
            for start in range(0, len(group), step):
                idx = group[start : start + step]
                with self.autocast():
                    lr, sc = self._decode_group(emb, prompts, idx, p, box, mask, multimask)
                masks[idx] = self.postprocess(lr, emb)
                scores[idx] = sc.float()
                low[idx] = torch.clamp(lr, -32.0, 32.0).float()
        return Decoded(masks=masks, scores=scores, low_res_logits=low)

    def _decode_group(self, emb, prompts: ObjectPrompts, idx, p, box, mask, multimask):
        dev = self.device
        sel = np.asarray(idx)
        coords = labels = None
        if p:
            pts = np.stack([prompts.object_points(i)[0] for i in idx])
            lab = np.stack([prompts.object_points(i)[1] for i in idx])
            coords = torch.from_numpy(self._to_input_coords(pts, emb.orig_hw, emb.input_hw)).to(dev)
            labels = torch.from_numpy(lab.astype(np.int32)).to(dev)
        boxes = None
        if box:
            b = self._to_input_coords(prompts.boxes[sel].reshape(-1, 2, 2), emb.orig_hw, emb.input_hw)
            boxes = torch.from_numpy(b).to(dev)
        mask_in = None
        if mask:
            mask_in = self._mask_prompt_logits(prompts.masks[sel], prompts.mask_is_logits, emb)
        m = len(idx)
        if self.is_sam2:
            return self._decode_sam2(emb, coords, labels, boxes, mask_in, m, multimask)
        return self._decode_sam1(emb, coords, labels, boxes, mask_in, m, multimask)

    def _decode_sam2(self, emb, coords, labels, boxes, mask_in, m, multimask):
        net = self.net
        points = None
        if boxes is not None:
            box_labels = torch.tensor([[2, 3]], dtype=torch.int32, device=boxes.device).repeat(m, 1)
            points = (boxes, box_labels)
        if coords is not None:
            points = (coords, labels) if points is None else (
                torch.cat([points[0], coords], 1), torch.cat([points[1], labels], 1))
        if points is None and mask_in is None:
            raise ValueError("an object without points, box or mask cannot be decoded")
        sparse, dense = net.sam_prompt_encoder(points=points, boxes=None, masks=mask_in)
        image_pe = net.sam_prompt_encoder.get_dense_pe()
        if mask_in is None and can_share(net.sam_mask_decoder):
            return decode_shared(net.sam_mask_decoder, emb.image_embed, image_pe, sparse, dense, multimask,
                                 emb.high_res_feats, factored=self.device.type == "cpu")
        low_res, iou, _, _ = net.sam_mask_decoder(
            image_embeddings=emb.image_embed,
            image_pe=image_pe,
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask,
            repeat_image=m > 1,
            high_res_features=emb.high_res_feats,
        )
        return low_res, iou

    def _decode_sam1(self, emb, coords, labels, boxes, mask_in, m, multimask):
        net = self.net
        points = (coords, labels) if coords is not None else None
        sparse, dense = net.prompt_encoder(points=points, boxes=None if boxes is None else boxes.reshape(-1, 4),
                                           masks=mask_in)
        image_pe = net.prompt_encoder.get_dense_pe()
        if mask_in is None and can_share(net.mask_decoder):
            return decode_shared(net.mask_decoder, emb.image_embed, image_pe, sparse, dense, multimask,
                                 factored=self.device.type == "cpu")
        low_res, iou = net.mask_decoder(
            image_embeddings=emb.image_embed,
            image_pe=image_pe,
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask,
        )
        return low_res, iou

    @torch.inference_mode()
    def decode_clicks(self, emb: ImageEmbedding, xy: np.ndarray, multimask: bool = True):
        """One positive click per object, for many objects at once (the automatic mask generator's query).

        Args:
            emb: The embedded image.
            xy: (B, 2) xy pixel coordinates on the embedded image.
            multimask: Three candidates per click (True) or one.

        Returns:
            ``(low_res_logits, iou)``: (B, K, r, r) float logits and (B, K) float predicted IoU, on the model's
            device (K = 3 with multimask, else 1).
        """
        b = len(xy)
        coords = torch.from_numpy(self._to_input_coords(np.asarray(xy).reshape(b, 1, 2), emb.orig_hw, emb.input_hw))
        coords = coords.to(self.device)
        labels = torch.ones((b, 1), dtype=torch.int32, device=self.device)
        decode = self._decode_sam2 if self.is_sam2 else self._decode_sam1
        # On the CPU the decoder is memory-bound: a few objects at a time keep its (objects, 4096, 256) activations
        # in cache, about 1.5x faster than 64 at once. Objects are independent, so the masks do not change.
        step = CPU_DECODE_CHUNK if self.device.type == "cpu" else b
        with self.autocast():
            parts = [decode(emb, coords[i : i + step], labels[i : i + step], None, None, len(coords[i : i + step]),
                            multimask) for i in range(0, b, step)]
        return torch.cat([p[0] for p in parts]).float(), torch.cat([p[1] for p in parts]).float()

    def upsample(self, low_res: torch.Tensor, emb: ImageEmbedding) -> torch.Tensor:
        """(n, k, r, r) logits -> (n, k, H, W) float32 logits at the original image size, as each reference."""
        x = low_res.float()
        if self.is_sam2:
            return F.interpolate(x, size=emb.orig_hw, mode="bilinear", align_corners=False)
        ih, iw = emb.input_hw
        x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        return F.interpolate(x[..., :ih, :iw], size=emb.orig_hw, mode="bilinear", align_corners=False)

    def postprocess(self, low_res: torch.Tensor, emb: ImageEmbedding) -> torch.Tensor:
        """(n, k, r, r) logits -> (n, k, H, W) bool masks at the original image size."""
        return self.upsample(low_res, emb) > 0.0
