"""Weights resolution and downloads, against a local HTTP server on 127.0.0.1."""

from __future__ import annotations

import io
import json
import logging
import socket
import time
from pathlib import Path

import pytest
import torch

from samkit.nn import registry as registry_mod  # the module, not the function
from samkit.nn.registry import _build_registry
from samkit.utils import downloads
from samkit.utils.downloads import (
    WeightsNotFoundError,
    corrupt_hint,
    download,
    mask_url,
    resolve_weights,
    weights_dirs,
)

pytestmark = pytest.mark.network


def _checkpoint_bytes(obj, **save_options) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf, **save_options)
    return buf.getvalue()


def _random_checkpoint(seed: int) -> bytes:
    """A small real checkpoint (``{"model": state dict}``) of several download chunks, not a round size."""
    g = torch.Generator().manual_seed(seed)
    n = 3 * downloads.CHUNK // 4 + 3000
    return _checkpoint_bytes({"model": {"w": torch.randn(n, generator=g), "b": torch.randn(7, generator=g)}})


BODY = _random_checkpoint(0)
BODY_B = _random_checkpoint(1)  # other weights, same size
CUT = downloads.CHUNK + 999  # where a scripted connection drop cuts a body


def _use_local_registry(monkeypatch, file_server, checks=None):
    """The real registry with every URL pointing at the local server (same names, same architectures), plus
    ``checks`` (model name -> its ``checks:`` entry)."""
    import yaml

    data = yaml.safe_load(registry_mod.REGISTRY_FILE.read_text())
    for name, spec in data["models"].items():
        spec["urls"] = [f"{file_server.url}/mirror-a/{name}"] + [
            f"{file_server.url}/meta/{n}" for n in spec.get("files") or []
        ]
        if checks and name in checks:
            spec["checks"] = checks[name]
    reg = _build_registry(data)
    monkeypatch.setattr(registry_mod, "model_registry", lambda: reg)
    return reg


@pytest.fixture
def local_registry(monkeypatch, file_server):
    return _use_local_registry(monkeypatch, file_server)


@pytest.fixture
def wdir(tmp_path, monkeypatch):
    d = tmp_path / "weights"
    monkeypatch.setenv("SAMKIT_WEIGHTS_DIR", str(d))
    return d


def test_complete_download(file_server, wdir, local_registry):
    file_server.files["/mirror-a/sam2.1_t.pt"] = BODY
    path = resolve_weights("sam2.1_t.pt", progress=False)
    assert path == wdir / "sam2.1_t.pt"
    assert path.read_bytes() == BODY
    assert not (wdir / "sam2.1_t.pt.part").exists()
    # Found locally the second time: no new request.
    n = len(file_server.requests)
    assert resolve_weights("sam2.1_t.pt", progress=False) == path
    assert len(file_server.requests) == n


def test_meta_name_downloads_from_meta_url(file_server, wdir, local_registry):
    file_server.files["/meta/sam2.1_hiera_tiny.pt"] = BODY
    path = resolve_weights("sam2.1_hiera_tiny.pt", progress=False)
    assert path.name == "sam2.1_hiera_tiny.pt" and path.read_bytes() == BODY
    assert file_server.requests[0][0] == "/meta/sam2.1_hiera_tiny.pt"


def test_interrupted_then_resumed(file_server, wdir, local_registry):
    file_server.files["/mirror-a/sam2_s.pt"] = BODY
    file_server.files["/meta/sam2_hiera_small.pt"] = BODY
    file_server.cut_after["/mirror-a/sam2_s.pt"] = CUT
    file_server.status["/meta/sam2_hiera_small.pt"] = 503  # the fallback mirror is down too
    with pytest.raises(WeightsNotFoundError, match="interrupted") as info:
        resolve_weights("sam2_s.pt", progress=False)
    assert "HTTP 503" in str(info.value)
    part = wdir / "sam2_s.pt.part"
    assert not (wdir / "sam2_s.pt").exists(), "a half file must never take the checkpoint's name"
    assert part.stat().st_size == CUT
    path = resolve_weights("sam2_s.pt", progress=False)
    assert path.read_bytes() == BODY and not part.exists()
    assert sorted(p.name for p in wdir.iterdir()) == ["sam2_s.pt"], "the .part record is gone too"
    # The second attempt asked only for the missing bytes.
    assert file_server.requests[-1] == ("/mirror-a/sam2_s.pt", f"bytes={CUT}-")


