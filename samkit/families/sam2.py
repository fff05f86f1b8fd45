"""SAM 2 and SAM 2.1: a Hiera image encoder with a memory for video (Meta's ``sam2``).

The record (:data:`FAMILY`): versions ``"2.1"`` (default) and ``"2.0"``, told apart by the weights (2.1 adds
``no_obj_embed_spatial`` and ``obj_ptr_tpos_proj``); the network is Ultralytics' ``SAM2Model`` with Meta's published
flags for each version; :class:`SAM2Transforms` holds the image, prompt and mask arithmetic of Meta's
``SAM2Transforms``, :class:`SAM2Network` the network calls (the adapter, :mod:`samkit.families.network`).
"""

from __future__ import annotations

import re

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from samkit.families import Family, register
from samkit.families.network import FrameFeatures
from samkit.utils.devices import upload

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def normalize(x: torch.Tensor) -> torch.Tensor:
    """ImageNet normalisation of (..., 3, H, W) float pixels in [0, 1]: torchvision's ``normalize`` arithmetic,
    without its check for a zero deviation (a read of a device value that makes the host wait)."""
    mean = upload(torch.tensor(IMAGENET_MEAN, dtype=x.dtype), x.device).view(-1, 1, 1)
    std = upload(torch.tensor(IMAGENET_STD, dtype=x.dtype), x.device).view(-1, 1, 1)
    return x.sub(mean).div_(std)


class SAM2Transforms:
    """SAM 2 / 2.1 input and output arithmetic, for input side ``size``.

    Attributes:
        size: Network input side ``S`` in pixels.
        low_res: Side of the decoder's mask logits (``S / 4``).
        pred_iou_thresh: The reference automatic mask generator's default predicted-IoU threshold.
        clean_low_res: Whether the reference generator's ``min_mask_region_area`` cleans the low-resolution logits
            (SAM 2) rather than the full-resolution masks (SAM).
    """

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


