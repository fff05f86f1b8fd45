"""Finding checkpoint files locally and downloading the ones that are missing.

Search order for a name that is not an existing path:
1. ``$SAMKIT_WEIGHTS_DIR`` (when set);
2. the ``weights/`` folder of a source checkout (next to the ``samkit`` package);
3. the user cache, ``$XDG_CACHE_HOME/samkit`` or ``~/.cache/samkit``.
A registry model found nowhere is downloaded into the first of these that is writable: streamed to
``<name>.part`` (resumed from where an earlier attempt stopped when the server allows ranges) and renamed on
success, so a half-downloaded file is never taken for a checkpoint. ``SAMKIT_OFFLINE=1`` forbids downloads;
``SAMKIT_WEIGHTS_URL=https://mirror.example/samkit/`` is tried (as ``<url>/<file name>``) before the registry's
URLs, for organisations that keep their own copy of the weights.
"""

from __future__ import annotations

import http.client
import os
import socket
import urllib.error
import urllib.request
from pathlib import Path

from samkit.utils import LOGGER, REPO_DIR

CHUNK = 1 << 20
TIMEOUT_S = 30


class WeightsNotFoundError(FileNotFoundError):
    """A checkpoint is neither on disk nor downloadable (offline, no network, or the server failed)."""


def weights_dirs() -> list[Path]:
    """Folders searched for checkpoints, in order (see the module docstring)."""
    dirs = []
    if os.environ.get("SAMKIT_WEIGHTS_DIR"):
        dirs.append(Path(os.environ["SAMKIT_WEIGHTS_DIR"]).expanduser())
    repo_weights = REPO_DIR / "weights"
    if (REPO_DIR / "pyproject.toml").is_file() and repo_weights.is_dir():
        dirs.append(repo_weights)
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "samkit"
    dirs.append(cache)
    return dirs


def download_dir() -> Path:
    """The first searched folder that exists or can be created, and is writable."""
    for d in weights_dirs():
        try:
            d.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if os.access(d, os.W_OK):
            return d
    raise WeightsNotFoundError(f"none of the weights folders is writable: {', '.join(map(str, weights_dirs()))}")


