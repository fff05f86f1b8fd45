"""samkit app in a real browser: Playwright drives headless Chromium (Debian's package; .ci/run installs it) through
the whole flow, reading back the mask pixels the page draws and the files it saves."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

pytest.importorskip("starlette", reason="samkit app needs its extra (pip install -e '.[dev]' installs it)")
pytest.importorskip("uvicorn", reason="samkit app needs its extra (pip install -e '.[dev]' installs it)")

from samkit import SAM  # noqa: E402
from samkit.app import AppServer, open_project  # noqa: E402
from tests.app_helpers import check_coco, check_modes, check_yolo, image_folder, mask_of, record  # noqa: E402
from tests.helpers import moving_square_frames, write_video  # noqa: E402

#: Chromium as this machine's CI runs it: no sandbox (root), and none of its background calls to the network.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def chromium_path() -> str | None:
    return os.environ.get("SAMKIT_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium. Where it is absent the tests skip saying so, except under CI (SAMKIT_REQUIRE_BROWSER=1),
    which installs it and fails instead."""
    required = os.environ.get("SAMKIT_REQUIRE_BROWSER") == "1"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if required:
            raise
        pytest.skip("playwright is not installed (pip install -e '.[dev]')")
    exe = chromium_path()
    if exe is None:
        if required:
            pytest.fail("SAMKIT_REQUIRE_BROWSER=1 but no Chromium: apt-get install chromium (or set SAMKIT_CHROMIUM)")
        pytest.skip("no Chromium on this machine: apt-get install chromium, or set SAMKIT_CHROMIUM to its path")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture(scope="module")
def model(present_ckpt):
    return SAM(str(present_ckpt), device="cpu", verbose=False)


class Page:
    """A tab on the app, with the gestures and read-backs the tests use (image pixel coordinates)."""

    def __init__(self, browser, url: str):
        self.page = browser.new_page(viewport={"width": 1200, "height": 800})
        self.errors: list[str] = []
        self.requests: list[str] = []  # every URL the page asked for
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.open(url)

    def open(self, url: str) -> None:
        self.page.goto(url)
        self.ready()

    def ready(self) -> None:
        self.page.wait_for_selector("body[data-ready='1']", timeout=60_000)
        self.settle()

    def settle(self) -> None:
        """Wait until no request is in flight and the page has drawn what came back."""
        self.page.wait_for_function("document.body.dataset.pending === '0'", timeout=120_000)
        self.page.evaluate("() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)))")

    def screen(self, x: float, y: float) -> tuple[float, float]:
        box = self.page.locator("#marks").bounding_box()
        w, h = self.page.evaluate("[window.samkit.width, window.samkit.height]")
        return box["x"] + (x + 0.5) * box["width"] / w, box["y"] + (y + 0.5) * box["height"] / h  # pixel centres

    def click(self, x: float, y: float, button: str = "left", shift: bool = False) -> None:
        drawn = self.page.evaluate("window.samkit.drawn")
        sx, sy = self.screen(x, y)
        if shift:
            self.page.keyboard.down("Shift")
        self.page.mouse.click(sx, sy, button=button)
        if shift:
            self.page.keyboard.up("Shift")
        self.page.wait_for_function(f"window.samkit.drawn > {drawn}", timeout=120_000)
        self.settle()

    def drag(self, a: tuple[float, float], b: tuple[float, float]) -> None:
        drawn = self.page.evaluate("window.samkit.drawn")
        self.page.mouse.move(*self.screen(*a))
        self.page.mouse.down()
        for t in np.linspace(0.1, 1, 6):
            self.page.mouse.move(*self.screen(a[0] + t * (b[0] - a[0]), a[1] + t * (b[1] - a[1])))
        self.page.mouse.up()
        self.page.wait_for_function(f"window.samkit.drawn > {drawn}", timeout=120_000)
        self.settle()

    def key(self, key: str) -> None:
        self.page.keyboard.press(key)
        self.settle()

    def drawn_mask(self) -> np.ndarray:
        """The pixels the page painted a mask on (alpha > 0 on the masks layer), at image resolution."""
        w, h, alpha = self.page.evaluate("""() => {
            const c = document.getElementById('masks');
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            const a = new Array(c.width * c.height);
            for (let i = 0; i < a.length; i++) a[i] = d[4 * i + 3];
            return [c.width, c.height, a];
        }""")
        return np.asarray(alpha, np.uint8).reshape(h, w) > 0

    def text(self, selector: str) -> str:
        return self.page.locator(selector).inner_text()

    def listed(self) -> list[str]:
        return self.page.locator("#objects li .label").all_inner_texts()


