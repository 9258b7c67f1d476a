"""The resumable driver: images -> shards + manifest, once, safely (pipeline.py reads them).

How a run goes:
  1. Resolve SOURCE (a known data set, a folder searched recursively, or a zip)
     and list its image files, sorted (sources.py).
  2. Decode in worker processes (decoding.py; faces.py for `--crop face`), a
     chunk of files at a time, with at most a few chunks in flight: memory stays
     flat whatever the data set size. A file gives zero or more examples (one
     per face with `--crop face`, else one).
  3. The main process appends each example (as a ready-serialised
     `tf.train.Example`) to the current shard; a shard closes only between two
     files, and every closed shard is recorded in `.progress.json`, so an
     interrupted run resumes from the last closed shard (at a file boundary).
  4. `manifest.json` is written last, atomically (shards.py owns its format). It
     is the commit point: the output is complete exactly when the manifest is
     there, and it lists the shards that belong to it. A previous complete
     output stays valid until the new manifest replaces it (shard names carry a
     per-run tag, so old and new shards never collide); only then are the old
     shards deleted.

Nothing here renames directories, so the same steps work on `gs://` paths
through `tf.io.gfile`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import secrets
import sys
import time
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from dcgan_cli import __version__
from dcgan_cli.data.datasets import IMAGE_EXTS
from dcgan_cli.errors import DcganError, resume_hint
from dcgan_cli.fsutil import DirLock
from dcgan_cli.data.preprocess.config import PreprocessConfig
from dcgan_cli.data.preprocess.decoding import process_chunk, strict_bombs, worker_init
from dcgan_cli.data.preprocess import arrays as array_source
from dcgan_cli.data.preprocess.labels import make_labeller
from dcgan_cli.data.preprocess.reports import line as list_line
from dcgan_cli.data.preprocess.sources import PARTITIONS, Listing, describe_other, list_images, train_split
from dcgan_cli.data.shards import (FORMAT, MANIFEST, ShardWriter, example_prefix, is_local, is_shard_name, join,
                              load_manifest, make_manifest, serialize_example, write_manifest, write_text)

PROGRESS = ".progress.json"
SKIPPED = "skipped.txt"
SMALL = "small.txt"
# Decoded bytes per chunk handed to a worker: big enough that inter-process
# overhead is noise, small enough that a few chunks in flight stay ~10s of MB.
CHUNK_BYTES = 4 << 20
FACE_CHUNK = 32  # photos; faces.process_chunk bounds their pixels in memory


def _fingerprint(cfg: PreprocessConfig, source: Path, listing: Listing, labels: str = "") -> str:
    """What makes two runs' outputs identical: pixel settings, source, file names and labels."""
    h = hashlib.sha256()
    settings = dict(format=FORMAT, version=__version__, size=cfg.size, crop=cfg.crop, box=cfg.box_side,
                    channels=cfg.channels, split=cfg.split, limit=cfg.limit, source=str(source.resolve()))
    if cfg.crop == "face":  # only then: other crops keep their fingerprints (and outputs stay up to date)
        settings["min_face"] = cfg.min_face
    if labels:  # only then, like min_face: unlabelled outputs keep their fingerprints (and stay up to date)
        settings["labels"] = labels
    h.update(json.dumps(settings, sort_keys=True).encode())
    for name in listing.items:
        h.update(name.encode("utf-8", "surrogateescape") + b"\0")
    return h.hexdigest()


def _read_json(path: str) -> dict | None:
    """A JSON file of ours (the progress record), or None when it is missing or unreadable."""
    import tensorflow as tf

    if not tf.io.gfile.exists(path):
        return None
    try:
        with tf.io.gfile.GFile(path) as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None


def _existing_manifest(out: str) -> dict | None:
    """The complete output already in `out` (a sound manifest of our format), or None."""
    try:
        return load_manifest(out, check_shards=False)
    except DcganError:
        return None


def _lock(out: str):
    """An exclusive lock on a local output dir (fsutil.DirLock), so two runs never share one; None on gs://."""
    return DirLock(out, "`dcgan preprocess`") if is_local(out) else None


def _clean_stale(out: str, keep: set[str], also: tuple[str, ...] = ()) -> None:
    """Delete our own shard files not in `keep` (never anything else)."""
    import tensorflow as tf

    for name in tf.io.gfile.listdir(out):
        name = name.rstrip("/")
        if (is_shard_name(name) and name not in keep) or name in also:
            tf.io.gfile.remove(join(out, name))