def test_server_ignoring_range_restarts_cleanly(file_server, wdir, local_registry):
    _cut_once(file_server, "/mirror-a/sam2_s.pt")
    file_server.ignore_range = True
    path = resolve_weights("sam2_s.pt", progress=False)
    assert path.read_bytes() == BODY
    assert file_server.requests[-1] == ("/mirror-a/sam2_s.pt", f"bytes={CUT}-")


def test_server_error_names_url_and_folder(file_server, wdir, local_registry):
    file_server.status["/mirror-a/sam_l.pt"] = 500
    file_server.status["/meta/sam_vit_l_0b3195.pth"] = 404
    with pytest.raises(WeightsNotFoundError) as info:
        resolve_weights("sam_l.pt", progress=False)
    msg = str(info.value)
    assert f"{file_server.url}/mirror-a/sam_l.pt failed: HTTP 500" in msg
    assert "HTTP 404" in msg and str(wdir) in msg
    assert not list(wdir.glob("sam_l.pt*"))


def test_fallback_to_next_url(file_server, wdir, local_registry):
    file_server.status["/mirror-a/sam_b.pt"] = 500
    file_server.files["/meta/sam_vit_b_01ec64.pth"] = BODY
    assert resolve_weights("sam_b.pt", progress=False).read_bytes() == BODY


def test_offline_makes_no_request(file_server, wdir, local_registry, monkeypatch):
    monkeypatch.setenv("SAMKIT_OFFLINE", "1")
    file_server.files["/mirror-a/sam2.1_b.pt"] = BODY
    with pytest.raises(WeightsNotFoundError) as info:
        resolve_weights("sam2.1_b.pt", progress=False)
    msg = str(info.value)
    assert "SAMKIT_OFFLINE" in msg and f"{file_server.url}/mirror-a/sam2.1_b.pt" in msg and str(wdir) in msg
    assert file_server.requests == []


def test_no_network_names_url_and_folder(tmp_path):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/sam2.1_t.pt"
    with pytest.raises(WeightsNotFoundError) as info:
        download(url, tmp_path / "sam2.1_t.pt", progress=False)
    assert url in str(info.value) and str(tmp_path / "sam2.1_t.pt") in str(info.value)


def test_mirror_url_is_tried_first(file_server, wdir, local_registry, monkeypatch):
    monkeypatch.setenv("SAMKIT_WEIGHTS_URL", f"{file_server.url}/company-mirror/")
    file_server.files["/company-mirror/mobile_sam.pt"] = BODY
    assert resolve_weights("mobile_sam.pt", progress=False).read_bytes() == BODY
    assert [r[0] for r in file_server.requests] == ["/company-mirror/mobile_sam.pt"]


def test_search_order_and_aliases(tmp_path, monkeypatch, file_server, local_registry):
    env_dir, cache = tmp_path / "env", tmp_path / "cache" / "samkit"
    monkeypatch.setenv("SAMKIT_WEIGHTS_DIR", str(env_dir))
    assert weights_dirs()[0] == env_dir and weights_dirs()[-1] == cache
    cache.mkdir(parents=True)
    (cache / "sam2.1_hiera_large.pt").write_bytes(b"meta copy")
    # A local copy under Meta's name satisfies the Ultralytics name: same weights, no download.
    assert resolve_weights("sam2.1_l.pt", progress=False) == cache / "sam2.1_hiera_large.pt"
    env_dir.mkdir()
    (env_dir / "sam2.1_l.pt").write_bytes(b"env copy")
    assert resolve_weights("sam2.1_l.pt", progress=False) == env_dir / "sam2.1_l.pt"
    assert file_server.requests == []


