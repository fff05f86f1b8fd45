"""The app's HTTP side: a Starlette application over :mod:`samkit.app.session`, and the guard in front of it.

The guard (:class:`Guard`, an ASGI middleware) answers before any route runs:

- **Host**: on a loopback address only ``Host: 127.0.0.1 / localhost / [::1]`` is served (a web page cannot reach
  the app through a DNS name that resolves to this machine);
- **Token**: when the app has one (always when it listens beyond loopback), every request carries it: ``?token=``
  on the first page load (which sets a same-site cookie, as Jupyter does), then the cookie or an
  ``X-Samkit-Token`` header;
- **Writes**: POST bodies must be JSON (``Content-Type: application/json``), so a form on another site cannot post
  here, and a request whose ``Origin`` is not this app is refused;
- **Size**: bodies over ``max_body`` bytes are refused (413), also when they do not say their length.
"""

from __future__ import annotations

import json
import secrets
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import parse_qs

import cv2

from samkit.app.session import ImageProject, check_int, check_keys
from samkit.app.store import AppError, check_format
from samkit.app.video import VideoProject
from samkit.utils import LOGGER

STATIC = Path(__file__).parent / "static"
MAX_BODY = 256 * 1024  # bytes of one request body
LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")
COOKIE = "samkit_token"


def _header(scope, name: bytes) -> str | None:
    for k, v in scope.get("headers", []):
        if k == name:
            return v.decode("latin-1")
    return None


