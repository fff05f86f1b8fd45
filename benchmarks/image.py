"""Image benchmarks: encoder, prompting the same image again, segment everything."""

from __future__ import annotations

import contextlib

import cv2
import numpy as np
import torch
from ultralytics import ASSETS

from benchmarks.common import MODELS, Table, interleaved_medians, make_checkpoint


def random_boxes(n: int, hw: tuple[int, int], seed: int = 0) -> np.ndarray:
    """``n`` xyxy boxes inside an image of size ``hw``."""
    rng = np.random.default_rng(seed)
    h, w = hw
    xy = rng.uniform([0, 0], [w * 0.7, h * 0.7], size=(n, 2))
    wh = rng.uniform([w * 0.1, h * 0.1], [w * 0.3, h * 0.3], size=(n, 2))
    return np.concatenate([xy, np.minimum(xy + wh, [w - 1, h - 1])], 1).round()


def run(table: Table, folder, size: str, device: str, half: bool, repeats: int, everything: list[int],
        compile_: bool = False) -> None:
    from samkit import SAM

    config = MODELS[size][0]
    path = make_checkpoint(folder, size)
    image = cv2.imread(str(ASSETS / "bus.jpg"))
    rgb = np.ascontiguousarray(image[..., ::-1])
    tag = f"sam2.1 {size}" + (" bf16" if half else "") + (" compiled" if compile_ else "")
    model = SAM(path, device=device, verbose=False, half=half, compile=compile_) if compile_ else SAM(
        path, device=device, verbose=False, half=half)
    autocast = (torch.autocast(device_type=torch.device(device).type, dtype=model.runtime.half_dtype)
                if half and model.runtime.half_dtype is not None else contextlib.nullcontext())

    ref_pred = ref_model = None
    try:
        from sam2.build_sam import build_sam2
        from sam2.sam2_image_predictor import SAM2ImagePredictor

        ref_model = build_sam2(config, ckpt_path=str(path), device=device)
        ref_pred = SAM2ImagePredictor(ref_model)
    except ImportError:
        print("  (sam2 reference not installed: reference columns left empty)")
    from ultralytics import SAM as UltralyticsSAM

    ul = UltralyticsSAM(str(path))
    ul.to(device)

    threads = torch.get_num_threads()

    def ul_call(**kw):
        try:
            return ul(image, verbose=False, device=device, half=half, **kw)
        finally:
            torch.set_num_threads(threads)  # ultralytics sets cpu_count - 1 threads for the whole process

    ul_call(bboxes=[[10, 10, 100, 100]])  # builds its predictor

    # Encoder alone.
    def ours_encode():
        model.engine.clear_cache()
        model.engine.encode([image])

    def ref_encode():
        with autocast:
            ref_pred.set_image(rgb)

    table.add(tag, "encoder (one image)", **interleaved_medians(
        {"samkit": ours_encode, "reference": ref_encode if ref_pred else None,
         "ultralytics": lambda: ul.predictor.set_image(image)}, device, repeats))

    # Prompting the same image again: samkit hits its embedding cache; the reference keeps its set_image state;
    # ultralytics.SAM re-encodes on every call.
    model(image, bboxes=[[10, 10, 50, 50]])
    if ref_pred:
        ref_encode()
    for n in (1, 10, 100):
        boxes = random_boxes(n, image.shape[:2])

        def ref_predict():
            with autocast:
                ref_pred.predict(box=boxes, multimask_output=False)

        table.add(tag, f"second call, {n} box{'es' if n > 1 else ''}", **interleaved_medians(
            {"samkit": lambda: model(image, bboxes=boxes), "reference": ref_predict if ref_pred else None,
             "ultralytics": lambda: ul_call(bboxes=boxes)}, device, repeats))

    # Segment everything, encoder included, the reference generator's default thresholds.
    for n in everything:
        def ours_everything():
            model.engine.clear_cache()
            model(image, points_per_side=n)

        ref_everything = None
        if ref_model is not None:
            from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator

            gen = SAM2AutomaticMaskGenerator(ref_model, points_per_side=n)

            def ref_generate():
                with autocast:
                    gen.generate(rgb)

            ref_everything = ref_generate

        table.add(tag, f"segment everything {n}x{n}", **interleaved_medians(
            {"samkit": ours_everything, "reference": ref_everything}, device, max(1, repeats // 2),
            warmup=0 if device == "cpu" else 1))