def offline() -> bool:
    """True when ``SAMKIT_OFFLINE`` is set to a true value (1, true, yes)."""
    return os.environ.get("SAMKIT_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def find_local(names: list[str] | tuple[str, ...]) -> Path | None:
    """The first existing file called one of ``names`` in the weights folders, or None."""
    for d in weights_dirs():
        for n in names:
            p = d / n
            if p.is_file():
                return p
    return None


def download(url: str, dest: Path, progress: bool = True) -> Path:
    """Download ``url`` to ``dest`` through ``dest.part``, resuming a partial ``.part`` file.

    Args:
        url: http(s) (or file) URL.
        dest: Final path; written only once the whole body has arrived.
        progress: Show a tqdm progress bar.

    Returns:
        ``dest``.

    Raises:
        WeightsNotFoundError: Offline mode, network failure, HTTP error or a short body; names the URL and ``dest``.
    """
    if offline():
        raise WeightsNotFoundError(
            f"SAMKIT_OFFLINE is set, so {dest.name} was not downloaded from {url}. "
            f"Put the file in {dest.parent} (or set SAMKIT_WEIGHTS_DIR to the folder that has it)."
        )
    LOGGER.info("downloading %s to %s", url, dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "samkit"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=TIMEOUT_S)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # the .part already holds everything the server has
            LOGGER.warning("server says %s is complete at %d bytes; verifying it by loading", part, have)
            os.replace(part, dest)
            return dest
        raise WeightsNotFoundError(
            f"downloading {url} failed: HTTP {e.code} {e.reason}. Download it by hand into {dest}."
        ) from None
    except (urllib.error.URLError, socket.timeout, ConnectionError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise WeightsNotFoundError(
            f"cannot reach {url} ({reason}); no network? Download the file by hand into {dest} "
            f"(or set SAMKIT_WEIGHTS_DIR to the folder that has it)."
        ) from None
    with response:
        resumed = have and response.status == 206
        if have and not resumed:
            LOGGER.info("server ignored the range request; restarting the download of %s", dest.name)
            have = 0
        length = response.headers.get("Content-Length")
        total = have + int(length) if length is not None else None
        mode = "ab" if resumed else "wb"
        bar = _progress(total, have, dest.name, progress)
        got = have
        try:
            with open(part, mode) as f:
                while chunk := response.read(CHUNK):
                    f.write(chunk)
                    got += len(chunk)
                    bar.update(len(chunk))
        except http.client.IncompleteRead as e:
            if e.partial:
                with open(part, "ab") as f:
                    f.write(e.partial)
                got += len(e.partial)
            raise WeightsNotFoundError(
                f"download of {url} was interrupted after {got} bytes; run again to resume from {part}"
            ) from None
        except (OSError, socket.timeout, ConnectionError, http.client.HTTPException) as e:
            raise WeightsNotFoundError(
                f"download of {url} was interrupted after {got} bytes ({e}); run again to resume from {part}"
            ) from None
        finally:
            bar.close()
    if total is not None and got != total:
        raise WeightsNotFoundError(
            f"download of {url} ended after {got} of {total} bytes; run again to resume from {part}"
        )
    os.replace(part, dest)
    LOGGER.info("downloaded %s (%d bytes) to %s", url, got, dest)
    return dest


def _progress(total: int | None, initial: int, name: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(
        total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024, desc=name, disable=not enabled,
        leave=False,
    )


def resolve_weights(model: str | os.PathLike, progress: bool = True) -> Path:
    """Find the checkpoint file for ``model``, downloading it when it is a registry model found nowhere.

    Args:
        model: A path to an existing file, or a file name (``"sam2.1_b.pt"``, ``"sam_vit_h_4b8939.pth"``) looked
            up in the weights folders and, failing that, in the model registry.
        progress: Show a progress bar while downloading.

    Returns:
        Path of the checkpoint file.

    Raises:
        WeightsNotFoundError: The file is nowhere and cannot be downloaded; the message names the URL(s) and the
            folder to put it in.
        ValueError: The name is neither an existing file nor a registry model.
    """
    from samkit.nn.registry import model_registry

    path = Path(model).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        raise ValueError(f"model {str(model)!r} is a folder; pass a checkpoint file or a model name")
    entry = model_registry().find_model(path.name)
    if len(path.parts) > 1 and entry is None:
        raise WeightsNotFoundError(f"checkpoint {str(model)!r} does not exist")
    if entry is None:
        found = find_local([path.name])
        if found:
            return found
        try:
            model_registry().model(path.name)  # raises: unknown name, with close matches
        except ValueError as e:
            raise ValueError(f"no file {str(model)!r} here ({Path.cwd()}) or in the weights folders, and it is not a "
                             f"registry model: {e}") from None
    names = [path.name] + [n for n in entry.names if n != path.name]
    found = find_local(names)
    if found:
        return found
    target = (path.parent if len(path.parts) > 1 else download_dir()) / path.name
    urls = list(entry.urls_for(path.name))
    mirror = os.environ.get("SAMKIT_WEIGHTS_URL", "").strip()
    if mirror:
        urls.insert(0, f"{mirror.rstrip('/')}/{path.name}")
    errors = []
    for url in urls:
        try:
            return download(url, target, progress=progress)
        except WeightsNotFoundError as e:
            if offline():
                raise
            errors.append(str(e))
    raise WeightsNotFoundError(
        f"{path.name} is not on disk and could not be downloaded:\n  " + "\n  ".join(errors)
        + f"\nPut the file in {target.parent} or set SAMKIT_WEIGHTS_DIR."
    )
