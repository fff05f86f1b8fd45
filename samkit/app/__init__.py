"""``samkit app``: prompt SAM in the browser on a folder of images or a video, and save the dataset as you go.

Needs the ``app`` extra (``pip install 'samkit[app]'``: Starlette and uvicorn). The page is static files in
``samkit/app/static`` (no CDN, works offline). See :func:`serve` and the README's "Annotate in the browser".

Example::

    from samkit import SAM
    from samkit.app import AppServer, open_project

    project = open_project(SAM("sam2.1_t.pt"), "images/", format="coco")
    with AppServer(project) as server:
        print(server.url)  # open it; Ctrl+C or server.stop() ends it
        server.wait()
"""

from __future__ import annotations

import ipaddress
import secrets
import threading
import time
from pathlib import Path

from samkit.app.store import AppError, Dataset, inside
from samkit.utils import LOGGER
from samkit.writers.formats import FORMATS, check_format

__all__ = ("AppError", "AppServer", "check_port", "open_project", "serve", "FORMATS")


def _names(names) -> dict[int, str] | None:
    if names is None:
        return None
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    if isinstance(names, (list, tuple)):
        names = dict(enumerate(names))
    if not isinstance(names, dict) or not names or not all(
            isinstance(k, int) and k >= 0 and isinstance(v, str) and v.strip() for k, v in names.items()):
        raise ValueError(f"names={names!r} must be class names: a list, 'a,b,c' or {{id: name}}")
    return {int(k): v.strip() for k, v in names.items()}


def open_project(model, source, out: str | None = None, format: str = "yolo", names=None, rle: bool = False,
                 video: bool | None = None, everything: dict | None = None, conf: float | None = None,
                 max_det: int = 300):
    """The images or video the app serves, and the dataset folder it saves into.

    Args:
        model: A loaded :class:`~samkit.SAM` (the only model the app runs; the page cannot choose another).
        source: A folder of images, a video file, or a folder of video frames (with ``video=True``). The app serves
            and writes only under this folder (a video file's folder).
        out: The dataset folder, inside that folder (default ``labels`` for images and frame folders,
            ``<video name>_labels`` for a video file). Reopening the same folder shows the objects saved there.
        format: ``"yolo"`` (YOLO-seg ``.txt`` and ``data.yaml``), ``"coco"`` (``annotations.json``) or ``"png"``
            (one mask per object), written on every change.
        names: Class names (a list, ``"a,b"`` or ``{id: name}``); more can be typed on the page.
        rle: COCO masks as RLE instead of polygons (keeps holes).
        video: Treat a folder as the frames of one video (default: a folder is images, a file is a video).
        everything: Settings of the page's "Segment everything" (``points_per_side``, ``pred_iou_thresh``...: the
            keywords :meth:`samkit.SAM.predict` takes without prompts).
        conf, max_det: SAM 3's phrases (the page's text box): the detection score to keep (None: the model's own,
            0.5) and the most instances of a phrase.
    """
    from samkit.data.sources import VIDEO_SUFFIXES, SourceError

    if source is None:
        raise SourceError("give source=: a folder of images, a video file or a folder of frames (with video=True)")
    check_format(format)
    src = Path(source).expanduser()
    if not src.exists():
        raise SourceError(f"source {str(source)!r} does not exist")
    src = src.resolve()
    is_file = src.is_file()
    if is_file and src.suffix.lower() not in VIDEO_SUFFIXES:
        raise SourceError(f"source {str(source)!r} is a file but not a video ({', '.join(sorted(VIDEO_SUFFIXES))}); "
                          "give the folder of images to annotate images")
    if video is False and is_file:
        raise SourceError(f"video=False, but {str(source)!r} is a video file")
    root = src.parent if is_file else src
    images = src
    if not is_file and not video and not _images_in(src) and (src / "images").is_dir():
        images = src / "images"  # Ultralytics' layout: <dataset>/images, labels written to <dataset>/labels
    if out is None:
        out = f"{src.stem}_labels" if is_file else ("." if images != src else "labels")
    out_path = Path(out).expanduser()
    out_path = (out_path if out_path.is_absolute() else root / out_path).resolve()
    if not inside(root, out_path):
        raise ValueError(f"out={str(out)!r} must be inside {root} (the app writes only under the folder it serves)")
    layout = images != src and out_path == root
    if out_path == root and not layout:
        raise ValueError(f"out={str(out)!r} is the served folder itself; give a folder inside it (default labels)")
    if everything:  # misspelt settings fail here, not on the page
        from samkit.engine.everything import EverythingConfig

        unknown = sorted(set(everything) - set(EverythingConfig.keys()) | ({"multimask"} & set(everything)))
        if unknown:
            raise TypeError(f"everything={{{', '.join(map(repr, unknown))}: ...}}: not a segment-everything setting; "
                            f"they are {', '.join(k for k in EverythingConfig.keys() if k != 'multimask')}")
        EverythingConfig(**everything)
    # Labels beside an images/ folder (Ultralytics' layout; a video file's frames are saved to <out>/images)
    paired = layout or is_file
    dataset = Dataset(out_path, format, _names(names), rle=rle, labels=out_path / "labels" if paired else None,
                      frames=out_path / "images" if is_file else None, train="images" if paired else None)
    try:
        project = _project(model, root, src, images, dataset, is_file or bool(video), everything, conf, max_det)
        rewritten = dataset.sync()
    except BaseException:
        dataset.close()
        raise
    if rewritten:
        LOGGER.warning("samkit app: %d item(s) whose dataset files lagged behind their records were rewritten in %s",
                       rewritten, out_path)
    return project


