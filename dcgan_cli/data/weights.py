"""Pretrained files the feature networks use: where they live, and the one command that fetches them.

Nothing here downloads by itself. A network that needs one of these files
takes a file the user names, or the copy in Keras' cache ($KERAS_HOME/models,
else ~/.keras/models: where Keras itself keeps them); when neither exists it
stops with one line naming the file, its URL and `dcgan download NAME`. That
command goes through the data sets' download machinery (datasets/http.py:
mirrors, resume, size and checksum checked before the file gets its name).

    inception-2015  TensorFlow's 2015 Inception graph, classify_image_graph_def.pb, taken out of
                    inception-2015-12-05.tgz (88,931,400 bytes; no checksum is published for it, so
                    the size is what is checked, and the graph's tensors when it loads). The FID of
                    TTUR, pytorch-fid's port and StudioGAN's TF-Inception column.
    vgg19           Keras' VGG19 ImageNet weights without the top (the MD5 keras.applications.VGG19
                    checks): stylize's pretrained features.
"""

from __future__ import annotations

import os
import gzip
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from dcgan_cli.data.datasets import RemoteFile
from dcgan_cli.errors import DcganError
from dcgan_cli.fsutil import atomic_path

# None: Keras' own root ($KERAS_HOME, else ~/.keras); tests point it elsewhere.
KERAS_CACHE_DIR: str | None = None


@dataclass(frozen=True)
class WeightsFile:
    name: str  # `dcgan download NAME`
    filename: str  # the file in Keras' cache (models/) that the network loads
    remote: RemoteFile  # what is downloaded
    member: str = ""  # the file inside an archive download, else "" (the download is the file)
    description: str = ""
    flag: str = ""  # the option that names a local copy instead


INCEPTION_2015 = WeightsFile(
    "inception-2015", "classify_image_graph_def.pb",
    RemoteFile("inception-2015-12-05.tgz",
               ("http://download.tensorflow.org/models/image/imagenet/inception-2015-12-05.tgz",),
               size=88_931_400, manual="http://download.tensorflow.org/models/image/imagenet/inception-2015-12-05.tgz"),
    member="classify_image_graph_def.pb",
    description="TensorFlow's 2015 Inception graph (pool_3, 2048-d): the papers' FID (TTUR, StudioGAN)",
    flag="--inception-weights")

_VGG19 = "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"
_VGG19_URL = "https://storage.googleapis.com/tensorflow/keras-applications/vgg19/" + _VGG19
VGG19 = WeightsFile(
    "vgg19", _VGG19,
    RemoteFile(_VGG19, (_VGG19_URL,), md5="253f8cb515780f3b799900260a226db6", manual=_VGG19_URL),
    description="Keras' VGG19 ImageNet weights without the top: stylize's pretrained features",
    flag="--vgg-weights")

WEIGHTS: dict[str, WeightsFile] = {w.name: w for w in (INCEPTION_2015, VGG19)}


def keras_cache_dir() -> Path:
    """Keras' models/ folder: $KERAS_HOME/models, else ~/.keras/models (as keras.utils.get_file uses it)."""
    root = KERAS_CACHE_DIR or os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(root) / "models"


def cached(name: str) -> Path | None:
    """The cached copy of WEIGHTS[name], or None."""
    path = keras_cache_dir() / WEIGHTS[name].filename
    return path if path.is_file() else None


def missing(name: str) -> str:
    """The one line for a file that is not there: what, where it was looked for, how to get it."""
    w = WEIGHTS[name]
    return (f"{w.filename} is not in Keras' cache ({keras_cache_dir()}); fetch it with `dcgan download {w.name}` "
            f"(from {w.remote.mirrors[0]}) or pass a copy with {w.flag} FILE")


def resolve(name: str, path: str | os.PathLike | None = None) -> Path:
    """The file the user named (it must exist), else the cached copy; a DcganError when neither is there."""
    w = WEIGHTS[name]
    if path is not None:
        path = Path(path).expanduser()
        if not path.is_file():
            raise DcganError(f"{w.flag} {path} does not exist; give the path of {w.filename} "
                             f"(`dcgan download {w.name}` puts it in {keras_cache_dir()})")
        return path
    found = cached(name)
    if found is None:
        raise DcganError(missing(name))
    return found


def fetch(name: str, *, force: bool = False, urls=(), http=None, ui=None) -> tuple[Path, bool]:
    """`dcgan download NAME`: (the file in Keras' cache, whether anything was downloaded)."""
    from dcgan_cli.data.datasets.http import download

    w = WEIGHTS[name]
    target = keras_cache_dir() / w.filename
    if target.is_file() and not force:
        return target, False
    dest = keras_cache_dir() / w.remote.filename
    hint = (f"Download {w.remote.filename} in a browser from {w.remote.manual}"
            + (f" and take {w.member} out of it" if w.member else "")
            + f", then pass it with {w.flag} FILE or put it at {target}")
    if force or not dest.is_file():
        download(w.remote, dest, tuple(urls) or w.remote.mirrors, http, ui, hint=hint)
    if w.member:
        try:
            _extract_member(dest, w.member, target)
        except DcganError:
            for left in (dest, dest.with_name(dest.name + ".json")):  # the archive and its download record:
                left.unlink(missing_ok=True)  # left in the cache, the next run would trust them
            raise
    return target, True


def download_command(name: str, *, force: bool = False, urls=(), archives=(), http=None, ui=None,
                     ignored: dict | None = None) -> str:
    """`dcgan download inception-2015|vgg19`: what to print once the file is in Keras' cache.

    ignored: the data sets' options as given ({"--sha256": value, ...}); any set one is refused, not ignored.
    """
    from dcgan_cli.errors import UsageError

    if archives:
        raise UsageError(f"--archive is for data sets; pass a local copy of {WEIGHTS[name].filename} with "
                         f"{WEIGHTS[name].flag} FILE instead", "--archive")
    given = [flag for flag, value in (ignored or {}).items() if value]
    if given:
        raise UsageError(f"{', '.join(given)} {'is' if len(given) == 1 else 'are'} for data sets; {name} goes into "
                         f"Keras' cache with its own {'size' if WEIGHTS[name].member else 'checksum'} check: "
                         f"drop {'it' if len(given) == 1 else 'them'}", given[0])
    path, downloaded = fetch(name, force=force, urls=urls, http=http, ui=ui)
    return f"{name} is ready: {path}" if downloaded else f"{name} is already in Keras' cache: {path} (--force redoes it)"


def _extract_member(archive: Path, member: str, target: Path) -> None:
    """Copy `member` (a regular file, found by its base name) out of a tar archive onto `target`, atomically."""
    try:
        with tarfile.open(archive) as tar:
            info = next((m for m in tar.getmembers() if Path(m.name).name == member and m.isfile()), None)
            if info is None:
                raise DcganError(f"{archive} holds no {member}; it was removed: run the download again (from another --url)")
            src = tar.extractfile(info)
            with atomic_path(target) as tmp, open(tmp, "wb") as out:
                while chunk := src.read(1 << 20):
                    out.write(chunk)
    except (tarfile.TarError, EOFError, gzip.BadGzipFile, zlib.error) as e:  # garbage in a .tgz's clothes
        why = " ".join(str(e).split())[:100]  # tarfile's message spans lines
        raise DcganError(f"{archive} is not a readable .tgz ({type(e).__name__}: {why}); it was removed: "
                         f"run the download again (from another --url)") from None
