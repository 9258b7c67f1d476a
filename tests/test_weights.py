"""`dcgan download inception-2015 | vgg19`: pretrained files into Keras' cache, through the tested download
machinery, against the 127.0.0.1 server with small fake files (nothing real is downloaded)."""

from __future__ import annotations

import hashlib
import io
import tarfile
from dataclasses import replace

import pytest
from typer.testing import CliRunner

from helpers import ok, one_line_error
from dcgan_cli.data import weights
from dcgan_cli.cli import app
from fake_http import dropping_route, file_route

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("fast_backoff")


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setattr(weights, "KERAS_CACHE_DIR", str(tmp_path / "keras"))
    return tmp_path / "keras" / "models"


def _serve(monkeypatch, server, name, data, route=None, **checks):
    url = server.route(f"/{name}.bin", route or file_route(data))
    w = weights.WEIGHTS[name]
    monkeypatch.setitem(weights.WEIGHTS, name, replace(w, remote=replace(w.remote, mirrors=(url,), **checks)))
    return url


def test_vgg19_download_lands_in_keras_cache_verified_and_once(server, cache, monkeypatch):
    data = b"fake vgg19 weights " * 500
    _serve(monkeypatch, server, "vgg19", data, md5=hashlib.md5(data).hexdigest())
    r = ok(runner.invoke(app, ["download", "vgg19", "--quiet"]))
    target = cache / "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"
    assert target.read_bytes() == data and r.stdout.strip() == f"vgg19 is ready: {target}"
    assert weights.cached("vgg19") == target and weights.resolve("vgg19") == target
    r = ok(runner.invoke(app, ["download", "vgg19", "--quiet"]))
    assert "already in Keras' cache" in r.stdout and server.hits() == 1


def test_a_corrupt_download_never_gets_the_name(server, cache, monkeypatch):
    data = b"x" * 4000
    _serve(monkeypatch, server, "vgg19", data, md5="0" * 32)
    r = runner.invoke(app, ["download", "vgg19", "--quiet", "--retries", "0"])
    # The download machinery's own report: what each mirror answered, then the manual route.
    assert r.exit_code == 1 and "Traceback" not in r.output and "served a different file" in r.stderr
    assert "then pass it with --vgg-weights FILE" in r.stderr
    assert weights.cached("vgg19") is None


def _tgz(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, body in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    return buf.getvalue()


def test_inception_2015_download_resumes_then_extracts_the_graph_the_extractor_finds(server, cache, monkeypatch,
                                                                                   tmp_path):
    from dcgan_cli.metrics import extractors
    from test_metrics import write_fake_inception_graph

    graph = write_fake_inception_graph(tmp_path / "g.pb").read_bytes()
    tgz = _tgz({"LICENSE": b"text", "classify_image_graph_def.pb": graph, "cropped_panda.jpg": b"\xff\xd8"})
    # The real archive publishes only its size: that is what is checked. A dropped connection resumes.
    _serve(monkeypatch, server, "inception-2015", tgz, route=dropping_route(tgz, cut_at=len(tgz) // 2), size=len(tgz))
    r = ok(runner.invoke(app, ["download", "inception-2015", "--quiet"]))
    target = cache / "classify_image_graph_def.pb"
    assert target.read_bytes() == graph and str(target) in r.stdout
    assert any("Range" in req.headers for req in server.requests("/inception-2015.bin"))
    ex = extractors.get_extractor("inception-2015", batch_size=2)  # from the cache, no file named
    assert ex.spec.dim == 8 and ex.weights_id == "sha256:" + hashlib.sha256(graph).hexdigest()[:16]

    # An archive without the graph: one line, and no file under the graph's name.
    target.unlink()
    (cache / "inception-2015-12-05.tgz").write_bytes(_tgz({"LICENSE": b"text"}))
    one_line_error(runner.invoke(app, ["download", "inception-2015", "--quiet"]), "holds no classify_image_graph_def.pb")
    assert not target.exists()


def test_weights_take_no_archive_and_are_listed(cache):
    one_line_error(runner.invoke(app, ["download", "vgg19", "--archive", __file__]), "--vgg-weights", code=2)
    listing = ok(runner.invoke(app, ["download", "--list"])).stdout
    assert "inception-2015" in listing and "vgg19" in listing and str(cache) in listing


def test_a_garbage_archive_leaves_nothing_a_later_run_would_trust(server, cache, monkeypatch, tmp_path):
    from test_metrics import write_fake_inception_graph

    garbage = b"\x1f\x8b" + bytes(range(256)) * 40  # gzip's magic, then noise: right-sized, not a .tgz
    _serve(monkeypatch, server, "inception-2015", garbage, size=len(garbage))
    one_line_error(runner.invoke(app, ["download", "inception-2015", "--quiet"]), "is not a readable .tgz")
    assert not any(cache.iterdir()), list(cache.iterdir())
    graph = write_fake_inception_graph(tmp_path / "g.pb").read_bytes()
    tgz = _tgz({"classify_image_graph_def.pb": graph})
    _serve(monkeypatch, server, "inception-2015", tgz, size=len(tgz))  # the right archive now: fetched, not skipped
    ok(runner.invoke(app, ["download", "inception-2015", "--quiet"]))
    assert (cache / "classify_image_graph_def.pb").read_bytes() == graph


@pytest.mark.parametrize("option", [["--sha256", "0" * 64], ["--md5", "0" * 32], ["--name", "x"],
                                    ["--data-dir", "d"], ["--no-checksum"]])
def test_weights_refuse_the_data_set_options_they_would_ignore(cache, option):
    one_line_error(runner.invoke(app, ["download", "vgg19", *option]), f"{option[0]} is for data sets", code=2)
