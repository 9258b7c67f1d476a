"""Train the same tiny config under the default strategy and on two CPU replicas.

Run by tests/test_distribute.py in a fresh process: logical devices must be
configured before TensorFlow initialises them, which any earlier test in the
pytest process has already done.

    python tests/two_replicas.py DATA RUNS_DIR '{"seed": 1, ...}' [default,mirrored]

Prints one JSON line: {"default": RUN_DIR, "mirrored": ..., "mirrored_no_sync_bn": ...,
"replicas": 2}.
"""

from __future__ import annotations

import json
import sys


def main(data: str, runs_dir: str, overrides: str, only: str = "") -> None:
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

    from helpers import tiny_config  # this script's folder, tests/, is on sys.path

    from dcgan_cli.runs.distribute import make_strategy
    from dcgan_cli.training.loop import train

    runs = {}
    setups = {"mirrored": dict(strategy="mirrored", sync_bn=True),
              "mirrored_no_sync_bn": dict(strategy="mirrored", sync_bn=False),
              "default": dict(strategy="default", sync_bn=True)}
    for name, setup in setups.items():
        if only and name not in only.split(","):  # `only`: a comma-separated subset of the setups
            continue
        cfg = tiny_config(data, runs_dir, run_name=name, **setup, **json.loads(overrides))
        runs[name] = str(train(cfg, quiet=True, log=lambda message: None))
    runs["replicas"] = make_strategy("mirrored").num_replicas_in_sync  # the strategy the runs used
    print(json.dumps(runs))


if __name__ == "__main__":
    main(*sys.argv[1:])
