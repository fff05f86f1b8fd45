"""SAM 3: a concept detector (ViT, text encoder, DETR-style decoder with a presence token) and a SAM 2-style
tracker on its image features (Meta's ``sam3``).

The record (:data:`FAMILY`): one version, ``"3"``; the network is built by :mod:`samkit.families.sam3_net` from
Ultralytics' SAM 3 modules with every size from the registry; its checkpoints (``sam3.pt``) are mapped onto the
network by :func:`~samkit.families.sam3_net.network_state_dict`; :class:`SAM3Transforms` stretches the image to the
square input and maps exemplar boxes and detections; :class:`SAM3Network` makes the network calls. Its ViT needs
``timm`` (the ``sam3`` extra).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from samkit.families import Family, register
from samkit.families.network import FrameFeatures
from samkit.families.sam2 import SAM2Transforms, decode_sam2_heads, feature_maps
from samkit.utils.devices import upload


class SAM3Transforms(SAM2Transforms):
    """SAM 3: the image stretched to the square input (Meta's processor: bilinear with antialiasing on the uint8
    image, then /255 and (x - 0.5) / 0.5). Text and exemplar prompts go to the concept detector
    (:mod:`samkit.engine.concepts`: boxes in normalised centre form, detections back to image pixels); clicks, boxes
    and masks to the tracker's SAM 2 heads on the vision backbone's SAM 2 neck, as Meta's ``predict_inst``."""

    patch = 14  # the ViT's patch: the tracker's low-resolution masks are 4x its token grid
    #: Meta's SAM 3 image predictor fills background holes of up to this many low-resolution pixels (8-connected)
    #: with a mask score of 10 before upsampling (``SAM3InteractiveImagePredictor(max_hole_area=256)``).
    hole_area, hole_score = 256, 10.0

    def __init__(self, size: int):
        super().__init__(size)
        self.low_res = size // self.patch * 4

    def input_hw(self, orig_hw: tuple[int, int]) -> tuple[int, int]:
        return self.size, self.size  # stretched, not letterboxed

    def logits_to_image(self, low_res: torch.Tensor, orig_hw: tuple[int, int]) -> torch.Tensor:
        """The reference's post-processing: small background holes filled on the low-resolution logits, then
        upsampled (the logits a Results keeps are the unfilled ones, as the reference returns them)."""
        from samkit.ops import fill_holes

        n, k, r, _ = low_res.shape
        filled = fill_holes(low_res.float().reshape(n * k, 1, r, r), self.hole_area, value=self.hole_score)
        return super().logits_to_image(filled.reshape(n, k, r, r), orig_hw)

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


