"""`dcgan download` against a real HTTP server on 127.0.0.1 that behaves like Drive and friends.

Each test builds tiny archives, registers a CelebA-like entry pointing at the
local server (same machinery, 6 images instead of 202,599) and runs the CLI
as a user would. No test reaches the internet.
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import tarfile
import zipfile

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from dcgan_cli.data import datasets
from dcgan_cli.cli import app
from dcgan_cli.data.datasets import Dataset, RemoteFile, drive, http
from dcgan_cli.data.datasets.extract import extract
from dcgan_cli.errors import DcganError

from helpers import one_line_error
from fake_http import (LOGIN_PAGE, QUOTA_PAGE, drive_cookie_route, drive_form_route, dropping_route,
                       failing_route, file_route, html_route, stalling_route, trickling_route, unsized_route)
from fs_faults import read_only, small_disk

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("fast_backoff")  # conftest: the server fails on purpose, retries need not wait
N_IMAGES = 6
PARTITION = b"".join(f"{i:06d}.jpg {i % 3}\n".encode() for i in range(1, N_IMAGES + 1))


def jpeg(i: int) -> bytes:
    rng = np.random.default_rng(i)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (12, 10, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def make_zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def celeba_zip(n=N_IMAGES, folder="img_align_celeba") -> bytes:
    return make_zip({f"{folder}/{i:06d}.jpg": jpeg(i) for i in range(1, n + 1)})


ARCHIVE = celeba_zip()


def md5(b: bytes) -> str:
    return hashlib.md5(b).hexdigest()


def register(monkeypatch, mirrors, *, partition_mirrors=(), archive=ARCHIVE, expected=N_IMAGES, name="tinyceleba"):
    """A CelebA-like registry entry: one zip of images (+ the partition file if it has mirrors)."""
    files = [RemoteFile("img_align_celeba.zip", tuple(mirrors), size=len(archive), md5=md5(archive), extract=True,
                        manual="https://drive.example/manual")]
    if partition_mirrors:
        files.append(RemoteFile("list_eval_partition.txt", tuple(partition_mirrors), md5=md5(PARTITION)))
    ds = Dataset(name=name, description="tiny CelebA look-alike", size="20 KB", source="the test server",
                 image_dir="img_align_celeba", files=tuple(files), expected_images=expected)
    monkeypatch.setitem(datasets.DATASETS, name, ds)
    return ds


def download(*args, env=None):
    return runner.invoke(app, ["download", *map(str, args), "--quiet"], env=env)


def images_in(folder):
    return sorted(p.name for p in folder.glob("*.jpg"))


# -- the happy paths -------------------------------------------------------------


def test_direct_download_extracts_beside_the_annotations_and_records_what_was_verified(server, tmp_path,
                                                                                       monkeypatch):
    url = server.route("/img_align_celeba.zip", file_route(ARCHIVE))
    part_url = server.route("/list_eval_partition.txt", file_route(PARTITION, content_type="text/plain"))
    register(monkeypatch, [url], partition_mirrors=[part_url])

    r = runner.invoke(app, ["download", "tinyceleba", "--data-dir", str(tmp_path)])  # with progress bars
    assert r.exit_code == 0, r.output
    root = tmp_path / "tinyceleba"
    assert images_in(root / "img_align_celeba") == [f"{i:06d}.jpg" for i in range(1, 7)]
    assert (root / "list_eval_partition.txt").read_bytes() == PARTITION
    marker = json.loads((root / ".complete.json").read_text())
    assert marker["images"] == N_IMAGES
    assert {f["filename"]: (f["md5"], f["from"]) for f in marker["files"]} == {
        "img_align_celeba.zip": (md5(ARCHIVE), url), "list_eval_partition.txt": (md5(PARTITION), part_url)}
    assert "6 images" in r.output and "dcgan preprocess tinyceleba" in r.output
    # Verified downloads stay in the cache; no scratch files are left behind.
    assert sorted(p.name for p in (tmp_path / "downloads/tinyceleba").iterdir() if p.name != ".lock") == [
        "img_align_celeba.zip", "img_align_celeba.zip.json", "list_eval_partition.txt",
        "list_eval_partition.txt.json"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_a_second_run_downloads_nothing_and_force_redoes_it_from_the_verified_cache(server, tmp_path,
                                                                                    monkeypatch):
    register(monkeypatch, [server.route("/img.zip", file_route(ARCHIVE))])
    assert download("tinyceleba", "--data-dir", tmp_path).exit_code == 0
    assert server.hits() == 1

    r = download("tinyceleba", "--data-dir", tmp_path)
    assert r.exit_code == 0, r.output
    assert "already complete" in r.output
    assert server.hits() == 1, "a complete data set must not be downloaded again"

    # --force re-checks the cached archive (its MD5 is published) and rebuilds the folder without the network.
    (tmp_path / "tinyceleba/img_align_celeba/000001.jpg").unlink()
    r = download("tinyceleba", "--data-dir", tmp_path, "--force")
    assert r.exit_code == 0, r.output
    assert len(images_in(tmp_path / "tinyceleba/img_align_celeba")) == N_IMAGES
    assert server.hits() == 1


def test_a_folder_not_made_by_download_is_replaced_only_with_force(server, tmp_path, monkeypatch):
    register(monkeypatch, [server.route("/img.zip", file_route(ARCHIVE))])
    mine = tmp_path / "tinyceleba/my-notes.txt"
    mine.parent.mkdir()
    mine.write_text("keep me")
    r = download("tinyceleba", "--data-dir", tmp_path)
    one_line_error(r, "was not made by `dcgan download`", "--force")
    assert mine.read_text() == "keep me" and server.hits() == 0

    assert download("tinyceleba", "--data-dir", tmp_path, "--force").exit_code == 0
    assert not mine.exists() and len(images_in(tmp_path / "tinyceleba/img_align_celeba")) == N_IMAGES


def test_data_dir_comes_from_the_environment(server, tmp_path, monkeypatch):
    register(monkeypatch, [server.route("/img.zip", file_route(ARCHIVE))])
    r = download("tinyceleba", env={"DCGAN_DATA_DIR": str(tmp_path / "elsewhere")})
    assert r.exit_code == 0, r.output
    assert len(images_in(tmp_path / "elsewhere/tinyceleba/img_align_celeba")) == N_IMAGES


# -- Google Drive ----------------------------------------------------------------


def test_drive_virus_scan_form_is_followed_with_its_hidden_inputs(server, tmp_path, monkeypatch):
    register(monkeypatch, [drive_form_route(server, "/uc", ARCHIVE)])
    r = download("tinyceleba", "--data-dir", tmp_path)
    assert r.exit_code == 0, r.output
    (confirmed,) = server.requests("/uc/usercontent")
    assert confirmed.query == {"id": "FILEID", "export": "download", "confirm": "t", "uuid": "u-123"}
    assert len(images_in(tmp_path / "tinyceleba/img_align_celeba")) == N_IMAGES


def test_drive_download_warning_cookie_is_sent_back_with_confirm(server, tmp_path, monkeypatch):
    register(monkeypatch, [drive_cookie_route(server, "/uc", ARCHIVE)])
    r = download("tinyceleba", "--data-dir", tmp_path)
    assert r.exit_code == 0, r.output
    first, second = server.requests("/uc")
    assert "Cookie" not in first.headers
    assert second.query["confirm"] == "Tk9x" and "download_warning_" in second.headers["Cookie"]


def test_a_quota_page_moves_on_to_the_next_mirror(server, tmp_path, monkeypatch):
    quota = server.route("/quota", html_route(QUOTA_PAGE))
    good = server.route("/img.zip", file_route(ARCHIVE))
    register(monkeypatch, [quota, good])
    r = download("tinyceleba", "--data-dir", tmp_path)
    assert r.exit_code == 0, r.output
    assert f"{quota} failed: Google Drive quota exceeded" in r.output
    assert json.loads((tmp_path / "tinyceleba/.complete.json").read_text())["files"][0]["from"] == good


def test_when_every_mirror_fails_one_message_says_what_each_answered_and_the_manual_route(server, tmp_path,
                                                                                         monkeypatch):
    mirrors = [server.route("/quota", html_route(QUOTA_PAGE)), server.route("/login", html_route(LOGIN_PAGE)),
               server.url("/gone"), server.route("/busy", failing_route(503)),
               server.route("/page", html_route("<html><title>Welcome to nginx!</title></html>"))]
    register(monkeypatch, mirrors)
    r = download("tinyceleba", "--data-dir", tmp_path, "--retries", "2")
    assert r.exit_code == 1
    error = r.output[r.output.index("Error: "):]
    assert "Traceback" not in r.output
    assert error.count("Error: ") == 1
    assert "could not download img_align_celeba.zip from any of its 5 mirror(s)" in error
    for i, (url, said) in enumerate(zip(mirrors, ["Google Drive quota exceeded", "asks to sign in",
                                                  "HTTP 404 Not Found", "HTTP 503",
                                                  'served an HTML page ("Welcome to nginx!")']), 1):
        assert f"  {i}. {url}: {said}" in error
    assert "gave up after 2 retries" in error
    assert server.hits("/busy") == 3
    assert ("in a browser from https://drive.example/manual, then run: dcgan download tinyceleba --archive "
            "PATH/TO/img_align_celeba.zip") in error
    assert not (tmp_path / "tinyceleba").exists()


def test_a_quota_page_with_an_error_status_still_says_quota(server, tmp_path, monkeypatch):
    quota = server.route("/quota", html_route(QUOTA_PAGE, status=403))
    register(monkeypatch, [quota])
    r = download("tinyceleba", "--data-dir", tmp_path)
    assert r.exit_code == 1
    assert f"1. {quota}: HTTP 403 Forbidden: Google Drive quota exceeded" in r.output


def test_transient_5xx_is_retried_on_the_same_mirror(server, tmp_path, monkeypatch):
    url = server.route("/img.zip", failing_route(503, times=2, then=file_route(ARCHIVE)))
    register(monkeypatch, [url])
    r = download("tinyceleba", "--data-dir", tmp_path)
    assert r.exit_code == 0, r.output
    assert server.hits("/img.zip") == 3
    assert "HTTP 503 Service Unavailable; retry 1/5" in r.output


# -- resume ----------------------------------------------------------------------


def test_a_connection_dropped_half_way_resumes_with_range(server, tmp_path, monkeypatch):
    half = len(ARCHIVE) // 2
    register(monkeypatch, [server.route("/img.zip", dropping_route(ARCHIVE, cut_at=half))])
    r = download("tinyceleba", "--data-dir", tmp_path)
    assert r.exit_code == 0, r.output
    first, second = server.requests("/img.zip")
    assert "Range" not in first.headers
    assert second.headers["Range"] == f"bytes={half}-"
    assert second.headers["If-Range"] == '"v1"'
    assert len(images_in(tmp_path / "tinyceleba/img_align_celeba")) == N_IMAGES


def test_a_server_that_ignores_range_restarts_cleanly(server, tmp_path, monkeypatch):
    half = len(ARCHIVE) // 2
    register(monkeypatch, [server.route("/img.zip", dropping_route(ARCHIVE, cut_at=half, ranges=False))])
    r = download("tinyceleba", "--data-dir", tmp_path)
    assert r.exit_code == 0, r.output  # 200 instead of 206: the part file is restarted, not appended to
    assert server.requests("/img.zip")[1].headers["Range"] == f"bytes={half}-"
    assert (tmp_path / "downloads/tinyceleba/img_align_celeba.zip").read_bytes() == ARCHIVE


def test_an_interrupted_run_is_resumed_by_the_next_one(server, tmp_path, monkeypatch):
    url = server.route("/img.zip", file_route(ARCHIVE))
    register(monkeypatch, [url])
    cache = tmp_path / "downloads/tinyceleba"
    cache.mkdir(parents=True)
    (cache / "img_align_celeba.zip.part").write_bytes(ARCHIVE[:1000])  # what a killed run leaves
    r = download("tinyceleba", "--data-dir", tmp_path)
    assert r.exit_code == 0, r.output
    assert "resuming at 1,000 bytes" in r.output
    assert server.requests("/img.zip")[0].headers["Range"] == "bytes=1000-"
    assert not (cache / "img_align_celeba.zip.part").exists()


def test_a_silent_server_times_out_and_the_download_resumes(server, tmp_path):
    spec = RemoteFile("f.bin", (), size=len(ARCHIVE), md5=md5(ARCHIVE))
    url = server.route("/slow", stalling_route(ARCHIVE, stall_at=2000, seconds=1.0))
    mirror, digests = http.download(spec, tmp_path / "f.bin", [url], http.HttpOptions(timeout=0.2, retries=1))
    assert (mirror, digests.md5) == (url, md5(ARCHIVE))
    assert server.requests("/slow")[1].headers["Range"] == "bytes=2000-"


def test_a_trickling_server_counts_as_stalled_and_the_download_resumes(server, tmp_path):
    """One byte every 20 ms never trips a read timeout; the minimum rate catches it within a window."""
    import time

    spec = RemoteFile("f.bin", (), size=len(ARCHIVE), md5=md5(ARCHIVE))
    url = server.route("/trickle", trickling_route(ARCHIVE, every=0.02, for_seconds=20))
    started = time.monotonic()
    options = http.HttpOptions(timeout=5, retries=2, min_rate=1000, rate_window=0.3)
    mirror, digests = http.download(spec, tmp_path / "f.bin", [url], options)
    assert time.monotonic() - started < 10, "the trickle was waited out instead of being cut off"
    assert (mirror, digests.md5) == (url, md5(ARCHIVE))
    first, second = server.requests("/trickle")
    assert "Range" not in first.headers and second.headers["Range"].startswith("bytes=")


def test_a_server_that_always_trickles_gives_up_with_the_reason(server, tmp_path, monkeypatch):
    url = server.route("/img.zip", trickling_route(ARCHIVE, every=0.02, for_seconds=5, times=None))
    register(monkeypatch, [url])
    r = download("tinyceleba", "--data-dir", tmp_path, "--retries", "1", "--min-rate", "1000", "--rate-window",
                 "0.2")
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert f"1. {url}: too slow: " in r.output and "under --min-rate 1000 bytes/s (gave up after 1 retries)" in r.output
    assert server.hits("/img.zip") == 2


# -- the local disk ----------------------------------------------------------------


def _incompressible_archive(kilobytes: int) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("img_align_celeba/000001.jpg", jpeg(1))
        zf.writestr("img_align_celeba/noise.bin", np.random.default_rng(0).bytes(kilobytes << 10))
    return buf.getvalue()


def test_a_disk_that_fills_up_mid_download_is_one_line_and_keeps_the_bytes(server, tmp_path, monkeypatch):
    """No Content-Length, so no space check up front: the disk fills while writing."""
    big = _incompressible_archive(600)
    register(monkeypatch, [server.route("/img.zip", unsized_route(big))], archive=big, expected=1)
    with small_disk(tmp_path / "disk", 300) as data:
        (data / "other").mkdir()
        (data / "other/keep.txt").write_text("mine")
        r = download("tinyceleba", "--data-dir", data)
        part = data / "downloads/tinyceleba/img_align_celeba.zip.part"
        line = one_line_error(r)
        assert line.startswith(f"Error: {part}: No space left on device; free some space there (or use "
                               f"--data-dir on another disk) and run the same command again (it resumes "
                               f"from the "), line
        assert (data / "other/keep.txt").read_text() == "mine"
        assert part.stat().st_size > 100_000  # kept for the resume
        assert not list(data.glob(".tinyceleba.*")) and not (data / "tinyceleba").exists()
        # More space, same command: done.
        subprocess.run(["mount", "-o", "remount,size=4m", str(data)], check=True)
        r = download("tinyceleba", "--data-dir", data)
        assert r.exit_code == 0, r.output


def test_a_read_only_data_dir_is_one_line_naming_the_fix(server, tmp_path, monkeypatch):
    register(monkeypatch, [server.route("/img.zip", file_route(ARCHIVE))])
    data = tmp_path / "data"
    (data / "other").mkdir(parents=True)
    (data / "other/keep.txt").write_text("mine")
    with read_only(data):
        r = download("tinyceleba", "--data-dir", data)
    assert one_line_error(r, "--data-dir").startswith(f"Error: {data / 'downloads'}: ")
    assert "Read-only file system; use --data-dir on a writable disk" in r.output or "Permission denied" in r.output
    assert sorted(p.relative_to(data).as_posix() for p in data.rglob("*")) == ["other", "other/keep.txt"]
    assert server.hits() == 0


# -- verification ----------------------------------------------------------------


def test_a_wrong_checksum_loses_nothing_and_names_the_mirror(server, tmp_path, monkeypatch):
    good = server.route("/img.zip", file_route(ARCHIVE))
    register(monkeypatch, [good])
    assert download("tinyceleba", "--data-dir", tmp_path).exit_code == 0
    (tmp_path / "downloads/tinyceleba/img_align_celeba.zip").unlink()  # force a network download below

    tampered = bytearray(ARCHIVE)
    tampered[len(tampered) // 2] ^= 0xFF
    bad = server.route("/bad.zip", file_route(bytes(tampered)))
    r = download("tinyceleba", "--data-dir", tmp_path, "--force", "--url", bad)
    assert r.exit_code == 1
    assert f"1. {bad}: served a different file: MD5 {md5(bytes(tampered))}, expected {md5(ARCHIVE)}" in r.output
    # The data set the user had is untouched, and no unverified file got the archive's name.
    assert len(images_in(tmp_path / "tinyceleba/img_align_celeba")) == N_IMAGES
    assert (tmp_path / "tinyceleba/.complete.json").exists()
    assert not (tmp_path / "downloads/tinyceleba/img_align_celeba.zip").exists()


def test_a_wrong_size_is_refused_before_downloading_it(server, tmp_path, monkeypatch):
    other = server.route("/other.zip", file_route(celeba_zip(n=3)))
    register(monkeypatch, [other])
    r = download("tinyceleba", "--data-dir", tmp_path)
    assert r.exit_code == 1
    assert f"{other}: serves " in r.output and f"expected {len(ARCHIVE):,}" in r.output


def test_the_image_count_is_checked(server, tmp_path, monkeypatch):
    register(monkeypatch, [server.route("/img.zip", file_route(ARCHIVE))], expected=N_IMAGES + 1)
    one_line_error(download("tinyceleba", "--data-dir", tmp_path), "holds 6 images under img_align_celeba/, expected 7")
    assert not (tmp_path / "tinyceleba").exists()


# -- --archive -------------------------------------------------------------------


def test_archive_flag_with_a_good_file_needs_no_network(server, tmp_path, monkeypatch):
    register(monkeypatch, [server.url("/never")], partition_mirrors=[server.url("/never-either")])
    zip_path, txt_path = tmp_path / "from-browser.zip", tmp_path / "list_eval_partition.txt"
    zip_path.write_bytes(ARCHIVE)
    txt_path.write_bytes(PARTITION)
    r = download("tinyceleba", "--data-dir", tmp_path / "data", "--archive", zip_path, "--archive", txt_path)
    assert r.exit_code == 0, r.output
    assert server.hits() == 0
    assert len(images_in(tmp_path / "data/tinyceleba/img_align_celeba")) == N_IMAGES
    assert zip_path.read_bytes() == ARCHIVE, "the user's file is used in place, never moved"


def test_archive_flag_with_a_bad_file_is_refused_and_left_alone(server, tmp_path, monkeypatch):
    register(monkeypatch, [server.url("/never")])
    bad, other = tmp_path / "img_align_celeba.zip", celeba_zip(n=5)
    bad.write_bytes(other)
    r = download("tinyceleba", "--data-dir", tmp_path / "data", "--archive", bad)
    one_line_error(r, f"--archive {bad} is not img_align_celeba.zip")
    assert bad.read_bytes() == other
    assert not (tmp_path / "data/tinyceleba").exists()
    assert server.hits() == 0


def test_a_drive_page_saved_as_the_zip_is_named_as_such(tmp_path, monkeypatch):
    register(monkeypatch, ["http://127.0.0.1:9/never"])
    page = tmp_path / "img_align_celeba.zip"
    page.write_text(QUOTA_PAGE)
    r = download("tinyceleba", "--data-dir", tmp_path / "data", "--archive", page, "--no-checksum")
    one_line_error(r, "is a web page, not an archive")


def test_no_checksum_accepts_a_repacked_archive_and_unnests_it(tmp_path, monkeypatch):
    """Kaggle's copy: other checksum, images one folder deeper; the image count still decides."""
    register(monkeypatch, ["http://127.0.0.1:9/never"])
    kaggle = tmp_path / "archive.zip"
    kaggle.write_bytes(celeba_zip(folder="img_align_celeba/img_align_celeba"))
    r = download("tinyceleba", "--data-dir", tmp_path / "data", "--archive", kaggle, "--no-checksum")
    assert r.exit_code == 0, r.output
    assert len(images_in(tmp_path / "data/tinyceleba/img_align_celeba")) == N_IMAGES
    marker = json.loads((tmp_path / "data/tinyceleba/.complete.json").read_text())
    assert marker["files"][0]["checked"] == "image count only (--no-checksum)"