def union(objects: list[dict], hw) -> np.ndarray:
    out = np.zeros(hw, bool)
    for o in objects:
        if o.get("mask"):
            out |= mask_of(o)
    return out


def test_images_whole_flow(browser, model, tmp_path):
    folder = image_folder(tmp_path / "images")
    out = folder / "labels"
    project = open_project(model, folder, format="yolo", names="disc,box")
    with AppServer(project, port=0) as server:
        p = Page(browser, server.url)
        assert p.text("#position") == "1 / 3" and p.text("#name") == "img0.jpg"
        assert not p.drawn_mask().any()
        # a click: the mask drawn is the mask saved, pixel for pixel
        p.click(60, 50)
        objs = record(out, "img0")["objects"]
        assert [o["points"] for o in objs] == [[[60.5, 50.5, 1]]]
        assert objs[0]["mask"] and np.array_equal(p.drawn_mask(), mask_of(objs[0]))
        assert p.listed() == ["#1 disc"]
        # a right click and a shift click: negative clicks on the same (selected) object
        p.click(10, 100, button="right")
        p.click(150, 10, shift=True)
        objs = record(out, "img0")["objects"]
        assert [pt[2] for pt in objs[0]["points"]] == [1, 0, 0] and len(objs) == 1
        assert np.array_equal(p.drawn_mask(), mask_of(objs[0]))
        # a new object from a dragged box
        p.page.click("#new-object")
        p.drag((90, 20), (150, 90))
        objs = record(out, "img0")["objects"]
        assert len(objs) == 2 and objs[1]["points"] == []
        assert np.allclose(objs[1]["box"], [90, 20, 150, 90], atol=1.5)
        assert np.array_equal(p.drawn_mask(), union(objs, (120, 160)))
        project.dataset.flush()  # the labels follow the records in the background
        assert check_yolo(out / "img0.txt", folder / "img0.jpg") == sum(bool(o["mask"]) for o in objs)
        # undo the box, redo it, undo again (keyboard)
        p.key("Control+z")
        assert len(record(out, "img0")["objects"]) == 1
        p.key("Control+Shift+z")
        assert len(record(out, "img0")["objects"]) == 2
        p.page.click("#undo")
        p.settle()
        objs = record(out, "img0")["objects"]
        assert len(objs) == 1 and np.array_equal(p.drawn_mask(), mask_of(objs[0]))
        # hide and show from the list
        p.page.click("#objects li .eye")
        assert not p.drawn_mask().any()
        p.page.click("#objects li .eye")
        assert p.drawn_mask().any()
        # a class typed on the page, given to the selected object
        p.page.fill("#new-name", "wheel")
        p.page.click("#name-form button")
        p.settle()
        p.page.click("#objects li .label")  # select object 1
        p.page.select_option("#cls", "2")
        p.settle()
        assert record(out, "img0")["objects"][0]["cls"] == 2 and p.listed() == ["#1 wheel"]
        # the next image (its embedding was computed in the background meanwhile); #1 hidden here is another
        # object than the next image's #1
        p.page.click("#objects li .eye")
        p.key("d")
        assert p.text("#position") == "2 / 3" and p.listed() == [] and not p.drawn_mask().any()
        p.click(100, 70)
        assert len(record(out, "img1")["objects"]) == 1
        img1 = p.drawn_mask()
        assert img1.any() and np.array_equal(img1, union(record(out, "img1")["objects"], (150, 200)))
        # reload: the same image comes back with its objects, and the first image with its own
        p.open(server.url.split("#")[0] + "#1")
        assert p.text("#position") == "2 / 3" and p.listed() == ["#1 wheel"]  # new objects take the chosen class
        assert np.array_equal(p.drawn_mask(), img1)
        p.key("a")
        assert p.listed() == ["#1 wheel"]
        assert np.array_equal(p.drawn_mask(), mask_of(record(out, "img0")["objects"][0]))
        # export as COCO from the page
        p.page.select_option("#export-format", "coco")
        p.page.click("#export")
        p.settle()
        assert "labels/exports/coco" in p.text("#status")
        assert not p.errors, p.errors
        origin = server.url.split("/?")[0].rstrip("/")
        assert p.requests and all(u.startswith(origin + "/") or u.startswith("data:") for u in p.requests), {
            u for u in p.requests if not u.startswith(origin)}  # the page needs nothing from the internet
        timings = p.page.evaluate("window.samkit.timings")
        assert len(timings) == 5 and all(t > 0 for t in timings)  # four clicks and a box
    got = check_coco(out / "exports" / "coco" / "annotations.json")
    assert sorted(got) == ["img0.jpg", "img1.png"] and [c for c, _ in got["img0.jpg"]] == [2]
    assert check_yolo(out / "img1.txt", folder / "img1.png") == 1
    assert check_yolo(out / "img0.txt", folder / "img0.jpg") == 1
    import yaml

    assert yaml.safe_load((out / "data.yaml").read_text())["names"] == {0: "disc", 1: "box", 2: "wheel"}
    check_modes(out)


