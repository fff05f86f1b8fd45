"""The network adapter: every call the engines make into a network, typed, one implementation per family.

The engines (:mod:`samkit.engine`) never touch a built network's modules or methods: they hold
``runtime.network``, an object of the family's adapter class (:attr:`samkit.families.Family.network`, made once per
:class:`~samkit.nn.runtime.Runtime` from the built ``nn.Module``), and call only the methods of the protocol their
capability needs:

- :class:`PromptNetwork` (capabilities ``prompts``, ``everything``): encode an image, decode prompts on it;
- :class:`MemoryNetwork` (``video``): encode a frame, one tracking step for a batch of objects, encode a memory;
- :class:`ConceptNetwork` (``concepts``): encode an image for the detector, encode phrases, ground them (the text
  features are an argument: nothing is set on the shared network);
- :class:`ConceptTracker` (``concept_video``): SAM 3's tracker on the detector's frames;
- :class:`TrainNetwork` (``train``): the decoder with every head's output, the parts ``tune=`` unfreezes, where LoRA
  adapters go.

The shipped adapters run the PyTorch modules Ultralytics builds (:class:`~samkit.families.sam2.SAM2Network`,
:class:`~samkit.families.sam.SAMNetwork`, :class:`~samkit.families.sam3.SAM3Network`). A second implementation
(an exported graph set, a training forward) is a class with the same methods, made by the family's ``network``
field; the engines do not change. Shapes use ``B`` objects (or images), ``S`` the input side, ``r`` the side of the
decoder's mask logits, ``HW`` a flattened feature map, ``C`` channels.

Every method runs under the caller's modes (the engines' ``torch.inference_mode()`` and ``runtime.autocast()``;
:mod:`samkit.train`'s gradients and its own autocast): the adapter sets no precision, device or gradient mode of its
own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch


@dataclass(frozen=True)
class FrameFeatures:
    """One frame's features as a memory network takes them.

    Attributes:
        feats: Per level, (HW, B, C) flattened feature maps, highest resolution first.
        pos: Per level, (HW, B, C) positional encodings.
        sizes: Per level, the (h, w) of the map.
    """

    feats: list[torch.Tensor]
    pos: list[torch.Tensor]
    sizes: list[tuple[int, int]]

    def expand(self, b: int) -> FrameFeatures:
        """The same features for ``b`` objects (views, no copy); ``self`` for one."""
        if b == 1:
            return self
        return FrameFeatures([f.expand(-1, b, -1) for f in self.feats], [p.expand(-1, b, -1) for p in self.pos],
                             self.sizes)


@runtime_checkable
class PromptNetwork(Protocol):
    """Prompts on images: the image encoder and the prompt decoder."""

    def encode_image(self, x: torch.Tensor) -> list[torch.Tensor]:
        """(B, 3, S, S) network input -> (B, C, h, w) feature maps, highest resolution first, the image embedding
        last (what :meth:`decode` takes)."""
        ...

    def decode(self, image_embed: torch.Tensor, high_res: list[torch.Tensor], coords: torch.Tensor | None,
               labels: torch.Tensor | None, boxes: torch.Tensor | None, mask_in: torch.Tensor | None,
               multimask: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompts in network-input space for B objects on one image -> ``(low_res_logits (B, K, r, r),
        iou (B, K))``, K = 3 with ``multimask`` else 1. ``coords`` (B, P, 2) with ``labels`` (B, P) (1 positive,
        0 negative), ``boxes`` (B, 2, 2) corners, ``mask_in`` (B, 1, r, r) logits; any may be None (not all)."""
        ...


