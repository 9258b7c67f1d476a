"""The run directory and the life of a run: its layout, its checkpoints, one writer at a time,
resume, signals, and which worker writes under tf.distribute. Files and tf.train.Checkpoint objects
only: nothing here imports gan/ (what is restored into a checkpoint is the caller's).

    layout.py       the layout of runs/NNNNN-NAME/: every entry's name, numbering, the newest run,
                    config.json and its history, metrics.jsonl, samples/ names, the lock
    checkpoints.py  everything about checkpoints: their names, the index, save (never NaN weights),
                    restore with its fall-backs, partial saves cleaned, last-good/, healthy/, best/
    lifecycle.py    what both trainers share: placing and holding a run, the resume rule and its
                    bookkeeping, signals, the schedule (Run), the epoch's metrics line
    distribute.py   the strategy, who writes files, lost workers
"""