# -- safe extraction -------------------------------------------------------------


def test_a_zip_slip_archive_is_refused_through_the_cli(server, tmp_path, monkeypatch):
    evil = make_zip({"img_align_celeba/000001.jpg": jpeg(1), "../../escaped.jpg": jpeg(2)})
    register(monkeypatch, [server.route("/evil.zip", file_route(evil))], archive=evil, expected=1)
    r = download("tinyceleba", "--data-dir", tmp_path / "data")
    one_line_error(r, "refusing to extract img_align_celeba.zip: member '../../escaped.jpg' climbs out with '..'")
    assert not list(tmp_path.rglob("escaped.jpg"))
    assert not (tmp_path / "data/tinyceleba").exists()


def _tar(add) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        add(tf)
    return buf.getvalue()


def _tar_member(tf, name, data=b"x", **kw):
    info = tarfile.TarInfo(name)
    for k, v in kw.items():
        setattr(info, k, v)
    info.size = len(data) if info.isfile() else 0
    tf.addfile(info, io.BytesIO(data) if info.isfile() else None)


@pytest.mark.parametrize("archive, why", [
    (make_zip({"/etc/evil.jpg": b"x"}), "has an absolute path"),
    (make_zip({"a/../../evil.jpg": b"x"}), "climbs out with '..'"),
    (_tar(lambda tf: _tar_member(tf, "../evil.jpg")), "climbs out with '..'"),
    (_tar(lambda tf: _tar_member(tf, "/tmp/evil.jpg")), "has an absolute path"),
    (_tar(lambda tf: _tar_member(tf, "link", type=tarfile.SYMTYPE, linkname="/etc/passwd")),
     "is a link pointing outside the data set"),
    (_tar(lambda tf: _tar_member(tf, "a/link", type=tarfile.SYMTYPE, linkname="../../outside")),
     "is a link pointing outside the data set"),
    (_tar(lambda tf: _tar_member(tf, "hard", type=tarfile.LNKTYPE, linkname="../outside")),
     "is a link pointing outside the data set"),
], ids=["zip-absolute", "zip-dotdot", "tar-dotdot", "tar-absolute", "tar-symlink-abs", "tar-symlink-rel",
        "tar-hardlink"])
