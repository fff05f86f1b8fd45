"""The app's latency as a person feels it: from a click on the page to the mask drawn, measured in the browser.

Headless Chromium (Playwright) opens ``samkit app`` on bus.jpg (1080x810) with random SAM 2.1 weights of the chosen
size, waits until the image is encoded, then clicks ``--clicks`` times: every fifth click starts a new object,
the others add a positive or negative click to the current one. Each time is ``performance.now()`` at the
pointer's release to the first animation frame after the mask was painted (the page records it in
``window.samkit.timings``): the request, the decoder, the mask's transfer and its painting.

Beside it, the same prompts through ``SAM.predict`` in one Python process (the embedding cached): what the
browser adds to the model's own time. And ``ultralytics.SAM`` called as its users call it, ``model(image,
points=..., labels=...)``, which encodes the image again on every call.

``python -m benchmarks.app_latency [--size t] [--clicks 50]``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from benchmarks.common import command, machine, make_checkpoint

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def percentile(values, q: float) -> float:
    return float(np.percentile(np.asarray(values, float), q))


def click_plan(n: int, hw: tuple[int, int], seed: int = 0) -> list[tuple[float, float, int, bool]]:
    """(x, y, label, new object) for ``n`` clicks inside an image of size ``hw``."""
    rng = np.random.default_rng(seed)
    h, w = hw
    plan = []
    for k in range(n):
        new = k % 5 == 0
        label = 1 if new or rng.random() < 0.7 else 0
        plan.append((float(rng.uniform(0.05, 0.95) * w), float(rng.uniform(0.05, 0.95) * h), label, new))
    return plan


def browser_timings(url: str, plan, chromium: str) -> list[float]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(url)
        page.wait_for_selector("body[data-ready='1']", timeout=300_000)
        page.wait_for_function("document.body.dataset.pending === '0'")
        # after the image is encoded, and the next one too (the app encodes it in the background)
        page.wait_for_function("fetch('/api/status').then((r) => r.json()).then((s) => !s.busy)", polling=200,
                               timeout=300_000)
        box = page.locator("#marks").bounding_box()
        w, h = page.evaluate("[window.samkit.width, window.samkit.height]")
        for x, y, label, new in plan:
            if new:
                page.keyboard.press("n")
            done = page.evaluate("window.samkit.timings.length")
            page.mouse.click(box["x"] + x * box["width"] / w, box["y"] + y * box["height"] / h,
                             button="left" if label else "right")
            page.wait_for_function(f"window.samkit.timings.length > {done}", timeout=120_000)
            time.sleep(0.05)  # a person's pause between clicks
        timings = page.evaluate("window.samkit.timings")
        phases = page.evaluate("window.samkit.phases")
        errors = page.evaluate("window.samkit.errors")
        browser.close()
    if errors:
        raise RuntimeError(f"the page reported errors: {errors}")
    return timings, phases


def python_timings(model, image: np.ndarray, plan) -> list[float]:
    """The same prompts through SAM.predict (cached embedding): each object's clicks so far, as the app sends."""
    out, clicks = [], []
    for x, y, label, new in plan:
        if new:
            clicks = []
        clicks.append([x, y, label])
        prompt = {"points": [c[:2] for c in clicks], "labels": [c[2] for c in clicks]}
        t = time.perf_counter()
        model.predict(image, prompts=[prompt], multimask=len(clicks) == 1, verbose=False)
        out.append((time.perf_counter() - t) * 1000)
    return out


def ultralytics_timings(ckpt: Path, image: np.ndarray, plan, calls: int) -> list[float]:
    from ultralytics import SAM as UltralyticsSAM

    model = UltralyticsSAM(str(ckpt))
    model(image, points=[[10, 10]], labels=[1], verbose=False)  # warm-up
    out = []
    for x, y, label, _ in plan[:calls]:
        t = time.perf_counter()
        model(image, points=[[x, y]], labels=[label or 1], verbose=False)
        out.append((time.perf_counter() - t) * 1000)
    return out


def run(size: str = "t", clicks: int = 50, ultralytics_calls: int = 5, chromium: str = "/usr/bin/chromium") -> str:
    import cv2
    from ultralytics import ASSETS

    from samkit import SAM
    from samkit.app import AppServer, open_project

    warnings.filterwarnings("ignore")
    where = machine()  # before Ultralytics' predictor lowers torch's thread count
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ckpt = make_checkpoint(tmp, size)
        folder = tmp / "images"
        folder.mkdir()
        image = cv2.imread(str(ASSETS / "bus.jpg"))
        cv2.imwrite(str(folder / "bus.jpg"), image)
        cv2.imwrite(str(folder / "zidane.jpg"), cv2.imread(str(ASSETS / "zidane.jpg")))
        model = SAM(str(ckpt), device="cpu", verbose=False)
        plan = click_plan(clicks, image.shape[:2])
        project = open_project(model, folder, format="coco")
        with AppServer(project, port=0) as server:
            page_ms, phases = browser_timings(server.url, plan, chromium)
        python_ms = python_timings(model, image, plan)
        ultra_ms = ultralytics_timings(ckpt, image, plan, ultralytics_calls) if ultralytics_calls else []
    rows = [("samkit app: click to mask drawn (browser)", page_ms),
            ("samkit SAM.predict, same prompts (Python, cached)", python_ms)]
    if ultra_ms:
        rows.append((f"ultralytics.SAM(image, points=...) ({len(ultra_ms)} calls)", ultra_ms))
    p50 = percentile(page_ms, 50)
    lines = [f"Machine: {where}", "", f"Command: `{command().replace('benchmarks', 'benchmarks.app_latency', 1)}`", "",
             f"SAM 2.1 {size} (random weights), bus.jpg 1080x810, {clicks} clicks (a new object every 5th; 30% of "
             "the others negative).", "", "| path | p50 (ms) | p95 (ms) | mean (ms) |", "|---|---|---|---|"]
    for name, ms in rows:
        lines.append(f"| {name} | {percentile(ms, 50):.1f} | {percentile(ms, 95):.1f} | {statistics.mean(ms):.1f} |")
    split = ", ".join(f"{k} {percentile([p[k] for p in phases], 50):.1f} ms" for k in ("request", "paint", "frame"))
    lines += ["", f"Where the browser's time goes (p50): {split} (request: sent to answer parsed; paint: the masks "
                  "painted; frame: to the next animation frame)."]
    lines += ["", f"Target p50 <= 150 ms: {'met' if p50 <= 150 else 'NOT met'} ({p50:.1f} ms). The browser adds "
                  f"{p50 - percentile(python_ms, 50):.1f} ms at the median to the model's own call."]
    if ultra_ms:
        lines.append(f"ultralytics.SAM / samkit app at the median: {percentile(ultra_ms, 50) / p50:.1f}x.")
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.app_latency", description=__doc__.splitlines()[0])
    p.add_argument("--size", default="t", help="SAM 2.1 size: t or b+ (default t)")
    p.add_argument("--clicks", type=int, default=50, help="clicks measured (default 50)")
    p.add_argument("--ultralytics-calls", type=int, default=5, help="ultralytics.SAM calls timed (0: skip)")
    p.add_argument("--chromium", default="/usr/bin/chromium", help="the Chromium to drive (Debian's by default)")
    p.add_argument("--out", default=None, help="markdown file to write (default: print only)")
    args = p.parse_args(argv)
    text = run(args.size, args.clicks, args.ultralytics_calls, args.chromium)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
