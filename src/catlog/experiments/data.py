"""Image datasets for the experiments: MNIST, Fashion-MNIST and Omniglot.

Files are read from ``<data_dir>/mnist/`` and ``<data_dir>/fashion-mnist/`` (the four IDX
files each) and ``<data_dir>/omniglot/`` (``images_background.zip``, the train split, and
``images_evaluation.zip``, the test split). The data folder is ``--data-dir`` when given (it
must exist: a mistyped path is never created), else ``$CATLOG_DATA``, else ``~/.cache/catlog``.
Every file is checked against its published digest; missing or damaged files are downloaded
again when the network allows, else a :class:`DataError` names each and the fix. Omniglot's
decoded 28x28 tensors are cached (:func:`cache_dir`).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import re
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from catlog.experiments.common import progress, write_torch
from catlog.experiments.options import Options, option

DATASETS: tuple[str, ...] = ("mnist", "fashion-mnist", "omniglot")
SPLITS: tuple[str, ...] = ("train", "test")
IMAGE_SIZE = 28


@dataclass(frozen=True)
class RemoteFile:
    """One data file: its ``name`` in ``<data_dir>/<dataset>/``, the ``urls`` that serve it (tried in
    order) and its accepted ``digests``, ``(hashlib algorithm, hex digest)`` pairs."""

    name: str
    urls: tuple[str, ...]
    digests: tuple[tuple[str, str], ...]


def _idx_files(mirrors: tuple[str, ...], sha256: dict[str, str]) -> dict[str, tuple[RemoteFile, RemoteFile]]:
    """``split -> (images file, labels file)`` for an IDX dataset served by ``mirrors``."""

    def remote(name: str) -> RemoteFile:
        return RemoteFile(name, tuple(m + name for m in mirrors), (("sha256", sha256[name]),))

    return {
        split: (remote(f"{prefix}-images-idx3-ubyte.gz"), remote(f"{prefix}-labels-idx1-ubyte.gz"))
        for split, prefix in (("train", "train"), ("test", "t10k"))
    }


IDX_SOURCES: dict[str, dict[str, tuple[RemoteFile, RemoteFile]]] = {
    "mnist": _idx_files(
        ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"),
        {
            "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
            "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
            "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
            "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
        },
    ),
    "fashion-mnist": _idx_files(
        ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        {
            "train-images-idx3-ubyte.gz": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
            "train-labels-idx1-ubyte.gz": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
            "t10k-images-idx3-ubyte.gz": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
            "t10k-labels-idx1-ubyte.gz": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
        },
    ),
}


def _omniglot_zip(name: str, md5: str, sha256: str) -> RemoteFile:
    """An Omniglot zip, checked by the md5 torchvision publishes for the canonical one, or by the
    sha256 of the rebuilt copy in ../shared/data (same pixels, re-encoded PNGs)."""
    url = f"https://raw.githubusercontent.com/brendenlake/omniglot/master/python/{name}"
    return RemoteFile(name, (url,), (("md5", md5), ("sha256", sha256)))


OMNIGLOT_SOURCES: dict[str, RemoteFile] = {
    "train": _omniglot_zip(
        "images_background.zip",
        "68d2efa1b9178cc56df9314c21c6e718",
        "0742eb769ff12b215b6d00139389de8f05c29d35cc3f349b724567d0cf13ba7e",
    ),
    "test": _omniglot_zip(
        "images_evaluation.zip",
        "6b91aef0f799c5bb55b94e3f2daec811",
        "6f0410897c5b2eb3c7fa7d630db68e1f7efd1cf44e5a0d9f33a6614c1c44ddff",
    ),
}


class DataError(ValueError):
    """Data files that are missing or damaged, or a data folder that does not exist."""


def default_data_dir() -> Path:
    """``$CATLOG_DATA`` if set, else ``$XDG_CACHE_HOME/catlog``, else ``~/.cache/catlog``."""
    if os.environ.get("CATLOG_DATA"):
        return Path(os.environ["CATLOG_DATA"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "catlog"


def resolve_data_dir(data_dir: Path | str | None) -> Path:
    """``data_dir`` if given, else :func:`default_data_dir`.

    Raises:
        DataError: ``data_dir`` is given but is not a folder (a mistyped path is never created).
    """
    if data_dir is None:
        return default_data_dir()
    data_dir = Path(data_dir).expanduser()
    if data_dir.is_file():
        raise DataError(f"--data-dir: expected an existing folder, got {str(data_dir)!r}, which is a file")
    if not data_dir.is_dir():
        raise DataError(
            f"--data-dir: expected an existing folder, got {str(data_dir)!r}, which does not exist; "
            "check the path, or create the folder to have the data downloaded into it"
        )
    return data_dir


def cache_dir(data_dir: Path, explicit: Path | str | None = None) -> Path:
    """Folder for decoded tensors: ``explicit`` (``--cache-dir``), else ``$CATLOG_CACHE``, else
    ``<data_dir>/decoded``; an unwritable one only costs decoding again."""
    if explicit is not None:
        return Path(explicit).expanduser()
    env = os.environ.get("CATLOG_CACHE")
    return Path(env).expanduser() if env else Path(data_dir) / "decoded"


@dataclass(frozen=True, kw_only=True)
class DataOptions(Options):
    """The option of the commands that read image data: ``--data-dir``."""

    data_dir: Path | None = option(None, "existing data folder", default_text="$CATLOG_DATA, else ~/.cache/catlog")


def file_digest(path: Path, algorithm: str) -> str:
    """Hex digest of the file at ``path`` with ``hashlib`` algorithm ``algorithm`` (e.g. ``"sha256"``)."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fetch(remote: RemoteFile, target: Path) -> None:
    """Download ``remote`` to ``target`` (progress bar, digest check, atomic rename).

    Raises:
        OSError: no URL answered (offline).
        ValueError: a download did not match any accepted digest.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    errors = []
    for url in remote.urls:
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=30) as response:
                total = int(response.headers.get("Content-Length") or 0) or None
                with progress(total=total, unit="B", unit_scale=True, desc=remote.name) as bar:
                    for block in iter(lambda: response.read(1 << 16), b""):
                        bar.update(out.write(block))
            got = {algorithm: file_digest(Path(tmp), algorithm) for algorithm, _ in remote.digests}
            if not any(got[algorithm] == want for algorithm, want in remote.digests):
                wanted = " or ".join(f"{algorithm} {want}" for algorithm, want in remote.digests)
                found = ", ".join(f"{algorithm} {digest}" for algorithm, digest in got.items())
                raise ValueError(f"download {url}: expected digest {wanted}, got {found}")
            os.replace(tmp, target)
            return
        except (urllib.error.URLError, OSError) as error:
            errors.append(f"{url}: {error}")
        finally:
            Path(tmp).unlink(missing_ok=True)
    raise OSError("; ".join(errors))


_VERIFIED: dict[tuple[Path, int, int], bool] = {}


def problem_with(remote: RemoteFile, path: Path) -> str | None:
    """What is wrong with ``path`` as the file ``remote`` (missing, or a digest mismatch); ``None`` if nothing.

    A digest is computed once per (path, size, modification time) in a process.
    """
    if not path.is_file():
        return "missing"
    stat = path.stat()
    key = (path.resolve(), stat.st_size, stat.st_mtime_ns)
    if key not in _VERIFIED:
        _VERIFIED[key] = any(file_digest(path, algorithm) == want for algorithm, want in remote.digests)
    if _VERIFIED[key]:
        return None
    return f"damaged: its checksum does not match the published one ({stat.st_size} bytes; truncated or corrupted)"


def ensure_files(dataset: str, files: tuple[RemoteFile, ...], data_dir: Path, download: bool = True) -> list[Path]:
    """Paths of ``files`` in ``<data_dir>/<dataset>/``, each checked against its digest; missing or damaged
    ones are downloaded again when ``download`` (a damaged file is replaced only by a good download).

    Raises:
        DataError: files still missing or damaged; the message names each, what is wrong and the fix.
    """
    folder = Path(data_dir) / dataset
    paths = [folder / remote.name for remote in files]
    bad = {path: (remote, problem) for remote, path in zip(files, paths) if (problem := problem_with(remote, path))}
    reason = "downloading is disabled"
    if bad and download:
        failures = []
        for path, (remote, _) in bad.items():
            try:
                _fetch(remote, path)
            except (OSError, ValueError) as error:
                failures.append(str(error))
        reason = f"download failed ({'; '.join(failures)})" if failures else ""
        bad = {path: (remote, problem) for path, (remote, _) in bad.items() if (problem := problem_with(remote, path))}
    if bad:
        listing = "\n".join(
            f"  {path}: {problem} (get it from {remote.urls[0]})" for path, (remote, problem) in bad.items()
        )
        raise DataError(
            f"{dataset}: {len(bad)} data file(s) missing or damaged and {reason}:\n{listing}\n"
            "Fix: delete the damaged files and run again with network access to download them, or put good copies "
            "there (or point --data-dir / $CATLOG_DATA at a folder that has them)."
        )
    return paths


def _files(name: str, split: str) -> tuple[RemoteFile, ...]:
    """The files of ``split`` of dataset ``name`` (checked against :data:`DATASETS`, :data:`SPLITS`)."""
    if name not in DATASETS:
        raise ValueError(f"name: expected one of {DATASETS}, got {name!r}")
    if split not in SPLITS:
        raise ValueError(f"split: expected one of {SPLITS}, got {split!r}")
    return (OMNIGLOT_SOURCES[split],) if name == "omniglot" else IDX_SOURCES[name][split]


def check_dataset(name: str, data_dir: Path | str | None = None, *, download: bool = True) -> Path:
    """Check (and download when missing) every file of dataset ``name``, both splits; returns the data folder.

    Commands call it before they create their run folder, so that every bad file is reported
    at once and nothing is written on bad data. Raises :class:`DataError` as :func:`ensure_files`.
    """
    files = tuple(remote for split in SPLITS for remote in _files(name, split))
    folder = resolve_data_dir(data_dir)
    ensure_files(name, files, folder, download)
    return folder


def read_idx(path: Path) -> np.ndarray:
    """Read a gzipped IDX file (unsigned byte data) into a ``uint8`` array of its stored shape."""
    with gzip.open(path, "rb") as handle:
        data = handle.read()
    zero, dtype_code, ndim = data[0] * 256 + data[1], data[2], data[3]
    if zero != 0 or dtype_code != 0x08:
        raise ValueError(f"path: expected an unsigned-byte IDX file, got header bytes {data[:4]!r} in {path}")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


_OMNIGLOT_PNG = re.compile(r"(?:^|/)(\d+)_\d+\.png$")


def decode_omniglot(zip_path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode an Omniglot zip into ``(images [N, 28, 28] float32, labels [N] int64)``.

    Images are sorted by path; each 105x105 1-bit PNG (ink = 0) becomes ink = 1 and is
    resized to 28x28 by antialiased bilinear interpolation, giving grey levels in [0, 1].
    The label of ``.../IIII_DD.png`` is the global character id minus one, ``IIII - 1``.
    """
    from PIL import Image

    with zipfile.ZipFile(zip_path) as archive:
        names = sorted(n for n in archive.namelist() if _OMNIGLOT_PNG.search(n))
        ink = np.stack([~np.asarray(Image.open(io.BytesIO(archive.read(n))).convert("1"), dtype=bool) for n in names])
    labels = torch.tensor([int(_OMNIGLOT_PNG.findall(n)[0]) - 1 for n in names], dtype=torch.int64)
    size = (IMAGE_SIZE, IMAGE_SIZE)
    images = F.interpolate(
        torch.from_numpy(ink).float().unsqueeze(1), size, mode="bilinear", antialias=True, align_corners=False
    )
    return images.squeeze(1).clamp_(0.0, 1.0), labels


