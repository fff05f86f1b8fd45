"""Finding checkpoint files locally and downloading the ones that are missing.

Search order for a name that is not an existing path:
1. ``$SAMKIT_WEIGHTS_DIR`` (when set);
2. the ``weights/`` folder of a source checkout (next to the ``samkit`` package);
3. the user cache, ``$XDG_CACHE_HOME/samkit`` or ``~/.cache/samkit``.

A registry model found nowhere is downloaded into the first of these that is writable, or, for a path such as
``models/sam2.1_b.pt``, into that path's folder when the folder exists (a folder that does not exist is an error,
never created: it is most likely a typo). ``SAMKIT_WEIGHTS_URL=https://mirror.example/samkit/`` is tried (as
``<url>/<file name>``) before the registry's URLs, for organisations that keep their own copy of the weights;
``SAMKIT_OFFLINE=1`` forbids downloads.

A download never puts a bad file in place. The body is streamed to ``<name>.part`` and renamed to ``<name>`` only
once it passes every check:
- its length is the server's Content-Length (for a resumed download, the range must start where the ``.part``
  ends and the whole file must have Content-Range's total);
- its size and SHA-256 are the registry's, where the registry knows them for that file name (``checks`` in
  ``samkit/cfg/models.yaml``);
- it is a readable PyTorch checkpoint holding a state dict, read with ``torch.load(weights_only=True)``
  (:func:`samkit.nn.checkpoint.read_checkpoint`), so nothing in it runs.
A file that fails a check is deleted, and the next URL is tried; when none works, the error lists each URL with
its reason. A download interrupted by the network (a connection error, or fewer bytes than announced) or stopped by
the deadline keeps its ``<name>.part``, to be resumed on the next run; a body that just ends early with no length
announced cannot be told from a whole one, so it goes through the checks (and is deleted when it fails them).

Where a ``.part`` came from is recorded beside it in ``<name>.part.json`` (written atomically): the URL (with any
credentials masked, plus a hash of the URL without credentials, for matching), the file name, the expected length
and the ETag.
A ``.part`` is resumed (HTTP Range, and If-Range when the ETag is known) only from the very URL that started it;
one started by another URL or for another file, or one with no record, is discarded and the download starts
over, so the bytes of two sources are never glued together. A URL with a ``.part`` to resume is tried first.

One download may take at most ``DOWNLOAD_DEADLINE_S`` seconds (``SAMKIT_DOWNLOAD_TIMEOUT`` overrides it), so a
server that trickles bytes cannot hold samkit forever. The deadline is checked as data arrives; a connection that
sends nothing at all is given up after ``TIMEOUT_S`` seconds of silence (the deadline can be overrun by that much).

Credentials in a URL (``https://user:secret@host/path``) are sent as HTTP Basic authentication (and not passed on
when the server redirects elsewhere). They are never shown: messages, log lines, progress bars and the
``.part.json`` record show the URL as ``https://***@host/path``.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import math
import os
import re
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from samkit.utils import LOGGER, REPO_DIR

CHUNK = 1 << 20
#: Seconds any single network wait (connecting, or the next bytes of the body) may take.
TIMEOUT_S = 30
#: Seconds one download may take in all, unless ``SAMKIT_DOWNLOAD_TIMEOUT`` says otherwise. A download stopped by
#: it keeps its ``.part`` and resumes on the next run.
DOWNLOAD_DEADLINE_S = 3600.0
#: Environment variable overriding :data:`DOWNLOAD_DEADLINE_S` (seconds, > 0).
DEADLINE_ENV = "SAMKIT_DOWNLOAD_TIMEOUT"


class WeightsNotFoundError(FileNotFoundError):
    """A checkpoint is neither on disk nor downloadable (offline, no network, or the server failed)."""


class UnknownModelError(WeightsNotFoundError, ValueError):
    """A model name that is neither a file on disk nor a registry model (a ``FileNotFoundError`` like every missing
    checkpoint, and a ``ValueError`` like every unknown setting)."""


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


def download_deadline() -> float:
    """Seconds one download may take: ``$SAMKIT_DOWNLOAD_TIMEOUT`` when it is a positive number, else
    :data:`DOWNLOAD_DEADLINE_S` (with a warning when the variable is set to something else)."""
    raw = os.environ.get(DEADLINE_ENV, "").strip()
    if not raw:
        return DOWNLOAD_DEADLINE_S
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        LOGGER.warning("%s=%r is not a positive number of seconds; using %g s", DEADLINE_ENV, raw, DOWNLOAD_DEADLINE_S)
        return DOWNLOAD_DEADLINE_S
    return value


def find_local(names: list[str] | tuple[str, ...]) -> Path | None:
    """The first existing file called one of ``names`` in the weights folders, or None."""
    for d in weights_dirs():
        for n in names:
            p = d / n
            if p.is_file():
                return p
    return None


def corrupt_hint(path: str | os.PathLike) -> str:
    """What to tell a user whose checkpoint ``path`` turned out unreadable: when it is a registry file in one of the
    weights folders, ``" (delete <path> and samkit downloads it again)"``; otherwise ``""`` (a file of the user's
    own, which samkit cannot fetch again)."""
    from samkit.nn.registry import model_registry

    p = Path(path).expanduser()
    try:
        folder = p.parent.resolve()
        folders = {d.resolve() for d in weights_dirs()}
    except (OSError, RuntimeError):
        return ""
    entry = model_registry().find_model(p.name)
    if folder not in folders or entry is None or p.name not in entry.names:
        return ""
    if offline():
        return f" (delete {p} and put a good copy there; SAMKIT_OFFLINE is set, so samkit will not download it)"
    return f" (delete {p} and samkit downloads it again)"


# ---------------------------------------------------------------------------------------------------- URLs
def mask_url(url: str) -> str:
    """``url`` fit to show: credentials (``user:secret@``) become ``***@``, a query string ``?***``; a fragment is
    left out. Works on text that does not parse as a URL too."""
    text = re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*://)?[^/?#]*@", lambda m: f"{m.group(1) or ''}***@", str(url))
    text = text.split("#", 1)[0]
    return text.split("?", 1)[0] + "?***" if "?" in text else text


def _split_credentials(url: str) -> tuple[str, str | None, list[str]]:
    """``url`` without its userinfo, the matching ``Authorization`` header value (or None), and the secret
    strings that must never be shown."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:  # not a URL at all (download says so)
        return url, None, []
    if "@" not in parts.netloc:
        return url, None, []
    userinfo, host = parts.netloc.rsplit("@", 1)
    user, _, password = userinfo.partition(":")
    user, password = urllib.parse.unquote(user), urllib.parse.unquote(password)
    token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    clean = urllib.parse.urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
    secrets = sorted({s for s in (userinfo, user, password, urllib.parse.unquote(userinfo), token) if len(s) >= 3},
                     key=len, reverse=True)
    return clean, f"Basic {token}", secrets


