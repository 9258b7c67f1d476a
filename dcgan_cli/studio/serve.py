"""Starting the studio: the checks before anything loads, then Gradio bound to one address.

Quiet and local by default: 127.0.0.1 (over SSH: `ssh -L 7860:127.0.0.1:7860 HOST`, then open
http://127.0.0.1:7860 on your own machine), no share link, no analytics or version check
(GRADIO_ANALYTICS_ENABLED=False, set before Gradio is imported), system fonts instead of Google's,
no server-side rendering (which would need Node), no MCP server.
"""

from __future__ import annotations

import errno
import importlib.util
import os
import socket
from pathlib import Path
from typing import Callable

from dcgan_cli.errors import DcganError, UsageError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860
MISSING = "dcgan studio needs Gradio, which is not installed; pip install 'dcgan-cli[ui]'"
# Faces are a few dozen pixels wide: show them large, with sharp pixels.
_CSS = ".pixels img { image-rendering: pixelated; width: 100%; height: 100%; object-fit: contain; }"
_FONTS = (["ui-sans-serif", "system-ui", "sans-serif"], ["ui-monospace", "Consolas", "monospace"])


def check_gradio() -> None:
    if importlib.util.find_spec("gradio") is None:
        raise DcganError(MISSING)


def free_port(host: str = DEFAULT_HOST) -> int:
    """A port nothing listens on now (the OS's choice)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def check_address(host: str, port: int) -> int:
    """The port to serve on (0: a free one), after making sure `host:port` can be listened on."""
    if not 0 <= port <= 65535:
        raise UsageError(f"{port} is not a port: use 1 to 65535 (0: any free port)", "--port")
    try:
        infos = socket.getaddrinfo(host, port or None, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise DcganError(f"cannot listen on {host}: {e.strerror}; pass --host 127.0.0.1 (this machine only) "
                         f"or an address of this machine") from None
    family, _, _, _, address = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(address)
            return s.getsockname()[1]  # port 0: the free one the OS chose
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise DcganError(f"port {port} on {host} is in use (another studio?); pass another --port, "
                                 f"or --port 0 for any free one") from None
            if e.errno == errno.EACCES:
                raise DcganError(f"port {port} needs root; pass --port 1024 or above (default {DEFAULT_PORT})") from None
            raise DcganError(f"cannot listen on {host}:{port}: {e.strerror}; pass --host 127.0.0.1 "
                             f"(this machine only) or an address of this machine") from None
    return port


def launch(studio, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, *, block: bool = True,
           say: Callable[[str], None] = print):
    """Serve `studio` at http://host:port; with `block`, until Ctrl-C. Returns the Blocks (for tests: .close())."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gradio as gr

    from dcgan_cli.studio.app import build

    demo = build(studio)
    demo.queue(default_concurrency_limit=1)  # one generator, one job at a time; the others wait in line
    theme = gr.themes.Default(font=_FONTS[0], font_mono=_FONTS[1])
    demo.launch(server_name=host, server_port=port, share=False, prevent_thread_lock=True, quiet=True,
                show_error=True, ssr_mode=False, mcp_server=False, pwa=False, inbrowser=False, theme=theme,
                css=_CSS,
                allowed_paths=[str(Path(studio.workdir))], footer_links=["api"])
    say(f"dcgan studio: http://{'[' + host + ']' if ':' in host else host}:{port}  (Ctrl-C stops it)")
    if host in ("127.0.0.1", "localhost", "::1"):
        say(f"Over SSH: ssh -L {port}:127.0.0.1:{port} THIS-HOST, then open http://127.0.0.1:{port} on yours")
    if block:
        try:
            demo.block_thread()
        finally:
            demo.close()
    return demo