def test_video_whole_flow(browser, model, tmp_path):
    (tmp_path / "v").mkdir()
    clip = write_video(tmp_path / "v" / "clip.avi", moving_square_frames(24), codec="MJPG")
    out = clip.parent / "clip_labels"
    project = open_project(model, clip, format="coco")
    with AppServer(project, port=0) as server:
        p = Page(browser, server.url)
        assert p.text("#frames") == "23"  # frames 0-23

        def scrub(k: int):
            drawn = p.page.evaluate("window.samkit.drawn")
            p.page.eval_on_selector("#scrub", f"el => {{ el.value = '{k}'; el.dispatchEvent(new Event('input')); }}")
            p.page.wait_for_function(f"window.samkit.drawn > {drawn} && window.samkit.frame === {k}")
            p.settle()
            assert p.text("#frame") == str(k)

        def saved(k: int) -> np.ndarray:
            return union(record(out, f"clip/{k:06d}")["objects"], (96, 128))

        def track(button: str):
            p.page.click(button)
            p.page.wait_for_function("window.samkit.tracking === null && /tracked/.test("
                                     "document.getElementById('status').textContent)", timeout=120_000)
            p.settle()

        scrub(5)
        p.click(22, 42)  # on the square (x = 10..34 on frame 5)
        assert np.array_equal(p.drawn_mask(), saved(5)) and saved(5).any()
        track("#forward")
        assert p.page.evaluate("window.samkit.frame") == 23 and p.text("#frame") == "23"
        assert np.array_equal(p.drawn_mask(), saved(23))
        assert p.page.evaluate("document.getElementById('progress').value") == 19
        scrub(5)
        track("#back")
        assert p.page.evaluate("window.samkit.frame") == 0
        assert np.array_equal(p.drawn_mask(), saved(0))
        scrub(12)
        assert np.array_equal(p.drawn_mask(), saved(12)) and saved(12).any()
        # a correction on frame 12: a negative click for the selected object (selected since it was made)
        assert p.page.evaluate("window.samkit.selected") == 1
        p.click(120, 90, button="right")
        assert project.prompts[1]["frames"][12]["points"] == [[120.5, 90.5, 0]]
        assert np.array_equal(p.drawn_mask(), saved(12))
        # hide / show
        p.page.click("#objects li .eye")
        assert not p.drawn_mask().any()
        p.page.click("#objects li .eye")
        # reload on frame 12: the objects and the frame's masks come back
        p.open(server.url.split("#")[0] + "#f=12")
        assert p.text("#frame") == "12" and p.listed() == ["#1 object"]
        assert np.array_equal(p.drawn_mask(), saved(12))
        assert not p.errors, p.errors
    got = check_coco(out / "annotations.json")
    assert sorted(got) == [f"images/clip_{k:06d}.jpg" for k in range(24)]
    check_modes(out)