class SAM3Network:
    """The network adapter of SAM 3 (:mod:`samkit.families.network`): clicks, boxes and masks on images go to the
    tracker's SAM 2 heads on the vision backbone's SAM 2 neck (Meta's ``predict_inst``,
    :class:`~samkit.families.network.PromptNetwork`); phrases and exemplars to the detector
    (:class:`~samkit.families.network.ConceptNetwork`); video to the tracker on the detector's frames
    (:class:`~samkit.families.network.ConceptTracker`)."""

    def __init__(self, net: nn.Module):
        self.net = net
        self.detector = net.detector
        self.tracker = net.tracker

    # ------------------------------------------------------------------ prompts on images
    def encode_image(self, x: torch.Tensor) -> list[torch.Tensor]:
        dec = self.tracker.sam_mask_decoder
        backbone_out = self.detector.backbone.forward_image_sam2(x)
        fpn = backbone_out["backbone_fpn"]
        fpn[0], fpn[1] = dec.conv_s0(fpn[0]), dec.conv_s1(fpn[1])
        return feature_maps(self.tracker, backbone_out, x.shape[0])

    def decode(self, image_embed, high_res, coords, labels, boxes, mask_in, multimask):
        return decode_sam2_heads(self.tracker, image_embed, high_res, coords, labels, boxes, mask_in, multimask)

    # ------------------------------------------------------------------ concepts
    def encode_concept_image(self, x: torch.Tensor) -> dict:
        return self.detector.backbone.forward_image(x)

    def encode_text(self, phrases: list[str]) -> dict:
        out = self.detector.backbone.forward_text(phrases)
        return {k: out[k] for k in ("language_features", "language_mask", "language_embeds")}

    def ground(self, encoded: dict, text: dict, boxes: torch.Tensor | None = None,
               box_labels: torch.Tensor | None = None) -> dict:
        """Ultralytics' ``forward_grounding`` with the text features in the backbone outputs it is given (it adds
        the network's own ``text_embeddings``, which samkit leaves empty, to them)."""
        from ultralytics.models.sam.sam3.geometry_encoders import Prompt

        q = text["language_mask"].shape[0]
        dev = text["language_mask"].device
        prompt = Prompt(box_embeddings=torch.zeros(0, q, 4, device=dev),
                        box_mask=torch.zeros(q, 0, dtype=torch.bool, device=dev))
        if boxes is not None and len(boxes):
            prompt.append_boxes(boxes, box_labels)
        backbone_out = {k: (list(v) if isinstance(v, list) else v) for k, v in encoded.items()}
        backbone_out.update(text)
        out = self.detector.forward_grounding(backbone_out, text_ids=torch.arange(q, device=dev),
                                              geometric_prompt=prompt)
        return {k: out[k] for k in ("pred_logits", "presence_logit_dec", "pred_boxes", "pred_masks")}

    # ------------------------------------------------------------------ the tracker
    @property
    def memory_frames(self) -> int:
        return int(self.tracker.num_maskmem)

    @property
    def pointer_frames(self) -> int:
        return int(self.tracker.max_obj_ptrs_in_encoder)

    @property
    def memory_threshold(self) -> float:
        from samkit.families.sam3_net import MEMORY_THRESHOLD

        return MEMORY_THRESHOLD

    @property
    def cond_frames_in_attention(self) -> int:
        return int(self.tracker.max_cond_frames_in_attn)

    @property
    def pointer_dim(self) -> int:
        return int(self.tracker.hidden_dim)

    @property
    def image_size(self) -> int:
        return int(self.tracker.image_size)

    @property
    def memory_mask_size(self) -> tuple[int, int]:
        return tuple(self.tracker.memory_encoder.mask_downsampler.interpol_size)

    def tracker_maps(self, encoded: dict) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """The SAM 2 neck's maps rounded to bf16 (as the reference stores them), the two finest projected by the
        decoder's high-resolution convolutions."""
        sam2 = encoded["sam2_backbone_out"]
        fpn = [f.to(torch.bfloat16).float() for f in sam2["backbone_fpn"]]
        dec = self.tracker.sam_mask_decoder
        return [dec.conv_s0(fpn[0]), dec.conv_s1(fpn[1]), fpn[2]], list(sam2["vision_pos_enc"])

    def frame_features(self, maps: list[torch.Tensor], pos: list[torch.Tensor], batch: int) -> FrameFeatures:
        out = {"backbone_fpn": list(maps), "vision_pos_enc": list(pos)}
        _, feats, pos, sizes = self.tracker._prepare_backbone_features(out, batch=batch)
        return FrameFeatures(feats, pos, sizes)

    def track(self, frame: int, features: FrameFeatures, outputs: dict, num_frames: int, reverse: bool = False,
              points: dict | None = None, prev_logits: torch.Tensor | None = None, no_memory: bool = False,
              encode_memory: bool = False) -> dict:
        from samkit.families.sam3_net import track

        return track(self.tracker, frame, features.feats, features.pos, features.sizes, outputs, num_frames, reverse,
                     point_inputs=points, prev_logits=prev_logits, no_memory=no_memory, encode_memory=encode_memory)

    def memory_score(self, object_scores: torch.Tensor, iou: torch.Tensor) -> torch.Tensor:
        from samkit.families.sam3_net import memory_score

        return memory_score(object_scores, iou)

    def mask_output(self, frame: int, features: FrameFeatures, mask: torch.Tensor, num_frames: int):
        sam, _, _ = self.tracker._track_step(frame, True, features.feats, features.pos, features.sizes, None, mask,
                                             {}, num_frames, False, None)
        _, _, ious, _, _, obj_ptr, obj_scores = sam
        return ious, obj_ptr, obj_scores

    def encode_memory(self, features: FrameFeatures, masks_high_res: torch.Tensor, object_scores: torch.Tensor,
                      from_points: bool) -> tuple[torch.Tensor, list[torch.Tensor]]:
        return self.tracker._encode_new_memory(features.feats, features.sizes, masks_high_res, object_scores,
                                               from_points)

    def empty_pointer(self) -> torch.Tensor:
        return self.tracker.no_obj_ptr[0]


def _replacements() -> tuple:
    from samkit.families.sam3_net import replacements

    return replacements()


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
    network=SAM3Network,
    capabilities=frozenset({"prompts", "everything", "concepts", "concept_video"}),
    network_tensors=_tensors,
    requires=("sam3", ("timm",), "SAM 3 (Ultralytics' SAM 3 ViT imports timm)"),
    detect_first=True,
    replacements=_replacements,
))