def test_unsafe_members_refuse_the_whole_archive(tmp_path, archive, why):
    path = tmp_path / "a.archive"
    path.write_bytes(archive)
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(DcganError, match="refusing to extract") as e:
        extract(path, dest)
    assert why in str(e.value)
    assert list(dest.iterdir()) == [], "nothing is written before every member is checked"


def test_tar_archives_from_a_url_with_a_pinned_sha256(server, tmp_path):
    def add(tf):
        for i in range(3):
            _tar_member(tf, f"faces/{i}.jpg", jpeg(i))
        _tar_member(tf, "faces/inner", type=tarfile.SYMTYPE, linkname="0.jpg")  # a link that stays inside is fine

    data = _tar(add)
    url = server.route("/my/faces.tar.gz", file_route(data, content_type="application/gzip"))
    r = download(url, "--data-dir", tmp_path, "--sha256", "0" * 64)
    assert r.exit_code == 1 and "SHA-256" in r.output and "expected 0000" in r.output  # the mirror list: several lines

    r = download(url, "--data-dir", tmp_path)
    assert r.exit_code == 0, r.output
    assert f"SHA-256 of faces.tar.gz: {hashlib.sha256(data).hexdigest()}" in r.output
    assert sorted(p.name for p in (tmp_path / "faces/faces").iterdir()) == ["0.jpg", "1.jpg", "2.jpg", "inner"]
    assert f"dcgan preprocess {tmp_path / 'faces'}" in r.output

    r = download(url, "--data-dir", tmp_path, "--sha256", hashlib.sha256(data).hexdigest())
    assert r.exit_code == 0 and "already complete" in r.output


