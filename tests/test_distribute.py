"""tf.distribute on CPU: two replicas in one process, two worker processes, a lost worker.

The strategies are real: MirroredStrategy over two logical CPU devices, and
MultiWorkerMirroredStrategy over two `dcgan train` processes on 127.0.0.1 that
find each other through TF_CONFIG. Subprocess timeouts are generous bounds
against hangs, not speed assertions.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from dcgan_cli.runs import distribute
from dcgan_cli.errors import DcganError
from helpers import metrics, wait_for_checkpoint

HERE = Path(__file__).parent
REPO = HERE.parent
TIMEOUT = 300  # seconds; a bound against hangs on a busy 2-core machine
# --augment none: the plain step these cluster tests were written for (16 images would get ADA under
# auto; its 2-replica step is tested in test_augment.py).
TINY = ["--batch-size", "8", "--g-filters", "8", "--d-filters", "8", "--latent-dim", "8", "--precision", "fp32",
        "--quiet", "--augment", "none"]


# ----------------------------------------------------------------------------
# TF_CONFIG and the collective timeout


def test_tf_config_mistakes_are_one_line_errors_naming_the_fix(monkeypatch):
    cases = {
        "{not json": "not valid JSON",
        '{"cluster": {"worker": ["a:1", "b:2"]}}': '"task": {"type": "worker", "index": I}',
        '{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 1}}': "worker 0..0",
        '{"cluster": {"worker": ["a:1"], "ps": ["b:2"]}, "task": {"type": "worker", "index": 0}}': "drop the others",
    }
    for raw, fix in cases.items():
        monkeypatch.setenv("TF_CONFIG", raw)
        with pytest.raises(DcganError, match=re.escape(fix)):
            distribute.tf_config()
    monkeypatch.setenv("TF_CONFIG", '{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 1}}')
    assert distribute.has_cluster() and distribute.num_workers() == 2
    monkeypatch.delenv("TF_CONFIG")
    assert not distribute.has_cluster() and distribute.num_workers() == 1


def test_multiworker_without_tf_config_says_what_to_set(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(DcganError, match="needs TF_CONFIG"):
        distribute.make_strategy("multiworker")


def test_collective_timeout_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv(distribute.TIMEOUT_ENV, raising=False)
    assert distribute.collective_timeout() == distribute.DEFAULT_COLLECTIVE_TIMEOUT
    monkeypatch.setenv(distribute.TIMEOUT_ENV, "45")
    assert distribute.collective_timeout() == 45.0
    monkeypatch.setenv(distribute.TIMEOUT_ENV, "soon")
    with pytest.raises(DcganError, match=f"{distribute.TIMEOUT_ENV}=600"):
        distribute.collective_timeout()


def test_collective_errors_become_a_message_naming_the_lost_worker_and_resume(monkeypatch, tmp_path):
    import tensorflow as tf

    monkeypatch.setenv("TF_CONFIG", '{"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}, '
                                    '"task": {"type": "worker", "index": 1}}')
    # What the survivor sees when the chief's process is gone (from a real run).
    refused = tf.errors.UnavailableError(None, None, (
        "Collective ops is aborted by: failed to connect to all addresses; last error: UNKNOWN: "
        "ipv4:127.0.0.1:1: Failed to connect to remote host: Connection refused\n"
        "Additional GRPC error information from remote target /job:worker/replica:0/task:0 while calling "
        "/tensorflow.WorkerService/CompleteInstance"))
    lost = distribute.cluster_failure(refused, None, tmp_path / "runs/00001-x")
    assert isinstance(lost, DcganError)
    assert str(lost).startswith("lost worker 0 of the cluster: it cannot be reached")
    assert f"--resume {tmp_path / 'runs/00001-x'}" in str(lost)

    stuck = tf.errors.DeadlineExceededError(None, None, "Collective ops is aborted by: Deadline Exceeded")
    assert distribute.TIMEOUT_ENV in str(distribute.cluster_failure(stuck, None, "run"))
    # Not a collective failing: left alone.
    assert distribute.cluster_failure(tf.errors.InvalidArgumentError(None, None, "bad shape"), None, "run") is None
    assert distribute.cluster_failure(ValueError("x"), None, "run") is None


# ----------------------------------------------------------------------------
# input sharding


@pytest.fixture(scope="module")
def data16_sharded(tmp_path_factory, image_folder):
    """The 24 faces in 5 small shards (5 images each), so that two workers can have their own files."""
    from dcgan_cli.data import preprocess as pre

    out = tmp_path_factory.mktemp("processed") / "faces-16-sharded"
    pre.preprocess(pre.PreprocessConfig(source=str(image_folder), out=str(out), size=16, crop="center",
                                        shard_mb=5 * 16 * 16 * 3 / 1e6))
    return out


def _images_per_worker(data, workers: int) -> list[list[bytes]]:
    import tensorflow as tf

    from dcgan_cli.data.pipeline import make_dataset

    out = []
    for i in range(workers):
        ctx = tf.distribute.InputContext(num_input_pipelines=workers, input_pipeline_id=i,
                                         num_replicas_in_sync=workers)
        ds = make_dataset(data, workers, seed=7, repeat=False, drop_remainder=False, input_context=ctx)
        out.append([img.tobytes() for batch in ds for img in batch.numpy()])
    return out


@pytest.mark.parametrize("fixture, shards", [("data16_sharded", 5), ("data16", 1)])
def test_workers_read_disjoint_parts_that_cover_the_data(request, fixture, shards):
    data = request.getfixturevalue(fixture)
    assert len(json.loads((data / "manifest.json").read_text())["shards"]) == shards
    parts = _images_per_worker(data, 2)
    a, b = (set(p) for p in parts)
    assert len(a) == len(parts[0]) and len(b) == len(parts[1]), "a worker saw an image twice"
    assert not a & b, "two workers read the same image"
    assert len(a | b) == 24, "some images were read by no worker"


# ----------------------------------------------------------------------------
# two replicas in one process


def _checkpoint(run: Path) -> dict[str, np.ndarray]:
    import tensorflow as tf

    reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(str(run / "checkpoints")))
    return {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map() if not k.startswith("_CHECKPOINTABLE")}


def _metrics(run: Path) -> np.ndarray:
    return np.array([[r["d_loss"], r["g_loss"], r["d_real"], r["d_fake"]] for r in metrics(run)])


@pytest.mark.subprocess
@pytest.mark.slow
def test_two_replicas_with_sync_bn_train_like_one_device(data16, tmp_path):
    # Every kind of per-example randomness is on (flips, label smoothing,
    # instance noise) and EMA too: each replica must take its own slice of the
    # global batch's noise, and the EMA must be updated once per step. R1 on every
    # step (the form that runs with a synchronised batch norm) and spectral norm too.
    overrides = dict(epochs=2, steps_per_epoch=2, flip=True, label_smoothing=0.1, instance_noise=0.1, ema=0.9,
                     r1_gamma=1.0, r1_interval=1, spectral_norm=True)
    proc = subprocess.run([sys.executable, str(HERE / "two_replicas.py"), str(data16), str(tmp_path / "runs"),
                           json.dumps(overrides)], capture_output=True, text=True, timeout=TIMEOUT, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = {k: (Path(v) if k != "replicas" else v) for k, v in json.loads(proc.stdout.strip().splitlines()[-1]).items()}
    assert runs["replicas"] == 2

    one, two = _checkpoint(runs["default"]), _checkpoint(runs["mirrored"])
    assert one.keys() == two.keys() and len(one) > 40  # G, D, EMA, both optimizers' slots, counters
    for k in one:
        np.testing.assert_allclose(two[k], one[k], rtol=1e-4, atol=1e-5, err_msg=k)
    np.testing.assert_allclose(_metrics(runs["mirrored"]), _metrics(runs["default"]), rtol=1e-5, atol=1e-6)

    # Without --sync-bn each replica normalises its half batch with its own
    # statistics: a different (equally valid) computation, visibly so.
    per_replica = _checkpoint(runs["mirrored_no_sync_bn"])
    worst = max(float(np.max(np.abs(per_replica[k] - one[k]))) for k in one if one[k].dtype.kind == "f")
    assert worst > 1e-4
    assert not np.allclose(_metrics(runs["mirrored_no_sync_bn"]), _metrics(runs["default"]), rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------
# two worker processes


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@contextmanager
def _cluster(tmp_path: Path, args: list[str], tag: str):
    """Start one `dcgan train` per worker of a 2-worker TF_CONFIG; kill leftovers on the way out."""
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs = []
    try:
        for i in range(2):
            scratch = tmp_path / f"tmp-worker{i}"
            scratch.mkdir(exist_ok=True)
            env = {**os.environ, "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}}),
                   "TMPDIR": str(scratch)}
            out = open(tmp_path / f"{tag}-worker{i}.log", "w")
            procs.append(subprocess.Popen([sys.executable, "-m", "dcgan_cli", "train", "--strategy", "multiworker",
                                           *args], env=env, stdout=out, stderr=subprocess.STDOUT, cwd=REPO))
            out.close()
        yield procs
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


@pytest.mark.subprocess
def test_a_busy_port_is_a_one_line_error(data16, tmp_path):
    with socket.socket() as busy:
        busy.bind(("0.0.0.0", 0))
        busy.listen()
        port = busy.getsockname()[1]
        tf_config = {"cluster": {"worker": [f"127.0.0.1:{port}", "127.0.0.1:1"]}, "task": {"type": "worker", "index": 0}}
        proc = subprocess.run([sys.executable, "-m", "dcgan_cli", "train", "--data", str(data16), "--runs-dir",
                               str(tmp_path / "runs"), "--strategy", "multiworker"],
                              env={**os.environ, "TF_CONFIG": json.dumps(tf_config)}, capture_output=True, text=True,
                              timeout=TIMEOUT, cwd=REPO)
    assert proc.returncode == 1
    assert f"Error: could not start worker 0 of the cluster at 127.0.0.1:{port}" in proc.stderr
    assert "check that the port is free" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "runs").exists()


def _log(tmp_path: Path, tag: str, i: int) -> str:
    return (tmp_path / f"{tag}-worker{i}.log").read_text()


def _scratch_left(tmp_path: Path, i: int) -> list[str]:
    return [p.name for p in (tmp_path / f"tmp-worker{i}").glob("dcgan-*")]


@pytest.mark.subprocess
@pytest.mark.slow
def test_two_workers_train_and_only_the_chief_writes_the_run(data16, tmp_path):
    runs = tmp_path / "runs"
    args = ["--data", str(data16), "--runs-dir", str(runs), "--epochs", "2", "--steps-per-epoch", "2", *TINY]
    with _cluster(tmp_path, args, "train") as (chief, worker):
        codes = [p.wait(timeout=TIMEOUT) for p in (chief, worker)]
    assert codes == [0, 0], _log(tmp_path, "train", 0)[-3000:] + _log(tmp_path, "train", 1)[-3000:]

    (run,) = runs.iterdir()  # one run: the chief numbered it and told the worker
    for i in range(2):
        assert f"Run directory: {run}" in _log(tmp_path, "train", i)
        assert "has 1 shard file(s) for 2 input pipelines; splitting by record" in _log(tmp_path, "train", i)
    assert sorted(p.name for p in run.iterdir()) == ["checkpoints", "config.json", "generator.keras", "last-good",
                                                     "losses.png", "metrics.jsonl", "samples", "tensorboard"]
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2
    (events,) = (run / "tensorboard").iterdir()
    assert f".{chief.pid}." in events.name, "TensorBoard events written by a worker that is not the chief"
    assert _scratch_left(tmp_path, 1) == [], "the worker left its scratch directory behind"


@pytest.mark.subprocess
@pytest.mark.slow
def test_a_killed_worker_stops_the_other_with_an_error_and_resume_continues(data16, tmp_path):
    runs = tmp_path / "runs"
    spe = 4
    args = ["--data", str(data16), "--runs-dir", str(runs), "--epochs", "500", "--steps-per-epoch", str(spe),
            "--checkpoint-every-steps", "1", *TINY]
    with _cluster(tmp_path, args, "killed") as (chief, worker):
        wait_for_checkpoint(runs, (chief, worker), step=2, log=lambda: _log(tmp_path, "killed", 0))
        worker.kill()
        code = chief.wait(timeout=TIMEOUT)  # the bound: the chief must not hang on its dead peer
    (run,) = runs.iterdir()
    log = _log(tmp_path, "killed", 0)
    assert code == 1, log[-3000:]
    # Found by the missed heartbeats, or sooner by a reset connection mid all-reduce.
    assert re.search(r"Error: lost worker 1 of the cluster: it (stopped sending heartbeats|cannot be reached) "
                     r"\(killed, crashed, or cut off from the network\)", log), log[-3000:]
    assert f"--resume {run}" in log and "Traceback" not in log

    # Restart both with --resume: every worker restores the chief's last checkpoint.
    last = max(int(p.name[len("ckpt-"):-len(".index")]) for p in (run / "checkpoints").glob("ckpt-*.index"))
    epochs = last // spe + 1
    with _cluster(tmp_path, ["--resume", str(run), "--epochs", str(epochs)], "resumed") as procs:
        codes = [p.wait(timeout=TIMEOUT) for p in procs]
    assert codes == [0, 0], _log(tmp_path, "resumed", 0)[-3000:] + _log(tmp_path, "resumed", 1)[-3000:]
    for i in range(2):
        assert f"Resumed from {run / 'checkpoints'}/ckpt-{last} at step {last}" in _log(tmp_path, "resumed", i)
    assert (run / "checkpoints" / f"ckpt-{epochs * spe}.index").exists()
    assert (run / "generator.keras").exists()
    assert _scratch_left(tmp_path, 1) == []


@pytest.mark.subprocess
@pytest.mark.slow
def test_sigterm_on_one_worker_stops_both_at_the_same_step_with_checkpoints(data16, tmp_path):
    runs = tmp_path / "runs"
    args = ["--data", str(data16), "--runs-dir", str(runs), "--epochs", "500", "--steps-per-epoch", "4",
            "--checkpoint-every-epochs", "1", *TINY]
    with _cluster(tmp_path, args, "sigterm") as (chief, worker):
        wait_for_checkpoint(runs, (chief, worker), step=4, log=lambda: _log(tmp_path, "sigterm", 0))
        worker.send_signal(signal.SIGTERM)  # the worker, not the chief: the chief must still save
        codes = [chief.wait(timeout=TIMEOUT), worker.wait(timeout=TIMEOUT)]
    assert codes == [130, 130], _log(tmp_path, "sigterm", 0)[-3000:] + _log(tmp_path, "sigterm", 1)[-3000:]
    (run,) = runs.iterdir()
    steps = [re.search(r"SIGTERM at step (\d+)", _log(tmp_path, "sigterm", i)) for i in range(2)]
    assert all(steps) and steps[0].group(1) == steps[1].group(1)
    assert (run / "checkpoints" / f"ckpt-{steps[0].group(1)}.index").exists()
    assert f"dcgan train --resume {run}" in _log(tmp_path, "sigterm", 0)
