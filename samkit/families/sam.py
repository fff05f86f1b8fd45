"""SAM (ViT image encoders) and MobileSAM (a TinyViT encoder with SAM's decoder): images only, no memory.

Two records, one module: :data:`SAM_FAMILY` and :data:`MOBILE_SAM_FAMILY` share the network wiring
(Ultralytics' ``SAMModel``, called through :class:`SAMNetwork`) and :class:`SAMTransforms`, the arithmetic of Meta's
``ResizeLongestSide`` (the long side resized to the input, padded bottom and right).
"""

from __future__ import annotations

from functools import partial

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from samkit.families import Family, register
from samkit.families.sam2 import SAM2Transforms, indices
from samkit.utils.devices import upload

PIXEL_MEAN, PIXEL_STD = (123.675, 116.28, 103.53), (58.395, 57.12, 57.375)


class SAMTransforms(SAM2Transforms):
    """SAM / MobileSAM input and output arithmetic, for input side ``size`` (no video)."""

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


class SAMNetwork:
    """The network adapter of SAM and MobileSAM (:class:`~samkit.families.network.PromptNetwork`): Ultralytics'
    ``SAMModel``, called as Meta's ``SamPredictor`` calls its model."""

    def __init__(self, net: nn.Module):
        self.net = net

    def encode_image(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [self.net.image_encoder(x)]

    def decode(self, image_embed, high_res, coords, labels, boxes, mask_in, multimask):
        net = self.net
        points = (coords, labels) if coords is not None else None
        sparse, dense = net.prompt_encoder(points=points, boxes=None if boxes is None else boxes.reshape(-1, 4),
                                           masks=mask_in)
        return net.mask_decoder(image_embeddings=image_embed, image_pe=net.prompt_encoder.get_dense_pe(),
                                sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                                multimask_output=multimask)

    def decode_heads(self, image_embed, high_res, coords, labels, boxes, mask_in, multimask):
        low_res, iou = self.decode(image_embed, high_res, coords, labels, boxes, mask_in, multimask)
        return low_res, iou, None  # no object-score head

    def train_parts(self) -> dict[str, tuple[str, ...]]:
        return {"encoder": ("image_encoder.",), "prompt": ("prompt_encoder.",), "decoder": ("mask_decoder.",)}

    @property
    def lora_targets(self) -> str:
        """The attention projections of the ViT (SAM) or of TinyViT's transformer layers (MobileSAM)."""
        if hasattr(self.net.image_encoder, "layers"):
            return r".*image_encoder\.layers\.\d+\.blocks\.\d+\.attn\.(qkv|proj)"
        return r".*image_encoder\.blocks\.\d+\.attn\.(qkv|proj)"


def build_sam1(arch, version: str = "1") -> nn.Module:
    """Ultralytics' ``SAMModel`` with a ViT (SAM) or TinyViT (MobileSAM) image encoder."""
    from ultralytics.models.sam.modules.decoders import MaskDecoder
    from ultralytics.models.sam.modules.encoders import ImageEncoderViT, PromptEncoder
    from ultralytics.models.sam.modules.sam import SAMModel
    from ultralytics.models.sam.modules.tiny_encoder import TinyViT
    from ultralytics.models.sam.modules.transformer import TwoWayTransformer

    e, size = arch.encoder, arch.image_size
    if arch.family == MOBILE_SAM:
        encoder = TinyViT(
            img_size=size,
            in_chans=3,
            num_classes=1000,
            embed_dims=list(e["embed_dims"]),
            depths=list(e["depths"]),
            num_heads=list(e["num_heads"]),
            window_sizes=list(e["window_sizes"]),
            mlp_ratio=4.0,
            drop_rate=0.0,
            drop_path_rate=0.0,
            use_checkpoint=False,
            mbconv_expand_ratio=4.0,
            local_conv_size=3,
            layer_lr_decay=0.8,
        )
    else:
        encoder = ImageEncoderViT(
            depth=e["depth"],
            embed_dim=e["embed_dim"],
            img_size=size,
            mlp_ratio=4,
            norm_layer=partial(nn.LayerNorm, eps=1e-6),
            num_heads=e["num_heads"],
            patch_size=16,
            qkv_bias=True,
            use_rel_pos=True,
            global_attn_indexes=list(e["global_attn_indexes"]),
            window_size=14,
            out_chans=256,
        )
    return SAMModel(
        image_encoder=encoder,
        prompt_encoder=PromptEncoder(
            embed_dim=256,
            image_embedding_size=(size // 16, size // 16),
            input_image_size=(size, size),
            mask_in_chans=16,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=2, embedding_dim=256, mlp_dim=2048, num_heads=8),
            transformer_dim=256,
            iou_head_depth=3,
            iou_head_hidden_dim=256,
        ),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )


def read_sam(state_dict, source: str):
    """The ViT's patch-embedding width and its number of blocks; None without a ViT image encoder."""
    if not ("image_encoder.patch_embed.proj.weight" in state_dict
            and "image_encoder.blocks.0.attn.qkv.weight" in state_dict):
        return None
    embed_dim = int(state_dict["image_encoder.patch_embed.proj.weight"].shape[0])
    depth = len(indices(list(state_dict), r"image_encoder\.blocks\.(\d+)\."))
    return ("sam", embed_dim, depth), "1"


def read_mobile_sam(state_dict, source: str):
    """TinyViT's width and depth of each layer; None without a TinyViT image encoder."""
    from samkit.nn.detect import ArchitectureError

    if "image_encoder.patch_embed.seq.2.c.weight" not in state_dict:
        return None
    keys = list(state_dict)
    layers = indices(keys, r"image_encoder\.layers\.(\d+)\.")
    dims = [int(state_dict["image_encoder.patch_embed.seq.2.c.weight"].shape[0])]
    for i in layers[:-1]:
        w = state_dict.get(f"image_encoder.layers.{i}.downsample.conv3.c.weight")
        if w is None:
            raise ArchitectureError(f"{source}: TinyViT layer {i} has no downsample layer")
        dims.append(int(w.shape[0]))
    depths = tuple(len(indices(keys, rf"image_encoder\.layers\.{i}\.blocks\.(\d+)\.")) for i in layers)
    return ("mobile_sam", tuple(dims), depths), "1"


MOBILE_SAM = "mobile_sam"
SAM_FAMILY = register(Family(
    name="sam",
    versions=("1",),
    display={"1": "SAM"},
    section="encoder",
    signature=lambda arch: ("sam", arch.encoder["embed_dim"], arch.encoder["depth"]),
    read_signature=read_sam,
    build=build_sam1,
    transforms=SAMTransforms,
    network=SAMNetwork,
    capabilities=frozenset({"prompts", "everything", "train"}),
))
MOBILE_SAM_FAMILY = register(Family(
    name=MOBILE_SAM,
    versions=("1",),
    display={"1": "MobileSAM"},
    section="encoder",
    signature=lambda arch: (MOBILE_SAM, tuple(arch.encoder["embed_dims"]), tuple(arch.encoder["depths"])),
    read_signature=read_mobile_sam,
    build=build_sam1,
    transforms=SAMTransforms,
    network=SAMNetwork,
    capabilities=frozenset({"prompts", "everything", "train"}),
))