def load_images(
    name: str, split: str, data_dir: Path | str | None = None, *, download: bool = True, cache: Path | str | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Load split ``split`` (``train``/``test``) of dataset ``name`` (:data:`DATASETS`) as grey-level images and labels.

    Args:
        data_dir: the data folder (see the module); default :func:`default_data_dir`.
        download: fetch missing or damaged files from the canonical sources.
        cache: Omniglot's decode cache folder, keyed by the zip's sha256; default :func:`cache_dir`.

    Returns:
        ``images``: float32 ``[N, 28, 28]`` in [0, 1] (pixel / 255; Omniglot ink = 1);
        ``labels``: int64 ``[N]`` (digit or class; Omniglot character id - 1).
    """
    files = _files(name, split)
    folder = resolve_data_dir(data_dir)
    paths = ensure_files(name, files, folder, download)
    if name == "omniglot":
        digest = file_digest(paths[0], "sha256")[:16]
        cached = cache_dir(folder, cache) / f"omniglot-{split}-{digest}.pt"
        if cached.is_file():
            stored = torch.load(cached, weights_only=True)
            return stored["images"], stored["labels"]
        images, labels = decode_omniglot(paths[0])
        try:
            write_torch(cached, {"images": images, "labels": labels})
        except OSError:
            pass  # an unwritable cache only costs decoding again next time
        return images, labels
    images = torch.from_numpy(read_idx(paths[0]).astype(np.float32) / 255.0)
    labels = torch.from_numpy(read_idx(paths[1]).astype(np.int64))
    if images.shape[0] != labels.shape[0]:
        raise ValueError(
            f"data_dir: expected as many labels as images, got {images.shape[0]} images in {paths[0]} "
            f"and {labels.shape[0]} labels in {paths[1]}"
        )
    return images, labels


def binarize(images: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """``(images > threshold)`` as the images' float dtype: ``[*N, H, W]`` grey levels -> {0, 1}."""
    return (images > threshold).to(images.dtype)
