"""samkit app over HTTP (no browser): editing, saving in every format, reopening, video tracking, and the guard
(host, token, JSON-only writes, size limits, paths). The browser itself is driven in test_app_browser.py."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("starlette", reason="samkit app needs its extra (pip install -e '.[dev]' installs it)")
pytest.importorskip("uvicorn", reason="samkit app needs its extra (pip install -e '.[dev]' installs it)")

from samkit import SAM  # noqa: E402
from samkit.app import AppError, open_project  # noqa: E402
from tests.app_helpers import (  # noqa: E402
    check_coco,
    check_modes,
    check_yolo,
    image_folder,
    mask_of,
    record,
    runs_to_mask,
    served,
)
from tests.helpers import moving_square_frames, write_video  # noqa: E402


@pytest.fixture(scope="module")
def model(present_ckpt):
    return SAM(str(present_ckpt), device="cpu", verbose=False)


def test_click_box_undo_redo_delete_and_yolo_labels(model, tmp_path):
    folder = image_folder(tmp_path / "images")
    project = open_project(model, folder, names="disc,box")
    out = folder / "labels"
    with served(project) as (_, c):
        state = c.get("/api/images/0").json()
        assert (state["width"], state["height"], state["objects"]) == (160, 120, [])
        r = c.post("/api/images/0/object", json={"points": [[60, 50, 1]], "cls": 1}).json()
        (obj,) = r["objects"]
        assert (obj["id"], obj["cls"], obj["points"], r["undo"], r["redo"]) == (1, 1, [[60, 50, 1]], 1, 0)
        saved = record(out, "img0")["objects"][0]
        # what the page paints is the mask saved, pixel for pixel
        assert np.array_equal(runs_to_mask(obj["runs"], (120, 160)), mask_of(saved))
        assert mask_of(saved).any()
        rows = (out / "img0.txt").read_text().splitlines()
        assert len(rows) == 1 and rows[0].split()[0] == "1"
        assert check_yolo(out / "img0.txt", folder / "img0.jpg") == 1
        # a negative click on the same object, then a box for a second object
        r = c.post("/api/images/0/object", json={"id": 1, "points": [[60, 50, 1], [10, 10, 0]]}).json()
        assert r["objects"][0]["points"] == [[60, 50, 1], [10, 10, 0]] and r["changed"] == [1]
        r = c.post("/api/images/0/object", json={"box": [5, 5, 70, 60]}).json()
        assert [o["id"] for o in r["objects"]] == [1, 2] and r["objects"][1]["box"] == [5, 5, 70, 60]
        assert "runs" not in r["objects"][0]  # unchanged masks are not sent again
        assert len((out / "img0.txt").read_text().splitlines()) == 2
        # undo twice: back to one object with one click; redo once
        c.post("/api/images/0/undo", json={})
        r = c.post("/api/images/0/undo", json={}).json()
        assert [o["points"] for o in r["objects"]] == [[[60, 50, 1]]] and (r["undo"], r["redo"]) == (1, 2)
        assert len(record(out, "img0")["objects"]) == 1 and len((out / "img0.txt").read_text().splitlines()) == 1
        r = c.post("/api/images/0/redo", json={}).json()
        assert r["objects"][0]["points"] == [[60, 50, 1], [10, 10, 0]]
        # a new edit drops the redo steps
        r = c.post("/api/images/0/class", json={"id": 1, "cls": 0}).json()
        assert r["objects"][0]["cls"] == 0 and r["redo"] == 0
        assert (out / "img0.txt").read_text().split()[0] == "0"
        r = c.post("/api/images/0/delete", json={"id": 1}).json()
        assert r["objects"] == []
        assert (out / "img0.txt").read_text() == ""
        assert c.post("/api/images/0/redo", json={}).status_code == 409
        # a class typed on the page
        r = c.post("/api/names", json={"name": "wheel"}).json()
        assert r["cls"] == 2 and r["names"] == {"0": "disc", "1": "box", "2": "wheel"}
    import yaml

    assert yaml.safe_load((out / "data.yaml").read_text())["names"] == {0: "disc", 1: "box", 2: "wheel"}
    check_modes(out)


def test_reopen_shows_saved_objects_and_mends_labels(model, tmp_path):
    folder = image_folder(tmp_path / "images")
    with served(open_project(model, folder, format="coco")) as (_, c):
        c.post("/api/images/1/object", json={"points": [[100, 70, 1]]})
        c.post("/api/images/1/object", json={"box": [10, 10, 90, 80]})
        first = c.get("/api/images/1").json()["objects"]
    out = folder / "labels"
    assert len(check_coco(out / "annotations.json")["img1.png"]) == 2
    (out / "annotations.json").unlink()  # as if the server died between the record and the dataset file
    with pytest.raises(AppError, match="holds coco labels; start with format=coco"):
        open_project(model, folder, format="yolo")
    with served(open_project(model, folder, format="coco")) as (_, c):
        again = c.get("/api/images/1").json()["objects"]
        assert again == first  # prompts, classes and masks
        r = c.post("/api/images/1/object", json={"id": 1, "points": [[100, 70, 1], [20, 20, 0]]}).json()
        assert r["objects"][0]["points"][-1] == [20, 20, 0]  # prompts still editable after the restart
    got = check_coco(out / "annotations.json")
    assert len(got["img1.png"]) == 2


def test_one_app_per_dataset_folder(model, tmp_path):
    """A second app on the same folder would overwrite the first one's edits: it is refused until the first stops."""
    folder = image_folder(tmp_path / "images")
    with served(open_project(model, folder)) as (_, c):
        with pytest.raises(AppError, match=rf"labels is being edited by another samkit app \(pid {os.getpid()}\)"):
            open_project(model, folder)
        other = open_project(model, folder, out="second")  # another output folder is another dataset
        other.close()
    open_project(model, folder).close()


