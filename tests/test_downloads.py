"""Weights resolution and downloads, against a local HTTP server on 127.0.0.1."""

from __future__ import annotations

import os
import socket

import pytest

from samkit.nn import registry as registry_mod  # the module, not the function
from samkit.nn.registry import _build_registry
from samkit.utils import downloads
from samkit.utils.downloads import WeightsNotFoundError, download, resolve_weights, weights_dirs

pytestmark = pytest.mark.network

BODY = os.urandom(3 * downloads.CHUNK + 12345)  # several chunks, not a round size


@pytest.fixture
def local_registry(monkeypatch, file_server):
    """The real registry with every URL pointing at the local server (same names, same architectures)."""
    import yaml

    data = yaml.safe_load(registry_mod.REGISTRY_FILE.read_text())
    for name, spec in data["models"].items():
        spec["urls"] = [f"{file_server.url}/mirror-a/{name}"] + [
            f"{file_server.url}/meta/{n}" for n in spec.get("files") or []
        ]
    reg = _build_registry(data)
    monkeypatch.setattr(registry_mod, "model_registry", lambda: reg)
    return reg


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
    cut = downloads.CHUNK + 999
    file_server.cut_after["/mirror-a/sam2_s.pt"] = cut
    file_server.status["/meta/sam2_hiera_small.pt"] = 503  # the fallback mirror is down too
    with pytest.raises(WeightsNotFoundError, match="interrupted") as info:
        resolve_weights("sam2_s.pt", progress=False)
    assert "HTTP 503" in str(info.value)
    part = wdir / "sam2_s.pt.part"
    assert not (wdir / "sam2_s.pt").exists(), "a half file must never take the checkpoint's name"
    assert part.stat().st_size == cut
    path = resolve_weights("sam2_s.pt", progress=False)
    assert path.read_bytes() == BODY and not part.exists()
    # The second attempt asked only for the missing bytes.
    assert file_server.requests[-1] == ("/mirror-a/sam2_s.pt", f"bytes={cut}-")


def test_server_ignoring_range_restarts_cleanly(file_server, wdir, local_registry):
    file_server.files["/mirror-a/sam_b.pt"] = BODY
    file_server.ignore_range = True
    (wdir).mkdir()
    (wdir / "sam_b.pt.part").write_bytes(BODY[:1000])
    path = resolve_weights("sam_b.pt", progress=False)
    assert path.read_bytes() == BODY


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
