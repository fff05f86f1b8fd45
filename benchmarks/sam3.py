"""SAM 3 concept prompts: samkit against Ultralytics' ``SAM3SemanticPredictor`` on the same random weights.

Cases (medians of interleaved repeats, bus.jpg):

- **image + first phrase**: a new image and a phrase (samkit with its caches cleared; Ultralytics'
  ``set_image`` then the call);
- **second phrase, same image**: a phrase not seen before on the image already encoded;
- **10 phrases at once** on the image already encoded (phrases not seen before).

Ultralytics' predictor is given the same network (built from the same modules, Ultralytics' own code paths) at
the same input size; its thresholds differ (0.25 and NMS) but do not change the work measured here.
"""

from __future__ import annotations

import itertools
import logging

import torch
from ultralytics import ASSETS

from benchmarks.common import Table, interleaved_medians


def run(table: Table, arch: str, device: str, repeats: int) -> None:
    import cv2
    from ultralytics.models.sam.predict import SAM3SemanticPredictor

    from samkit import SAM
    from samkit.nn import build_network

    logging.getLogger("ultralytics").setLevel(logging.ERROR)
    image = cv2.imread(str(ASSETS / "bus.jpg"))
    model = SAM.untrained(arch, device=device, verbose=False)
    plain = build_network(arch, replacements=False)  # Ultralytics' modules as they are, same weights
    plain.load_state_dict(model.net.state_dict())
    size = model.arch.image_size
    threads = torch.get_num_threads()  # ultralytics sets cpu_count - 1 threads for the whole process: put it back
    pred = SAM3SemanticPredictor(overrides=dict(task="segment", mode="predict", imgsz=size, conf=0.25,
                                                model="sam3.pt", device=device, verbose=False, save=False))
    pred.setup_model(model=plain.detector, verbose=False)
    torch.set_num_threads(threads)

    def ul(fn):
        def call():
            try:
                fn()
            finally:
                torch.set_num_threads(threads)
        return call
    fresh = (f"thing number {i}" for i in itertools.count())  # a phrase never seen before, every call

    def ours_first():
        model.concepts.clear_cache()
        model(image, texts=[next(fresh)], verbose=False)

    @ul
    def theirs_first():
        pred.set_image(image)
        pred(text=[next(fresh)])

    def ours_second():
        model(image, texts=[next(fresh)], verbose=False)

    @ul
    def theirs_second():
        pred(text=[next(fresh)])

    def ours_ten():
        model(image, texts=[next(fresh) for _ in range(10)], verbose=False)

    @ul
    def theirs_ten():
        pred(text=[next(fresh) for _ in range(10)])

    tag = f"sam3 {model.arch.size} ({size} px) concepts"
    with torch.inference_mode():
        t = interleaved_medians({"samkit": ours_first, "ultralytics": theirs_first}, device, repeats)
        table.add(tag, "image + first phrase", samkit=t["samkit"], ultralytics=t["ultralytics"])
        ours_second(), ul(lambda: pred.set_image(image))()  # both have the image encoded from here on
        t = interleaved_medians({"samkit": ours_second, "ultralytics": theirs_second}, device, repeats)
        table.add(tag, "second phrase, same image", samkit=t["samkit"], ultralytics=t["ultralytics"])
        t = interleaved_medians({"samkit": ours_ten, "ultralytics": theirs_ten}, device, repeats)
        table.add(tag, "10 phrases at once, same image", samkit=t["samkit"], ultralytics=t["ultralytics"])