def test_ultralytics_dataset_layout(model, tmp_path):
    """Served on <dataset> holding images/, the labels go to <dataset>/labels and data.yaml is one Ultralytics
    trains on."""
    from ultralytics.data.utils import check_det_dataset

    root = tmp_path / "dataset"
    image_folder(root / "images")
    project = open_project(model, root, names="disc,box")
    assert [f.name for f in project.files] == ["img0.jpg", "img1.png", "img2.jpg"]
    with served(project) as (_, c):
        c.post("/api/images/1/object", json={"points": [[100, 70, 1]], "cls": 1})
    assert check_yolo(root / "labels" / "img1.txt", root / "images" / "img1.png") == 1
    data = check_det_dataset(str(root / "data.yaml"))
    assert data["train"] == data["val"] == str(root / "images") and data["names"] == {0: "disc", 1: "box"}
    from ultralytics.data.dataset import YOLODataset

    ds = YOLODataset(img_path=data["train"], data=data, task="segment", augment=False)
    (lab,) = [lb for lb in ds.labels if lb["im_file"].endswith("img1.png")]
    assert lab["cls"].ravel().tolist() == [1.0] and len(lab["segments"]) == 1
    assert not (root / "images" / "labels").exists()


def test_png_format_and_export(model, tmp_path):
    folder = image_folder(tmp_path / "images")
    with served(open_project(model, folder, format="png")) as (_, c):
        r = c.post("/api/images/2/object", json={"box": [10, 10, 60, 60]}).json()
        c.post("/api/images/2/object", json={"points": [[80, 80, 1]]})
        out = folder / "labels"
        assert sorted(p.name for p in out.glob("*.png")) == ["img2_001.png", "img2_002.png"]
        png = cv2.imread(str(out / "img2_001.png"), cv2.IMREAD_UNCHANGED)
        assert png.shape == (100, 100) and set(np.unique(png)) <= {0, 255}
        assert np.array_equal(png > 0, runs_to_mask(r["objects"][0]["runs"], (100, 100)))
        c.post("/api/images/2/delete", json={"id": 1})
        assert sorted(p.name for p in out.glob("*.png")) == ["img2_002.png"]
        for fmt in ("yolo", "coco", "png"):
            got = c.post("/api/export", json={"format": fmt}).json()
            assert got["folder"] == str(out / "exports" / fmt) and got["items"] == 1
        assert c.post("/api/export", json={"format": "voc"}).status_code == 400
    ex = out / "exports"
    assert check_yolo(ex / "yolo" / "img2.txt", folder / "img2.jpg") == 1
    assert list(check_coco(ex / "coco" / "annotations.json")) == ["img2.jpg"]
    assert [p.name for p in (ex / "png").glob("*.png")] == ["img2_002.png"]
    check_modes(out)


