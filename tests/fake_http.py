"""A real HTTP server on 127.0.0.1 whose routes behave like the places data sets live.

`FakeServer` runs a `ThreadingHTTPServer` on a free port in a thread. Each
route is a function `(request, server) -> None` that writes the response; the
factories below build the behaviours the downloader must survive: a plain
file (with or without Range support), a connection that drops half-way,
5xx errors, Google Drive's confirmation form and cookie, its quota and
sign-in pages, 404. Every request is logged (path, query, headers) so tests
can assert what the client sent, e.g. a `Range` header on resume.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse


@dataclass
class Request:
    path: str
    query: dict
    headers: dict


class FakeServer:
    def __init__(self):
        self.routes = {}
        self.log: list[Request] = []
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.fake = self
        # A short poll interval: shutdown() waits up to one interval, once per test.
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.02,), daemon=True)
        self._thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self._httpd.server_port}{path}"

    def route(self, path: str, handler) -> str:
        """Serve `handler` at `path` (query strings ignored when matching); returns the full URL."""
        self.routes[path] = handler
        return self.url(path)

    def hits(self, path: str | None = None) -> int:
        return sum(1 for r in self.log if path is None or r.path == path)

    def requests(self, path: str) -> list[Request]:
        return [r for r in self.log if r.path == path]

    def close(self):
        self._httpd.shutdown()
        self._httpd.server_close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"  # one request per connection: a dropped body is simply a closed socket

    def do_GET(self):
        server = self.server.fake
        parts = urlparse(self.path)
        req = Request(parts.path, {k: v[0] for k, v in parse_qs(parts.query).items()}, dict(self.headers))
        with server._lock:
            server.log.append(req)
        handler = server.routes.get(parts.path)
        if handler is None:
            return send(self, 404, b"<html><title>Not Found</title></html>", "text/html")
        handler(self, req)

    def log_message(self, *args):  # keep pytest output clean
        pass


def send(h: BaseHTTPRequestHandler, status: int, body: bytes, content_type: str = "application/octet-stream",
         headers: dict | None = None):
    h.send_response(status)
    h.send_header("Content-Type", content_type)
    h.send_header("Content-Length", str(len(body)))
    for k, v in (headers or {}).items():
        h.send_header(k, v)
    h.end_headers()
    h.wfile.write(body)


def send_file(h, req: Request, data: bytes, ranges: bool = True, cut_at: int | None = None,
              content_type: str = "application/zip"):
    """200 with the whole file, or 206 for `Range: bytes=N-` when `ranges`; `cut_at` drops the connection there."""
    m = re.fullmatch(r"bytes=(\d+)-", req.headers.get("Range", ""))
    start = int(m.group(1)) if (m and ranges) else 0
    body = data[start:]
    h.send_response(206 if start else 200)
    h.send_header("Content-Type", content_type)
    h.send_header("Content-Length", str(len(body)))
    h.send_header("ETag", '"v1"')
    if start:
        h.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
    h.end_headers()
    if cut_at is not None:
        h.wfile.write(body[: cut_at - start])
        h.wfile.flush()
        h.close_connection = True
        h.connection.shutdown(2)  # the network dies mid-file
        return
    h.wfile.write(body)


# -- route factories -----------------------------------------------------------


def file_route(data: bytes, ranges: bool = True, content_type: str = "application/zip"):
    return lambda h, req: send_file(h, req, data, ranges=ranges, content_type=content_type)


def dropping_route(data: bytes, cut_at: int, drops: int = 1, ranges: bool = True):
    """Sends the first `drops` responses only up to byte `cut_at`, then behaves like a file."""
    count = {"n": 0}

    def handler(h, req):
        count["n"] += 1
        send_file(h, req, data, ranges=ranges, cut_at=cut_at if count["n"] <= drops else None)

    return handler


def stalling_route(data: bytes, stall_at: int, seconds: float):
    """The first response sends `stall_at` bytes, then goes silent for `seconds`; later ones serve the file."""
    count = {"n": 0}

    def handler(h, req):
        count["n"] += 1
        if count["n"] > 1:
            return send_file(h, req, data)
        h.send_response(200)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data[:stall_at])
        h.wfile.flush()
        time.sleep(seconds)
        h.close_connection = True

    return handler


def trickling_route(data: bytes, every: float, for_seconds: float, times: int | None = 1):
    """The first `times` responses (all if None) send one byte every `every` seconds, for at most
    `for_seconds`, then drop the connection; later ones serve the file (with Range)."""
    count = {"n": 0}

    def handler(h, req):
        count["n"] += 1
        if times is not None and count["n"] > times:
            return send_file(h, req, data)
        h.send_response(200)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        deadline = time.monotonic() + for_seconds
        try:
            for i in range(len(data)):
                if time.monotonic() > deadline:
                    break
                h.wfile.write(data[i:i + 1])
                h.wfile.flush()
                time.sleep(every)
        except OSError:  # the client gave up on us
            pass
        h.close_connection = True

    return handler


def unsized_route(data: bytes):
    """200 with no Content-Length: the body ends when the connection closes (the size is learnt at the end)."""

    def handler(h, req):
        h.send_response(200)
        h.send_header("Content-Type", "application/zip")
        h.end_headers()
        try:
            h.wfile.write(data)
        except OSError:
            pass
        h.close_connection = True

    return handler


def failing_route(status: int, times: int | None = None, then=None):
    """`status` for the first `times` requests (all if None), then `then`."""
    count = {"n": 0}

    def handler(h, req):
        count["n"] += 1
        if times is not None and count["n"] > times:
            return then(h, req)
        send(h, status, f"<html><title>Error {status}</title></html>".encode(), "text/html")

    return handler


def html_route(page: str, status: int = 200, headers: dict | None = None):
    return lambda h, req: send(h, status, page.encode(), "text/html; charset=utf-8", headers)


QUOTA_PAGE = """<!DOCTYPE html><html><head><title>Google Drive - Quota exceeded</title></head><body>
<p>Sorry, you can't view or download this file at this time.</p>
<p>Too many users have viewed or downloaded this file recently. Please try accessing the file again later.
If the file you are trying to access is particularly large or is shared with many people, it may take up to
24 hours to be able to view or download the file.</p></body></html>"""

LOGIN_PAGE = """<!doctype html><html><head><title>Sign in - Google Accounts</title></head><body>
<form action="https://accounts.google.com/v3/signin/identifier"><input type="email" name="identifier">
<input type="password" name="Passwd"></form></body></html>"""

FORM_PAGE = """<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title></head><body>
<div class="uc-main"><div id="uc-text"><p class="uc-warning-caption">Google Drive can't scan this file for viruses.
</p><p class="uc-warning-subcaption"><span class="uc-name-size"><a href="/open?id={id}">img.zip</a> (1.3G)</span>
is too large for Google to scan for viruses. Would you still like to download this file?</p>
<form id="download-form" action="{action}" method="get">
<input type="submit" id="uc-download-link" class="goog-inline-block jfk-button jfk-button-action" value="Download anyway"/>
<input type="hidden" name="id" value="{id}"><input type="hidden" name="export" value="download">
<input type="hidden" name="confirm" value="t"><input type="hidden" name="uuid" value="{uuid}"></form>
</div></div></body></html>"""

COOKIE_PAGE = """<html><head><title>Google Drive - Virus scan warning</title></head><body>
<p>Google Drive can't scan this file for viruses.</p><p>Would you still like to download this file?</p>
</body></html>"""


def drive_form_route(server: FakeServer, path: str, data: bytes, file_id: str = "FILEID", uuid: str = "u-123"):
    """Drive's 2023+ flow: `path?id=` answers a virus-scan form whose action serves the file
    only with the form's hidden inputs (id, export, confirm=t, uuid)."""
    action = path + "/usercontent"

    def download(h, req):
        if req.query.get("confirm") == "t" and req.query.get("uuid") == uuid and req.query.get("id") == file_id:
            return send_file(h, req, data)
        send(h, 200, FORM_PAGE.format(id=file_id, uuid=uuid, action=server.url(action)).encode(), "text/html")

    server.route(action, download)
    server.route(path, lambda h, req: send(h, 200, FORM_PAGE.format(id=file_id, uuid=uuid, action=server.url(action))
                                           .encode(), "text/html; charset=utf-8"))
    return server.url(f"{path}?export=download&id={file_id}")


def drive_cookie_route(server: FakeServer, path: str, data: bytes, token: str = "Tk9x"):
    """Drive's older flow: a `download_warning_*` cookie, then the same URL with `confirm=TOKEN` and the cookie."""

    def handler(h, req):
        cookie = req.headers.get("Cookie", "")
        if req.query.get("confirm") == token and f"download_warning_13058876669334088843_1a2b={token}" in cookie:
            return send_file(h, req, data)
        send(h, 200, COOKIE_PAGE.encode(), "text/html; charset=utf-8",
             {"Set-Cookie": f"download_warning_13058876669334088843_1a2b={token}; Path=/"})

    server.route(path, handler)
    return server.url(f"{path}?export=download&id=FILEID")
