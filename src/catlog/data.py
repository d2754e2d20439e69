"""Image datasets for the experiments: MNIST, Fashion-MNIST and Omniglot.

Files are read from a data folder laid out as follows::

    <data_dir>/mnist/train-images-idx3-ubyte.gz      (and the three other IDX files)
    <data_dir>/fashion-mnist/train-images-idx3-ubyte.gz
    <data_dir>/omniglot/images_background.zip        (train split)
    <data_dir>/omniglot/images_evaluation.zip        (test split)

Missing files are downloaded from the canonical sources (checked against their
published digests, with a progress bar) when the network allows; offline, a
``FileNotFoundError`` says which files to put where. Omniglot PNGs are decoded
once and the 28x28 tensors cached in a writable folder (:func:`cache_dir`),
because the data folder may be read-only.
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

DATASETS: tuple[str, ...] = ("mnist", "fashion-mnist", "omniglot")
SPLITS: tuple[str, ...] = ("train", "test")
IMAGE_SIZE = 28


@dataclass(frozen=True)
class RemoteFile:
    """One data file: its name, the URLs that serve it (tried in order) and accepted digests.

    Attributes:
        name: file name inside ``<data_dir>/<dataset>/``.
        urls: download URLs, the first that answers is used.
        digests: ``(algorithm, hex digest)`` pairs; a download must match one of them.
    """

    name: str
    urls: tuple[str, ...]
    digests: tuple[tuple[str, str], ...]


def _idx_files(mirrors: tuple[str, ...], sha256: dict[str, str]) -> dict[str, tuple[RemoteFile, RemoteFile]]:
    """``split -> (images file, labels file)`` for an IDX dataset served by ``mirrors``."""
    files = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        names = (f"{prefix}-images-idx3-ubyte.gz", f"{prefix}-labels-idx1-ubyte.gz")
        files[split] = tuple(
            RemoteFile(name, tuple(m + name for m in mirrors), (("sha256", sha256[name]),)) for name in names
        )
    return files


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

_OMNIGLOT_URL = "https://raw.githubusercontent.com/brendenlake/omniglot/master/python/"
# The canonical zips are checked by the md5 that torchvision publishes; the rebuilt copies
# of ../shared/data (same pixels, re-encoded PNGs) by their sha256.
OMNIGLOT_SOURCES: dict[str, RemoteFile] = {
    "train": RemoteFile(
        "images_background.zip",
        (_OMNIGLOT_URL + "images_background.zip",),
        (
            ("md5", "68d2efa1b9178cc56df9314c21c6e718"),
            ("sha256", "0742eb769ff12b215b6d00139389de8f05c29d35cc3f349b724567d0cf13ba7e"),
        ),
    ),
    "test": RemoteFile(
        "images_evaluation.zip",
        (_OMNIGLOT_URL + "images_evaluation.zip",),
        (
            ("md5", "6b91aef0f799c5bb55b94e3f2daec811"),
            ("sha256", "6f0410897c5b2eb3c7fa7d630db68e1f7efd1cf44e5a0d9f33a6614c1c44ddff"),
        ),
    ),
}


def _user_cache() -> Path:
    """``$XDG_CACHE_HOME/catlog``, else ``~/.cache/catlog``."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "catlog"


def default_data_dir() -> Path:
    """The data folder: ``$CATLOG_DATA`` if set, else the user cache folder ``~/.cache/catlog``."""
    env = os.environ.get("CATLOG_DATA")
    return Path(env).expanduser() if env else _user_cache()


def cache_dir() -> Path:
    """Writable folder for decoded tensors: ``$CATLOG_CACHE`` if set, else ``~/.cache/catlog/decoded``."""
    env = os.environ.get("CATLOG_CACHE")
    return Path(env).expanduser() if env else _user_cache() / "decoded"


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
    from catlog.experiments.common import progress

    target.parent.mkdir(parents=True, exist_ok=True)
    errors = []
    for url in remote.urls:
        hashes = {algorithm: hashlib.new(algorithm) for algorithm, _ in remote.digests}
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=30) as response:
                total = int(response.headers.get("Content-Length") or 0) or None
                with progress(total=total, unit="B", unit_scale=True, desc=remote.name) as bar:
                    for block in iter(lambda: response.read(1 << 16), b""):
                        out.write(block)
                        for h in hashes.values():
                            h.update(block)
                        bar.update(len(block))
            if not any(hashes[a].hexdigest() == want for a, want in remote.digests):
                got = ", ".join(f"{a} {h.hexdigest()}" for a, h in hashes.items())
                raise ValueError(
                    f"download {url}: expected digest {' or '.join(f'{a} {d}' for a, d in remote.digests)}, got {got}"
                )
            os.replace(tmp, target)
            return
        except (urllib.error.URLError, OSError) as error:
            errors.append(f"{url}: {error}")
        finally:
            Path(tmp).unlink(missing_ok=True)
    raise OSError("; ".join(errors))