def test_two_tabs_on_different_images_do_not_mix(model, tmp_path):
    """Interleaved edits on two images (as two tabs make them): each image keeps its own objects and history."""
    folder = image_folder(tmp_path / "images")
    with served(open_project(model, folder)) as (_, c):
        errors = []

        def tab(i: int, x: int):
            try:
                for k in range(3):
                    c.post(f"/api/images/{i}/object", json={"id": 1, "points": [[x + k, 40, 1]] * (k + 1)})
            except Exception as e:  # reported below
                errors.append(e)

        threads = [threading.Thread(target=tab, args=(i, x)) for i, x in ((0, 30), (1, 50))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        a, b = c.get("/api/images/0").json(), c.get("/api/images/1").json()
        assert a["objects"][0]["points"] == [[32, 40, 1]] * 3 and b["objects"][0]["points"] == [[52, 40, 1]] * 3
        assert a["undo"] == b["undo"] == 3
        c.post("/api/images/1/undo", json={})
        assert c.get("/api/images/0").json()["objects"][0]["points"] == [[32, 40, 1]] * 3


def test_bad_requests_are_refused_with_their_reason(model, tmp_path):
    folder = image_folder(tmp_path / "images")
    with served(open_project(model, folder)) as (_, c):
        def err(r, status):
            assert r.status_code == status, r.text
            return r.json()["error"]

        assert "unknown field(s) 'model'" in err(c.post("/api/images/0/object", json={"model": "/x.pt"}), 400)
        assert "outside the 160x120 image" in err(c.post("/api/images/0/object", json={"points": [[500, 5, 1]]}),
                                                  400)
        assert "label 2 must be 1" in err(c.post("/api/images/0/object", json={"points": [[5, 5, 2]]}), 400)
        assert "finite number" in err(c.post("/api/images/0/object", content=b'{"points": [[NaN, 5, 1]]}',
                                             headers={"content-type": "application/json"}), 400)
        assert "needs a positive click" in err(c.post("/api/images/0/object", json={"points": [[5, 5, 0]]}), 400)
        assert "needs a positive click" in err(c.post("/api/images/0/object", json={"points": []}), 400)
        assert "at most 64" in err(c.post("/api/images/0/object", json={"points": [[5, 5, 1]] * 65}), 400)
        assert "box [3, 3, 3, 9] is empty" in err(c.post("/api/images/0/object", json={"box": [3, 3, 3, 9]}), 400)
        assert "class 7 is not one" in err(c.post("/api/images/0/object", json={"points": [[5, 5, 1]], "cls": 7}),
                                           400)
        assert "image=3 is out of range" in err(c.get("/api/images/3"), 400)
        assert "object 9 is not on this image" in err(c.post("/api/images/0/delete", json={"id": 9}), 404)
        assert "nothing to undo" in err(c.post("/api/images/0/undo", json={}), 409)
        as_json = {"content-type": "application/json"}
        assert "not JSON" in err(c.post("/api/images/0/undo", content=b"{", headers=as_json), 400)
        assert "phrases need a SAM 3 model" in err(c.post("/api/images/0/text", json={"text": "cat"}), 400)
        assert "serves images, not a video" in err(c.get("/api/video/masks/0"), 404)
        # nothing was saved by any of them
        assert not (folder / "labels" / "img0.txt").exists()


def test_guard_host_json_origin_and_size(model, tmp_path):
    folder = image_folder(tmp_path / "images")
    with served(open_project(model, folder)) as (server, c):
        # a page on another site cannot reach the app through a DNS name pointing here
        r = c.get("/api/project", headers={"host": "attacker.example:8765"})
        assert r.status_code == 403 and "attacker.example" in r.json()["error"]
        assert c.get("/api/project", headers={"host": f"LOCALHOST:{server.port}"}).status_code == 200
        assert c.get("/api/project", headers={"host": f"localhost:{server.port}"}).status_code == 200
        # a form posted from another site: not JSON, refused before anything runs
        r = c.post("/api/images/0/object", data={"points": "[[5,5,1]]"})
        assert r.status_code == 415 and "application/json" in r.json()["error"]
        r = c.post("/api/images/0/object", json={"points": [[5, 5, 1]]}, headers={"origin": "http://evil.example"})
        assert r.status_code == 403 and "evil.example" in r.json()["error"]
        assert c.request("DELETE", "/api/images/0").status_code == 405
        # bodies over the limit: declared, and streamed without a length
        big = json.dumps({"points": [[5, 5, 1]] * 40000})
        r = c.post("/api/images/0/object", content=big, headers={"content-type": "application/json"})
        assert r.status_code == 413 and "over the limit" in r.json()["error"]

        def chunks():
            for _ in range(20):
                yield b" " * 65536

        r = c.post("/api/images/0/undo", content=chunks(), headers={"content-type": "application/json"})
        assert r.status_code == 413
        # paths, sent as written (http.client does not tidy them): only the page's files and indexed items
        import http.client

        for path in ("/static/../session.py", "/static/../../cli.py", "/static/..%2fsession.py",
                     "/static/%2e%2e/%2e%2e/cli.py", "/static/%2e%2e%2f%2e%2e%2fcli.py", "/api/images/..%2f..%2fetc",
                     "/static//etc/passwd", "/static/%2fetc%2fpasswd", "/api/images/-1", "/../../../etc/passwd",
                     "/static/app.js/../../server.py"):
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
            conn.request("GET", path, headers={"Host": f"127.0.0.1:{server.port}"})
            r = conn.getresponse()
            body = r.read()
            conn.close()
            assert r.status in (400, 404), (path, r.status)
            assert b"import" not in body and b"root:" not in body, path
        assert c.get("/static/app.js").status_code == 200
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)  # no WebSocket is served
        conn.request("GET", "/api/project", headers={"Host": f"127.0.0.1:{server.port}", "Connection": "Upgrade",
                                                     "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
                                                     "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="})
        assert conn.getresponse().status != 101
        conn.close()
    assert not (folder / "labels" / "img0.txt").exists()