@runtime_checkable
class MemoryNetwork(PromptNetwork, Protocol):
    """Prompted objects tracked through a video with a memory (SAM 2's ``track_step`` contract).

    An object's memory is ``outputs``: ``{"cond_frame_outputs": {frame: out}, "non_cond_frame_outputs": {frame:
    out}}``, each ``out`` a dict with ``pred_masks`` (B, 1, r, r), ``obj_ptr`` (B, C), ``object_score_logits``
    (B, 1), ``maskmem_features`` and ``maskmem_pos_enc`` (None until encoded), as :meth:`track_step` returns.

    Attributes:
        memory_frames: Frames of memory a step attends to (``num_maskmem``).
        pointer_frames: Frames whose object pointers a step attends to (``max_obj_ptrs_in_encoder``).
    """

    memory_frames: int
    pointer_frames: int

    def encode_frame(self, x: torch.Tensor) -> dict:
        """(1, 3, S, S) frame input -> the backbone outputs (kept by the session, turned into
        :class:`FrameFeatures` by :meth:`frame_features` whenever needed)."""
        ...

    def frame_features(self, encoded: dict) -> FrameFeatures:
        """A frame's :meth:`encode_frame` outputs -> its features (``encoded`` is not changed)."""
        ...

    def track_step(self, frame: int, features: FrameFeatures, outputs: dict, num_frames: int, *, first: bool = False,
                   reverse: bool = False, points: dict | None = None, mask: torch.Tensor | None = None,
                   encode_memory: bool = False, prev_logits: torch.Tensor | None = None) -> dict:
        """One tracking step on ``frame`` for the B objects of ``outputs`` (their memory): ``first`` (a first
        conditioning frame: no memory attended), ``points`` (``point_coords`` (B, P, 2), ``point_labels`` (B, P) in
        network-input pixels, box corners labelled 2 and 3) or ``mask`` (B, 1, S, S) prompts, ``prev_logits``
        (B, 1, r, r) the frame's earlier output for a correction. Returns the new output (``encode_memory``: with its
        memory encoded)."""
        ...

    def encode_memory(self, features: FrameFeatures, masks_high_res: torch.Tensor, object_scores: torch.Tensor,
                      from_points: bool) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The memory of B masks (B, 1, S, S logits) on a frame: ``(maskmem_features, maskmem_pos_enc)``;
        ``from_points``: the masks came from clicks (binarised first, as the reference)."""
        ...


@runtime_checkable
class ConceptNetwork(Protocol):
    """Concepts on images: every instance of a phrase or of exemplar boxes (SAM 3's detector)."""

    def encode_concept_image(self, x: torch.Tensor) -> dict:
        """(1, 3, S, S) input -> the detector backbone's outputs (also what :class:`ConceptTracker` tracks on)."""
        ...

    def encode_text(self, phrases: list[str]) -> dict:
        """Phrases -> ``language_features`` (L, B, D), ``language_mask`` (B, L), ``language_embeds`` (L, B, D)."""
        ...

    def ground(self, encoded: dict, text: dict, boxes: torch.Tensor | None = None,
               box_labels: torch.Tensor | None = None) -> dict:
        """Ground the Q phrases of ``text`` (:meth:`encode_text`) on an image's ``encoded`` features, with E exemplar
        boxes (E, Q, 4) in normalised centre form and their labels (E, Q) (True: positive): ``pred_logits``
        (Q, N, 1), ``presence_logit_dec`` (Q, 1), ``pred_boxes`` (Q, N, 4) normalised centre form, ``pred_masks``
        (Q, N, r, r)."""
        ...


@runtime_checkable
class ConceptTracker(ConceptNetwork, Protocol):
    """SAM 3's tracker, run on the frames the detector encoded (capability ``concept_video``). Memories are
    ``outputs`` dicts as :class:`MemoryNetwork`'s; a stored output also carries ``eff_score`` (its memory score,
    a float), which the tracker's memory selection reads.

    Attributes:
        memory_frames, pointer_frames: As :class:`MemoryNetwork`.
        memory_threshold: The memory score a tracked frame needs to be attended to.
        cond_frames_in_attention: Conditioning frames a step attends to (the nearest).
        pointer_dim: Width of an object pointer.
        image_size: The tracker's input side ``S``.
        memory_mask_size: (h, w) the memory encoder downsamples masks from.
    """

    memory_frames: int
    pointer_frames: int
    memory_threshold: float
    cond_frames_in_attention: int
    pointer_dim: int
    image_size: int
    memory_mask_size: tuple[int, int]

    def tracker_maps(self, encoded: dict) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """A frame's :meth:`encode_concept_image` outputs -> the tracker's feature maps and positional encodings
        (B = 1), as the reference computes them."""
        ...

    def frame_features(self, maps: list[torch.Tensor], pos: list[torch.Tensor], batch: int) -> FrameFeatures:
        """:meth:`tracker_maps`' outputs -> the features of ``batch`` objects."""
        ...

    def track(self, frame: int, features: FrameFeatures, outputs: dict, num_frames: int, reverse: bool = False,
              points: dict | None = None, prev_logits: torch.Tensor | None = None, no_memory: bool = False,
              encode_memory: bool = False) -> dict:
        """One tracking step: ``pred_masks``, ``obj_ptr``, ``object_score_logits``, ``iou_score`` (B,),
        ``eff_iou_score`` (the memory score), and ``maskmem_features`` / ``maskmem_pos_enc`` when
        ``encode_memory``. ``no_memory``: decode attending to no memory (a correction click)."""
        ...

    def mask_output(self, frame: int, features: FrameFeatures, mask: torch.Tensor,
                    num_frames: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """A (1, 1, S, S) mask prompt taken as an object's output: ``(iou (1, K), obj_ptr (1, C),
        object_score_logits (1, 1))``."""
        ...

    def encode_memory(self, features: FrameFeatures, masks_high_res: torch.Tensor, object_scores: torch.Tensor,
                      from_points: bool) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """As :meth:`MemoryNetwork.encode_memory`."""
        ...

    def memory_score(self, object_scores: torch.Tensor, iou: torch.Tensor) -> torch.Tensor:
        """A tracked output's worth as memory (``eff_iou_score``) from its ``object_score_logits`` (B, 1) and
        ``iou_score`` (B,): what :meth:`track` stores, recomputed when objects leave a batch."""
        ...

    def empty_pointer(self) -> torch.Tensor:
        """The object pointer of an empty mask (C,)."""
        ...


@runtime_checkable
class TrainNetwork(PromptNetwork, Protocol):
    """What fine-tuning needs (capability ``train``, :mod:`samkit.train`): the prompt decoder with every head's
    output, the network's parts by parameter name, and where LoRA adapters go. Called with gradients on.

    Attributes:
        lora_targets: A regular expression of the module names (full match) of the image encoder's attention
            projections, where ``lora=r`` puts its adapters.
    """

    lora_targets: str

    def decode_heads(self, image_embed: torch.Tensor, high_res: list[torch.Tensor], coords: torch.Tensor | None,
                     labels: torch.Tensor | None, boxes: torch.Tensor | None, mask_in: torch.Tensor | None,
                     multimask: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """:meth:`PromptNetwork.decode` with the object-score logits (B, 1) as a third output (None for a network
        without an object-score head)."""
        ...

    def train_parts(self) -> dict[str, tuple[str, ...]]:
        """``encoder``, ``prompt``, ``decoder`` -> the parameter-name prefixes of each part (a parameter belongs to
        the first part whose prefix it has, in that order): what ``tune=`` unfreezes."""
        ...


#: Capability -> the protocol an adapter must implement for it.
PROTOCOLS: dict[str, Any] = {
    "prompts": PromptNetwork,
    "everything": PromptNetwork,
    "video": MemoryNetwork,
    "concepts": ConceptNetwork,
    "concept_video": ConceptTracker,
    "train": TrainNetwork,
}


def members(protocol) -> list[str]:
    """The public methods and attributes a protocol declares, its bases' included."""
    names = set()
    for cls in protocol.__mro__:
        if cls in (Protocol, object) or not getattr(cls, "_is_protocol", False):
            continue
        names.update(n for n in (*vars(cls), *getattr(cls, "__annotations__", {})) if not n.startswith("_"))
    return sorted(names)


def missing_members(network: object, capabilities) -> list[str]:
    """The protocol members ``network`` lacks for ``capabilities`` (``Protocol.member``), empty when it has all."""
    missing = set()
    for cap in capabilities:
        proto = PROTOCOLS.get(cap)
        if proto is not None:
            missing.update(f"{proto.__name__}.{n}" for n in members(proto) if not hasattr(network, n))
    return sorted(missing)
