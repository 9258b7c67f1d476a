"""The run directory and the life of a run: its layout, its checkpoints, one writer at a time,
resume, signals, and which worker writes under tf.distribute.

    rundir.py      the layout of runs/NNNNN-NAME/, config, metrics, generator files, best/
    lifecycle.py   what both trainers share: placing and locking a run, signals, the epoch line
    distribute.py  the strategy, who writes files, lost workers
"""