def test_token_and_non_loopback_hosts(model, tmp_path):
    import httpx

    from samkit.app import AppServer

    folder = image_folder(tmp_path / "images")
    project = open_project(model, folder)
    with AppServer(project, host="0.0.0.0", port=0) as server:
        assert server.token and len(server.token) >= 24  # listening beyond loopback always needs a token
        base = f"http://127.0.0.1:{server.port}"
        with httpx.Client(base_url=base) as c:
            r = c.get("/api/project")
            assert r.status_code == 403 and "token" in r.json()["error"]
            assert c.get("/?token=wrong-token").status_code == 403
            assert c.get("/api/project", headers={"x-samkit-token": server.token}).status_code == 200
            r = c.get(f"/?token={server.token}")  # the URL printed: sets the cookie the page then uses
            assert r.status_code == 200 and "samkit_token" in r.headers["set-cookie"]
            assert "SameSite=Strict" in r.headers["set-cookie"] and "HttpOnly" in r.headers["set-cookie"]
            assert c.get("/api/project").status_code == 200  # the cookie
            assert c.post("/api/images/0/object", json={"points": [[5, 5, 1]]}).status_code == 200
        assert server.url == f"http://127.0.0.1:{server.port}/?token={server.token}"
    with pytest.raises(ValueError, match="at least 8 characters"):
        AppServer(project, token="short")


def test_paths_stay_under_the_started_folder(model, tmp_path):
    folder = image_folder(tmp_path / "images")
    outside = image_folder(tmp_path / "elsewhere", sizes=((64, 64),))
    os.symlink(outside / "img0.jpg", folder / "linked.jpg")
    with pytest.raises(ValueError, match=r"out='\.\./x' must be inside"):
        open_project(model, folder, out="../x")
    with pytest.raises(ValueError, match="must be inside"):
        open_project(model, folder, out=str(tmp_path / "abs"))
    with pytest.raises(ValueError, match="is the served folder itself"):
        open_project(model, folder, out=".")
    project = open_project(model, folder)
    assert [f.name for f in project.files] == ["img0.jpg", "img1.png", "img2.jpg"]  # the link is not served
    with pytest.raises(Exception, match="is a file but not a video"):
        open_project(model, folder / "img0.jpg")
    with pytest.raises(Exception, match="does not exist"):
        open_project(model, tmp_path / "nope")
    with pytest.raises(ValueError, match="format='voc'"):
        open_project(model, folder, format="voc")
    (tmp_path / "empty").mkdir()
    with pytest.raises(Exception, match="holds no images"):
        open_project(model, tmp_path / "empty")


def test_next_images_are_encoded_in_the_background(present_ckpt, tmp_path):
    model = SAM(str(present_ckpt), device="cpu", verbose=False)  # an empty embedding cache
    folder = image_folder(tmp_path / "images")
    project = open_project(model, folder)
    with served(project) as (_, c):
        before = model.engine.images_encoded
        c.get("/api/images/1")  # encodes image 1, then 2 and 0 in the background
        deadline = time.time() + 60
        while c.get("/api/status").json()["busy"] and time.time() < deadline:
            time.sleep(0.05)
        assert model.engine.images_encoded - before == 3
        c.post("/api/images/2/object", json={"points": [[50, 50, 1]]})  # next image: no encoding
        assert model.engine.images_encoded - before == 3


def test_everything_adds_objects(model, tmp_path):
    folder = image_folder(tmp_path / "images")
    settings = {"points_per_side": 8, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0}
    with pytest.raises(TypeError, match="'points_per_sid'.*not a segment-everything setting"):
        open_project(model, folder, everything={"points_per_sid": 8})
    with served(open_project(model, folder, everything=settings)) as (_, c):
        r = c.post("/api/images/0/everything", json={"cls": 0}).json()
        want = model.predict(str(folder / "img0.jpg"), verbose=False, **settings)[0]
        assert len(r["objects"]) == len(r["changed"]) == int(want.masks.data.flatten(1).any(1).sum())
        assert len(r["objects"]) >= 1
        c.post("/api/images/0/undo", json={})
        assert c.get("/api/images/0").json()["objects"] == []


