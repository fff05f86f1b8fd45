"""The image engine: encode once (cached), decode prompts in batches, masks back at the image size.

The arithmetic that differs between families (input size, resizing, normalisation, coordinates, mask prompts,
upsampling, the network calls) is the family's transforms class (:mod:`samkit.engine.transforms`); the network
and how it runs (device, precision, layout, compilation) belong to the :class:`~samkit.nn.runtime.Runtime`.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

import numpy as np
import torch

from samkit.engine.transforms import transforms_for
from samkit.nn.runtime import Runtime
from samkit.prompts import ObjectPrompts
from samkit.utils.devices import upload
from samkit.utils.lru import LRU

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
        runtime: The network and how it runs (shared with video sessions).
        cache_size: How many image embeddings to keep (least recently used dropped first); 0 disables caching.
    """

    def __init__(self, runtime: Runtime, cache_size: int = 8):
        if not isinstance(cache_size, int) or isinstance(cache_size, bool) or cache_size < 0:
            raise ValueError(f"cache={cache_size!r} must be a non-negative integer (0 disables the cache)")
        self.runtime = runtime
        self.transforms = transforms_for(runtime.arch)
        self.size = self.transforms.size
        self.low_res = self.transforms.low_res
        self.cache_size = cache_size
        self._cache = LRU(cache_size)  # (image key, runtime generation) -> ImageEmbedding
        self.images_encoded = 0  # how many images went through the encoder (cache misses)
        #: Milliseconds per image of the last :meth:`encode`: image to network input, and the rest (the encoder).
        self.timing = {"preprocess": 0.0, "inference": 0.0}

    @property
    def network(self):
        """The family's network adapter (:class:`~samkit.families.network.PromptNetwork`)."""
        return self.runtime.network

    @property
    def device(self) -> torch.device:
        return self.runtime.device

    def input_hw(self, orig_hw: tuple[int, int]) -> tuple[int, int]:
        """Size of the resized image inside the network input (before padding)."""
        return self.transforms.input_hw(orig_hw)

    def preprocess(self, image: np.ndarray) -> torch.Tensor:
        """BGR uint8 HxWx3 -> normalised (3, S, S) float32 network input on the model's device."""
        return self.transforms.image_to_input(image, self.device)

    # ------------------------------------------------------------------ encoding
    @torch.inference_mode()
    def encode(self, images: list[np.ndarray], batch: int = 1) -> list[ImageEmbedding]:
        """Embeddings for BGR images, from the cache when the same image was encoded before (under the same
        runtime settings).

        Args:
            images: HxWx3 uint8 BGR arrays.
            batch: How many uncached images go through the encoder together.
        """
        rt = self.runtime
        t0 = time.perf_counter()
        prep = 0.0
        keys = [image_key(im) for im in images]
        out: dict[int, ImageEmbedding] = {}
        todo = []
        for i, k in enumerate(keys):
            cached = self._cache.get((k, rt.generation))
            if cached is not None:
                out[i] = cached
            else:
                todo.append(i)
        for start in range(0, len(todo), max(1, batch)):
            idx = todo[start : start + max(1, batch)]
            t1 = time.perf_counter()
            x = rt.encoder_layout(torch.stack([self.preprocess(images[i]) for i in idx]))
            prep += time.perf_counter() - t1
            with rt.autocast():
                feats = rt.network.encode_image(x)
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
                self._cache.put((keys[i], rt.generation), emb)
        total = time.perf_counter() - t0
        n = max(1, len(images))
        self.timing = {"preprocess": prep * 1000 / n, "inference": (total - prep) * 1000 / n}
        return [out[i] for i in range(len(images))]

    def clear_cache(self) -> None:
        """Forget every cached embedding."""
        self._cache.clear()

    # ------------------------------------------------------------------ decoding
    @torch.inference_mode()
    def decode(self, emb: ImageEmbedding, prompts: ObjectPrompts, multimask: bool = False) -> Decoded:
        """Masks for every object of ``prompts`` on the embedded image.

        Objects whose prompts have the same structure (number of clicks, box or not, mask or not) are decoded in
        batched calls (a few objects a call on the CPU, see :meth:`decode_clicks`); the structures are kept apart
        so that no object gets padding tokens the reference would not give it, which keeps masks identical to
        one-object-at-a-time decoding.
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
        step = CPU_DECODE_CHUNK if dev.type == "cpu" else n
        for (p, box, mask), group in groups.items():
            if not (p or box or mask):
                raise ValueError("an object without points, box or mask cannot be decoded")
            for start in range(0, len(group), step):
                idx = group[start : start + step]
                with self.runtime.autocast():
                    lr, sc = self._decode_group(emb, prompts, idx, p, box, mask, multimask)
                masks[idx] = self.postprocess(lr, emb)
                scores[idx] = sc.float()
                low[idx] = torch.clamp(lr, -32.0, 32.0).float()
        return Decoded(masks=masks, scores=scores, low_res_logits=low)

    def _decode_group(self, emb, prompts: ObjectPrompts, idx, p, box, mask, multimask):
        dev, t = self.device, self.transforms
        sel = np.asarray(idx)
        coords = labels = boxes = mask_in = None
        if p:
            pts = np.stack([prompts.object_points(i)[0] for i in idx])
            lab = np.stack([prompts.object_points(i)[1] for i in idx])
            coords = upload(t.coords_to_input(pts, emb.orig_hw), dev)
            labels = upload(lab.astype(np.int32), dev)
        if box:
            boxes = upload(t.coords_to_input(prompts.boxes[sel].reshape(-1, 2, 2), emb.orig_hw), dev)
        if mask:
            mask_in = t.mask_prompt(prompts.masks[sel], prompts.mask_is_logits, emb.orig_hw, dev)
        return self.network.decode(emb.image_embed, emb.high_res_feats, coords, labels, boxes, mask_in, multimask)

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
        b, t = len(xy), self.transforms
        coords = upload(t.coords_to_input(np.asarray(xy).reshape(b, 1, 2), emb.orig_hw), self.device)
        labels = torch.ones((b, 1), dtype=torch.int32, device=self.device)
        # On the CPU the decoder is memory-bound: a few objects at a time keep its (objects, 4096, 256) activations
        # in cache, about 1.5x faster than 64 at once. Objects are independent, so the masks do not change.
        step = CPU_DECODE_CHUNK if self.device.type == "cpu" else b
        with self.runtime.autocast():
            parts = [self.network.decode(emb.image_embed, emb.high_res_feats, coords[i : i + step],
                                         labels[i : i + step], None, None, multimask) for i in range(0, b, step)]
        return torch.cat([p[0] for p in parts]).float(), torch.cat([p[1] for p in parts]).float()

    def upsample(self, low_res: torch.Tensor, emb: ImageEmbedding) -> torch.Tensor:
        """(n, k, r, r) logits -> (n, k, H, W) float32 logits at the original image size, as each reference."""
        return self.transforms.logits_to_image(low_res, emb.orig_hw)

    def postprocess(self, low_res: torch.Tensor, emb: ImageEmbedding) -> torch.Tensor:
        """(n, k, r, r) logits -> (n, k, H, W) bool masks at the original image size."""
        return self.upsample(low_res, emb) > 0.0
