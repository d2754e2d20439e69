"""Loaders against the shared copies of MNIST, Fashion-MNIST and Omniglot, and the download logic."""

from __future__ import annotations

import functools
import shutil
import zipfile
from pathlib import Path

import pytest
import torch

from catlog.experiments import data

# Counts and first labels from ../shared/data/README.md.
MNIST_LABEL_COUNTS = {
    "train": [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949],
    "test": [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009],
}
MNIST_FIRST_LABELS = {"train": [5, 0, 4, 1, 9, 2, 1, 3, 1, 4], "test": [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]}
MNIST_MEAN_PIXEL = {"train": 33.318, "test": 33.791}
FASHION_MEAN_PIXEL = {"train": 72.940, "test": 73.147}


@functools.cache
def _load(data_dir: Path, name: str, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    return data.load_images(name, split, data_dir, download=False)


@pytest.mark.parametrize("split", ["train", "test"])
def test_mnist_counts_labels_and_pixels(shared_data_dir: Path, split: str) -> None:
    images, labels = _load(shared_data_dir, "mnist", split)
    n = sum(MNIST_LABEL_COUNTS[split])
    assert images.shape == (n, 28, 28) and images.dtype == torch.float32
    assert labels.shape == (n,) and labels.dtype == torch.int64
    assert torch.bincount(labels, minlength=10).tolist() == MNIST_LABEL_COUNTS[split]
    assert labels[:10].tolist() == MNIST_FIRST_LABELS[split]
    assert images.min() == 0.0 and images.max() == 1.0
    assert float(images.double().mean()) * 255 == pytest.approx(MNIST_MEAN_PIXEL[split], abs=5e-4)


@pytest.mark.parametrize("split", ["train", "test"])
def test_fashion_mnist_counts_and_pixels(shared_data_dir: Path, split: str) -> None:
    images, labels = _load(shared_data_dir, "fashion-mnist", split)
    per_class = 6000 if split == "train" else 1000
    assert images.shape == (10 * per_class, 28, 28)
    assert torch.bincount(labels, minlength=10).tolist() == [per_class] * 10
    assert 0.0 <= float(images.min()) and float(images.max()) <= 1.0
    assert float(images.double().mean()) * 255 == pytest.approx(FASHION_MEAN_PIXEL[split], abs=5e-4)


def test_binarize_thresholds_grey_levels(shared_data_dir: Path) -> None:
    images, _ = _load(shared_data_dir, "mnist", "test")
    binary = data.binarize(images)
    assert binary.dtype == images.dtype and set(binary.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(binary.bool(), images > 0.5)
    # MNIST digits cover roughly a tenth to a fifth of the image.
    assert 0.08 < float(binary.mean()) < 0.2


@pytest.mark.parametrize(("split", "count"), [("train", 19280), ("test", 13180)])
def test_omniglot_zip_counts(shared_data_dir: Path, split: str, count: int) -> None:
    with zipfile.ZipFile(shared_data_dir / "omniglot" / data.OMNIGLOT_SOURCES[split].name) as archive:
        assert sum(name.endswith(".png") for name in archive.namelist()) == count


def test_omniglot_decoding_and_cache(shared_data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The small background subset (2720 images, 136 characters, same pixels as the full zip) stands in
    # for images_background.zip so that the test decodes in a second or two.
    data_dir = tmp_path / "data"
    (data_dir / "omniglot").mkdir(parents=True)
    small = shared_data_dir / "omniglot" / "images_background_small1.zip"
    shutil.copy(small, data_dir / "omniglot" / "images_background.zip")
    digest = ("sha256", data.file_digest(small, "sha256"))
    monkeypatch.setitem(data.OMNIGLOT_SOURCES, "train", data.RemoteFile("images_background.zip", (), (digest,)))
    monkeypatch.setenv("CATLOG_CACHE", str(tmp_path / "cache"))

    images, labels = data.load_images("omniglot", "train", data_dir, download=False)
    assert images.shape == (2720, 28, 28) and images.dtype == torch.float32
    assert 0.0 <= float(images.min()) and float(images.max()) <= 1.0
    assert labels.unique().numel() == 136 and torch.bincount(labels)[labels].eq(20).all()
    assert 0 <= int(labels.min()) and int(labels.max()) < 964
    # Ink is 1 and sparse: strokes cover well under half of a character's box.
    ink = data.binarize(images).mean()
    assert 0.02 < float(ink) < 0.3
    assert len(list((tmp_path / "cache").glob("omniglot-train-*.pt"))) == 1

    cached_images, cached_labels = data.load_images("omniglot", "train", data_dir, download=False)
    assert torch.equal(cached_images, images) and torch.equal(cached_labels, labels)
    # Without $CATLOG_CACHE the cache lives beside the data; --cache-dir (cache=) wins over both.
    monkeypatch.delenv("CATLOG_CACHE")
    data.load_images("omniglot", "train", data_dir, download=False)
    assert len(list((data_dir / "decoded").glob("omniglot-train-*.pt"))) == 1
    data.load_images("omniglot", "train", data_dir, download=False, cache=tmp_path / "explicit")
    assert len(list((tmp_path / "explicit").glob("omniglot-train-*.pt"))) == 1


def _local_mirror(tmp_path: Path, source: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the MNIST test-split sources at a file:// copy of ``source``; returns the mirror folder."""
    mirror = tmp_path / "mirror"
    shutil.copytree(source, mirror)
    remotes = tuple(
        data.RemoteFile(remote.name, ((mirror / remote.name).as_uri(),), remote.digests)
        for remote in data.IDX_SOURCES["mnist"]["test"]
    )
    monkeypatch.setitem(data.IDX_SOURCES, "mnist", {"test": remotes})
    return mirror


def test_download_checks_digest_and_loads(
    shared_data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _local_mirror(tmp_path, shared_data_dir / "mnist", monkeypatch)
    (tmp_path / "data").mkdir()
    images, labels = data.load_images("mnist", "test", tmp_path / "data")
    assert (tmp_path / "data" / "mnist" / "t10k-images-idx3-ubyte.gz").is_file()
    expected_images, expected_labels = _load(shared_data_dir, "mnist", "test")
    assert torch.equal(images, expected_images) and torch.equal(labels, expected_labels)


def test_download_rejects_corrupt_file(shared_data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mirror = _local_mirror(tmp_path, shared_data_dir / "mnist", monkeypatch)
    (mirror / "t10k-labels-idx1-ubyte.gz").chmod(0o644)
    (mirror / "t10k-labels-idx1-ubyte.gz").write_bytes(b"not the labels")
    (tmp_path / "data").mkdir()
    with pytest.raises(data.DataError, match="expected digest sha256 f7ae60f9"):
        data.load_images("mnist", "test", tmp_path / "data")
    assert not (tmp_path / "data" / "mnist" / "t10k-labels-idx1-ubyte.gz").exists()
    assert not list((tmp_path / "data" / "mnist").glob("*.part"))


def test_offline_error_names_missing_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    remotes = tuple(
        data.RemoteFile(remote.name, ((tmp_path / "nowhere" / remote.name).as_uri(),), remote.digests)
        for remote in data.IDX_SOURCES["mnist"]["test"]
    )
    monkeypatch.setitem(data.IDX_SOURCES, "mnist", {"test": remotes})
    (tmp_path / "data").mkdir()
    with pytest.raises(data.DataError, match="download failed") as error:
        data.load_images("mnist", "test", tmp_path / "data")
    assert f"{tmp_path / 'data' / 'mnist' / 't10k-images-idx3-ubyte.gz'}: missing" in str(error.value)
    assert "t10k-labels-idx1-ubyte.gz: missing" in str(error.value)
    with pytest.raises(data.DataError, match="downloading is disabled"):
        data.load_images("mnist", "test", tmp_path / "data", download=False)


def _copy_mnist(shared_data_dir: Path, tmp_path: Path) -> Path:
    """A writable copy of the MNIST files in ``tmp_path/data/mnist``; returns ``tmp_path/data``."""
    shutil.copytree(shared_data_dir / "mnist", tmp_path / "data" / "mnist")
    for path in (tmp_path / "data" / "mnist").iterdir():
        path.chmod(0o644)
    return tmp_path / "data"


def test_truncated_and_corrupted_files_are_named_with_the_fix(shared_data_dir: Path, tmp_path: Path) -> None:
    data_dir = _copy_mnist(shared_data_dir, tmp_path)
    truncated, flipped = (
        data_dir / "mnist" / "t10k-images-idx3-ubyte.gz",
        data_dir / "mnist" / "train-labels-idx1-ubyte.gz",
    )
    truncated.write_bytes(truncated.read_bytes()[:1000])
    content = bytearray(flipped.read_bytes())
    content[500] ^= 0xFF
    flipped.write_bytes(bytes(content))
    with pytest.raises(data.DataError) as error:
        data.check_dataset("mnist", data_dir, download=False)
    message = str(error.value)
    for path, size in ((truncated, 1000), (flipped, len(content))):
        assert f"{path}: damaged: its checksum does not match the published one ({size} bytes" in message
    assert "Fix: delete the damaged files" in message
    assert "train-images" not in message  # the good files are not blamed


def test_missing_files_of_both_splits_are_listed_at_once(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    with pytest.raises(data.DataError) as error:
        data.check_dataset("mnist", tmp_path / "data", download=False)
    assert str(error.value).count(": missing") == 4 and "t10k-labels-idx1-ubyte.gz: missing" in str(error.value)


def test_wrong_data_dir_is_refused_and_never_created(tmp_path: Path) -> None:
    with pytest.raises(data.DataError, match="--data-dir: expected an existing folder"):
        data.load_images("mnist", "test", tmp_path / "typo")
    assert not (tmp_path / "typo").exists()


def test_command_reports_bad_data_in_one_error_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from catlog.experiments.cli import main

    out = tmp_path / "run"
    assert main(["addition", "--data-dir", str(tmp_path / "typo"), "--out", str(out)]) == 1
    error = capsys.readouterr().err
    assert error.startswith("catlog addition: error: --data-dir") and "Traceback" not in error
    assert not out.exists() and not (tmp_path / "typo").exists()


def test_default_data_dir_follows_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CATLOG_DATA", str(tmp_path))
    assert data.default_data_dir() == tmp_path
    monkeypatch.delenv("CATLOG_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert data.default_data_dir() == tmp_path / "xdg" / "catlog"


@pytest.mark.parametrize(("name", "split", "argument"), [("cifar", "train", "name"), ("mnist", "valid", "split")])
def test_bad_arguments_raise(name: str, split: str, argument: str) -> None:
    with pytest.raises(ValueError, match=f"^{argument}: expected"):
        data.load_images(name, split)
