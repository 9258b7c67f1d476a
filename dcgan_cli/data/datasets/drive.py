"""Google Drive: download links, and what the HTML pages it serves mean.

Drive rarely hands over a large file on the first request. It answers with an
HTML page instead, with status 200 and often a `.zip` name, which is how so many
CelebA scripts end up with a "zip" that is really a web page. The pages seen
in the wild, and what `inspect_page` makes of them:

- virus-scan warning (files > ~100 MB): a form `download-form` whose action
  (drive.usercontent.google.com/download) and hidden inputs (id, export,
  confirm=t, uuid) lead to the file; older pages set a `download_warning_*`
  cookie and link to `/uc?export=download&confirm=TOKEN&id=...` instead.
  -> "confirm", with the URL to follow.
- quota exceeded ("Too many users have viewed or downloaded this file
  recently"): nothing to do but wait up to 24 h or use another mirror. -> "quota"
- sign-in or "You need access": the file is not public. -> "login"
- anything else -> "html", with the page title so the user can tell what it was.

No network here: the downloader (http.py) fetches, this module only reads.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from html.parser import HTMLParser
from urllib.parse import parse_qsl, urlencode, urljoin, urlparse, urlunparse

DOWNLOAD_URL = "https://drive.google.com/uc?export=download&id={id}"
VIEW_URL = "https://drive.google.com/file/d/{id}/view"

_QUOTA = ("too many users have viewed or downloaded this file recently", "download quota", "quota exceeded")
_LOGIN = ("accounts.google.com/servicelogin", "sign in - google accounts", "you need access", "request access")
_CONFIRM = ("virus scan warning", "can't scan this file for viruses", "cannot scan this file for viruses",
            "download anyway")


def download_url(file_id: str) -> str:
    return DOWNLOAD_URL.format(id=file_id)


def view_url(file_id: str) -> str:
    """The page a person opens in a browser to download the file by hand."""
    return VIEW_URL.format(id=file_id)


def file_id(url: str) -> str | None:
    """The Drive file id in a share, view or download link; None if `url` is not Drive."""
    parts = urlparse(url)
    if not (parts.hostname or "").endswith(("drive.google.com", "docs.google.com", "drive.usercontent.google.com")):
        return None
    m = re.search(r"/(?:file/)?d/([-\w]{10,})", parts.path)
    if m:
        return m.group(1)
    return dict(parse_qsl(parts.query)).get("id")


def normalise_url(url: str) -> str:
    """Turn a Drive share/view link into its direct-download form; other URLs pass through."""
    fid = file_id(url)
    if fid and "/uc" not in urlparse(url).path and "download" not in urlparse(url).path:
        return download_url(fid)
    return url


@dataclass(frozen=True)
class Page:
    kind: str  # "confirm" | "quota" | "login" | "html"
    reason: str  # what a person should read about it
    url: str | None = None  # for "confirm": where the file is


def inspect_page(html: str, url: str, cookies: dict[str, str] | None = None) -> Page:
    """What an HTML page served in place of a file means, and how to go on."""
    doc = _Doc()
    doc.feed(html)
    text = html.lower()
    title = " ".join(doc.title.split())[:80] or "untitled"

    if any(s in text for s in _QUOTA):
        return Page("quota", "Google Drive quota exceeded (\"Too many users have viewed or downloaded this file "
                             "recently\"; it resets within 24 hours)")
    if any(s in text for s in _LOGIN) or doc.has_password:
        return Page("login", f"asks to sign in or request access (page \"{title}\"): the file is not public")

    for form in doc.forms:  # the 2023+ virus-scan form: follow its action with its hidden inputs
        names = {name for name, _ in form["inputs"]}
        if form["id"] == "download-form" or "confirm" in names:
            action = urljoin(url, form["action"] or url)
            return Page("confirm", "virus-scan confirmation form", _with_query(action, form["inputs"], replace=True))
    for name, value in (cookies or {}).items():  # the older cookie variant
        if name.startswith("download_warning"):
            return Page("confirm", "download_warning cookie", _with_query(url, [("confirm", value)]))
    for href in doc.links:
        if "confirm=" in href:
            return Page("confirm", "confirmation link", urljoin(url, href))
    if any(s in text for s in _CONFIRM):
        # A warning we cannot parse: `confirm=t` is what Drive's own form sends.
        return Page("confirm", "confirmation page", _with_query(url, [("confirm", "t")]))
    return Page("html", f"served an HTML page (\"{title}\") instead of the file")


def _with_query(url: str, params: list[tuple[str, str]], replace: bool = False) -> str:
    parts = urlparse(url)
    query = [] if replace else [(k, v) for k, v in parse_qsl(parts.query) if k not in dict(params)]
    return urlunparse(parts._replace(query=urlencode(query + list(params))))


class _Doc(HTMLParser):
    """Collects the title, forms with their hidden inputs, and link targets of a page."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.title, self.forms, self.links, self.has_password = "", [], [], False
        self._in_title = False

    def handle_starttag(self, tag, attrs):
        a = {k: v or "" for k, v in attrs}
        if tag == "title":
            self._in_title = True
        elif tag == "form":
            self.forms.append({"id": a.get("id", ""), "action": a.get("action", ""), "inputs": []})
        elif tag == "input":
            kind = a.get("type", "text").lower()
            if kind == "password":
                self.has_password = True
            if kind == "hidden" and a.get("name") and self.forms:
                self.forms[-1]["inputs"].append((a["name"], a.get("value", "")))
        elif tag == "a" and a.get("href"):
            self.links.append(a["href"])

    def handle_endtag(self, tag):
        if tag == "title":
            self._in_title = False

    def handle_data(self, data):
        if self._in_title:
            self.title += data


def looks_like_html(first_bytes: bytes, content_type: str = "") -> bool:
    """True if a response is a web page rather than the file: by its header or its first bytes.

    The bytes decide when the header lies (Drive serves pages as
    application/octet-stream at times, and servers label zips text/html).
    """
    head = first_bytes[:1024].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if head.startswith((b"<!doctype html", b"<html", b"<head", b"<body", b"<!--", b"<meta", b"<title")):
        return True
    # An archive never starts with '<'; a text/html label on binary data is ignored.
    return "text/html" in content_type.lower() and head.startswith(b"<")