# -- the registry and the command line ------------------------------------------


def test_list_shows_each_data_set_with_size_and_source():
    r = runner.invoke(app, ["download", "--list"])
    assert r.exit_code == 0
    assert "celeba" in r.output and "1.4 GB" in r.output and "Google Drive" in r.output
    assert "lfw-sample" in r.output


def test_an_unknown_name_lists_the_known_ones(tmp_path):
    r = download("celebb", "--data-dir", tmp_path)
    assert one_line_error(r) == ("Error: unknown dataset 'celebb'; known: celeba, mnist, fashion-mnist, lfw-sample "
                                "(or pass an http(s) URL of a zip/tar archive)")


def test_the_celeba_entry_carries_the_published_facts():
    ds = datasets.get("celeba")
    main = ds.files[0]
    assert (main.filename, main.size, main.md5) == ("img_align_celeba.zip", 1_443_490_838,
                                                   "00d2c5bc6d35e252742224ab0c1e8fcb")
    assert main.mirrors[0] == drive.download_url("0B7EVK8r0v71pZjFTYXZWM3FlRnM")
    assert {f.filename: f.md5 for f in ds.files[1:]} == {
        "list_eval_partition.txt": "d32c9cbf5e040fd4025c592c306e6668",
        "identity_CelebA.txt": "32bd1bd63d3c78cd57e08160ec5ed1e2",
        "list_attr_celeba.txt": "75e246fa4810816ffd6ee81facbd244c",
        "list_landmarks_align_celeba.txt": "cc24ecafdb5b50baae59b03474781f8c"}
    assert ds.expected_images == 202_599 and ds.image_dir == "img_align_celeba"


@pytest.mark.parametrize("url, expected", [
    ("https://drive.google.com/file/d/0B7EVK8r0v71pZjFTYXZWM3FlRnM/view?usp=sharing",
     "https://drive.google.com/uc?export=download&id=0B7EVK8r0v71pZjFTYXZWM3FlRnM"),
    ("https://drive.google.com/open?id=1O7m1010EJjLE5QxLZiM9Fpjs7Oj6e684",
     "https://drive.google.com/uc?export=download&id=1O7m1010EJjLE5QxLZiM9Fpjs7Oj6e684"),
    ("https://example.com/d/faces.zip", "https://example.com/d/faces.zip"),
])
def test_drive_share_links_become_download_links(url, expected):
    assert drive.normalise_url(url) == expected