def test_phrases_with_sam3(tmp_path):
    """SAM 3: the text box finds every instance of a phrase (one object each, the phrase a class); clicks on an
    instance refine it with SAM 3's tracker heads, as for any SAM."""
    pytest.importorskip("open_clip", reason="SAM 3's tokenizer is open_clip's (pip install -e '.[dev]')")
    import torch

    from samkit.nn.build import build_network

    torch.manual_seed(0)
    ckpt = tmp_path / "sam3.pt"
    torch.save({"model": build_network("sam3_test").state_dict()}, ckpt)
    sam3 = SAM(str(ckpt), device="cpu", verbose=False)
    folder = image_folder(tmp_path / "images")
    with served(open_project(sam3, folder, format="coco", conf=0.0, max_det=3)) as (server, c):
        info = c.get("/api/project").json()
        assert info["features"] == {"texts": True, "everything": True} and info["model"] == "SAM 3"
        r = c.post("/api/images/0/text", json={"text": "red disc"}).json()
        want = sam3.predict(str(folder / "img0.jpg"), texts=["red disc"], conf=0.0, max_det=3, verbose=False)[0]
        n = int(want.masks.data.flatten(1).any(1).sum())
        assert n >= 1 and len(r["objects"]) == len(r["changed"]) == n
        assert {o["cls"] for o in r["objects"]} == {1}  # "object" is class 0; the phrase became class 1
        assert c.get("/api/project").json()["names"] == {"0": "object", "1": "red disc"}
        got = [m for o in record(folder / "labels", "img0")["objects"] for m in [mask_of(o)]]
        assert all(np.array_equal(a, b) for a, b in zip(got, want.masks.data.cpu().numpy()[: len(got)]))
        # each instance keeps its box: a click on it is decoded with the box (the page sends both)
        first = r["objects"][0]
        assert np.allclose(first["box"], want.boxes.xyxy[0].tolist(), atol=0.06)
        x = (first["box"][0] + first["box"][2]) / 2
        y = (first["box"][1] + first["box"][3]) / 2
        body = {"id": first["id"], "points": [[x, y, 1]], "box": first["box"]}
        refined = c.post("/api/images/0/object", json=body).json()
        obj = next(o for o in refined["objects"] if o["id"] == first["id"])
        prompt = {"points": [[x, y]], "labels": [1], "box": first["box"]}
        again = sam3.predict(str(folder / "img0.jpg"), prompts=[prompt], verbose=False)[0]
        assert np.array_equal(mask_of(record(folder / "labels", "img0")["objects"][0]), again.masks.data[0].numpy())
        assert obj["box"] == first["box"] and obj["points"] == [[x, y, 1]]
        r = c.post("/api/images/0/object", json={"points": [[40, 40, 1]]}).json()
        assert r["changed"] == [n + 1] and len(r["objects"]) == n + 1
        assert c.post("/api/images/0/text", json={"text": " "}).status_code == 400
    assert len(check_coco(folder / "labels" / "annotations.json")["img0.jpg"]) == n + 1


# ---------------------------------------------------------------------- video
@pytest.fixture()
def clip(tmp_path) -> Path:
    (tmp_path / "v").mkdir()
    return write_video(tmp_path / "v" / "clip.avi", moving_square_frames(24), codec="MJPG")


def _events(c, body, project=None) -> list[dict]:
    with c.stream("POST", "/api/video/propagate", json=body) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"].startswith("text/event-stream")
        events = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: ")]
    if project is not None:
        project.dataset.flush()
    return events


def test_video_prompt_propagate_both_ways_and_labels(model, clip):
    out = clip.parent / "clip_labels"
    project = open_project(model, clip, names="square")
    with served(project) as (_, c):
        info = c.get("/api/project").json()
        assert (info["kind"], info["frames"], info["width"], info["height"]) == ("video", 24, 128, 96)
        r = c.post("/api/video/prompt", json={"frame": 8, "points": [[30, 40, 1]]}).json()
        assert r["id"] == 1 and r["frame"] == 8 and r["prompts"] == [{"id": 1, "points": [[30, 40, 1]], "box": None}]
        assert runs_to_mask(r["objects"][0]["runs"], (96, 128)).any()
        ev = _events(c, {"start": 8})
        frames = [e["frame"] for e in ev if e["event"] == "frame"]
        assert ev[0] == {"event": "start", "start": 8, "reverse": False, "total": 16}
        assert frames == list(range(8, 24)) and ev[-1]["event"] == "done" and ev[-1]["done"] == 16
        ev = _events(c, {"start": 8, "reverse": True}, project)
        assert [e["frame"] for e in ev if e["event"] == "frame"] == list(range(8, -1, -1))
        # every frame saved: a record and a label file, and the masks endpoint gives back what was streamed
        labels = sorted((out / "labels").glob("clip_*.txt"))
        assert [p.stem for p in labels] == [f"clip_{k:06d}" for k in range(24)]
        streamed = {e["frame"]: e["objects"] for e in ev if e["event"] == "frame"}
        got = c.get("/api/video/masks/3").json()
        assert got["objects"] == streamed[3] and got["prompts"] == []
        # a second object by box on another frame, a correction, then a class change and a deletion
        r = c.post("/api/video/prompt", json={"frame": 20, "box": [60, 20, 110, 70]}).json()
        assert r["id"] == 2 and [o["id"] for o in r["info"]["objects"]] == [1, 2]
        c.post("/api/video/prompt", json={"frame": 20, "id": 1, "points": [[45, 40, 1], [5, 5, 0]]})
        c.post("/api/names", json={"name": "other"})
        c.post("/api/video/class", json={"id": 2, "cls": 1})
        assert [o["cls"] for o in record(out, "clip/000020")["objects"]] == [0, 1]
        assert "1" in {row.split()[0] for row in (out / "labels" / "clip_000020.txt").read_text().splitlines()}
        c.post("/api/video/delete", json={"id": 2})
        assert [o["id"] for o in record(out, "clip/000020")["objects"]] == [1]
    # the frames are the dataset's images, beside the labels, and Ultralytics reads the folder as a dataset
    frames = sorted((out / "images").glob("*.jpg"))
    assert [p.stem for p in frames] == [p.stem for p in labels]
    assert sum(check_yolo(lab, img) for lab, img in zip(labels, frames)) >= 20
    first = cv2.VideoCapture(str(clip)).read()[1]
    assert np.abs(cv2.imread(str(frames[0])).astype(int) - first).mean() < 3
    from ultralytics.data.utils import check_det_dataset

    data = check_det_dataset(str(out / "data.yaml"))
    assert data["train"] == str(out / "images") and data["names"] == {0: "square", 1: "other"}
    check_modes(out)