def test_existing_path_wins_and_bad_names(tmp_path):
    f = tmp_path / "my-finetune.pth"
    f.write_bytes(b"x")
    assert resolve_weights(f) == f
    with pytest.raises(ValueError, match="is a folder"):
        resolve_weights(tmp_path)
    with pytest.raises(WeightsNotFoundError, match="does not exist"):
        resolve_weights(tmp_path / "missing" / "custom.pt")
    with pytest.raises(ValueError, match="did you mean 'sam2.1_b.pt'"):
        resolve_weights("sam2.1_bb.pt")


# ---------------------------------------------------------------------------------------------------- bad files


def _fails_then_works(file_server, wdir, name, first, second_path, body=BODY):
    """``name`` fails from ``first`` (the fallback ``second_path`` is down): nothing is left behind; then, with
    ``first`` down and the fallback up, the download comes whole from the fallback, asked for from the start.
    Returns the first error message."""
    file_server.status[second_path] = 503
    with pytest.raises(WeightsNotFoundError) as info:
        resolve_weights(name, progress=False)
    assert f"{file_server.url}{first}" in str(info.value) and "HTTP 503" in str(info.value)
    assert not list(wdir.glob(f"{name}*")), "a failed download leaves no file, .part or record behind"
    del file_server.status[second_path]
    file_server.status[first] = 500
    file_server.files[second_path] = body
    assert resolve_weights(name, progress=False).read_bytes() == body
    assert file_server.requests[-1] == (second_path, None)
    assert sorted(p.name for p in wdir.iterdir()) == [name]
    return str(info.value)


def test_html_page_is_refused(file_server, wdir, local_registry):
    file_server.files["/mirror-a/sam2.1_t.pt"] = b"<!DOCTYPE html>\n<html><body>Sign in to continue</body></html>"
    msg = _fails_then_works(file_server, wdir, "sam2.1_t.pt", "/mirror-a/sam2.1_t.pt", "/meta/sam2.1_hiera_tiny.pt")
    assert "web page (HTML), not a checkpoint" in msg


def test_body_cut_short_without_length_is_refused(file_server, wdir, local_registry):
    file_server.files["/mirror-a/sam2.1_t.pt"] = BODY
    file_server.headers["/mirror-a/sam2.1_t.pt"] = {"Content-Length": None}  # read until the connection closes
    file_server.cut_after["/mirror-a/sam2.1_t.pt"] = len(BODY) // 2
    msg = _fails_then_works(file_server, wdir, "sam2.1_t.pt", "/mirror-a/sam2.1_t.pt", "/meta/sam2.1_hiera_tiny.pt")
    assert "not a usable checkpoint" in msg


def test_wrong_file_is_refused(file_server, wdir, local_registry):
    file_server.files["/mirror-a/sam2.1_t.pt"] = _checkpoint_bytes({"epoch": 3})  # a PyTorch file, no state dict
    msg = _fails_then_works(file_server, wdir, "sam2.1_t.pt", "/mirror-a/sam2.1_t.pt", "/meta/sam2.1_hiera_tiny.pt")
    assert "not a usable checkpoint" in msg


def test_pickle_that_runs_code_is_refused_without_running(file_server, wdir, local_registry, tmp_path):
    import pickle

    flag = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (open, (str(flag), "w"))

    file_server.files["/mirror-a/sam2.1_t.pt"] = _checkpoint_bytes({"model": Evil()}, pickle_module=pickle)
    msg = _fails_then_works(file_server, wdir, "sam2.1_t.pt", "/mirror-a/sam2.1_t.pt", "/meta/sam2.1_hiera_tiny.pt")
    assert "not a usable checkpoint" in msg and not flag.exists()


def _cut_once(file_server, path, body=BODY, cut=CUT, fallback="/meta/sam2_hiera_small.pt"):
    """A first attempt that leaves ``cut`` bytes of ``path`` in a .part (the fallback is down)."""
    file_server.files[path] = body
    file_server.cut_after[path] = cut
    file_server.status[fallback] = 503
    with pytest.raises(WeightsNotFoundError, match="interrupted"):
        resolve_weights("sam2_s.pt", progress=False)