def _check_out(out: str, cfg: PreprocessConfig, fingerprint: str) -> dict | None:
    """Decide what an existing output means; returns an up-to-date manifest to reuse."""
    import tensorflow as tf

    if not tf.io.gfile.exists(out):
        return None
    if not tf.io.gfile.isdir(out):
        raise DcganError(f"{out} is a file, not a directory; choose another --out")
    names = [n.rstrip("/") for n in tf.io.gfile.listdir(out)]
    manifest = _existing_manifest(out) if MANIFEST in names else None
    if manifest is not None:
        intact = all(tf.io.gfile.exists(join(out, s["file"])) for s in manifest.get("shards", []))
        if manifest.get("fingerprint") == fingerprint and not cfg.force:
            return manifest if intact else None  # shards lost: nothing left to protect, rebuild
        if cfg.force:
            return None
        raise DcganError(
            f"{out} already holds preprocessed data ({manifest.get('count')} images at {manifest.get('size')}x"
            f"{manifest.get('size')}, crop {manifest.get('crop')}, from {manifest.get('source')}) made with other "
            f"settings or files; pass --force to replace it (it stays in place until the new output is complete), "
            f"or choose another --out")
    ours = {PROGRESS, SKIPPED, SMALL}
    foreign = [n for n in names if n not in ours and not is_shard_name(n) and not n.startswith(".")]
    if foreign:
        raise DcganError(f"{out} exists and holds other files ({', '.join(sorted(foreign)[:3])}"
                         f"{', ...' if len(foreign) > 3 else ''}); choose an empty or new --out")
    return None


def _chunks(items: list[str], size: int, start: int) -> Iterator[tuple[int, list[str]]]:
    for i in range(start, len(items), size):
        yield i, items[i:i + size]


