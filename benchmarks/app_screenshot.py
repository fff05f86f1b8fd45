"""The README's picture of ``samkit app``: the page in headless Chromium after a few clicks and a box on bus.jpg.

``python -m benchmarks.app_screenshot [--out assets/app.jpg] [--weights sam2.1_t.pt]``. Without ``--weights``
the model has random SAM 2.1 tiny weights (the published ones cannot be downloaded everywhere), so its masks are
noise; with real weights the same script shows real masks.
"""

from __future__ import annotations

import argparse
import tempfile
import warnings
from pathlib import Path

from benchmarks.app_latency import CHROMIUM_ARGS
from benchmarks.common import make_checkpoint


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.app_screenshot", description=__doc__.splitlines()[0])
    p.add_argument("--out", default="assets/app.jpg")
    p.add_argument("--weights", default=None, help="a SAM checkpoint (default: random SAM 2.1 tiny weights)")
    p.add_argument("--chromium", default="/usr/bin/chromium")
    args = p.parse_args(argv)
    warnings.filterwarnings("ignore")
    import cv2
    from playwright.sync_api import sync_playwright
    from ultralytics import ASSETS

    from samkit import SAM
    from samkit.app import AppServer, open_project

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        weights = args.weights or make_checkpoint(tmp, "t")
        folder = tmp / "street"
        folder.mkdir()
        for name in ("bus.jpg", "zidane.jpg"):
            cv2.imwrite(str(folder / name), cv2.imread(str(ASSETS / name)))
        project = open_project(SAM(str(weights), device="cpu", verbose=False), folder, format="coco",
                               names="person,bus")
        with AppServer(project, port=0) as server, sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS, headless=True)
            page = browser.new_page(viewport={"width": 1280, "height": 760})
            page.goto(server.url)
            page.wait_for_selector("body[data-ready='1']", timeout=300_000)
            box = page.locator("#marks").bounding_box()

            def at(x, y):
                return box["x"] + x * box["width"] / 810, box["y"] + y * box["height"] / 1080

            def settle(n):
                page.wait_for_function(f"window.samkit.timings.length >= {n} && document.body.dataset.pending === '0'",
                                       timeout=120_000)

            page.mouse.click(*at(150, 640))  # the man on the left
            settle(1)
            page.mouse.click(*at(120, 450))
            settle(2)
            page.mouse.click(*at(400, 300), button="right")
            settle(3)
            page.keyboard.press("n")
            page.select_option("#cls", "1")
            page.mouse.move(*at(20, 230))  # a box around the bus
            page.mouse.down()
            page.mouse.move(*at(400, 500))
            page.mouse.move(*at(805, 770))
            page.mouse.up()
            settle(4)
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=args.out, **({"quality": 85} if args.out.endswith(".jpg") else {}))
            browser.close()
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