@pytest.mark.parametrize("case", ["start", "total", "file-changed", "416"])
def test_resume_that_does_not_fit_is_discarded(case, file_server, wdir, local_registry):
    path = "/mirror-a/sam2_s.pt"
    _cut_once(file_server, path)
    part = wdir / "sam2_s.pt.part"
    assert part.stat().st_size == CUT and (wdir / "sam2_s.pt.part.json").is_file()
    if case == "start":
        file_server.headers[path] = {"Content-Range": lambda start, b: f"bytes {start - 1}-{len(b) - 1}/{len(b)}"}
        reason = "starts at byte"
    elif case == "total":
        file_server.headers[path] = {"Content-Range": lambda start, b: f"bytes {start}-{len(b)}/{len(b) + 1}"}
        reason = "Content-Length"
    elif case == "file-changed":
        file_server.files[path] = BODY_B + b"\0" * 100  # a different, longer file: its total is not the recorded one
        reason = f"now {len(BODY_B) + 100} bytes, not the {len(BODY)}"
    else:
        file_server.files[path] = BODY[: CUT // 2]  # shorter than what is already there: the server answers 416
        reason = "HTTP 416"
    with pytest.raises(WeightsNotFoundError) as info:
        resolve_weights("sam2_s.pt", progress=False)
    msg = str(info.value)
    assert f"{file_server.url}{path}" in msg and reason in msg and "HTTP 503" in msg
    assert file_server.requests[-2] == (path, f"bytes={CUT}-")
    assert not list(wdir.glob("sam2_s.pt*")), "the .part that did not fit was deleted, and nothing took its name"
    file_server.status[path] = 500
    del file_server.status["/meta/sam2_hiera_small.pt"]
    file_server.files["/meta/sam2_hiera_small.pt"] = BODY
    assert resolve_weights("sam2_s.pt", progress=False).read_bytes() == BODY
    assert file_server.requests[-1] == ("/meta/sam2_hiera_small.pt", None)


def test_non_numeric_content_length(file_server, wdir, local_registry):
    url = f"{file_server.url}/mirror-a/sam2.1_t.pt"
    file_server.files["/mirror-a/sam2.1_t.pt"] = BODY
    file_server.headers["/mirror-a/sam2.1_t.pt"] = {"Content-Length": "12abc"}
    with pytest.raises(WeightsNotFoundError, match="invalid Content-Length") as info:
        download(url, wdir / "sam2.1_t.pt", progress=False)
    assert url in str(info.value)
    file_server.files["/meta/sam2.1_hiera_tiny.pt"] = BODY
    assert resolve_weights("sam2.1_t.pt", progress=False).read_bytes() == BODY
    assert [r[0] for r in file_server.requests[1:]] == ["/mirror-a/sam2.1_t.pt", "/meta/sam2.1_hiera_tiny.pt"]


def test_registry_size_and_sha256_are_checked(file_server, wdir, monkeypatch):
    import hashlib

    checks = {"sam2.1_t.pt": {"sha256": hashlib.sha256(BODY).hexdigest()},
              "sam2.1_hiera_tiny.pt": {"size": len(BODY) + 1}}
    _use_local_registry(monkeypatch, file_server, {"sam2.1_t.pt": checks})
    file_server.files["/mirror-a/sam2.1_t.pt"] = BODY_B  # a fine checkpoint, but not the published one
    file_server.files["/meta/sam2.1_hiera_tiny.pt"] = BODY
    with pytest.raises(WeightsNotFoundError) as info:
        resolve_weights("sam2.1_t.pt", progress=False)
    msg = str(info.value)
    assert f"its SHA-256 is {hashlib.sha256(BODY_B).hexdigest()}" in msg
    assert f"it is {len(BODY)} bytes where the registry says {len(BODY) + 1}" in msg
    assert not list(wdir.glob("sam2.1_t.pt*"))
    file_server.files["/mirror-a/sam2.1_t.pt"] = BODY
    assert resolve_weights("sam2.1_t.pt", progress=False).read_bytes() == BODY


@pytest.mark.parametrize(
    "checks, error",
    [
        ({"sam2.1_t.pt": {"sha256": "abc"}}, "64 hex digits"),
        ({"sam2.1_t.pt": {"size": -1}}, "positive number of bytes"),
        ({"sam2.1_t.pt": {"md5": "x"}}, "take size and sha256"),
        ({"other.pt": {"size": 1}}, "none of its files or URLs"),
    ],
)
def test_registry_checks_are_validated(checks, error):
    import yaml

    data = yaml.safe_load(registry_mod.REGISTRY_FILE.read_text())
    data["models"]["sam2.1_t.pt"]["checks"] = checks
    with pytest.raises(ValueError, match=error):
        _build_registry(data)


# ---------------------------------------------------------------------------------------------------- .part records


def test_part_from_another_mirror_is_never_glued(file_server, wdir, local_registry):
    _cut_once(file_server, "/mirror-a/sam2_s.pt", body=BODY)
    assert (wdir / "sam2_s.pt.part").read_bytes() == BODY[:CUT]
    # Mirror A is gone; the fallback serves a file of the same size with other bytes.
    file_server.status["/mirror-a/sam2_s.pt"] = 500
    del file_server.status["/meta/sam2_hiera_small.pt"]
    file_server.files["/meta/sam2_hiera_small.pt"] = BODY_B
    assert len(BODY_B) == len(BODY)
    assert resolve_weights("sam2_s.pt", progress=False).read_bytes() == BODY_B
    assert file_server.requests[-1] == ("/meta/sam2_hiera_small.pt", None), "started over, not resumed"
    assert sorted(p.name for p in wdir.iterdir()) == ["sam2_s.pt"]


def test_part_without_record_is_started_over(file_server, wdir, local_registry):
    wdir.mkdir()
    (wdir / "sam2_s.pt.part").write_bytes(BODY_B[:CUT])  # left by something else: no record of where it came from
    file_server.files["/mirror-a/sam2_s.pt"] = BODY
    assert resolve_weights("sam2_s.pt", progress=False).read_bytes() == BODY
    assert file_server.requests == [("/mirror-a/sam2_s.pt", None)]


def test_resume_comes_from_the_url_that_started_it(file_server, wdir, local_registry):
    file_server.status["/mirror-a/sam2_s.pt"] = 500
    file_server.files["/meta/sam2_hiera_small.pt"] = BODY
    file_server.cut_after["/meta/sam2_hiera_small.pt"] = CUT
    with pytest.raises(WeightsNotFoundError, match="interrupted"):
        resolve_weights("sam2_s.pt", progress=False)
    record = json.loads((wdir / "sam2_s.pt.part.json").read_text())
    assert record["url"] == f"{file_server.url}/meta/sam2_hiera_small.pt" and record["length"] == len(BODY)
    del file_server.status["/mirror-a/sam2_s.pt"]
    file_server.files["/mirror-a/sam2_s.pt"] = BODY
    n = len(file_server.requests)
    assert resolve_weights("sam2_s.pt", progress=False).read_bytes() == BODY
    assert file_server.requests[n:] == [("/meta/sam2_hiera_small.pt", f"bytes={CUT}-")]


def test_changed_etag_restarts_the_download(file_server, wdir, local_registry):
    path = "/mirror-a/sam2_s.pt"
    file_server.headers[path] = {"ETag": '"v1"'}
    _cut_once(file_server, path)
    file_server.files[path] = BODY_B
    file_server.headers[path] = {"ETag": '"v2"'}
    assert resolve_weights("sam2_s.pt", progress=False).read_bytes() == BODY_B
    assert file_server.request_headers[-1].get("If-Range") == '"v1"'


def test_complete_part_is_checked_and_used_without_a_request(file_server, wdir, local_registry):
    _cut_once(file_server, "/mirror-a/sam2_s.pt")
    with open(wdir / "sam2_s.pt.part", "ab") as f:  # the rest arrived, but the run stopped before the rename
        f.write(BODY[CUT:])
    n = len(file_server.requests)
    assert resolve_weights("sam2_s.pt", progress=False).read_bytes() == BODY
    assert len(file_server.requests) == n


# ---------------------------------------------------------------------------------------------------- deadline


def test_trickling_server_hits_the_deadline(file_server, wdir, local_registry, monkeypatch):
    monkeypatch.setenv("SAMKIT_DOWNLOAD_TIMEOUT", "1")
    for path in ("/mirror-a/sam2.1_t.pt", "/meta/sam2.1_hiera_tiny.pt"):
        file_server.files[path] = BODY
        file_server.trickle[path] = 0.01
    t0 = time.monotonic()
    with pytest.raises(WeightsNotFoundError) as info:
        resolve_weights("sam2.1_t.pt", progress=False)
    elapsed = time.monotonic() - t0
    msg = str(info.value)
    for path in ("/mirror-a/sam2.1_t.pt", "/meta/sam2.1_hiera_tiny.pt"):
        assert f"download of {file_server.url}{path} was stopped after" in msg
    assert msg.count("past the 1 s deadline for one download (SAMKIT_DOWNLOAD_TIMEOUT)") == 2
    assert 2 <= elapsed < 15, elapsed
    assert not (wdir / "sam2.1_t.pt").exists()
    # The next run resumes the last .part (from Meta's URL, which stopped trickling) instead of starting over.
    del file_server.trickle["/meta/sam2.1_hiera_tiny.pt"]
    have = (wdir / "sam2.1_t.pt.part").stat().st_size
    assert 0 < have < len(BODY)
    assert resolve_weights("sam2.1_t.pt", progress=False).read_bytes() == BODY
    assert file_server.requests[-1] == ("/meta/sam2.1_hiera_tiny.pt", f"bytes={have}-")


def test_deadline_setting(monkeypatch, caplog):
    assert downloads.download_deadline() == downloads.DOWNLOAD_DEADLINE_S
    monkeypatch.setenv("SAMKIT_DOWNLOAD_TIMEOUT", "2.5")
    assert downloads.download_deadline() == 2.5
    for bad in ("soon", "0", "-3", "nan", "inf"):
        monkeypatch.setenv("SAMKIT_DOWNLOAD_TIMEOUT", bad)
        with caplog.at_level(logging.WARNING, logger="samkit"):
            assert downloads.download_deadline() == downloads.DOWNLOAD_DEADLINE_S
        assert "SAMKIT_DOWNLOAD_TIMEOUT" in caplog.records[-1].getMessage()


# ---------------------------------------------------------------------------------------------------- credentials


def test_mask_url():
    assert mask_url("https://user:secret@host.example/samkit/a.pt") == "https://***@host.example/samkit/a.pt"
    assert mask_url("https://token@host.example:8443/a.pt?sig=abc") == "https://***@host.example:8443/a.pt?***"
    assert mask_url("https://host.example/a.pt") == "https://host.example/a.pt"
    assert mask_url("https://user:p@ss@host.example/a@b.pt") == "https://***@host.example/a@b.pt"
    assert mask_url("user:secret@host.example/a.pt") == "***@host.example/a.pt"  # no scheme: still masked
    with pytest.raises(WeightsNotFoundError) as info:
        download("http://user:secret@[host/a.pt", Path("a.pt"), progress=False)  # not a URL
    assert "secret" not in str(info.value) and "***@" in str(info.value)


def test_credentials_are_sent_and_never_shown(file_server, wdir, local_registry, monkeypatch, caplog, capsys):
    import base64

    auth = "Basic " + base64.b64encode(b"user:secret").decode()
    host = file_server.url.removeprefix("http://")
    monkeypatch.setenv("SAMKIT_WEIGHTS_URL", f"http://user:secret@{host}/company-mirror/")
    caplog.set_level(logging.INFO, logger="samkit")
    file_server.require_auth["/company-mirror/mobile_sam.pt"] = auth
    file_server.files["/company-mirror/mobile_sam.pt"] = BODY
    assert resolve_weights("mobile_sam.pt", progress=True).read_bytes() == BODY
    assert file_server.request_headers[-1]["Authorization"] == auth
    assert f"http://***@{host}/company-mirror/mobile_sam.pt" in caplog.text
    # A failing mirror (cut short, so a .part and its record stay) and failing public URLs.
    file_server.require_auth["/company-mirror/sam_b.pt"] = auth
    file_server.files["/company-mirror/sam_b.pt"] = BODY
    file_server.cut_after["/company-mirror/sam_b.pt"] = CUT
    file_server.status["/mirror-a/sam_b.pt"] = 500
    with pytest.raises(WeightsNotFoundError) as info:
        resolve_weights("sam_b.pt", progress=True)
    msg = str(info.value)
    assert f"http://***@{host}/company-mirror/sam_b.pt was interrupted" in msg
    assert [h.get("Authorization") for h in file_server.request_headers[-2:]] == [None, None], "only for the mirror"
    shown = [msg, caplog.text, *(r.getMessage() for r in caplog.records), *capsys.readouterr(),
             (wdir / "sam_b.pt.part.json").read_text()]
    assert not [s for s in shown if "secret" in s or auth.split()[1] in s]


def test_credentials_are_not_sent_to_a_redirect_target(file_server, tmp_path):
    import base64

    file_server.files["/elsewhere/a.pt"] = BODY
    file_server.redirect["/mirror/a.pt"] = f"{file_server.url}/elsewhere/a.pt"
    host = file_server.url.removeprefix("http://")
    download(f"http://user:secret@{host}/mirror/a.pt", tmp_path / "a.pt", progress=False)
    assert (tmp_path / "a.pt").read_bytes() == BODY
    sent = [h.get("Authorization") for h in file_server.request_headers]
    assert sent == ["Basic " + base64.b64encode(b"user:secret").decode(), None]


# ---------------------------------------------------------------------------------------------------- paths and hints


def test_path_in_a_missing_folder_is_not_a_download_target(file_server, wdir, local_registry, tmp_path):
    file_server.files["/mirror-a/sam2.1_t.pt"] = BODY
    typo = tmp_path / "fine-tune" / "sam2.1_t.pt"
    with pytest.raises(WeightsNotFoundError) as info:
        resolve_weights(typo, progress=False)
    msg = str(info.value)
    assert f"{typo.parent} does not exist" in msg and "was not downloaded" in msg
    assert not typo.parent.exists() and file_server.requests == []
    # Even with the stock weights on disk, a mistyped path is not quietly answered with them.
    wdir.mkdir()
    (wdir / "sam2.1_t.pt").write_bytes(BODY)
    with pytest.raises(WeightsNotFoundError, match="does not exist"):
        resolve_weights(typo, progress=False)
    # A folder that exists but lacks the file still gets the download.
    (wdir / "sam2.1_t.pt").unlink()
    typo.parent.mkdir()
    assert resolve_weights(typo, progress=False) == typo and typo.read_bytes() == BODY


def test_corrupt_hint(wdir, tmp_path, monkeypatch):
    wdir.mkdir()
    cache = tmp_path / "cache" / "samkit"
    cache.mkdir(parents=True)
    for p in (wdir / "sam2.1_t.pt", cache / "sam_vit_b_01ec64.pth"):
        assert corrupt_hint(p) == f" (delete {p} and samkit downloads it again)"
    assert corrupt_hint(str(wdir / "sam2.1_t.pt")).startswith(" (delete ")
    assert corrupt_hint(wdir / "my-finetune.pt") == ""  # not a registry file
    assert corrupt_hint(tmp_path / "sam2.1_t.pt") == ""  # not in a weights folder: the user's own copy
    monkeypatch.setenv("SAMKIT_OFFLINE", "1")
    assert "SAMKIT_OFFLINE is set" in corrupt_hint(wdir / "sam2.1_t.pt")


def test_every_url_failing_is_one_line_with_the_advice_once(file_server, wdir, local_registry):
    file_server.status["/mirror-a/sam2.1_t.pt"] = 503
    file_server.status["/meta/sam2.1_hiera_tiny.pt"] = 404
    with pytest.raises(WeightsNotFoundError) as info:
        resolve_weights("sam2.1_t.pt", progress=False)
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith("sam2.1_t.pt is not on disk and could not be downloaded (")
    assert f"{file_server.url}/mirror-a/sam2.1_t.pt" in msg and "HTTP 503" in msg and "HTTP 404" in msg
    assert msg.count(str(wdir)) == 1 and msg.count("SAMKIT_WEIGHTS_DIR") == 1 and "by hand" not in msg