def test_video_reopen_replays_prompts_and_coco(model, clip):
    out = clip.parent / "clip_labels"
    with served(open_project(model, clip, format="coco")) as (_, c):
        c.post("/api/video/prompt", json={"frame": 0, "points": [[30, 40, 1]]})
        _events(c, {"start": 0, "max_frames": 5})
        before = c.get("/api/video/masks/4").json()
    got = check_coco(out / "annotations.json")
    assert sorted(got) == [f"images/clip_{k:06d}.jpg" for k in range(6)]
    assert all((out / name).is_file() for name in got)  # file names relative to annotations.json
    with served(open_project(model, clip, format="coco")) as (_, c):
        info = c.get("/api/project").json()
        assert info["objects"] == [{"id": 1, "cls": 0, "frames": [0]}]
        assert c.get("/api/video/masks/4").json() == before
        ev = _events(c, {"start": 0, "max_frames": 5})  # the session is rebuilt from the saved prompts
        again = {e["frame"]: e["objects"] for e in ev if e["event"] == "frame"}
        assert again[4] == before["objects"]


def test_val_reads_the_apps_video_dataset(model, clip, tmp_path):
    """samkit val measures tracking on a video dataset the app wrote (COCO with frame, video and track_id)."""
    out = clip.parent / "clip_labels"
    with served(open_project(model, clip, format="coco")) as (_, c):
        c.post("/api/video/prompt", json={"frame": 0, "points": [[30, 40, 1]]})
        _events(c, {"start": 0, "max_frames": 5})
    res = model.val(out / "annotations.json", prompts="mask,click", project=tmp_path / "runs", verbose=False)
    assert res.runs[0]["format"] == "coco-video" and res.runs[0]["counts"]["videos"] == 1
    rows = list(csv.DictReader((res.save_dir / "per_item.csv").open()))
    assert [(r["video"], r["object"], r["prompt"], r["frames"]) for r in rows] == [
        ("clip.avi", "1", "mask", "4"), ("clip.avi", "1", "click", "4")]  # 6 frames saved; first and last not measured
    assert 0.0 <= res.metrics["mask"]["J&F"] <= 1.0


def test_video_stop_busy_and_flat_memory(model, tmp_path):
    (tmp_path / "v").mkdir()
    clip = write_video(tmp_path / "v" / "long.avi", moving_square_frames(90), codec="MJPG")
    project = open_project(model, clip)
    with served(project) as (_, c):
        c.post("/api/video/prompt", json={"frame": 0, "points": [[30, 40, 1]]})
        with c.stream("POST", "/api/video/propagate", json={"start": 0}) as r:
            seen, last = 0, None
            for line in r.iter_lines():
                if not line.startswith("data: "):
                    continue
                last = json.loads(line[6:])
                if last["event"] == "frame":
                    seen += 1
                    if seen == 3:
                        busy = c.post("/api/video/prompt", json={"frame": 5, "points": [[30, 40, 1]]})
                        assert busy.status_code == 409 and "being tracked" in busy.json()["error"]
                        again = c.post("/api/video/propagate", json={"start": 0})
                        assert again.status_code == 409
                        c.post("/api/video/stop", json={})
        assert last["event"] == "stopped" and last["done"] < 90
        ev = _events(c, {"start": 0})
        assert ev[-1]["event"] == "done" and ev[-1]["done"] == 90
        obj = project.session.objects[1]
        kept = len(obj.outputs["non_cond_frame_outputs"])
        assert kept <= 2 * project.session.window + 2, kept  # the memory window, not the video's length


def test_video_tab_closed_while_tracking(model, clip):
    """A page closed in the middle of a propagation ends it (the frames tracked so far stay saved); the next
    propagation is accepted."""
    import httpx

    project = open_project(model, clip)
    with served(project) as (server, c):
        c.post("/api/video/prompt", json={"frame": 0, "points": [[30, 40, 1]]})
        with httpx.Client(base_url=server.url, timeout=60) as tab:
            with tab.stream("POST", "/api/video/propagate", json={"start": 0}) as r:
                for line in r.iter_lines():
                    if line.startswith("event: frame"):
                        break  # the tab goes away here
        deadline = time.time() + 30
        while project.running and time.time() < deadline:
            time.sleep(0.05)
        assert not project.running
        ev = _events(c, {"start": 0}, project)
        assert ev[-1] == {**ev[-1], "event": "done", "done": 24}


