"""Choosing a `tf.distribute.Strategy`, who writes files, and what a lost worker means.

The train step is written for a strategy from the start (see gan/step.py): on
one device the default strategy runs it as is; `mirrored` spreads it over the
local GPUs; `multiworker` over machines described by `TF_CONFIG`; `tpu` over
the cores of a TPU. The global batch is split across replicas and losses are
averaged over the global batch, so the learning rate stays the same for the
same global batch whatever the number of replicas.

Multi-worker rules, from TensorFlow's multi-worker guide:
- every worker runs the same program with its own `TF_CONFIG` task;
- only the chief writes the run directory; the others write their (required)
  checkpoints and logs to a scratch directory that is removed at the end;
- a worker that dies makes the collectives of the others fail; the coordination
  service notices a dead peer by its missing heartbeats (about 10 s), and a peer
  that is alive but stuck is caught by the collective timeout
  (`DCGAN_COLLECTIVE_TIMEOUT` seconds). Either way training stops with a
  `DcganError` that says to restart with `--resume`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Callable

from dcgan_cli.errors import DcganError

TIMEOUT_ENV = "DCGAN_COLLECTIVE_TIMEOUT"
# Generous: it must outlast whatever the chief alone does between two steps
# (grids, plots, evaluation) while the other workers wait at the next step.
# Dead workers are found much sooner, by the coordination service's heartbeats.
DEFAULT_COLLECTIVE_TIMEOUT = 1800.0
TASK_TYPES = ("chief", "worker")
DOCS_HINT = "see docs/distributed.md, 'Several GPUs or machines'"


# ----------------------------------------------------------------------------
# TF_CONFIG


def tf_config() -> dict:
    """The parsed `TF_CONFIG` (empty when unset), checked for what dcgan supports."""
    raw = os.environ.get("TF_CONFIG", "").strip()
    if not raw:
        return {}
    try:
        conf = json.loads(raw)
    except json.JSONDecodeError as e:
        raise DcganError(f"TF_CONFIG is not valid JSON ({e}); {DOCS_HINT} for an example") from None
    if not isinstance(conf, dict):
        raise DcganError(f"TF_CONFIG must be a JSON object with 'cluster' and 'task'; {DOCS_HINT}")
    cluster = conf.get("cluster") or {}
    if not cluster:
        return conf
    if not isinstance(cluster, dict) or not all(isinstance(v, list) for v in cluster.values()):
        raise DcganError(f'TF_CONFIG\'s cluster must map job names to address lists, like '
                         f'{{"worker": ["host1:12345", "host2:12345"]}}; {DOCS_HINT}')
    unsupported = sorted(set(cluster) - set(TASK_TYPES))
    if unsupported:
        raise DcganError(f"TF_CONFIG names {', '.join(unsupported)} jobs; dcgan trains with 'chief' and 'worker' "
                         f"tasks only (MultiWorkerMirroredStrategy): drop the others")
    task = conf.get("task") or {}
    kind, index = task.get("type"), task.get("index")
    if kind not in cluster or not isinstance(index, int) or not 0 <= index < len(cluster[kind]):
        jobs = ", ".join(f"{k} 0..{len(v) - 1}" for k, v in cluster.items())
        raise DcganError(f"TF_CONFIG's task {task or '(missing)'} is not one of the cluster's ({jobs}); give each "
                         f'process its own {{"task": {{"type": "worker", "index": I}}}}')
    return conf


def has_cluster() -> bool:
    return bool(tf_config().get("cluster"))


def collective_timeout() -> float:
    """Seconds a collective (one all-reduce) may wait for the other workers; 0 = forever."""
    raw = os.environ.get(TIMEOUT_ENV, "").strip()
    if not raw:
        return DEFAULT_COLLECTIVE_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise DcganError(f"{TIMEOUT_ENV}={raw!r} is not a number of seconds; use e.g. {TIMEOUT_ENV}=600 "
                         f"(0 waits forever)")
    return value


# ----------------------------------------------------------------------------
# the strategy


def make_strategy(name: str):
    """The `tf.distribute.Strategy` for `--strategy NAME`.

    auto: multiworker when TF_CONFIG names a cluster, mirrored when more than
    one GPU is visible, else the default (one device). mirrored uses every local
    GPU, or every logical CPU device when there is no GPU (how the tests get two
    replicas on one CPU).
    """
    import tensorflow as tf

    if name == "auto":
        if has_cluster():
            name = "multiworker"
        elif len(tf.config.list_logical_devices("GPU")) > 1:
            name = "mirrored"
        else:
            name = "default"
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        devices = tuple(d.name for d in tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU"))
        return _reused(("mirrored", devices), lambda: tf.distribute.MirroredStrategy(list(devices)))
    if name == "multiworker":
        return _reused(("multiworker", os.environ.get("TF_CONFIG")), lambda: _multiworker(tf))
    if name == "tpu":
        return _tpu(tf)
    raise DcganError(f"unknown strategy {name!r}; use auto, default, mirrored, multiworker or tpu")


# One strategy object per process and setup, reused by later runs (tests, notebooks):
# every new Mirrored/MultiWorkerMirrored strategy numbers its collectives from 1
# again, and the runtime then matches them with the previous strategy's
# ("Shape mismatch in the collective instance 100").
_STRATEGIES: dict[tuple, object] = {}


def _reused(key: tuple, make: Callable[[], object]):
    if key not in _STRATEGIES:
        _STRATEGIES[key] = make()
    return _STRATEGIES[key]


def _multiworker(tf):
    conf = tf_config()
    if not conf.get("cluster"):
        raise DcganError(f"--strategy multiworker needs TF_CONFIG naming the cluster and this worker's task; "
                         f"{DOCS_HINT}")
    timeout = collective_timeout()
    options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=timeout or None)
    task = conf["task"]
    try:
        return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    except (tf.errors.OpError, RuntimeError, ValueError) as e:
        address = conf["cluster"][task["type"]][task["index"]]
        raise DcganError(f"could not start {task['type']} {task['index']} of the cluster at {address} "
                         f"({_first_line(e)}); check that the port is free and TF_CONFIG is the same on every "
                         f"worker except for 'task'") from None


def _tpu(tf):
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, RuntimeError, tf.errors.OpError) as e:
        raise DcganError(f"--strategy tpu found no TPU ({_first_line(e)}); run on a TPU VM, or set TPU_NAME to "
                         f"the TPU's name") from None
    return tf.distribute.TPUStrategy(resolver)


def is_chief(strategy) -> bool:
    """Only the chief writes the run directory (TensorFlow's multi-worker rule)."""
    return bool(strategy.extended.should_checkpoint)


def num_workers(strategy=None) -> int:
    """Processes training together: 1 unless TF_CONFIG names a cluster under multiworker."""
    if strategy is not None and not isinstance(strategy, _mwms_type()):
        return 1
    return sum(len(v) for v in tf_config().get("cluster", {}).values()) or 1


def _mwms_type():
    import tensorflow as tf

    return tf.distribute.MultiWorkerMirroredStrategy


# ----------------------------------------------------------------------------
# the run directory: chief writes, workers scratch


def broadcast_from_chief(strategy, text: str | None, max_bytes: int = 4096) -> str:
    """The chief's `text`, on every worker (the others pass anything, e.g. None).

    One all-reduce of a byte vector: the chief's replicas contribute the bytes
    and a 1, the others zeros, so sum / count is the chief's text whatever the
    number of replicas per worker.
    """
    import numpy as np
    import tensorflow as tf

    data = np.zeros(max_bytes + 1, np.int32)
    if is_chief(strategy):
        raw = (text or "").encode("utf-8")
        if len(raw) > max_bytes:
            raise DcganError(f"path too long to share with the workers ({len(raw)} bytes); use a shorter --runs-dir")
        data[:len(raw)] = np.frombuffer(raw, np.uint8)
        data[-1] = 1
    values = strategy.experimental_distribute_values_from_function(lambda ctx: tf.constant(data))
    total = strategy.reduce(tf.distribute.ReduceOp.SUM, values, axis=None).numpy()
    if total[-1] < 1:
        raise DcganError("no chief in the cluster: TF_CONFIG must name a 'chief' task or 'worker' 0")
    raw = (total[:-1] // total[-1]).astype(np.uint8).tobytes().rstrip(b"\0")
    return raw.decode("utf-8")


def any_worker(strategy, flag: bool) -> bool:
    """True on every worker when `flag` is true on any (one tiny all-reduce).

    Used after each step so that Ctrl-C or SIGTERM on one worker stops them
    all at the same step, each saving its checkpoint, instead of leaving the
    others to fail on a missing peer.
    """
    if num_workers(strategy) == 1:
        return flag
    import tensorflow as tf

    values = strategy.experimental_distribute_values_from_function(lambda ctx: tf.constant(int(flag)))
    return int(strategy.reduce(tf.distribute.ReduceOp.SUM, values, axis=None)) > 0


def shared_run_dir(strategy, make: Callable[[], Path]) -> Path:
    """A new run directory made by the chief alone; every worker learns its path.

    Workers must not pick run numbers themselves: on a shared --runs-dir they
    would each create one.
    """
    if num_workers(strategy) == 1:
        return Path(make())
    chief_dir = str(make()) if is_chief(strategy) else None
    return Path(broadcast_from_chief(strategy, chief_dir))


def worker_scratch_dir(run_dir) -> str:
    """Where a non-chief worker writes its (discarded) checkpoints and logs."""
    task = tf_config().get("task", {})
    name = f"dcgan-{task.get('type', 'worker')}{task.get('index', 0)}-{os.path.basename(str(run_dir).rstrip('/'))}"
    return os.path.join(tempfile.gettempdir(), name)


def output_dir(strategy, run_dir: Path) -> Path:
    """run_dir on the chief; on other workers a fresh scratch dir (a stale one from a crash is removed)."""
    if is_chief(strategy):
        return run_dir
    scratch = Path(worker_scratch_dir(run_dir))
    shutil.rmtree(scratch, ignore_errors=True)
    return scratch


def remove_scratch(out_dir: Path, run_dir: Path) -> None:
    """Delete a worker's scratch dir; never the run dir itself."""
    if Path(out_dir) != Path(run_dir):
        shutil.rmtree(out_dir, ignore_errors=True)


def checkpoint_dir_to_restore(run_dir: Path, ckpt_dir_name: str) -> Path:
    """Every worker resumes from the chief's checkpoints (they save to scratch)."""
    path = Path(run_dir) / ckpt_dir_name
    if not path.is_dir():
        raise DcganError(f"{path} is not there; this worker must see the chief's run directory: put --runs-dir on "
                         f"a filesystem every worker shares (NFS or similar)")
    return path


# ----------------------------------------------------------------------------
# lost workers


# Words in the errors a collective raises when a peer died, hung or restarted.
_COLLECTIVE_HINTS = ("collective", "heartbeat", "unhealthy", "coordination", "failed to connect", "socket closed",
                     "connection reset", "deadline exceeded")


def cluster_failure(error: BaseException, strategy, run_dir) -> DcganError | None:
    """A `DcganError` naming the fix when `error` is a multi-worker collective failing; else None."""
    import tensorflow as tf

    if num_workers(strategy) == 1 or not isinstance(error, tf.errors.OpError):
        return None
    message = str(error)
    lowered = message.lower()
    timed_out = isinstance(error, tf.errors.DeadlineExceededError)
    if not (timed_out or isinstance(error, (tf.errors.UnavailableError, tf.errors.AbortedError,
                                            tf.errors.CancelledError))
            or any(h in lowered for h in _COLLECTIVE_HINTS)):
        return None
    if timed_out:
        what = (f"the other workers did not join a collective within {collective_timeout():g} s "
                f"({TIMEOUT_ENV}); one is stuck or much slower than the others")
    else:
        what = f"lost {_peers(message)} of the cluster: {_cause(message)}"
    return DcganError(f"{what}. Training stopped; restart every worker with the same command plus "
                      f"`--resume {run_dir}` to continue from the last checkpoint")


def _peers(message: str) -> str:
    """The tasks TF's message names, other than this one ("worker 1"); TF names them in several spellings."""
    task = tf_config().get("task", {})
    me = (task.get("type"), str(task.get("index")))
    named = set(re.findall(r"/job:(\w+)(?:/replica:\d+)?/task:(\d+)", message)) - {me}
    return ", ".join(f"{job} {i}" for job, i in sorted(named)) or "another worker"


def _cause(message: str) -> str:
    lowered = message.lower()
    if "heartbeat" in lowered or "unhealthy" in lowered:
        return "it stopped sending heartbeats (killed, crashed, or cut off from the network)"
    if "connect" in lowered or "unavailable" in lowered or "socket closed" in lowered:
        return "it cannot be reached (killed, crashed, or cut off from the network)"
    if "incarnation" in lowered or "has restarted" in lowered:
        return "it restarted on its own; all workers must restart together"
    return _first_line(Exception(message))[:200]


def _first_line(error: BaseException) -> str:
    """The line of a TF error that says what happened (they start with a stack of op names)."""
    lines = [ln.strip() for ln in str(error).splitlines() if ln.strip() and not ln.strip().startswith("{{")]
    return (lines[0] if lines else type(error).__name__)[:300]