def test_two_tabs_on_different_images(browser, model, tmp_path):
    """Two tabs of one browser, on two images, clicking in turn: each shows and saves only its own objects."""
    folder = image_folder(tmp_path / "images")
    out = folder / "labels"
    project = open_project(model, folder, everything={"points_per_side": 8, "pred_iou_thresh": 0.0,
                                                      "stability_score_thresh": 0.0})
    with AppServer(project, port=0) as server:
        base = server.url.split("#")[0]
        a, b = Page(browser, base + "#0"), Page(browser, base + "#2")
        assert a.text("#name") == "img0.jpg" and b.text("#name") == "img2.jpg"
        a.click(40, 40)
        b.click(50, 50)
        a.click(100, 80, button="right")
        b.page.click("#new-object")
        b.click(20, 80)
        ra, rb = record(out, "img0")["objects"], record(out, "img2")["objects"]
        assert [o["points"] for o in ra] == [[[40.5, 40.5, 1], [100.5, 80.5, 0]]]
        assert [o["points"] for o in rb] == [[[50.5, 50.5, 1]], [[20.5, 80.5, 1]]]
        assert np.array_equal(a.drawn_mask(), union(ra, (120, 160)))
        assert np.array_equal(b.drawn_mask(), union(rb, (100, 100)))
        a.key("Control+z")  # undoes tab a's last click only
        assert [o["points"] for o in record(out, "img0")["objects"]] == [[[40.5, 40.5, 1]]]
        assert len(record(out, "img2")["objects"]) == 2
        b.key("Delete")  # the selected object (#2, made last)
        assert [o["id"] for o in record(out, "img2")["objects"]] == [1] and b.listed() == ["#1 object"]
        assert np.array_equal(b.drawn_mask(), union(record(out, "img2")["objects"], (100, 100)))
        # segment everything, from the button
        b.page.click("#everything")
        b.settle()
        objs = record(out, "img2")["objects"]
        assert len(objs) > 1 and "mask(s) added" in b.text("#status")
        assert np.array_equal(b.drawn_mask(), union(objs, (100, 100)))
        assert not a.errors and not b.errors


def test_phrases_from_the_text_box(browser, tmp_path):
    """SAM 3: a phrase typed in the text box adds every instance found, as objects of a class named after it."""
    pytest.importorskip("open_clip", reason="SAM 3's tokenizer is open_clip's (pip install -e '.[dev]')")
    import torch

    from samkit.nn.build import build_network

    torch.manual_seed(0)
    ckpt = tmp_path / "sam3.pt"
    torch.save({"model": build_network("sam3_test").state_dict()}, ckpt)
    folder = image_folder(tmp_path / "images")
    out = folder / "labels"
    project = open_project(SAM(str(ckpt), device="cpu", verbose=False), folder, conf=0.0, max_det=3)
    with AppServer(project, port=0) as server:
        p = Page(browser, server.url)
        assert p.page.locator("#text-form").is_visible()
        drawn = p.page.evaluate("window.samkit.drawn")
        p.page.fill("#text", "red disc")
        p.page.click("#text-form button")
        p.page.wait_for_function(f"window.samkit.drawn > {drawn}")
        p.settle()
        objs = record(out, "img0")["objects"]
        assert 1 <= len(objs) <= 3 and {o["cls"] for o in objs} == {1}
        assert p.listed() == [f"#{o['id']} red disc" for o in objs]
        assert p.page.locator("#cls option").all_inner_texts() == ["0: object", "1: red disc"]
        assert np.array_equal(p.drawn_mask(), union(objs, (120, 160)))
        assert not p.errors, p.errors