def test_port_in_use(model, tmp_path):
    from samkit.app import AppServer

    project = open_project(model, image_folder(tmp_path / "images"))
    with AppServer(project, port=0) as first:
        with pytest.raises(OSError, match=f"could not listen on 127.0.0.1:{first.port} .*give another port="):
            AppServer(open_project(model, tmp_path / "images", out="other"), port=first.port).start()
    with pytest.raises(ValueError, match="port=70000"):
        AppServer(project, port=70000)


def test_video_bad_input(model, clip, tmp_path):
    with served(open_project(model, clip)) as (_, c):
        r = c.post("/api/video/propagate", json={"start": 0})
        assert r.status_code == 400 and "click on a frame first" in r.json()["error"]
        r = c.post("/api/video/prompt", json={"frame": 24, "points": [[3, 3, 1]]})
        assert r.status_code == 400 and "frame=24 is out of range [0, 23]" in r.json()["error"]
        r = c.post("/api/video/prompt", json={"frame": 1})
        assert r.status_code == 400 and "give clicks or a box" in r.json()["error"]
        r = c.post("/api/video/prompt", json={"frame": 1, "points": [[3, 3, 0]]})
        assert r.status_code == 400 and "needs a positive click (left click) or a box" in r.json()["error"]
        assert c.get("/api/images/0").status_code == 404
    with pytest.raises(AppError, match="SAM 2 / 2.1"):
        open_project(SAM.untrained("mobile_sam.pt", verbose=False), clip)


# ---------------------------------------------------------------------- command line
def _start_cli(args: list[str]) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "samkit.cli", "app", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            proc.kill()
            raise AssertionError(proc.stderr.read())
        if "open http" in line:
            return proc, line.split("open ", 1)[1].split()[0]
    proc.kill()
    raise AssertionError("samkit app printed no URL")


def test_cli_app_survives_a_killed_server(present_ckpt, tmp_path):
    """The URL printed serves the folder; a server killed outright (SIGKILL) loses nothing saved, and the next start
    shows the objects; Ctrl+C ends it cleanly."""
    import httpx

    folder = image_folder(tmp_path / "images")
    args = [f"source={folder}", f"model={present_ckpt}", "port=0", "format=coco", "names=a,b", "device=cpu",
            "verbose=False"]
    proc, url = _start_cli(args)
    try:
        assert url.startswith("http://127.0.0.1:")
        info = httpx.get(url + "api/project").json()
        assert info["names"] == {"0": "a", "1": "b"} and info["format"] == "coco" and len(info["items"]) == 3
        made = httpx.post(url + "api/images/2/object", json={"points": [[50, 50, 1]], "cls": 1}, timeout=60).json()
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        proc.kill()
    proc, url = _start_cli(args)
    try:
        again = httpx.get(url + "api/images/2", timeout=60).json()
        assert again["objects"] == made["objects"]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
    finally:
        proc.kill()
    assert [c for c, _ in check_coco(folder / "labels" / "annotations.json")["img2.jpg"]] == [1]


