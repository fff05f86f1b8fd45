"""Meta's SAM 3 video model (``sam3`` 0.1.4, ``Sam3VideoInferenceWithInstanceInteractivity``) in the sizes of a samkit
registry architecture, on the CPU: the oracle of samkit's concept tracking through video (a test-only dependency).

The detector and the tracker come from :mod:`benchmarks.sam3_reference` (the tracker with memory selection, as Meta's
``build_tracker`` builds it). Meta's video code needs four patches on a CPU beyond the image ones, applied only
inside :func:`video_cpu_patches` and undone on exit; each one was found by the failure it names:

4. ``torch.Tensor.cuda`` -> identity, and bfloat16 -> float32 (``sam3_tracker_base.py:657/664``: the stored bf16
   memory features are moved with ``.cuda()``; ``sam3_tracking_predictor.py:303``; on a CPU there is no driver).
   The cast: with no autocast on a CPU, bf16 memory meets fp32 weights in the memory attention ("mat1 and mat2
   must have the same dtype") when no fp32 object pointer promotes the concatenation.
5. ``Sam3TrackerPredictor.init_state`` sets ``storage_device`` to "cuda" (``sam3_tracking_predictor.py:81``): the
   model's device instead.
6. ``sam3.perflib.connected_components.connected_components_cpu`` needs scikit-image (a test dependency, but not
   of Meta's package) and fails on an empty batch: OpenCV's 8-connected labelling instead (the same component sizes
   as scikit-image's default).
7. ``Sam3ImageOnVideoMultiGPU._gather_tensor``: the SAM 2-neck features are cast to bf16 unconditionally
   (``sam3_image.py:839``), and the tracker's fp32 convolutions then fail on a CPU: cast back to fp32 (Meta's bf16
   rounding is kept; samkit rounds the same way).

Frames: :func:`frames_patch` replaces Meta's frame loader by samkit's preprocessed tensors, so that both sides see
the same input (Meta's MP4 loader also skips the /255, facebookresearch/sam3#493).
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch
from torch import nn

from benchmarks import sam3_reference as ref


def cc_cpu(input_tensor: torch.Tensor):
    """Replacement of sam3.perflib.connected_components.connected_components_cpu: OpenCV labelling, and an empty
    batch allowed (the original stacks an empty list -> RuntimeError when a frame has no new detection)."""
    shape = input_tensor.shape
    x = input_tensor.reshape(-1, shape[-2], shape[-1])
    if x.shape[0] == 0:
        z = torch.zeros(shape, dtype=torch.int64, device=input_tensor.device)
        return z, z.clone()
    pairs = [cc_cv2(m) for m in x]
    labels = torch.stack([p[0] for p in pairs]).to(input_tensor.device).view(shape)
    counts = torch.stack([p[1] for p in pairs]).to(input_tensor.device).view(shape)
    return labels, counts


def cc_cv2(values: torch.Tensor):
    """skimage-free replacement of sam3.perflib.connected_components.connected_components_cpu_single."""
    import cv2

    v = values.cpu().numpy().astype(np.uint8)
    num, labels, stats, _ = cv2.connectedComponentsWithStats(v, connectivity=8)
    labels_t = torch.from_numpy(labels.astype(np.int64))
    areas = torch.from_numpy(stats[:, cv2.CC_STAT_AREA].astype(np.int64))
    counts = torch.where(labels_t > 0, areas[labels_t], torch.zeros_like(labels_t))
    return labels_t, counts


@contextlib.contextmanager
def video_cpu_patches():
    """The image patches of :func:`benchmarks.sam3_reference.cpu_patches` and patches 4-7 above."""
    from sam3.model import sam3_image as msi
    from sam3.model import sam3_tracking_predictor as mtp
    from sam3.perflib import connected_components as pcc

    saved = [(torch.Tensor, "cuda", torch.Tensor.cuda),
             (mtp.Sam3TrackerPredictor, "init_state", mtp.Sam3TrackerPredictor.init_state),
             (pcc, "connected_components_cpu", pcc.connected_components_cpu),
             (msi.Sam3ImageOnVideoMultiGPU, "_gather_tensor", msi.Sam3ImageOnVideoMultiGPU._gather_tensor)]
    init_state = mtp.Sam3TrackerPredictor.init_state
    gather = msi.Sam3ImageOnVideoMultiGPU._gather_tensor

    def init_state_cpu(self, *a, **k):
        s = init_state(self, *a, **k)
        s["storage_device"] = self.device
        return s

    def gather_fp32(self, x):
        out, handle = gather(self, x)
        return [t.float() if t.dtype == torch.bfloat16 else t for t in out], handle

    with ref.cpu_patches():
        # bf16 -> fp32 at the .cuda() calls too: the stored bf16 memory features (sam3_tracker_base.py:657) meet fp32
        # weights in the memory attention when no fp32 object pointer is concatenated (on a GPU autocast hides this)
        torch.Tensor.cuda = lambda self, *a, **k: self.float() if self.dtype == torch.bfloat16 else self
        mtp.Sam3TrackerPredictor.init_state = init_state_cpu
        pcc.connected_components_cpu = cc_cpu
        msi.Sam3ImageOnVideoMultiGPU._gather_tensor = gather_fp32
        try:
            yield
        finally:
            for obj, name, value in saved:
                setattr(obj, name, value)


#: build_sam3_video_model(apply_temporal_disambiguation=True), model_builder.py:715-736
DEFAULTS = dict(score_threshold_detection=0.5, assoc_iou_thresh=0.1, det_nms_thresh=0.1, new_det_thresh=0.7,
                hotstart_delay=15, hotstart_unmatch_thresh=8, hotstart_dup_thresh=8,
                suppress_unmatched_only_within_hotstart=True, min_trk_keep_alive=-1, max_trk_keep_alive=30,
                init_trk_keep_alive=30, suppress_overlapping_based_on_recent_occlusion_threshold=0.7,
                suppress_det_close_to_boundary=False, fill_hole_area=16, recondition_every_nth_frame=16,
                masklet_confirmation_enable=False, decrease_trk_keep_alive_for_empty_masklets=False)


def build_video_reference(arch, seed: int = 0, **overrides) -> nn.Module:
    """Meta's ``build_sam3_video_model`` (model_builder.py:649) in the sizes of ``arch``; call inside the patches."""
    from sam3.model.sam3_image import Sam3ImageOnVideoMultiGPU
    from sam3.model.sam3_video_inference import Sam3VideoInferenceWithInstanceInteractivity

    img = ref.build_reference(arch, interactive=False)
    detector = Sam3ImageOnVideoMultiGPU(
        num_feature_levels=1, backbone=img.backbone, transformer=img.transformer,
        segmentation_head=img.segmentation_head, semantic_segmentation_head=None,
        input_geometry_encoder=img.geometry_encoder, use_early_fusion=True, use_dot_prod_scoring=True,
        dot_prod_scoring=img.dot_prod_scoring, supervise_joint_box_scores=True)
    tracker = ref._tracker(arch, memory_selection=True, wrap=False)
    kw = {**DEFAULTS, **overrides}
    model = Sam3VideoInferenceWithInstanceInteractivity(
        detector=detector, tracker=tracker, image_size=arch.image_size, image_mean=(0.5,) * 3,
        image_std=(0.5,) * 3, compile_model=False, **kw)
    ref.fill_random_(model, seed=seed)
    return model.eval()