class SAM2Network:
    """The network adapter of SAM 2 / 2.1 (:mod:`samkit.families.network`): Ultralytics' ``SAM2Model``, called as
    Meta's image and video predictors call theirs. Implements :class:`~samkit.families.network.PromptNetwork` and
    :class:`~samkit.families.network.MemoryNetwork`."""

    def __init__(self, net: nn.Module):
        self.net = net

    @property
    def memory_frames(self) -> int:
        return int(self.net.num_maskmem)

    @property
    def pointer_frames(self) -> int:
        return int(self.net.max_obj_ptrs_in_encoder)

    # ------------------------------------------------------------------ images
    def encode_image(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Feature maps, the image embedding last with the no-memory embedding added (the reference's image
        predictor)."""
        return feature_maps(self.net, self.net.forward_image(x), x.shape[0])

    def decode(self, image_embed: torch.Tensor, high_res: list[torch.Tensor], coords: torch.Tensor | None,
               labels: torch.Tensor | None, boxes: torch.Tensor | None, mask_in: torch.Tensor | None,
               multimask: bool) -> tuple[torch.Tensor, torch.Tensor]:
        return decode_sam2_heads(self.net, image_embed, high_res, coords, labels, boxes, mask_in, multimask)

    # ------------------------------------------------------------------ training
    def decode_heads(self, image_embed, high_res, coords, labels, boxes, mask_in, multimask):
        return decode_sam2_heads(self.net, image_embed, high_res, coords, labels, boxes, mask_in, multimask,
                                 with_scores=True)

    def train_parts(self) -> dict[str, tuple[str, ...]]:
        # the decoder's conv_s0 / conv_s1 project the encoder's high-resolution maps in the encoder pass
        return {"encoder": ("image_encoder.", "sam_mask_decoder.conv_s0.", "sam_mask_decoder.conv_s1.",
                            "no_mem_embed"),
                "prompt": ("sam_prompt_encoder.",), "decoder": ("sam_mask_decoder.",)}

    lora_targets = r".*image_encoder\.trunk\.blocks\.\d+\.attn\.(qkv|proj)"

    # ------------------------------------------------------------------ video
    def encode_frame(self, x: torch.Tensor) -> dict:
        return self.net.forward_image(x)

    def frame_features(self, encoded: dict) -> FrameFeatures:
        out = dict(encoded)
        out["backbone_fpn"], out["vision_pos_enc"] = list(out["backbone_fpn"]), list(out["vision_pos_enc"])
        _, feats, pos, sizes = self.net._prepare_backbone_features(out)
        return FrameFeatures(feats, pos, sizes)

    def track_step(self, frame: int, features: FrameFeatures, outputs: dict, num_frames: int, *, first: bool = False,
                   reverse: bool = False, points: dict | None = None, mask: torch.Tensor | None = None,
                   encode_memory: bool = False, prev_logits: torch.Tensor | None = None) -> dict:
        return self.net.track_step(
            frame_idx=frame, is_init_cond_frame=first, current_vision_feats=features.feats,
            current_vision_pos_embeds=features.pos, feat_sizes=features.sizes, point_inputs=points,
            mask_inputs=mask, output_dict=outputs, num_frames=num_frames, track_in_reverse=reverse,
            run_mem_encoder=encode_memory, prev_sam_mask_logits=prev_logits)

    def encode_memory(self, features: FrameFeatures, masks_high_res: torch.Tensor, object_scores: torch.Tensor,
                      from_points: bool) -> tuple[torch.Tensor, list[torch.Tensor]]:
        return self.net._encode_new_memory(
            current_vision_feats=features.feats, feat_sizes=features.sizes, pred_masks_high_res=masks_high_res,
            object_score_logits=object_scores, is_mask_from_pts=from_points)


def feature_maps(net: nn.Module, backbone_out: dict, b: int) -> list[torch.Tensor]:
    """A SAM 2 model's backbone outputs -> (B, C, h, w) maps, highest resolution first, with the no-memory
    embedding added to the last (the image embedding)."""
    _, vision_feats, _, feat_sizes = net._prepare_backbone_features(backbone_out)
    if net.directly_add_no_mem_embed:
        vision_feats[-1] = vision_feats[-1] + net.no_mem_embed
    return [f.permute(1, 2, 0).reshape(b, -1, *s) for f, s in zip(vision_feats, feat_sizes)]


def decode_sam2_heads(net: nn.Module, image_embed: torch.Tensor, high_res: list[torch.Tensor],
                      coords: torch.Tensor | None, labels: torch.Tensor | None, boxes: torch.Tensor | None,
                      mask_in: torch.Tensor | None, multimask: bool, with_scores: bool = False) -> tuple:
    """SAM 2's prompt encoder and mask decoder on one image (``net``: a ``SAM2Model`` or SAM 3's tracker); see
    :meth:`~samkit.families.network.PromptNetwork.decode` (``with_scores``: also the object-score logits, as
    :meth:`~samkit.families.network.TrainNetwork.decode_heads`). Box corners go first, labelled 2 and 3."""
    b = next(len(t) for t in (coords, boxes, mask_in) if t is not None)
    points = None
    if boxes is not None:
        corner_labels = upload(torch.tensor([[2, 3]], dtype=torch.int32), boxes.device).repeat(b, 1)
        points = (boxes, corner_labels)
    if coords is not None:
        points = (coords, labels) if points is None else (
            torch.cat([points[0], coords], 1), torch.cat([points[1], labels], 1))
    sparse, dense = net.sam_prompt_encoder(points=points, boxes=None, masks=mask_in)
    low_res, iou, _, scores = net.sam_mask_decoder(
        image_embeddings=image_embed, image_pe=net.sam_prompt_encoder.get_dense_pe(),
        sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense, multimask_output=multimask,
        repeat_image=b > 1, high_res_features=high_res)
    return (low_res, iou, scores) if with_scores else (low_res, iou)


def sam2_flags(version: str) -> dict:
    """SAM2Model keyword arguments for SAM 2 ("2.0") or SAM 2.1 ("2.1")."""
    v21 = version == "2.1"
    return dict(
        num_maskmem=7,
        sigmoid_scale_for_mem_enc=20.0,
        sigmoid_bias_for_mem_enc=-10.0,
        use_mask_input_as_output_without_sam=True,
        directly_add_no_mem_embed=True,
        use_high_res_features_in_sam=True,
        multimask_output_in_sam=True,
        iou_prediction_use_sigmoid=True,
        use_obj_ptrs_in_encoder=True,
        # SAM 2.0 has no temporal encoding on object pointers; 2.1 adds a projected, signed one.
        add_tpos_enc_to_obj_ptrs=v21,
        proj_tpos_enc_in_obj_ptrs=v21,
        use_signed_tpos_enc_to_obj_ptrs=v21,
        no_obj_embed_spatial=v21,
        only_obj_ptrs_in_the_past_for_eval=True,
        pred_obj_scores=True,
        pred_obj_scores_mlp=True,
        fixed_no_obj_ptr=True,
        multimask_output_for_tracking=True,
        use_multimask_token_for_obj_ptr=True,
        multimask_min_pt_num=0,
        multimask_max_pt_num=1,
        use_mlp_for_obj_ptr_proj=True,
        # Meta's predictors switch these on at build time for inference.
        binarize_mask_from_pts_for_mem_enc=True,
        sam_mask_decoder_extra_args={
            "dynamic_multimask_via_stability": True,
            "dynamic_multimask_stability_delta": 0.05,
            "dynamic_multimask_stability_thresh": 0.98,
        },
        compile_image_encoder=False,
    )


def build_sam2(arch, version: str) -> nn.Module:
    """Ultralytics' ``SAM2Model`` for a SAM 2 / 2.1 architecture, with the flags of ``version``."""
    from ultralytics.models.sam.modules.blocks import RoPEAttention
    from ultralytics.models.sam.modules.encoders import FpnNeck, Hiera, ImageEncoder, MemoryEncoder
    from ultralytics.models.sam.modules.memory_attention import MemoryAttention, MemoryAttentionLayer
    from ultralytics.models.sam.modules.sam import SAM2Model

    t = arch.trunk
    embed_dim, stages = t["embed_dim"], list(t["stages"])
    # Hiera doubles the channels at each of its 3 stage shifts; the neck takes them deepest first.
    channels = [embed_dim * 2**i for i in range(len(stages))][::-1]
    image_encoder = ImageEncoder(
        trunk=Hiera(
            embed_dim=embed_dim,
            num_heads=t["num_heads"],
            stages=stages,
            global_att_blocks=list(t["global_att_blocks"]),
            window_pos_embed_bkg_spatial_size=list(t["window_pos_embed_bkg_spatial_size"]),
            window_spec=list(t["window_spec"]),
        ),
        neck=FpnNeck(d_model=256, backbone_channel_list=channels, fpn_top_down_levels=[2, 3],
                     fpn_interp_model="nearest"),
        scalp=1,
    )
    feat = arch.image_size // 16
    layer = MemoryAttentionLayer(
        d_model=256,
        dim_feedforward=2048,
        dropout=0.1,
        pos_enc_at_attn=False,
        pos_enc_at_cross_attn_keys=True,
        pos_enc_at_cross_attn_queries=False,
        self_attn=RoPEAttention(embedding_dim=256, num_heads=1, downsample_rate=1, feat_sizes=(feat, feat)),
        cross_attn=RoPEAttention(
            embedding_dim=256, num_heads=1, downsample_rate=1, rope_k_repeat=True, kv_in_dim=64, feat_sizes=(feat, feat)
        ),
    )
    memory_attention = MemoryAttention(d_model=256, pos_enc_at_input=True, num_layers=4, layer=layer)
    return SAM2Model(
        image_encoder=image_encoder,
        memory_attention=memory_attention,
        memory_encoder=MemoryEncoder(out_dim=64),
        image_size=arch.image_size,
        **sam2_flags(version),
    )