def test_cli_app_bad_input(present_ckpt, tmp_path):
    folder = image_folder(tmp_path / "images")
    r = subprocess.run([sys.executable, "-m", "samkit.cli", "app", f"model={present_ckpt}", "device=cpu"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "give source=" in r.stderr
    r = subprocess.run([sys.executable, "-m", "samkit.cli", "app", f"source={folder}", "model=x.pt", "frame=3"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "'frame' does not apply to samkit app" in r.stderr
    r = subprocess.run([sys.executable, "-m", "samkit.cli", "app", f"source={folder}", f"model={present_ckpt}",
                        "out=../elsewhere", "device=cpu"], capture_output=True, text=True)
    assert r.returncode == 2 and "must be inside" in r.stderr
    r = subprocess.run([sys.executable, "-m", "samkit.cli", "app", f"source={folder}", "model=not-loaded.pt",
                        "format=voc"], capture_output=True, text=True)  # refused before any model is looked for
    assert r.returncode == 2 and "format='voc' is not a dataset format" in r.stderr


def test_a_slow_label_file_does_not_stall_edits_of_other_images(model, tmp_path, monkeypatch):
    """The background writer writing one image's labels (made slow here) holds no lock an edit of another image,
    or reading one, needs."""
    import httpx

    from samkit.app import AppServer
    from samkit.app import store as store_module

    real = store_module.write_image
    writing = threading.Event()

    def slow(fmt, folder, stem, *a, **k):
        if stem == "img0":
            writing.set()
            time.sleep(3.0)
        return real(fmt, folder, stem, *a, **k)

    monkeypatch.setattr(store_module, "write_image", slow)
    folder = image_folder(tmp_path / "images")
    project = open_project(model, folder)
    with AppServer(project, port=0) as server, httpx.Client(base_url=server.url, timeout=60) as c:
        for i in range(3):
            c.get(f"/api/images/{i}")  # encoded (with their neighbours) before anything is timed
        project.ensure_encoded(1)
        assert c.post("/api/images/0/object", json={"box": [5, 5, 70, 60]}).status_code == 200
        assert writing.wait(5.0), "the writer did not start on img0"
        t0 = time.perf_counter()
        r = c.post("/api/images/1/object", json={"points": [[50, 40, 1]]})
        click = time.perf_counter() - t0
        t0 = time.perf_counter()
        assert c.get("/api/images/2").status_code == 200
        read = time.perf_counter() - t0
        assert r.status_code == 200 and r.json()["objects"][0]["id"] == 1
        assert click < 1.0 and read < 1.0, (click, read)
        project.dataset.flush()
    assert check_yolo(folder / "labels" / "img0.txt", folder / "img0.jpg") == 1
    assert check_yolo(folder / "labels" / "img1.txt", folder / "img1.png") == 1


def test_an_edit_writes_what_it_changed_however_many_objects(model, tmp_path):
    folder = image_folder(tmp_path / "images", sizes=((200, 240),))
    project = open_project(model, folder)
    out = folder / "labels"
    masks = out / ".samkit" / "masks" / "img0"
    with served(project) as (_, c):
        for k in range(30):
            x, y = 8 + (k % 6) * 38, 8 + (k // 6) * 38
            c.post("/api/images/0/object", json={"box": [x, y, x + 30, y + 30]})
        before = {p.name: p.stat().st_mtime_ns for p in masks.iterdir()}
        size = (out / ".samkit" / "objects" / "img0.json").stat().st_size
        assert len(before) == 30 and size < 30 * 200  # the record holds prompts and file names, not masks
        r = c.post("/api/images/0/object", json={"id": 7, "box": [60, 60, 120, 120]}).json()
        assert r["changed"] == [7]
        after = {p.name: p.stat().st_mtime_ns for p in masks.iterdir()}
        assert len(after) == 30 and len(set(after) - set(before)) == 1 and next(iter(set(after) - set(before))) \
            .startswith("7-")
        assert all(after[n] == before[n] for n in after if n in before)  # the other masks were not rewritten
        assert len(record(out, "img0")["objects"]) == 30 and len((out / "img0.txt").read_text().splitlines()) == 30
    # reopened: every mask read back from its file
    project = open_project(model, folder)
    with served(project) as (_, c):
        objs = c.get("/api/images/0").json()["objects"]
        assert len(objs) == 30 and all("runs" in o for o in objs)
        assert np.array_equal(runs_to_mask(objs[6]["runs"], (200, 240)), mask_of(record(out, "img0")["objects"][6]))


def test_hostile_tokens_bodies_and_names(model, tmp_path):
    import httpx

    from samkit.app import AppServer

    folder = image_folder(tmp_path / "images")
    project = open_project(model, folder)
    with AppServer(project, host="0.0.0.0", port=0, token="a-long-enough-token") as server:
        with httpx.Client(base_url=f"http://127.0.0.1:{server.port}") as c:
            assert c.get("/api/project?token=%C3%A9").status_code == 403
            assert c.get("/api/project", headers={"x-samkit-token": "é".encode()}).status_code == 403
            assert c.get("/api/project", headers={"cookie": "samkit_token=%C3%A9é".encode()}).status_code == 403
            ok = {"x-samkit-token": "a-long-enough-token"}
            deep = "[" * 100_000 + "]" * 100_000
            r = c.post("/api/names", content=deep, headers={**ok, "content-type": "application/json"})
            assert r.status_code == 400 and "nested too deeply" in r.json()["error"]
            for bad in (None, {"a": 1}, 3, ["x"], "", "   "):
                r = c.post("/api/names", json={"name": bad}, headers=ok)
                assert r.status_code == 400, bad
            assert c.get("/api/project", headers=ok).json()["names"] == {"0": "object"}
            names = c.post("/api/names", json={"name": "cat"}, headers=ok).json()["names"]
            assert names == {"0": "object", "1": "cat"}


def test_cli_app_stops_cleanly_on_sigterm(present_ckpt, tmp_path):
    """SIGTERM (docker stop, systemd) ends the app as Ctrl+C does: exit code 0, the last edit's dataset files
    written."""
    import httpx

    folder = image_folder(tmp_path / "images")
    proc, url = _start_cli([f"source={folder}", f"model={present_ckpt}", "port=0", "format=yolo", "device=cpu",
                            "verbose=False"])
    try:
        httpx.post(url + "api/images/1/object", json={"box": [10, 10, 90, 90]}, timeout=60).raise_for_status()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        proc.kill()
    assert check_yolo(folder / "labels" / "img1.txt", folder / "img1.png") == 1