@contextlib.contextmanager
def frames_patch(frames: torch.Tensor, hw: tuple[int, int]):
    """Meta's ``load_resource_as_video_frames`` returns ``frames`` ((T, 3, S, S), already normalised) and the
    video size ``hw`` for any resource while patched."""
    from sam3.model import sam3_video_inference as svi

    saved = svi.load_resource_as_video_frames

    def load(*a, **k):
        return frames, hw[0], hw[1]

    svi.load_resource_as_video_frames = load
    try:
        yield
    finally:
        svi.load_resource_as_video_frames = saved


@torch.no_grad()
def shape_weights_(model: nn.Module, score: float = -8.0, presence: float = 4.0, offset: float = 4.0) -> None:
    """Give random detector weights detections worth tracking (same change on both sides: it is in the weights).

    Random weights score every query near 0.2 with masks covering most of the image, so nothing passes Meta's
    thresholds (0.5 to keep, 0.7 to start an object) and mask NMS leaves one detection. Scaling the text projection
    of the dot-product scorer by ``score`` spreads the class logits (negative flips their sign: most queries then
    score 0.95+), a presence bias of ``presence`` makes the concept present, and a constant pixel-embedding channel
    with a query weight of ``-offset`` shrinks every mask to its query's strongest region, so several detections
    survive NMS and are tracked, matched, removed and re-found as with a trained model.
    """
    p = dict(model.named_parameters())
    d = "detector."
    p[d + "dot_prod_scoring.prompt_proj.weight"].mul_(score)
    p[d + "dot_prod_scoring.prompt_proj.bias"].mul_(score)
    p[d + "transformer.decoder.presence_token_head.layers.2.bias"].fill_(presence)
    p[d + "segmentation_head.instance_seg_head.weight"][0].zero_()
    p[d + "segmentation_head.instance_seg_head.bias"][0] = 1.0
    p[d + "segmentation_head.mask_predictor.mask_embed.layers.2.weight"][0].zero_()
    p[d + "segmentation_head.mask_predictor.mask_embed.layers.2.bias"][0] = -offset
