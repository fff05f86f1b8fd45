"""Everything that differs between model families, one class per family (as Meta's ``SAM2Transforms`` and
``ResizeLongestSide``): input size, image to tensor, prompt coordinates to input space, mask prompts, logits back
to the image, and the calls into the family's network (image features, prompt decoding).

- **SAM 2 / 2.1** (:class:`SAM2Transforms`): images resized to a square (``S`` x ``S``, bilinear with antialiasing,
  on the device), normalised with ImageNet statistics in 0-1; video frames resized with PIL's bicubic filter, as
  the reference's frame loader does; coordinates normalised in float32 (``x / w * S``); logits upsampled straight
  to the image size. A box is two corner clicks (labels 2 and 3) before the clicks.
- **SAM and MobileSAM** (:class:`SAMTransforms`): the long side resized to ``S`` (bilinear, through PIL),
  normalised in 0-255, padded bottom and right with zeros; coordinates scaled in float64 by the resize ratio and
  cast afterwards; logits upsampled to ``S``, cropped to the resized image, then upsampled to the image size.

The engines call only these methods, never ask which family they run; a new family is a registry entry, a
builder (:mod:`samkit.nn.build`) and a class here, registered in :data:`TRANSFORMS`.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from samkit.utils.devices import upload

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def normalize(x: torch.Tensor) -> torch.Tensor:
    """ImageNet normalisation of (..., 3, H, W) float pixels in [0, 1]: torchvision's ``normalize`` arithmetic,
    without its check for a zero deviation (a read of a device value that makes the host wait)."""
    mean = upload(torch.tensor(IMAGENET_MEAN, dtype=x.dtype), x.device).view(-1, 1, 1)
    std = upload(torch.tensor(IMAGENET_STD, dtype=x.dtype), x.device).view(-1, 1, 1)
    return x.sub(mean).div_(std)


PIXEL_MEAN, PIXEL_STD = (123.675, 116.28, 103.53), (58.395, 57.12, 57.375)


class SAM2Transforms:
    """SAM 2 / 2.1 input and output arithmetic and network calls, for input side ``size``.

    Attributes:
        size: Network input side ``S`` in pixels.
        low_res: Side of the decoder's mask logits (``S / 4``).
        video: Whether the family tracks video (has a memory).
        pred_iou_thresh: The reference automatic mask generator's default predicted-IoU threshold.
        clean_low_res: Whether the reference generator's ``min_mask_region_area`` cleans the low-resolution logits
            (SAM 2) rather than the full-resolution masks (SAM).
    """

    video = True
    concepts = False  # answers text / exemplar prompts (SAM 3)
    pred_iou_thresh = 0.8
    clean_low_res = True

    def __init__(self, size: int):
        self.size = int(size)
        self.low_res = self.size // 4

    # ------------------------------------------------------------------ images in
    def input_hw(self, orig_hw: tuple[int, int]) -> tuple[int, int]:
        """Size of the resized image inside the network input (before any padding)."""
        return self.size, self.size

    def image_to_input(self, image: np.ndarray, device: torch.device) -> torch.Tensor:
        """BGR uint8 HxWx3 -> normalised (3, S, S) float32 on ``device``; the uint8 image is uploaded first and
        resized there (on a GPU several times faster than on the CPU)."""
        from torchvision.transforms import functional as TF

        rgb = np.ascontiguousarray(image[..., ::-1])
        x = upload(rgb, device, pin=True).permute(2, 0, 1).float().div(255.0)
        return normalize(TF.resize(x, [self.size, self.size], antialias=True))

    def frame_to_input(self, frame: np.ndarray) -> torch.Tensor:
        """A BGR video frame -> (1, 3, S, S) float32 on the CPU: PIL bicubic square resize, /255, ImageNet
        normalisation (the reference's video frame loader)."""
        from PIL import Image

        rgb = np.ascontiguousarray(frame[..., ::-1])
        resized = np.asarray(Image.fromarray(rgb).resize((self.size, self.size), Image.BICUBIC))
        x = torch.from_numpy(resized.copy()).permute(2, 0, 1).float() / 255.0
        return normalize(x)[None]

    # ------------------------------------------------------------------ prompts in
    def coords_to_input(self, xy: np.ndarray, orig_hw: tuple[int, int]) -> np.ndarray:
        """xy pixel coordinates (..., 2) on the original image -> float32 network-input pixels (``x / w * S``)."""
        h, w = orig_hw
        ih, iw = self.input_hw(orig_hw)
        out = xy.astype(np.float32).copy()
        out[..., 0] = out[..., 0] / w * iw
        out[..., 1] = out[..., 1] / h * ih
        return out

    def mask_prompt(self, masks: np.ndarray, is_logits: bool, orig_hw: tuple[int, int],
                    device: torch.device) -> torch.Tensor:
        """(n, h, w) image mask prompts -> (n, 1, r, r) low-resolution logits in network-input space: binary masks
        resized to the input, then (antialiased) to ``r``, mapped to -10 / +10; low-resolution logits as given."""
        m = torch.from_numpy(np.ascontiguousarray(masks)).float()[:, None]
        if is_logits:
            return upload(m, device)
        ih, iw = self.input_hw(orig_hw)
        m = F.interpolate(m, size=(ih, iw), mode="bilinear", align_corners=False)
        m = F.pad(m, (0, self.size - iw, 0, self.size - ih))
        m = F.interpolate(m, size=(self.low_res, self.low_res), mode="bilinear", align_corners=False, antialias=True)
        return upload(m * 20.0 - 10.0, device)

    def frame_mask_prompt(self, mask: torch.Tensor, device: torch.device) -> torch.Tensor:
        """An (H, W) bool mask on a video frame -> (1, 1, S, S) float 0/1 at the network input (antialiased resize,
        then >= 0.5, as the reference's video predictor)."""
        x = upload(mask[None, None].float(), device)
        if tuple(mask.shape) != (self.size, self.size):
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=True)
            x = (x >= 0.5).float()
        return x

    # ------------------------------------------------------------------ masks out
    def logits_to_image(self, low_res: torch.Tensor, orig_hw: tuple[int, int]) -> torch.Tensor:
        """(n, k, r, r) logits -> (n, k, H, W) float32 logits at the original image size."""
        return F.interpolate(low_res.float(), size=orig_hw, mode="bilinear", align_corners=False)

    # ------------------------------------------------------------------ network calls
    def image_features(self, net: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
        """(B, 3, S, S) input -> feature maps, highest resolution first, the image embedding last (with the
        no-memory embedding added, as the reference's image predictor)."""
        return self.feature_maps(net, net.forward_image(x), x.shape[0])

    @staticmethod
    def feature_maps(net: nn.Module, backbone_out: dict, b: int) -> list[torch.Tensor]:
        """A SAM 2 model's backbone outputs -> (B, C, h, w) maps, highest resolution first, with the no-memory
        embedding added to the last (the image embedding)."""
        _, vision_feats, _, feat_sizes = net._prepare_backbone_features(backbone_out)
        if net.directly_add_no_mem_embed:
            vision_feats[-1] = vision_feats[-1] + net.no_mem_embed
        return [f.permute(1, 2, 0).reshape(b, -1, *s) for f, s in zip(vision_feats, feat_sizes)]

    def decode(self, net: nn.Module, image_embed: torch.Tensor, high_res: list[torch.Tensor],
               coords: torch.Tensor | None, labels: torch.Tensor | None, boxes: torch.Tensor | None,
               mask_in: torch.Tensor | None, multimask: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompts in network-input space for B objects on one image -> ``(low_res_logits (B, K, r, r),
        iou (B, K))``. ``boxes`` are (B, 2, 2) corners, ``coords`` (B, P, 2) with ``labels`` (B, P)."""
        b = next(len(t) for t in (coords, boxes, mask_in) if t is not None)
        points = None
        if boxes is not None:
            corner_labels = upload(torch.tensor([[2, 3]], dtype=torch.int32), boxes.device).repeat(b, 1)
            points = (boxes, corner_labels)
        if coords is not None:
            points = (coords, labels) if points is None else (
                torch.cat([points[0], coords], 1), torch.cat([points[1], labels], 1))
        sparse, dense = net.sam_prompt_encoder(points=points, boxes=None, masks=mask_in)
        low_res, iou, _, _ = net.sam_mask_decoder(
            image_embeddings=image_embed, image_pe=net.sam_prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense, multimask_output=multimask,
            repeat_image=b > 1, high_res_features=high_res)
        return low_res, iou


class SAMTransforms(SAM2Transforms):
    """SAM / MobileSAM input and output arithmetic and network calls, for input side ``size`` (no video)."""

    video = False
    pred_iou_thresh = 0.88
    clean_low_res = False

    def input_hw(self, orig_hw: tuple[int, int]) -> tuple[int, int]:
        h, w = orig_hw
        scale = self.size / max(h, w)
        return int(h * scale + 0.5), int(w * scale + 0.5)

    def image_to_input(self, image: np.ndarray, device: torch.device) -> torch.Tensor:
        """BGR uint8 HxWx3 -> (3, S, S) float32 on ``device``: long side resized through PIL on the CPU (as the
        reference), normalised in 0-255, zero-padded bottom and right."""
        from PIL import Image

        rgb = np.ascontiguousarray(image[..., ::-1])
        h, w = self.input_hw(rgb.shape[:2])
        resized = np.asarray(Image.fromarray(rgb).resize((w, h), Image.BILINEAR))
        x = upload(resized.copy(), device, pin=True).permute(2, 0, 1).float()
        x = (x - upload(torch.tensor(PIXEL_MEAN), device).view(3, 1, 1)) / upload(torch.tensor(PIXEL_STD), device).view(
            3, 1, 1)
        return F.pad(x, (0, self.size - w, 0, self.size - h))

    def frame_to_input(self, frame: np.ndarray) -> torch.Tensor:
        raise ValueError("SAM and MobileSAM have no memory: video tracking needs a SAM 2 / 2.1 model")

    frame_mask_prompt = frame_to_input

    def coords_to_input(self, xy: np.ndarray, orig_hw: tuple[int, int]) -> np.ndarray:
        """xy pixels -> float32 network-input pixels, scaled in float64 by the resize ratio (``x * (new_w / w)``)."""
        h, w = orig_hw
        ih, iw = self.input_hw(orig_hw)
        out = xy.astype(np.float64).copy()
        out[..., 0] = out[..., 0] * (iw / w)
        out[..., 1] = out[..., 1] * (ih / h)
        return out.astype(np.float32)

    def logits_to_image(self, low_res: torch.Tensor, orig_hw: tuple[int, int]) -> torch.Tensor:
        ih, iw = self.input_hw(orig_hw)
        x = F.interpolate(low_res.float(), size=(self.size, self.size), mode="bilinear", align_corners=False)
        return F.interpolate(x[..., :ih, :iw], size=orig_hw, mode="bilinear", align_corners=False)

    def image_features(self, net: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
        return [net.image_encoder(x)]

    def decode(self, net, image_embed, high_res, coords, labels, boxes, mask_in, multimask):
        points = (coords, labels) if coords is not None else None
        sparse, dense = net.prompt_encoder(points=points, boxes=None if boxes is None else boxes.reshape(-1, 4),
                                           masks=mask_in)
        return net.mask_decoder(image_embeddings=image_embed, image_pe=net.prompt_encoder.get_dense_pe(),
                                sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                                multimask_output=multimask)


#: Family (the registry's ``family`` of an architecture) -> its transforms class.
class SAM3Transforms(SAM2Transforms):
    """SAM 3: the image stretched to the square input (Meta's processor: bilinear with antialiasing on the uint8
    image, then /255 and (x - 0.5) / 0.5). Text and exemplar prompts go to the concept detector
    (:mod:`samkit.engine.concepts`: boxes in normalised centre form, detections back to image pixels); clicks, boxes
    and masks to the tracker's SAM 2 heads on the vision backbone's SAM 2 neck, as Meta's ``predict_inst``."""

    video = False
    concepts = True
    patch = 14  # the ViT's patch: the tracker's low-resolution masks are 4x its token grid

    def __init__(self, size: int):
        super().__init__(size)
        self.low_res = size // self.patch * 4

    def image_features(self, net: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
        tracker = net.tracker
        backbone_out = net.detector.backbone.forward_image_sam2(x)
        fpn = backbone_out["backbone_fpn"]
        fpn[0], fpn[1] = tracker.sam_mask_decoder.conv_s0(fpn[0]), tracker.sam_mask_decoder.conv_s1(fpn[1])
        return self.feature_maps(tracker, backbone_out, x.shape[0])

    def decode(self, net, image_embed, high_res, coords, labels, boxes, mask_in, multimask):
        return super().decode(net.tracker, image_embed, high_res, coords, labels, boxes, mask_in, multimask)

    def input_hw(self, orig_hw: tuple[int, int]) -> tuple[int, int]:
        return self.size, self.size  # stretched, not letterboxed

    def image_to_input(self, image: np.ndarray, device: torch.device) -> torch.Tensor:
        """BGR uint8 HxWx3 -> (3, S, S) float32 on ``device``."""
        from torchvision.transforms.v2 import InterpolationMode
        from torchvision.transforms.v2 import functional as TF

        rgb = upload(np.ascontiguousarray(image[..., ::-1]), device, pin=True).permute(2, 0, 1)
        x = TF.resize(rgb, [self.size, self.size], interpolation=InterpolationMode.BILINEAR, antialias=True)
        return x.float().div(255.0).sub(0.5).div(0.5)

    def boxes_to_input(self, boxes: np.ndarray, orig_hw: tuple[int, int]) -> torch.Tensor:
        """(N, 4) xyxy pixel boxes -> (N, 4) float32 normalised (cx, cy, w, h), Meta's exemplar form."""
        h, w = orig_hw
        b = torch.as_tensor(np.asarray(boxes, np.float32)).reshape(-1, 4)
        x0, y0, x1, y1 = b.unbind(-1)
        return torch.stack([(x0 + x1) / 2 / w, (y0 + y1) / 2 / h, (x1 - x0) / w, (y1 - y0) / h], -1)

    def boxes_to_image(self, boxes: torch.Tensor, orig_hw: tuple[int, int]) -> torch.Tensor:
        """(N, 4) normalised (cx, cy, w, h) -> (N, 4) xyxy pixels."""
        h, w = orig_hw
        cx, cy, bw, bh = boxes.float().unbind(-1)
        scale = upload(torch.tensor([w, h, w, h], dtype=torch.float32), boxes.device)
        return torch.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], -1) * scale

    def masks_to_image(self, logits: torch.Tensor, orig_hw: tuple[int, int]) -> torch.Tensor:
        """(N, r, r) mask logits -> (N, H, W) bool (bilinear, then sigmoid > 0.5, i.e. logit > 0)."""
        up = F.interpolate(logits.float()[:, None], size=orig_hw, mode="bilinear", align_corners=False)
        return up[:, 0] > 0.0


TRANSFORMS = {"sam2": SAM2Transforms, "sam": SAMTransforms, "mobile_sam": SAMTransforms, "sam3": SAM3Transforms}


def transforms_for(arch) -> SAM2Transforms:
    """The transforms of a registry architecture's family, at its input size."""
    try:
        cls = TRANSFORMS[arch.family]
    except KeyError:
        raise ValueError(f"no transforms for model family {arch.family!r}; known: {sorted(TRANSFORMS)}") from None
    return cls(arch.image_size)
