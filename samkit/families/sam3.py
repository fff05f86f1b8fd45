"""SAM 3: a concept detector (ViT, text encoder, DETR-style decoder with a presence token) and a SAM 2-style
tracker on its image features (Meta's ``sam3``).

The record (:data:`FAMILY`): one version, ``"3"``; the network is built by :mod:`samkit.families.sam3_net` from
Ultralytics' SAM 3 modules with every size from the registry; its checkpoints (``sam3.pt``) are mapped onto the
network by :func:`~samkit.families.sam3_net.network_state_dict`; :class:`SAM3Transforms` stretches the image to the
square input and maps exemplar boxes and detections. Its ViT needs ``timm`` (the ``sam3`` extra).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from samkit.families import Family, register
from samkit.families.sam2 import SAM2Transforms
from samkit.utils.devices import upload


class SAM3Transforms(SAM2Transforms):
    """SAM 3: the image stretched to the square input (Meta's processor: bilinear with antialiasing on the uint8
    image, then /255 and (x - 0.5) / 0.5). Text and exemplar prompts go to the concept detector
    (:mod:`samkit.engine.concepts`: boxes in normalised centre form, detections back to image pixels); clicks, boxes
    and masks to the tracker's SAM 2 heads on the vision backbone's SAM 2 neck, as Meta's ``predict_inst``."""

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


def _build(arch, version: str = "3") -> nn.Module:
    from samkit.families.sam3_net import build_sam3

    return build_sam3(arch)


def _read(state_dict, source: str):
    from samkit.families.sam3_net import sam3_signature, with_prefix

    sig = sam3_signature(with_prefix(dict(state_dict)))
    return None if sig is None else (sig, "3")


def _tensors(state_dict: dict) -> dict:
    from samkit.families.sam3_net import network_state_dict

    return network_state_dict(state_dict)


def _signature(arch) -> tuple:
    e = arch.encoder
    return ("sam3", e["embed_dim"], e["depth"], e["d_model"], e["text_width"])


FAMILY = register(Family(
    name="sam3",
    versions=("3",),
    display={"3": "SAM 3"},
    section="encoder",
    signature=_signature,
    read_signature=_read,
    build=_build,
    transforms=SAM3Transforms,
    capabilities=frozenset({"prompts", "everything", "concepts", "concept_video"}),
    network_tensors=_tensors,
    requires=("sam3", ("timm",), "SAM 3 (Ultralytics' SAM 3 ViT imports timm)"),
    detect_first=True,
))
