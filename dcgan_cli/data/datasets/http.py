"""Download one file from a list of mirrors, so that it survives Google Drive and bad networks.

`download(spec, dest, ...)` tries each mirror in order:

- streams into `DEST.part`, hashing as the bytes arrive; a `DEST.part.json`
  sidecar remembers the mirror and its ETag/Last-Modified;
- resumes with `Range: bytes=N-` (and `If-Range`), after a dropped connection
  in this run or after an interrupted earlier run; a server that ignores the
  range (200 instead of 206) or resumes at the wrong byte restarts cleanly;
- retries timeouts, dropped connections, 429 and 5xx with exponential backoff
  (`BACKOFF_SECONDS`, doubled each time; the count resets whenever bytes arrive);
- treats a body slower than `min_rate` bytes/s over `rate_window` seconds as
  stalled (a server trickling a byte every few seconds never times out): it is
  resumed like a timeout, and such a retry resets the count only if it
  brought at least one window's worth of bytes;
- turns a filesystem error (disk full, read-only) into one line naming the
  file and the fix; the bytes so far stay in `DEST.part` for the next run;
- reads the first bytes of every body: an HTML page in place of the file is a
  Drive confirmation (followed), a quota or sign-in page, or some other page
  (both: next mirror); see drive.py;
- checks the announced size before downloading and the size and checksum after;
  only then does the file get its name (`DEST`). A mismatch discards this
  mirror's bytes, never a file the user had, and moves on to the next mirror.

When every mirror fails, one `AllMirrorsFailed` lists what each one answered.

Built on `requests` (already a TensorFlow dependency): a session keeps Drive's
cookies across the confirmation hop, and it gives separate connect/read
timeouts and streaming with clear exception types, which urllib does not.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from dcgan_cli import __version__
from dcgan_cli.data.datasets import RemoteFile, drive
from dcgan_cli.data.datasets.progress import Ui
from dcgan_cli.data.datasets.verify import CHUNK, Digests, hash_file, mismatch
from dcgan_cli.errors import DcganError
from dcgan_cli.fsutil import check_space, os_error, write_json

BACKOFF_SECONDS = 1.0  # first retry delay; doubles per retry (tests shrink it)
MAX_BACKOFF_SECONDS = 60.0
MAX_CONFIRM_HOPS = 3  # Drive: page -> form -> file; more means a loop
HTML_LIMIT = 1 << 20  # read at most this much of a page served in place of the file


@dataclass(frozen=True)
class HttpOptions:
    retries: int = 5  # per mirror, in a row without progress
    timeout: float = 30.0  # seconds to connect, and of silence while reading
    min_rate: float = 1024.0  # bytes/s; a body slower than this over rate_window seconds is a stall (0: off)
    rate_window: float = 60.0


class AllMirrorsFailed(DcganError):
    """Every mirror failed; the message lists what each answered and the manual route."""

    def __init__(self, filename: str, attempts: list[tuple[str, str]], hint: str):
        self.attempts = attempts
        lines = [f"could not download {filename} from any of its {len(attempts)} mirror(s):"]
        lines += [f"  {i}. {url}: {why}" for i, (url, why) in enumerate(attempts, 1)]
        lines.append(hint)
        super().__init__("\n".join(lines))


class MirrorFailed(Exception):
    """This mirror cannot serve the file; the message is what it answered."""


class _Retry(Exception):
    """A transient failure (timeout, dropped connection, 5xx): ask the same mirror again."""

    def __init__(self, message: str, after: float = 0.0, stalled: bool = False):
        super().__init__(message)
        self.after = after  # the server's Retry-After, in seconds
        self.stalled = stalled  # too slow: bytes came, but a trickle is no progress


def download(spec: RemoteFile, dest: Path, mirrors: tuple[str, ...] | list[str], options: HttpOptions | None = None,
             ui: Ui | None = None, hint: str = "") -> tuple[str, Digests]:
    """Fetch `spec` into `dest` from the first mirror that serves it; returns (mirror, digests)."""
    import requests

    options, ui = options or HttpOptions(), ui or Ui(quiet=True)
    part = _Part(dest.with_name(dest.name + ".part"))
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        part = _Part.load(part.path, ui)
        return _download(spec, dest, mirrors, options, ui, hint, part)
    except OSError as e:
        if isinstance(e, requests.RequestException):  # (an OSError too) none gets past _attempt; in case one does
            raise
        kept = part.path.stat().st_size if part.path.is_file() else 0
        again = f"run the same command again (it resumes from the {kept:,} bytes kept)" if kept else "try again"
        raise os_error(e, e.filename or part.path, elsewhere="--data-dir", again=again) from None


def _download(spec, dest, mirrors, options, ui, hint, part) -> tuple[str, Digests]:
    import requests

    attempts: list[tuple[str, str]] = []
    with requests.Session() as session, ui.bar(spec.filename, total=spec.size) as bar:
        # identity: byte offsets for Range must be offsets in the file, not in a gzip stream.
        session.headers.update({"User-Agent": f"dcgan-cli/{__version__}", "Accept-Encoding": "identity"})
        for mirror in mirrors:
            try:
                digests = _from_mirror(session, mirror, spec, part, options, ui, bar)
            except MirrorFailed as e:
                attempts.append((mirror, str(e)))
                ui.note(f"{spec.filename}: {mirror} failed: {e}")
                continue
            part.finish(dest)
            write_json(_record(dest), {"url": mirror, **digests.as_dict()})
            return mirror, digests
    raise AllMirrorsFailed(spec.filename, attempts, hint)


def _record(dest: Path) -> Path:
    """Where the size, checksums and origin of a finished download are kept."""
    return dest.with_name(dest.name + ".json")


def _from_mirror(session, mirror, spec, part, options, ui, bar) -> Digests:
    part.adopt(mirror, spec, ui)
    failures, restarted = 0, False
    while True:
        before = part.size
        try:
            _attempt(session, mirror, spec, part, options, bar)
        except _Retry as e:
            enough = options.min_rate * options.rate_window if e.stalled else 1
            failures = 1 if part.size - before >= enough else failures + 1
            if failures > options.retries:
                raise MirrorFailed(f"{e} (gave up after {options.retries} retries)") from None
            delay = min(max(BACKOFF_SECONDS * 2 ** (failures - 1), e.after), MAX_BACKOFF_SECONDS)
            ui.note(f"{spec.filename}: {e}; retry {failures}/{options.retries} in {delay:.1f}s")
            time.sleep(delay)
            continue
        problem = mismatch(spec, part.digests)
        if problem is None:
            return part.digests
        resumed = part.resumed
        part.reset()
        bar.update(completed=0)
        if resumed and not restarted:
            # The bytes kept from before the resume may be the bad ones: one clean try.
            restarted = True
            ui.note(f"{spec.filename}: resumed download from {mirror} has {problem}; downloading it again whole")
            continue
        raise MirrorFailed(f"served a different file: {problem}")


def _attempt(session, mirror, spec, part, options, bar) -> None:
    """One request (plus Drive's confirmation hops) appending to `part`; raises _Retry or MirrorFailed."""
    import requests

    url = mirror
    for _ in range(MAX_CONFIRM_HOPS + 1):
        headers = {}
        if part.size:
            headers["Range"] = f"bytes={part.size}-"
            if part.validator and part.url == mirror:
                headers["If-Range"] = part.validator  # changed on the server: send it all again
        try:
            resp = session.get(url, headers=headers, stream=True, timeout=options.timeout)
        except (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema,
                requests.exceptions.InvalidSchema) as e:
            raise MirrorFailed(f"not a usable URL ({e})") from None
        except requests.exceptions.TooManyRedirects:
            raise MirrorFailed("redirects in a loop") from None
        except requests.RequestException as e:
            raise _Retry(_describe(e)) from None
        with resp:
            try:
                url = _receive(session, resp, mirror, spec, part, bar, options)
            except requests.RequestException as e:
                raise _Retry(_describe(e)) from None
        if url is None:
            return
    raise MirrorFailed("answers every confirmation with another confirmation page")


def _receive(session, resp, mirror, spec, part, bar, options) -> str | None:
    """Handle one response: append the body to `part`, or return the URL a confirmation page points to."""
    status = resp.status_code
    if status == 429 or status >= 500:
        after = resp.headers.get("Retry-After", "")
        raise _Retry(f"HTTP {status} {resp.reason}", after=float(after) if after.isdigit() else 0.0)
    if status == 416 and part.size:
        total = _content_range(resp.headers.get("Content-Range", ""))[1]
        if part.size in (spec.size, total):
            return None  # we already hold every byte
        part.reset()
        raise _Retry("the server refused to resume (HTTP 416); starting over")
    if status >= 400:
        reason = f"HTTP {status} {resp.reason}"
        if "html" in resp.headers.get("Content-Type", ""):  # Drive also serves quota and sign-in pages as 403
            verdict = drive.inspect_page(next(_body(resp), b"").decode("utf-8", "replace"), resp.url)
            if verdict.kind in ("quota", "login"):
                reason += f": {verdict.reason}"
        raise MirrorFailed(reason)

    chunks = _paced(_body(resp), options)
    first = next(chunks, b"")
    content_type = resp.headers.get("Content-Type", "")
    # A 200 body starts at byte 0 of *something*: sniff it. A 206 is sniffed only if it says it is HTML.
    if (status != 206 or "html" in content_type) and drive.looks_like_html(first, content_type):
        page = first
        for chunk in chunks:
            page += chunk
            if len(page) >= HTML_LIMIT:
                break
        cookies = {c.name: c.value for r in (*resp.history, resp) for c in r.cookies}
        verdict = drive.inspect_page(page.decode("utf-8", "replace"), resp.url, cookies)
        if verdict.kind == "confirm":
            return verdict.url
        raise MirrorFailed(verdict.reason)

    if status == 206:
        start, total = _content_range(resp.headers.get("Content-Range", ""))
        if start != part.size:
            part.reset()
            raise _Retry(f"the server resumed at byte {start}, not {part.size}; starting over")
        part.resumed = True
    else:
        if part.size:
            bar.update(completed=0)  # the server ignored Range (or the file changed): start over cleanly
        part.start(mirror, resp.headers.get("ETag") or resp.headers.get("Last-Modified"))
        total = int(resp.headers["Content-Length"]) if resp.headers.get("Content-Length", "").isdigit() else None
    if total is not None and spec.size is not None and total != spec.size:
        raise MirrorFailed(f"serves {total:,} bytes, expected {spec.size:,}")
    if total is not None:
        check_space(part.path.parent, total - part.size, f"the rest of {part.path.name[:-5]}")
    bar.update(completed=part.size, total=total if total is not None else spec.size)

    with open(part.path, "ab") as f:
        try:
            for chunk in _chain(first, chunks):
                f.write(chunk)
                part.digests.update(chunk)
                bar.advance(len(chunk))
        finally:
            f.flush()
            os.fsync(f.fileno())
    if total is not None and part.size < total:
        raise _Retry(f"the connection closed at {part.size:,} of {total:,} bytes")
    return None


def _body(resp):
    """The body in chunks of up to CHUNK bytes, keeping every byte that arrived before a drop.

    `iter_content` reads whole chunks and loses a partial one when the
    connection dies; urllib3 2's `read1` returns what is there, so a resume
    starts exactly where the bytes stopped.
    """
    import urllib3

    raw = resp.raw
    if not hasattr(raw, "read1"):  # urllib3 1.x
        yield from resp.iter_content(CHUNK)
        return
    try:
        while chunk := raw.read1(CHUNK):
            yield chunk
    except urllib3.exceptions.ReadTimeoutError as e:
        raise _requests_error("ReadTimeout", e) from None
    except urllib3.exceptions.HTTPError as e:  # ProtocolError: the connection broke off
        raise _requests_error("ChunkedEncodingError", e) from None


def _paced(chunks, options: HttpOptions):
    """`chunks`, or _Retry(stalled) once fewer than min_rate bytes/s arrived over rate_window seconds.

    A read timeout only catches silence; a server sending a byte every few
    seconds would hold the download forever without this.
    """
    if not options.min_rate:
        yield from chunks
        return
    start, got = time.monotonic(), 0
    for chunk in chunks:
        got += len(chunk)
        elapsed = time.monotonic() - start
        if elapsed >= options.rate_window:
            if got < options.min_rate * elapsed:
                raise _Retry(f"too slow: {got:,} bytes in {elapsed:.1f}s, under --min-rate {options.min_rate:g} "
                             f"bytes/s", stalled=True)
            start, got = time.monotonic(), 0
        yield chunk


def _requests_error(name: str, e: Exception) -> Exception:
    """The requests exception iter_content would have raised, so one except clause handles both paths."""
    import requests

    return getattr(requests.exceptions, name)(e)


def _chain(first: bytes, rest):
    if first:
        yield first
    yield from rest


def _content_range(value: str) -> tuple[int | None, int | None]:
    """`bytes 100-199/1000` -> (100, 1000); `bytes */1000` -> (None, 1000)."""
    m = re.match(r"\s*bytes\s+(?:(\d+)-\d+|\*)/(\d+|\*)", value)
    if not m:
        return None, None
    return (int(m.group(1)) if m.group(1) else None), (int(m.group(2)) if m.group(2) != "*" else None)


def _describe(e: Exception) -> str:
    """A short reason for a network error (requests' own messages nest three exceptions deep)."""
    import requests

    if isinstance(e, requests.exceptions.ConnectTimeout):
        return "timed out connecting"
    if isinstance(e, (requests.exceptions.ReadTimeout,)) or "Read timed out" in str(e):
        return "timed out waiting for data"
    if isinstance(e, requests.exceptions.ChunkedEncodingError):
        return "the connection broke off mid-file"
    if isinstance(e, requests.exceptions.SSLError):
        return "TLS error"
    if isinstance(e, requests.exceptions.ConnectionError):
        text = str(e)
        for key, say in (("Name or service not known", "host not found"), ("nodename nor servname", "host not found"),
                         ("Temporary failure in name resolution", "host not found (no network?)"),
                         ("Connection refused", "connection refused"), ("Connection reset", "connection reset")):
            if key in text:
                return say
        return "connection failed"
    return type(e).__name__


class _Part:
    """DEST.part: the bytes so far, their running digests, and (in DEST.part.json) where they came from."""

    def __init__(self, path: Path):
        self.path, self.meta_path = path, path.with_name(path.name + ".json")
        self.digests, self.url, self.validator, self.resumed = Digests(), None, None, False

    @property
    def size(self) -> int:
        return self.digests.size

    @classmethod
    def load(cls, path: Path, ui: Ui) -> "_Part":
        """Pick up what an earlier (interrupted) run left, hashing it once."""
        import json

        part = cls(path)
        if path.exists() and path.stat().st_size:
            try:
                meta = json.loads(part.meta_path.read_text())
            except (OSError, ValueError):
                meta = {}
            part.url, part.validator = meta.get("url"), meta.get("validator")
            with ui.bar(f"checking the partial {path.name}", total=path.stat().st_size) as bar:
                part.digests = hash_file(path, bar.advance)
            part.resumed = True
        else:
            part.reset()
        return part

    def adopt(self, mirror: str, spec: RemoteFile, ui: Ui) -> None:
        """Keep the bytes for `mirror` if they can be trusted to continue, else start empty.

        Bytes from another mirror are kept only when a checksum will vouch for
        the mixed result (and a mismatch then triggers one clean download).
        """
        if not self.size:
            return
        too_long = spec.size is not None and self.size > spec.size
        if too_long or (self.url != mirror and not spec.checksum):
            self.reset()
        else:
            self.resumed = True
            ui.note(f"{spec.filename}: resuming at {self.size:,} bytes")

    def start(self, mirror: str, validator: str | None) -> None:
        """A body from byte 0 is coming: empty the file and remember its origin."""
        self.reset()
        self.url, self.validator = mirror, validator
        write_json(self.meta_path, {"url": mirror, "validator": validator})

    def reset(self) -> None:
        if self.path.exists():
            self.path.write_bytes(b"")  # truncated, not deleted: this is our own scratch file
        self.digests, self.resumed = Digests(), False

    def finish(self, dest: Path) -> None:
        os.replace(self.path, dest)  # verified: now, and only now, the file gets its name
        self.meta_path.unlink(missing_ok=True)