def indices(keys, pattern: str) -> list[int]:
    """The sorted distinct integers that ``pattern``'s first group matches at the start of state-dict ``keys`` (the
    block or layer numbers an encoder's weights have)."""
    rx = re.compile(pattern)
    return sorted({int(m.group(1)) for k in keys if (m := rx.match(k))})


def read_signature(state_dict, source: str):
    """The Hiera trunk's patch-embedding width and blocks per stage (the first block of every later stage carries a
    ``proj`` layer that widens the channels), and the version; None when the weights have no Hiera trunk."""
    from samkit.nn.detect import ArchitectureError

    if "image_encoder.trunk.patch_embed.proj.weight" not in state_dict:
        return None
    keys = list(state_dict)
    embed_dim = int(state_dict["image_encoder.trunk.patch_embed.proj.weight"].shape[0])
    blocks = indices(keys, r"image_encoder\.trunk\.blocks\.(\d+)\.")
    if not blocks or blocks != list(range(len(blocks))):
        raise ArchitectureError(f"{source}: SAM 2 Hiera trunk with missing or non-contiguous blocks {blocks}")
    starts = [0] + [i for i in blocks if f"image_encoder.trunk.blocks.{i}.proj.weight" in state_dict]
    stages = tuple(b - a for a, b in zip(starts, starts[1:] + [len(blocks)]))
    has_21 = [k in state_dict for k in ("no_obj_embed_spatial", "obj_ptr_tpos_proj.weight")]
    if any(has_21) and not all(has_21):
        raise ArchitectureError(
            f"{source}: has only one of the SAM 2.1 parameters 'no_obj_embed_spatial' and "
            f"'obj_ptr_tpos_proj.weight'; the checkpoint is damaged or mixes versions"
        )
    return ("sam2", embed_dim, stages), ("2.1" if all(has_21) else "2.0")


FAMILY = register(Family(
    name="sam2",
    versions=("2.1", "2.0"),
    display={"2.1": "SAM 2.1", "2.0": "SAM 2"},
    section="trunk",
    signature=lambda arch: ("sam2", arch.trunk["embed_dim"], tuple(arch.trunk["stages"])),
    read_signature=read_signature,
    build=build_sam2,
    transforms=SAM2Transforms,
    network=SAM2Network,
    capabilities=frozenset({"prompts", "everything", "video", "train"}),
    version_prefixes={"sam2.1_": "2.1", "sam2.0_": "2.0"},
))