def ensure_files(dataset: str, files: tuple[RemoteFile, ...], data_dir: Path, download: bool = True) -> list[Path]:
    """Paths of ``files`` in ``<data_dir>/<dataset>/``, downloading the missing ones if ``download``.

    Raises:
        FileNotFoundError: a file is missing and could not be downloaded; the message names
            every missing file, the folder it belongs in and where to get it.
        ValueError: a downloaded file failed its digest check.
    """
    folder = Path(data_dir) / dataset
    paths = [folder / remote.name for remote in files]
    missing = [(remote, path) for remote, path in zip(files, paths) if not path.is_file()]
    reason = "downloading is disabled"
    if download:
        try:
            for remote, path in missing:
                _fetch(remote, path)
            return paths
        except OSError as error:
            reason = f"download failed ({error})"
            missing = [(remote, path) for remote, path in missing if not path.is_file()]
    if missing:
        listing = "\n".join(f"  {path}  (from {remote.urls[0]})" for remote, path in missing)
        raise FileNotFoundError(
            f"{dataset}: missing data files and {reason}. Put these files there "
            f"(or point --data-dir / $CATLOG_DATA at a folder that has them):\n{listing}"
        )
    return paths


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
    labels = torch.tensor([int(_OMNIGLOT_PNG.search(n).group(1)) - 1 for n in names], dtype=torch.int64)
    images = F.interpolate(
        torch.from_numpy(ink).float().unsqueeze(1),
        size=(IMAGE_SIZE, IMAGE_SIZE),
        mode="bilinear",
        antialias=True,
        align_corners=False,
    )
    return images.squeeze(1).clamp_(0.0, 1.0), labels


def _load_omniglot(split: str, data_dir: Path, download: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Omniglot ``split`` from its zip, through the decoded-tensor cache keyed by the zip's sha256."""
    (zip_path,) = ensure_files("omniglot", (OMNIGLOT_SOURCES[split],), data_dir, download)
    cached = cache_dir() / f"omniglot-{split}-{file_digest(zip_path, 'sha256')[:16]}.pt"
    if cached.is_file():
        data = torch.load(cached, weights_only=True)
        return data["images"], data["labels"]
    images, labels = decode_omniglot(zip_path)
    try:
        from catlog.experiments.common import write_torch

        write_torch(cached, {"images": images, "labels": labels})
    except OSError:
        pass  # an unwritable cache only costs decoding again next time
    return images, labels


def load_images(
    name: str, split: str, data_dir: Path | str | None = None, *, download: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Load a dataset split as grey-level images and labels.

    Args:
        name: ``"mnist"``, ``"fashion-mnist"`` or ``"omniglot"``.
        split: ``"train"`` or ``"test"`` (Omniglot: ``images_background`` / ``images_evaluation``).
        data_dir: folder laid out as the module docstring says; default :func:`default_data_dir`.
        download: fetch missing files from the canonical sources.

    Returns:
        ``images``: float32 ``[N, 28, 28]`` with values in [0, 1] (pixel / 255; Omniglot ink = 1);
        ``labels``: int64 ``[N]`` (digit or class; Omniglot character id - 1).
    """
    if name not in DATASETS:
        raise ValueError(f"name: expected one of {DATASETS}, got {name!r}")
    if split not in SPLITS:
        raise ValueError(f"split: expected one of {SPLITS}, got {split!r}")
    data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
    if name == "omniglot":
        return _load_omniglot(split, data_dir, download)
    image_path, label_path = ensure_files(name, IDX_SOURCES[name][split], data_dir, download)
    images = torch.from_numpy(read_idx(image_path).astype(np.float32) / 255.0)
    labels = torch.from_numpy(read_idx(label_path).astype(np.int64))
    if images.shape[0] != labels.shape[0]:
        raise ValueError(
            f"data_dir: expected as many labels as images, got {images.shape[0]} images in {image_path} "
            f"and {labels.shape[0]} labels in {label_path}"
        )
    return images, labels


def binarize(images: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """``(images > threshold)`` as the images' float dtype: ``[*N, H, W]`` grey levels -> {0, 1}."""
    return (images > threshold).to(images.dtype)

