"""The transforms: what differs between model families in the engines' arithmetic (no network calls: those go
through the family's adapter, :mod:`samkit.families.network`), one object per family.

A family's record (:mod:`samkit.families`) names its transforms class; :func:`transforms_for` makes one for an
architecture's input size. The engines call only its methods and never ask which family they run:

- ``size``, ``low_res`` (sides of the network input and of the decoder's mask logits), ``input_hw(orig_hw)`` (the
  resized image inside the input);
- ``image_to_input(image, device)`` (a BGR image to the normalised network input), ``frame_to_input(frame)`` (a
  video frame, as the family's reference video loader does);
- ``coords_to_input``, ``mask_prompt``, ``frame_mask_prompt`` (prompts into input space), ``logits_to_image``
  (mask logits back to the image);
- ``pred_iou_thresh`` and ``clean_low_res`` (the reference automatic generator's defaults);
- SAM 3 also ``boxes_to_input``, ``boxes_to_image``, ``masks_to_image`` (exemplars and detections).

The shipped classes: :class:`~samkit.families.sam2.SAM2Transforms` (Meta's ``SAM2Transforms``),
:class:`~samkit.families.sam.SAMTransforms` (Meta's ``ResizeLongestSide``) and
:class:`~samkit.families.sam3.SAM3Transforms`.
"""

from __future__ import annotations

from samkit import families


def transforms_for(arch):
    """The transforms of a registry architecture's family, at its input size."""
    return families.of(arch).transforms(arch.image_size)
