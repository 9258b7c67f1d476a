"""Throughput of `dcgan download`'s pieces on this machine (prints figures; not a test).

    .venv/bin/python tests/bench_download.py

Download: a 256 MB file from a local HTTP server, streamed, MD5+SHA-256 hashed as
it arrives. Extraction: a zip of 20,000 small files (CelebA's JPEGs average
~7 KB; its zip holds 202,599 of them), checked member by member, then written.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
import time
import zipfile
from pathlib import Path

from fake_http import FakeServer, file_route  # this script's folder, tests/, is on sys.path

from dcgan_cli.data.datasets import RemoteFile
from dcgan_cli.data.datasets.extract import count_images, extract
from dcgan_cli.data.datasets.http import download
from dcgan_cli.data.datasets.verify import hash_file


def main():
    tmp = Path(tempfile.mkdtemp(prefix="bench-download."))
    data = os.urandom(256 << 20)
    server = FakeServer()
    url = server.route("/big.bin", file_route(data))
    t = time.perf_counter()
    download(RemoteFile("big.bin", (url,), size=len(data)), tmp / "big.bin", [url])
    dt = time.perf_counter() - t
    print(f"download+md5+sha256: {len(data) / dt / 1e6:.0f} MB/s ({len(data) >> 20} MB from 127.0.0.1 in {dt:.2f} s)")
    server.close()
    t = time.perf_counter()
    hash_file(tmp / "big.bin")
    dt = time.perf_counter() - t
    print(f"re-verify (md5+sha256 of a file): {len(data) / dt / 1e6:.0f} MB/s; the 1.44 GB CelebA zip: "
          f"~{1.44e9 / (len(data) / dt):.0f} s")
    (tmp / "big.bin").unlink()
    del data

    n = 20_000
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        payload = os.urandom(7000)
        for i in range(n):
            zf.writestr(f"img_align_celeba/{i:06d}.jpg", payload)
    (tmp / "imgs.zip").write_bytes(buf.getvalue())
    (tmp / "out").mkdir()
    t = time.perf_counter()
    extract(tmp / "imgs.zip", tmp / "out")
    dt = time.perf_counter() - t
    t = time.perf_counter()
    count = count_images(tmp / "out")
    dc = time.perf_counter() - t
    print(f"extract: {n / dt:.0f} files/s ({n} x 7 KB in {dt:.2f} s; CelebA's 202,599: ~{202_599 / (n / dt):.0f} s); "
          f"count {count} images in {dc * 1000:.0f} ms")
    shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