async def _deny(send, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def _same(given: str, token: str) -> bool:
    """Whether ``given`` is the token, in constant time; text that is not ASCII is simply not it
    (``secrets.compare_digest`` refuses non-ASCII text with a TypeError)."""
    return secrets.compare_digest(given.encode("utf-8", "surrogateescape"), token.encode("utf-8"))


class Guard:
    """ASGI middleware: host, token, write and size checks (see the module docstring)."""

    def __init__(self, app, token: str | None, loopback: bool, max_body: int = MAX_BODY):
        self.app, self.token, self.loopback, self.max_body = app, token, loopback, max_body

    def _token_ok(self, scope) -> tuple[bool, bool]:
        """(allowed, came in the query string)."""
        if not self.token:
            return True, False
        query = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token", [""])[0]
        if query and _same(query, self.token):
            return True, True
        header = _header(scope, b"x-samkit-token") or ""
        if header and _same(header, self.token):
            return True, False
        try:
            cookie = SimpleCookie(_header(scope, b"cookie") or "")
        except Exception:  # a header the cookie parser refuses carries no token
            return False, False
        got = cookie[COOKIE].value if COOKIE in cookie else ""
        return bool(got) and _same(got, self.token), False

    async def __call__(self, scope, receive, send):
        if scope["type"] == "websocket":  # the app has none: refused before any check could be skipped
            return await send({"type": "websocket.close", "code": 1008})
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        raw = _header(scope, b"host") or ""
        host = (raw[: raw.find("]") + 1] if raw.startswith("[") else raw.split(":")[0]).lower()
        if self.loopback and host not in LOOPBACK:
            return await _deny(send, 403, f"host {host!r} is not served; open the app at 127.0.0.1")
        ok, in_query = self._token_ok(scope)
        if not ok:
            return await _deny(send, 403, "this app needs its token: open the URL it printed (…/?token=...)")
        if scope["method"] not in ("GET", "HEAD", "POST"):
            return await _deny(send, 405, f"method {scope['method']} is not allowed")
        if scope["method"] == "POST":
            kind = (_header(scope, b"content-type") or "").split(";")[0].strip().lower()
            if kind != "application/json":
                return await _deny(send, 415, f"requests must send JSON (Content-Type: application/json), not "
                                              f"{kind or 'nothing'}")
            origin = _header(scope, b"origin")
            if origin is not None and origin.split("://", 1)[-1] != _header(scope, b"host"):
                return await _deny(send, 403, f"requests from {origin} are not allowed")
            length = _header(scope, b"content-length")
            if length is not None and (not length.isdigit() or int(length) > self.max_body):
                return await _deny(send, 413, f"request body of {length} bytes is over the limit of "
                                              f"{self.max_body} bytes")
            receive = self._capped(receive, send)
        if in_query and scope["path"] == "/":
            async def send_cookie(message):
                if message["type"] == "http.response.start":
                    cookie = f"{COOKIE}={self.token}; Path=/; HttpOnly; SameSite=Strict".encode()
                    message = {**message, "headers": [*message.get("headers", []), (b"set-cookie", cookie)]}
                await send(message)

            return await self.app(scope, receive, send_cookie)
        return await self.app(scope, receive, send)

    def _capped(self, receive, send):
        seen = 0
        limit = self.max_body

        async def wrapped():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise AppError(f"request body is over the limit of {limit} bytes", 413)
            return message

        return wrapped


def create_app(project: ImageProject | VideoProject, token: str | None = None, loopback: bool = True,
               max_body: int = MAX_BODY, features: dict | None = None):
    """The ASGI application serving ``project`` (wrapped in :class:`Guard`)."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    dataset = project.dataset
    features = dict(features or {})

    def errors(fn):
        async def endpoint(request: Request):
            try:
                body = None
                if request.method == "POST":
                    raw = await request.body()
                    try:
                        body = json.loads(raw or b"{}")
                    except ValueError as e:
                        raise AppError(f"the request body is not JSON ({e})") from e
                    except RecursionError:
                        raise AppError("the request body is JSON nested too deeply") from None
                from starlette.concurrency import run_in_threadpool

                out = await run_in_threadpool(fn, request, body)
                return out if isinstance(out, Response) else JSONResponse(out)
            except AppError as e:
                return JSONResponse({"error": str(e)}, status_code=e.status)
            except (ValueError, TypeError, IndexError, KeyError, OSError) as e:  # the engines' own checks
                LOGGER.warning("samkit app: %s %s: %s: %s", request.method, request.url.path, type(e).__name__, e)
                return JSONResponse({"error": f"{type(e).__name__}: {e}"}, status_code=400)

        return endpoint

    def index(request, body):
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    def info(request, body):
        return {**project.info(), "names": dataset.names, "format": dataset.fmt, "out": str(dataset.out),
                "model": project.model.family, "features": features}

    def status(request, body):
        return {"busy": project.busy() if isinstance(project, ImageProject) else project.running}

    def images() -> ImageProject:
        if not isinstance(project, ImageProject):
            raise AppError("this app serves a video, not images", 404)
        return project

    def video() -> VideoProject:
        if not isinstance(project, VideoProject):
            raise AppError("this app serves images, not a video", 404)
        return project

    def index_of(request) -> int:
        return images().check_index(request.path_params["i"])

    def image_state(request, body):
        return images().state(index_of(request))

    def image_pixels(request, body):
        ok, buf = cv2.imencode(".png", images().image(index_of(request)), [cv2.IMWRITE_PNG_COMPRESSION, 1])
        return Response(buf.tobytes(), media_type="image/png", headers={"Cache-Control": "no-cache"})

    def image_object(request, body):
        b = check_keys(body, ("id", "cls", "points", "box"), "object")
        return images().set_object(index_of(request), b.get("id"), b.get("cls"), b.get("points"), b.get("box"))

    def image_class(request, body):
        b = check_keys(body, ("id", "cls"), "class")
        return images().set_class(index_of(request), b.get("id"), b.get("cls"))

    def image_delete(request, body):
        b = check_keys(body, ("id",), "delete")
        return images().delete(index_of(request), b.get("id"))

    def image_undo(request, body):
        check_keys(body, (), "undo")
        return images().undo(index_of(request))

    def image_redo(request, body):
        check_keys(body, (), "redo")
        return images().undo(index_of(request), redo=True)

    def image_everything(request, body):
        b = check_keys(body, ("cls",), "everything")
        return images().everything(index_of(request), b.get("cls"))

    def image_text(request, body):
        b = check_keys(body, ("text",), "text")
        return images().text(index_of(request), b.get("text"))

    def add_name(request, body):
        b = check_keys(body, ("name",), "names")
        name = b.get("name")
        if not isinstance(name, str):
            raise AppError(f"name must be a class name (text), got {type(name).__name__}: {str(name)[:40]!r}")
        cls = dataset.add_name(name)
        return {"cls": cls, "names": dataset.names}

    def export(request, body):
        b = check_keys(body, ("format",), "export")
        fmt = b.get("format")
        check_format(fmt, AppError)
        got = dataset.export(fmt, dataset.out / "exports" / fmt)
        return got

    def frame_pixels(request, body):
        k = check_int(request.path_params["k"], "frame")
        ok, buf = cv2.imencode(".jpg", video().frame_image(k), [cv2.IMWRITE_JPEG_QUALITY, 92])
        return Response(buf.tobytes(), media_type="image/jpeg", headers={"Cache-Control": "private, max-age=600"})

    def frame_masks(request, body):
        return video().masks(request.path_params["k"])

    def video_prompt(request, body):
        b = check_keys(body, ("frame", "id", "cls", "points", "box"), "prompt")
        return video().prompt(b.get("frame"), b.get("id"), b.get("cls"), b.get("points"), b.get("box"))

    def video_delete(request, body):
        return video().delete(check_keys(body, ("id",), "delete").get("id"))

    def video_class(request, body):
        b = check_keys(body, ("id", "cls"), "class")
        return video().set_class(b.get("id"), b.get("cls"))

    def video_stop(request, body):
        video().stop()
        return {"stopping": True}

    def video_propagate(request, body):
        b = check_keys(body, ("start", "reverse", "max_frames"), "propagate")
        events = video().propagate(b.get("start"), b.get("reverse", False), b.get("max_frames"))

        async def stream():  # server-sent events, one per tracked frame
            # Each frame is tracked in a worker thread; when the page goes away (the request is cancelled), the
            # tracking generator is closed here at once, so the video is free for the next propagation.
            from starlette.concurrency import run_in_threadpool

            try:
                while True:
                    ev = await run_in_threadpool(next, events, None)
                    if ev is None:
                        break
                    yield f"event: {ev['event']}\ndata: {json.dumps(ev, separators=(',', ':'))}\n\n"
            except Exception as e:  # the stream has started: report in it
                LOGGER.warning("samkit app: tracking failed: %s: %s", type(e).__name__, e)
                yield f"event: error\ndata: {json.dumps({'error': f'{type(e).__name__}: {e}'})}\n\n"
            finally:
                events.close()

        return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})

    routes = [
        Route("/", errors(index)),
        Route("/api/project", errors(info)),
        Route("/api/status", errors(status)),
        Route("/api/names", errors(add_name), methods=["POST"]),
        Route("/api/export", errors(export), methods=["POST"]),
        Route("/api/images/{i:int}", errors(image_state)),
        Route("/api/images/{i:int}/pixels", errors(image_pixels)),
        Route("/api/images/{i:int}/object", errors(image_object), methods=["POST"]),
        Route("/api/images/{i:int}/class", errors(image_class), methods=["POST"]),
        Route("/api/images/{i:int}/delete", errors(image_delete), methods=["POST"]),
        Route("/api/images/{i:int}/undo", errors(image_undo), methods=["POST"]),
        Route("/api/images/{i:int}/redo", errors(image_redo), methods=["POST"]),
        Route("/api/images/{i:int}/everything", errors(image_everything), methods=["POST"]),
        Route("/api/images/{i:int}/text", errors(image_text), methods=["POST"]),
        Route("/api/video/frames/{k:int}", errors(frame_pixels)),
        Route("/api/video/masks/{k:int}", errors(frame_masks)),
        Route("/api/video/prompt", errors(video_prompt), methods=["POST"]),
        Route("/api/video/delete", errors(video_delete), methods=["POST"]),
        Route("/api/video/class", errors(video_class), methods=["POST"]),
        Route("/api/video/propagate", errors(video_propagate), methods=["POST"]),
        Route("/api/video/stop", errors(video_stop), methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    app = Starlette(routes=routes)
    return Guard(app, token, loopback, max_body)