def _images_in(folder: Path) -> list[Path]:
    """The image files of a folder, as every source listing sorts them (none: an empty list)."""
    from samkit.data.sources import SourceError, iter_images

    try:
        return [Path(p) for p in iter_images(str(folder))]
    except SourceError:
        return []


def _project(model, root: Path, src: Path, images: Path, dataset, video: bool, everything, conf, max_det):
    from samkit.app.session import ImageProject
    from samkit.app.video import VideoProject
    from samkit.data.sources import IMAGE_SUFFIXES, SourceError

    if video:
        return VideoProject(model, root, src, dataset)
    files, skipped = [], []
    for p in _images_in(images):
        (files if inside(root, p) else skipped).append(p)
    for p in skipped:
        LOGGER.warning("%s links outside %s: it is not served", p.name, root)
    if not files:
        raise SourceError(f"{str(src)!r} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))}), nor an images/ "
                          "folder of them")
    seen: dict[str, Path] = {}
    for p in files:
        if p.stem in seen:
            raise SourceError(f"{seen[p.stem].name} and {p.name} would save to the same label file; rename one")
        seen[p.stem] = p
    return ImageProject(model, root, files, dataset, everything=everything, conf=conf, max_det=max_det)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_port(host: str, port: int) -> None:
    """Fail now, with the reason, when ``host:port`` cannot be listened on (taken, or not an address here)."""
    import socket

    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port < 65536:
        raise ValueError(f"port={port!r} must be a TCP port (0-65535; 0 picks a free one)")
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
        try:
            s.bind((host.strip("[]"), port))
        except OSError as e:
            raise OSError(f"samkit app could not listen on {host}:{port} ({e.strerror or e}); give another port= "
                          "(0 picks a free one)") from None


class AppServer:
    """The app on a uvicorn server in a background thread (a context manager).

    Args:
        project: What :func:`open_project` returned.
        host: Address to listen on; anything but loopback needs a token (one is made when none is given).
        port: TCP port (0: any free one).
        token: The token the page must carry (``?token=`` in the URL).
        max_body: Largest request body in bytes.
    """

    def __init__(self, project, host: str = "127.0.0.1", port: int = 8765, token: str | None = None,
                 max_body: int | None = None):
        from samkit.utils.requirements import require

        require("app")
        from samkit.app.server import MAX_BODY, create_app

        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port < 65536:
            raise ValueError(f"port={port!r} must be a TCP port (0-65535; 0 picks a free one)")
        loopback = _loopback(host)
        if token is not None and (not isinstance(token, str) or len(token) < 8):
            raise ValueError("token= must be a string of at least 8 characters")
        if not loopback and not token:
            token = secrets.token_urlsafe(24)
        self.project, self.host, self.token = project, host, token
        features = {"texts": "concepts" in project.model.capabilities,
                    "everything": project.kind == "images"}
        self.app = create_app(project, token=token, loopback=loopback, max_body=max_body or MAX_BODY,
                              features=features)
        self._port = port
        self._server = None
        self._thread: threading.Thread | None = None

    def start(self) -> AppServer:
        import uvicorn

        check_port(self.host, self._port)
        config = uvicorn.Config(self.app, host=self.host, port=self._port, log_level="warning", lifespan="off",
                                timeout_graceful_shutdown=2, access_log=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="samkit-app", daemon=True)
        self._thread.start()
        while not self._server.started:
            if not self._thread.is_alive():
                raise OSError(f"samkit app could not listen on {self.host}:{self._port} (is the port taken? "
                              "give another port=)")
            time.sleep(0.02)
        return self

    @property
    def port(self) -> int:
        return self._server.servers[0].sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}/" + (f"?token={self.token}" if self.token else "")

    def wait(self) -> None:
        """Block until the server stops (Ctrl+C stops it)."""
        try:
            while self._thread is not None and self._thread.is_alive():
                self._thread.join(0.5)
        except KeyboardInterrupt:
            self.stop()

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)
        self.project.close()

    def __enter__(self) -> AppServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def serve(model, source, host: str = "127.0.0.1", port: int = 8765, token: str | None = None, **project) -> None:
    """Open ``source`` (see :func:`open_project` for ``project`` keywords), print the URL and serve until Ctrl+C (or
    SIGTERM, as ``docker stop`` and service managers send: the same clean stop, pending dataset files written)."""
    import signal

    def stop(signum, frame):
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, stop)
    proj = open_project(model, source, **project)
    with AppServer(proj, host=host, port=port, token=token) as server:
        kind = f"{len(proj)} images" if proj.kind == "images" else f"{proj.length} frames of {proj.source.name}"
        print(f"samkit app: {kind}, {model.family}, saving {proj.dataset.fmt} to {proj.dataset.out}")
        print(f"samkit app: open {server.url}  (Ctrl+C stops)", flush=True)
        if host in ("0.0.0.0", "::"):
            import socket

            print(f"samkit app: from other machines: {server.url.replace('127.0.0.1', socket.gethostname(), 1)}",
                  flush=True)
        server.wait()