def _chunk_files(cfg: PreprocessConfig) -> int:
    """Files per chunk; for faces, the photos of a chunk are detected in batches (faces.BATCH_PIXELS)."""
    return FACE_CHUNK if cfg.crop == "face" else max(8, min(256, CHUNK_BYTES // cfg.image_bytes))


def _run_chunks(listing: Listing, cfg: PreprocessConfig, start: int, workers: int) -> Iterator[list]:
    """Processed chunks in file order; at most 2 * workers + 1 chunks in flight."""
    chunk = _chunk_files(cfg)
    if listing.kind == "arrays":  # already pixels: converted here, no worker processes
        yield from array_source.chunks(listing, cfg, start, chunk)
        return
    if cfg.crop == "face":
        from dcgan_cli.data.preprocess import faces  # here: numpy and the detector only for --crop face

        process = faces.process_chunk
    else:
        process = process_chunk
    jobs = ((listing.kind, listing.root, names, cfg) for _, names in _chunks(listing.items, chunk, start))
    if workers <= 1:
        with warnings.catch_warnings():
            strict_bombs()
            for job in jobs:
                yield process(job)
        return
    import multiprocessing as mp
    from collections import deque
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    # spawn, not fork: the main process has TensorFlow loaded (threads), which
    # a fork would copy in an undefined state.
    pool = ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=worker_init)
    pending = deque()
    try:
        for job in jobs:
            pending.append(pool.submit(process, job))
            if len(pending) > 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    except BrokenProcessPool:
        _stop(pool)
        raise DcganError("a decoding process died (out of memory, or a crash in an image decoder); "
                         "re-run the same command to resume, with fewer --workers if memory is short") from None
    except BaseException:  # Ctrl-C, or an error while writing: do not wait for the workers
        _stop(pool)
        raise
    pool.shutdown(wait=True)


def _stop(pool) -> None:
    """End the workers now: one may be stuck on a file that never finishes reading."""
    if hasattr(pool, "terminate_workers"):  # Python 3.14+
        pool.terminate_workers()
        return
    for p in list((getattr(pool, "_processes", None) or {}).values()):
        p.terminate()
    pool.shutdown(wait=False, cancel_futures=True)


def workers_for(cfg: PreprocessConfig, n_files: int) -> int:
    """Processes for n files: --workers (or one per core), but at least 8 chunks each."""
    return min(cfg.workers or default_workers(), max(1, math.ceil(n_files / (8 * _chunk_files(cfg)))))


def default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def preprocess(cfg: PreprocessConfig, progress: Callable[[int, int], None] | None = None,
               log: Callable[[str], None] | None = None) -> dict:
    """Run `cfg`; returns the manifest (plus "up_to_date": True when nothing needed doing).

    `progress(done, total)` is called after each chunk; `log(line)` gets
    what the user should know (resuming, discarding an old partial run).
    Ctrl-C raises `errors.Interrupted`: the shards written so far stay for the next run.
    """
    with resume_hint(f"Interrupted. The shards written so far are kept in {cfg.out}; run the same command "
                     f"again to resume."):
        return _preprocess(cfg, progress, log)


@dataclass
class _Source:
    """SOURCE resolved and listed: the files to preprocess (after --split and --limit) and what came with them."""
    path: Path
    listing: Listing
    labels: list = field(default_factory=list)  # label specs of an array source (its own labels)
    found: int = 0  # image files before --split
    split_note: str = ""  # " (SPLIT split from FILE)" when --split chose the files


def _preprocess(cfg: PreprocessConfig, progress: Callable[[int, int], None] | None,
                log: Callable[[str], None] | None) -> dict:
    """`preprocess` step by step: list, label, fingerprint, reuse or (re)write the shards, commit."""
    log = log or (lambda line: print(line, file=sys.stderr))
    src = _list_source(cfg)
    listing = src.listing

    labeller = make_labeller(cfg.labels, listing.kind, listing.root, listing.items)
    labeller.finish(listing.items)
    labels = src.labels + labeller.specs
    import tensorflow as tf

    out = str(cfg.out)
    labels_id = labeller.fingerprint and f"{cfg.labels}:{labeller.fingerprint}"
    fingerprint = _fingerprint(cfg, src.path, listing, labels_id)
    current = _check_out(out, cfg, fingerprint)
    if current is not None:
        return {**current, "up_to_date": True}
    _make_out(out)
    lock = _lock(out)
    writer = None
    try:
        state, old = _start_writing(out, fingerprint, log)
        writer = ShardWriter(out, state["tag"], int(cfg.shard_mb * (1 << 20)), len(state["shards"]))
        _write_shards(out, cfg, listing, labeller, state, writer, progress)
        _fail_if_empty(out, cfg, src, state, old)
        manifest = _commit(out, cfg, src, state, fingerprint, labels)
        if src.split_note:
            log(f"Used {len(listing.items)} of {src.found} images{src.split_note}")
        return manifest
    except (OSError, tf.errors.OpError) as e:  # disk full, permissions, a bucket gone: the user can fix these
        raise DcganError(f"writing {out} failed ({getattr(e, 'message', None) or e}); fix that (space, "
                         f"permissions) and run the same command again to resume") from None
    finally:
        if writer is not None:
            writer.abandon()
        if lock is not None:
            lock.release()


def _list_source(cfg: PreprocessConfig) -> _Source:
    """Resolve SOURCE and list its files, sorted, then keep those of --split and the first --limit."""
    source = Path(cfg.source)
    if not source.exists():
        raise DcganError(f"{source} does not exist; pass a folder of images, a .zip of images or a data set name")
    if array_source.is_array_source(source):  # mnist.npz, IDX files: pixels and labels, no decoding
        src = _Source(source, array_source.listing(source, cfg), labels=array_source.label_info(source, cfg))
    else:
        listing = list_images(source)
        src = _Source(source, listing, found=len(listing.items))
        if not listing.items:
            raise DcganError(f"no images ({', '.join(e[1:] for e in IMAGE_EXTS)}) in {source}: found "
                             f"{describe_other(listing.other)}; point SOURCE at the folder that holds the images")
        if cfg.split != "all":
            keep, where = train_split(listing, PARTITIONS[cfg.split])
            listing.items = [n for n in listing.items if n.rsplit("/", 1)[-1] in keep]
            src.split_note = f" ({cfg.split} split from {where})"
            if not listing.items:
                raise DcganError(f"none of the {src.found} images in {source} is in the {cfg.split} split of "
                                 f"{where}; is it the partition file of these images? Use --split all to take "
                                 f"every image")
    if cfg.limit:
        src.listing.items = src.listing.items[:cfg.limit]
    return src


def _make_out(out: str) -> None:
    """Create the output directory (and its parents), or say why it cannot be."""
    import tensorflow as tf

    try:
        tf.io.gfile.makedirs(out)
    except (OSError, tf.errors.OpError) as e:
        raise DcganError(f"cannot create {out} ({getattr(e, 'message', e)}); choose a writable --out") from None


def _start_writing(out: str, fingerprint: str, log: Callable[[str], None]) -> tuple[dict, dict]:
    """(progress state, the previous complete manifest or {}), with half-written shards deleted.

    The previous complete output stays valid until the new manifest replaces it.
    """
    state = _resume_or_start(out, fingerprint, log)
    old = _existing_manifest(out) or {}
    _clean_stale(out, {s["file"] for s in state["shards"] + old.get("shards", [])})  # half-written shards
    write_text(join(out, PROGRESS), json.dumps(state))
    return state, old


def _write_shards(out: str, cfg: PreprocessConfig, listing: Listing, labeller, state: dict, writer: ShardWriter,
                  progress: Callable[[int, int], None] | None) -> None:
    """Decode the files from state["next"] on and append their examples to shards.

    A shard closes only between two files; each closed shard goes into `state`
    and `.progress.json` at once, so an interrupted run resumes after it.
    """
    total, done = len(listing.items), state["next"]
    workers = workers_for(cfg, total - done)
    index = done
    prefix_len = len(example_prefix(cfg.image_bytes))
    # closing(): if writing fails, the workers stop now, not when the generator is collected
    with contextlib.closing(_run_chunks(listing, cfg, done, workers)) as chunks:
        for results in chunks:
            for status, records, text in results:
                name = listing.items[index]
                index += 1
                if status:
                    state["skipped"].append(list_line(name, text))
                    continue
                if text:
                    state["small"].append(list_line(name, text))
                closed = None
                for n, record in enumerate(records, 1):  # the shard may close after a file's last one only
                    if labeller.specs:  # the workers write pixels only; labels are added here
                        record = serialize_example(record[prefix_len:], labeller.for_item(name))
                    closed = writer.add(record, may_close=n == len(records))
                if closed:
                    _record_shard(state, closed, index)
                    state["next"] = index
                    write_text(join(out, PROGRESS), json.dumps(state))
            if progress:
                progress(index, total)
    closed = writer.close()
    if closed:
        _record_shard(state, closed, index)


def _record_shard(state: dict, closed: dict, end: int) -> None:
    """Add a closed shard's entry to `state`, with where it ends in the file list and in the reports."""
    closed.update(end=end, skipped=len(state["skipped"]), small=len(state["small"]))
    state["shards"].append(closed)


def _fail_if_empty(out: str, cfg: PreprocessConfig, src: _Source, state: dict, old: dict) -> None:
    """When no file gave an image: remove our partial files and say why, from the commonest skip reasons."""
    if sum(s["count"] for s in state["shards"]) > 0:
        return
    total = len(src.listing.items)
    _clean_stale(out, {s["file"] for s in old.get("shards", [])}, also=(PROGRESS,))
    reasons = Counter(line.split("\t", 1)[1] for line in state["skipped"])
    summary = "; ".join(f"{n}x {r}" for r, n in reasons.most_common(3))
    if cfg.crop == "face" and any(" found" in r for r in reasons):
        raise DcganError(f"no face found in any of the {total} image files in {src.path} ({summary}); "
                         f"check the photos, or lower --min-face")
    raise DcganError(f"none of the {total} image files in {src.path} could be used ({summary}); "
                     f"check that the folder holds real images")


def _commit(out: str, cfg: PreprocessConfig, src: _Source, state: dict, fingerprint: str, labels: list) -> dict:
    """Write the reports, then the manifest (the commit point), then delete the shards it does not list."""
    write_text(join(out, SKIPPED), "".join(line + "\n" for line in state["skipped"]))
    write_text(join(out, SMALL), "".join(line + "\n" for line in state["small"]))
    manifest = make_manifest(
        size=cfg.size, channels=cfg.channels, crop=cfg.crop, crop_size=cfg.box_side, split=cfg.split,
        limit=cfg.limit, source=str(src.path.resolve()), source_images=len(src.listing.items),
        skipped=len(state["skipped"]), small=len(state["small"]), tool_version=__version__, fingerprint=fingerprint,
        **({"min_face": cfg.min_face} if cfg.crop == "face" else {}),
        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"), **({"labels": labels} if labels else {}),
        shards=state["shards"])
    write_manifest(out, manifest)  # the commit point
    _clean_stale(out, {s["file"] for s in manifest["shards"]}, also=(PROGRESS,))
    return manifest


def _resume_or_start(out: str, fingerprint: str, log: Callable[[str], None]) -> dict:
    """The progress of an interrupted run with the same fingerprint, or a fresh one.

    Shards are resumed up to the first one that is missing or has the wrong
    size; everything after it (and the skip/small lines it did not reach) is redone.
    """
    state = _read_json(join(out, PROGRESS))
    if state and state.get("fingerprint") == fingerprint:
        state["shards"] = _valid_prefix(out, state["shards"])
        last = state["shards"][-1] if state["shards"] else {"end": 0, "skipped": 0, "small": 0}
        state.update(next=last["end"], skipped=state["skipped"][:last["skipped"]], small=state["small"][:last["small"]])
        if state["shards"]:
            log(f"Resuming: {sum(s['count'] for s in state['shards'])} images already in "
                f"{len(state['shards'])} shards of an interrupted run in {out}")
        return state
    if state:
        log(f"Discarding an unfinished run in {out} that used other settings or files")
    return {"fingerprint": fingerprint, "tag": secrets.token_hex(3), "shards": [], "next": 0, "skipped": [],
            "small": []}


def _valid_prefix(out: str, shards: list[dict]) -> list[dict]:
    """The recorded shards that are still on disk with their recorded size."""
    import tensorflow as tf

    good = []
    for s in shards:
        path = join(out, s["file"])
        if not tf.io.gfile.exists(path) or tf.io.gfile.stat(path).length != s["bytes"]:
            break
        good.append(s)
    return good