def _scrub(text: object, secrets: list[str]) -> str:
    text = str(text)
    for s in secrets:
        text = text.replace(s, "***")
    return text


def _url_file_name(url: str) -> str:
    """The file name a URL serves (its last path segment, unquoted)."""
    try:
        return urllib.parse.unquote(urllib.parse.urlsplit(url).path.rsplit("/", 1)[-1])
    except ValueError:
        return ""


# ---------------------------------------------------------------------------------------------------- .part records
def _record_path(part: Path) -> Path:
    return part.with_name(part.name + ".json")


def _source_id(clean_url: str) -> str:
    return hashlib.sha256(clean_url.encode()).hexdigest()


def _read_record(part: Path) -> dict | None:
    """The ``.part.json`` record of where ``part`` came from, or None (missing or unreadable)."""
    try:
        data = json.loads(_record_path(part).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_record(part: Path, record: dict) -> None:
    """Write the ``.part.json`` record atomically (a temporary file renamed over it)."""
    path = _record_path(part)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(record, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _discard(part: Path) -> None:
    """Delete ``part`` and then its record (a record without a ``.part`` is harmless; the reverse is not)."""
    part.unlink(missing_ok=True)
    _record_path(part).unlink(missing_ok=True)


def _resumable(part: Path, source: str, name: str) -> dict | None:
    """The record of ``part`` when it exists, is not empty and was started by ``source`` for file ``name``."""
    record = _read_record(part)
    if not part.is_file() or part.stat().st_size == 0 or record is None:
        return None
    return record if record.get("source") == source and record.get("file") == name else None


# ---------------------------------------------------------------------------------------------------- checks
def _content_length(value: str | None, shown: str) -> int | None:
    if value is None:
        return None
    text = value.strip()
    if not (text.isascii() and text.isdigit()):
        raise WeightsNotFoundError(
            f"downloading {shown} failed: the server sent an invalid Content-Length {value[:40]!r}"
        )
    return int(text)


def _content_range(value: str | None) -> tuple[int, int, int | None] | None:
    """``(first, last, total)`` of ``bytes first-last/total`` (total None for ``*``), or None when unreadable."""
    try:
        unit, spec = (value or "").strip().split(" ", 1)
        span, total = spec.strip().split("/")
        first, last = span.split("-")
        if unit.lower() != "bytes":
            return None
        first_i, last_i = int(first), int(last)
        total_i = None if total.strip() == "*" else int(total)
    except ValueError:
        return None
    if first_i < 0 or last_i < first_i or (total_i is not None and last_i >= total_i):
        return None
    return first_i, last_i, total_i


def _looks_like_html(head: bytes) -> bool:
    start = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return start.startswith((b"<!doctype html", b"<html", b"<head", b"<body", b"<?xml", b"<!--"))


def file_sha256(path) -> str:
    """SHA-256 hex digest of a file's bytes (read in 1 MiB blocks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def verify_download(path: Path, size: int | None = None, sha256: str | None = None) -> str | None:
    """Why the downloaded file ``path`` must not be used, or None when it passes: the known ``size`` and
    ``sha256`` (when given), then a safe read as a PyTorch state-dict checkpoint (nothing in it is executed)."""
    n = path.stat().st_size
    if n == 0:
        return "the server sent an empty body"
    if size is not None and n != size:
        return f"it is {n} bytes where the registry says {size}"
    with open(path, "rb") as f:
        head = f.read(1024)
    if _looks_like_html(head):
        return "the server sent a web page (HTML), not a checkpoint (a login, error or download page?)"
    if sha256 is not None:
        digest = file_sha256(path)
        if digest != sha256.lower():
            return f"its SHA-256 is {digest} where the registry says {sha256.lower()}"
    from samkit.nn.checkpoint import CheckpointError, read_checkpoint

    try:
        state_dict = read_checkpoint(path)
    except CheckpointError as e:
        return "it is not a usable checkpoint: " + str(e).removeprefix(f"{path}: ").removeprefix(f"{path} ")
    del state_dict  # memory-mapped: let go of the file before it is renamed
    return None


# ---------------------------------------------------------------------------------------------------- download
def download(url: str, dest: Path, progress: bool = True, size: int | None = None, sha256: str | None = None) -> Path:
    """Download ``url`` to ``dest`` through ``dest.part``, resuming a ``.part`` that this same URL started.

    Args:
        url: http(s) (or file) URL; ``user:password@`` in it is sent as HTTP Basic authentication and never shown.
        dest: Final path; written only once the whole body has arrived and passed the checks (the module
            docstring lists them).
        progress: Show a tqdm progress bar.
        size: The file's size in bytes, when known (the registry's ``checks``).
        sha256: The file's SHA-256 (hex), when known.

    Returns:
        ``dest``.

    Raises:
        WeightsNotFoundError: Offline mode, network failure, HTTP error, a bad Content-Length / Content-Range, a
            short body, the deadline, or a file that fails the checks; names the URL (credentials masked). A file
            that failed a check is deleted; a short body with a known length is kept to be resumed.
    """
    dest = Path(dest)
    shown = mask_url(url)
    if offline():
        raise WeightsNotFoundError(
            f"SAMKIT_OFFLINE is set, so {dest.name} was not downloaded from {shown}. "
            f"Put the file in {dest.parent} (or set SAMKIT_WEIGHTS_DIR to the folder that has it)."
        )
    try:
        urllib.parse.urlsplit(url)
    except ValueError as e:
        raise WeightsNotFoundError(f"cannot download {dest.name}: {shown} is not a valid URL ({e})") from None
    clean, auth, secrets = _split_credentials(url)
    limit = download_deadline()
    stop_at = time.monotonic() + limit
    LOGGER.info("downloading %s to %s", shown, dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    source = _source_id(clean)
    record = _resumable(part, source, dest.name)
    if part.exists() and not record:
        LOGGER.info("%s was not started by %s, so it is not resumed from there", part, shown)
    have = part.stat().st_size if record else 0
    expected = record.get("length") if record and isinstance(record.get("length"), int) else None
    etag = record.get("etag") if record and isinstance(record.get("etag"), str) else None
    if expected is not None and have > expected:
        LOGGER.info("%s is longer than the %d bytes expected; starting over", part, expected)
        have, expected, etag = 0, None, None
    if have and have == expected:  # complete, but not checked and renamed yet (an earlier run stopped there)
        return _finish(part, dest, shown, have, size, sha256)

    try:
        request = urllib.request.Request(clean, headers={"User-Agent": "samkit"})
        if auth:
            request.add_unredirected_header("Authorization", auth)
        if have:
            request.add_header("Range", f"bytes={have}-")
            if etag and not etag.startswith("W/"):
                request.add_header("If-Range", etag)
        response = urllib.request.urlopen(request, timeout=max(0.1, min(TIMEOUT_S, stop_at - time.monotonic())))
    except urllib.error.HTTPError as e:
        e.close()
        if e.code == 416 and have:
            _discard(part)
            raise WeightsNotFoundError(
                f"downloading {shown} failed: HTTP 416: the server has nothing after the {have} bytes of {part}, so "
                f"that partial download does not fit its file; it was deleted"
            ) from None
        raise WeightsNotFoundError(
            f"downloading {shown} failed: HTTP {e.code} {_scrub(e.reason, secrets)}. Download it by hand into {dest}."
        ) from None
    except (urllib.error.URLError, socket.timeout, OSError, http.client.HTTPException, ValueError) as e:
        reason = _scrub(str(getattr(e, "reason", e)).replace(url, shown).replace(clean, shown), secrets)
        raise WeightsNotFoundError(
            f"cannot reach {shown} ({reason}); no network? Download the file by hand into {dest} "
            f"(or set SAMKIT_WEIGHTS_DIR to the folder that has it)."
        ) from None
    with response:
        status = getattr(response, "status", None) or 200  # None for file: URLs
        length = _content_length(response.headers.get("Content-Length"), shown)
        new_etag = response.headers.get("ETag")
        if status == 206:
            problem = _range_problem(response.headers.get("Content-Range"), have, length, expected, etag, new_etag)
            if problem:
                _discard(part)
                raise WeightsNotFoundError(
                    f"downloading {shown} failed: {problem}; the partial download {part} was deleted"
                )
            total = _content_range(response.headers.get("Content-Range"))[2]
        else:
            if have:
                LOGGER.info("server sent the whole file instead of the rest; restarting the download of %s", dest.name)
            have, total = 0, length
        if not have:  # a fresh start: drop whatever .part was there, then say where the new one comes from
            _discard(part)
            _write_record(part, {"url": shown, "source": source, "file": dest.name, "length": total, "etag": new_etag})
        got = _stream(response, part, "ab" if have else "wb", have, total, dest.name, progress, stop_at, limit, shown,
                      secrets)
    if total is not None and got != total:
        if got > total:
            _discard(part)
            raise WeightsNotFoundError(f"downloading {shown} failed: {got} bytes arrived where {total} were announced")
        raise WeightsNotFoundError(
            f"download of {shown} was interrupted after {got} of {total} bytes; run again to resume from {part}"
        )
    return _finish(part, dest, shown, got, size, sha256)


def _range_problem(
    header: str | None, have: int, length: int | None, expected: int | None, etag: str | None, new_etag: str | None
) -> str | None:
    """Why a 206 answer does not continue the ``have`` bytes already downloaded, or None when it does."""
    parsed = _content_range(header)
    if parsed is None:
        return f"the server answered 206 with an unreadable Content-Range {str(header)[:60]!r}"
    first, last, total = parsed
    if first != have:
        return f"the server's Content-Range {header!r} starts at byte {first}, not at byte {have} where it should"
    if total is None or last != total - 1:
        return f"the server's Content-Range {header!r} does not run to the end of a file of known size"
    if length is not None and length != last - first + 1:
        return f"the server's Content-Length {length} does not match its Content-Range {header!r}"
    if expected is not None and total != expected:
        return f"the file is now {total} bytes, not the {expected} the partial download was started for"
    if etag and new_etag and etag != new_etag:
        return f"the file changed on the server (ETag {new_etag}, was {etag})"
    return None


def _stream(response, part: Path, mode: str, have: int, total: int | None, name: str, progress: bool,
            stop_at: float, limit: float, shown: str, secrets: list[str]) -> int:
    """Append the response body to ``part``; returns the size of ``part``. Raises WeightsNotFoundError (keeping
    ``part``) on a network error or when the deadline passes."""
    bar = _progress(total, have, name, progress)
    got = have
    read = getattr(response, "read1", None) or response.read  # read1: returns what has arrived, never waits for more

    def late() -> WeightsNotFoundError:
        return WeightsNotFoundError(
            f"download of {shown} was stopped after {got} bytes: it went past the {limit:g} s deadline for one "
            f"download ({DEADLINE_ENV}); run again to resume from {part}"
        )

    try:
        with open(part, mode) as f:
            while chunk := read(CHUNK):
                f.write(chunk)
                got += len(chunk)
                bar.update(len(chunk))
                if time.monotonic() > stop_at:
                    raise late()
    except http.client.IncompleteRead as e:
        if e.partial:
            with open(part, "ab") as f:
                f.write(e.partial)
            got += len(e.partial)
        raise WeightsNotFoundError(
            f"download of {shown} was interrupted after {got} bytes; run again to resume from {part}"
        ) from None
    except (OSError, socket.timeout, http.client.HTTPException) as e:
        if time.monotonic() > stop_at:
            raise late() from None
        raise WeightsNotFoundError(
            f"download of {shown} was interrupted after {got} bytes ({_scrub(e, secrets) or type(e).__name__}); run "
            f"again to resume from {part}"
        ) from None
    finally:
        bar.close()
    return got


def _finish(part: Path, dest: Path, shown: str, got: int, size: int | None, sha256: str | None) -> Path:
    """Check the complete ``part`` and rename it to ``dest``; delete it when it fails a check."""
    problem = verify_download(part, size, sha256)
    if problem:
        _discard(part)
        raise WeightsNotFoundError(f"downloaded {shown}, but {problem}; it was deleted, not saved as {dest}")
    os.replace(part, dest)
    _record_path(part).unlink(missing_ok=True)
    LOGGER.info("downloaded %s (%d bytes) to %s", shown, got, dest)
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
            up in the weights folders and, failing that, in the model registry. A path ending in a registry name
            (``"models/sam2.1_b.pt"``) that is not on disk is looked up in the weights folders too, and otherwise
            downloaded into its folder, but only when that folder exists: a folder that does not exist is an
            error (most likely a mistyped path), and nothing is downloaded.
        progress: Show a progress bar while downloading.

    Returns:
        Path of the checkpoint file.

    Raises:
        WeightsNotFoundError: The file is nowhere and cannot be downloaded (the message names each URL tried, with
            its reason, and the folder to put the file in), or a path's folder does not exist.
        ValueError: The name is neither an existing file nor a registry model.
    """
    from samkit.nn.registry import model_registry

    path = Path(model).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        raise ValueError(f"model {str(model)!r} is a folder; pass a checkpoint file or a model name")
    entry = model_registry().find_model(path.name)
    explicit = len(path.parts) > 1
    if explicit and entry is None:
        raise WeightsNotFoundError(f"checkpoint {str(model)!r} does not exist")
    if explicit and not path.parent.is_dir():
        raise WeightsNotFoundError(
            f"checkpoint {str(model)!r} does not exist: its folder {path.parent} does not exist, so {path.name} was "
            f"not downloaded there. Check the path, or pass just {path.name!r} to use (and download into) the "
            f"weights folders."
        )
    if entry is None:
        found = find_local([path.name])
        if found:
            return found
        try:
            model_registry().model(path.name)  # raises: unknown name, with close matches
        except ValueError as e:
            raise UnknownModelError(f"no file {str(model)!r} here ({Path.cwd()}) or in the weights folders, and it is "
                                    f"not a registry model: {e}") from None
    names = [path.name] + [n for n in entry.names if n != path.name]
    found = find_local(names)
    if found:
        return found
    target = (path.parent if explicit else download_dir()) / path.name
    urls = list(entry.urls_for(path.name))
    mirror = os.environ.get("SAMKIT_WEIGHTS_URL", "").strip()
    if entry.gated and not mirror:  # no download can work without the owner's permission: say how to get it
        folders = list(dict.fromkeys(str(d) for d in [download_dir(), *weights_dirs()]))
        also = "" if os.environ.get("SAMKIT_WEIGHTS_DIR") else " (or a folder named by SAMKIT_WEIGHTS_DIR)"
        raise WeightsNotFoundError(f"{path.name} is not on disk. {entry.gated.strip()} Then put it in "
                                   f"{' or '.join(folders)}{also}, or give the file's path as the model.")
    if mirror:
        urls.insert(0, f"{mirror.rstrip('/')}/{path.name}")
    part = target.with_name(target.name + ".part")
    resume = [u for u in urls if _resumable(part, _source_id(_split_credentials(u)[0]), target.name)]
    urls = resume + [u for u in urls if u not in resume]  # the URL that started the .part first: it can resume it
    errors = []
    for url in urls:
        check = entry.check_for(_url_file_name(url))
        try:
            return download(url, target, progress=progress, size=check.size, sha256=check.sha256)
        except WeightsNotFoundError as e:
            if offline():
                raise
            errors.append(str(e))
    # One line: each URL's reason without the advice every one of them ends with, then the advice once.
    reasons = [re.sub(r"(; no network\?)? Download (the file|it) by hand into .*$", "", e).rstrip(". ") for e in errors]
    raise WeightsNotFoundError(
        f"{path.name} is not on disk and could not be downloaded ({'; '.join(reasons)}); no network? Put the file "
        f"in {target.parent} (or set SAMKIT_WEIGHTS_DIR to the folder that has it), and SAMKIT_OFFLINE=1 skips "
        "the download"
    )
