"""Choosing a `tf.distribute.Strategy`, and who writes files.

The train step is written for a strategy from the start: on one device the
default strategy runs it as is; `mirrored` spreads it over the local GPUs;
`multiworker` over machines described by `TF_CONFIG`.
"""

from __future__ import annotations

import json
import os

from dcgan_cli.errors import DcganError


def tf_config() -> dict:
    raw = os.environ.get("TF_CONFIG", "")
    if not raw:
        return {}
    try:
        return json.loads(raw)
    except json.JSONDecodeError as e:
        raise DcganError(f"TF_CONFIG is not valid JSON ({e}); see the README's multi-machine example") from None


def has_cluster() -> bool:
    return bool(tf_config().get("cluster", {}).get("worker"))


def make_strategy(name: str):
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
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        if not has_cluster():
            raise DcganError("--strategy multiworker needs TF_CONFIG naming the cluster; see the README")
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    raise DcganError(f"unknown strategy {name!r}")


def is_chief(strategy) -> bool:
    """Only the chief writes the run directory (TensorFlow's multi-worker rule)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "cluster_spec", None) or not resolver.cluster_spec().as_dict():
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    return task_type == "chief" or (task_type == "worker" and task_id == 0 and
                                    "chief" not in resolver.cluster_spec().as_dict())


def worker_scratch_dir(run_dir) -> str:
    """Where a non-chief worker writes its (discarded) checkpoints and logs."""
    import tempfile

    resolver_task = tf_config().get("task", {})
    return os.path.join(tempfile.gettempdir(), "dcgan-worker",
                        f"{resolver_task.get('type', 'worker')}-{resolver_task.get('index', 0)}",
                        os.path.basename(str(run_dir).rstrip("/")))
