"""CIFAR-10 from either of its on-disk sources: torchvision's pickled batches, or class folders of JPEGs.
Both are written here for real from the same small set of images; the real CIFAR-10 is never needed."""

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tmu_utils.__main__ import main
from tmu_utils.core import context, image_folders
from tmu_utils.core.data import DatasetNotFoundError, load_dataset
from tmu_utils.core.params import make_params
from tmu_utils.experiments import runs

CLASSES = image_folders.CIFAR10_CLASSES


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """Keep the real ~/.cache/tmu, TMU_DATA_DIR and artefact cache out of every test."""
    (tmp_path / "home").mkdir()
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TMU_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("TMU_DATA_DIR", raising=False)


def colour(label: int, i: int) -> tuple[int, int, int]:
    """A flat colour that names the class in its red channel (24 levels apart, far above JPEG's error)."""
    return 10 + 24 * label, 40 + 7 * i, 200


def class_of(images: torch.Tensor) -> list[int]:
    """The class each flat image's red channel names."""
    return [round((float(r) - 10) / 24) for r in images[:, 0].float().mean(dim=(1, 2))]


def samples(n_per_class: int) -> list[tuple[int, int]]:
    """(label, index) pairs interleaved across classes, as the batches hold them."""
    return [(label, i) for i in range(n_per_class) for label in range(10)]


def write_batches(root: Path, per_class_train: int = 3, per_class_test: int = 1) -> Path:
    """torchvision's cifar-10-batches-py: five training pickles, a test pickle, and batches.meta."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)

    def dump(name: str, items: list[tuple[int, int]]) -> None:
        rows = np.array([np.full((32, 32, 3), colour(label, i), np.uint8).transpose(2, 0, 1).reshape(-1)
                         for label, i in items], dtype=np.uint8).reshape(-1, 3072)
        (folder / name).write_bytes(pickle.dumps({b"data": rows, b"labels": [label for label, _ in items]},
                                                 protocol=2))

    train = samples(per_class_train)
    for b in range(5):
        dump(f"data_batch_{b + 1}", train[b::5])
    dump("test_batch", samples(per_class_test))
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": [c.encode() for c in CLASSES]}, protocol=2))
    return folder


def write_jpegs(root: Path, per_class_train: int = 3, per_class_test: int = 1,
                names: tuple[str, ...] = CLASSES) -> Path:
    """train/<class>/NNNN.jpg and test/<class>/NNNN.jpg, as the class-per-folder CIFAR-10 ships."""
    for split, n in (("train", per_class_train), ("test", per_class_test)):
        for label, i in samples(n):
            path = root / split / names[label] / f"{i:04d}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (32, 32), colour(label, i)).save(path, quality=95)
    return root


@pytest.fixture
def listed_backwards(monkeypatch):
    """Folders list their entries in reverse name order, as a file system may: labels must not follow it."""
    listing = Path.iterdir
    monkeypatch.setattr(Path, "iterdir", lambda self: iter(sorted(listing(self), reverse=True)))


def test_jpeg_labels_follow_the_batches_class_order(tmp_path, listed_backwards):
    write_batches(tmp_path / "b")
    batches = load_dataset("cifar10", data_dir=tmp_path / "b", progress=False)
    jpegs = load_dataset("cifar10", data_dir=write_jpegs(tmp_path / "j"), progress=False)
    assert jpegs.classes == batches.classes == list(CLASSES)
    assert jpegs.train_x.shape == (30, 3, 32, 32) and jpegs.test_x.shape == (10, 3, 32, 32)
    assert jpegs.train_x.dtype == torch.uint8 and jpegs.train_y.dtype == torch.int64
    for ds in (batches, jpegs):
        assert class_of(ds.train_x) == ds.train_y.tolist() and class_of(ds.test_x) == ds.test_y.tolist()
    # Same images, same labels, another order: the folders group by class, the batches interleave.
    assert sorted(jpegs.train_y.tolist()) == sorted(batches.train_y.tolist())
    assert jpegs.train_y.tolist() != batches.train_y.tolist()
    assert (jpegs.format, jpegs.source) == ("image_folder", str(tmp_path / "j"))
    assert (batches.format, batches.source) == ("batches", str(tmp_path / "b" / "cifar-10-batches-py"))


def test_batches_win_in_one_folder_and_the_search_order_holds_across_folders(tmp_path, monkeypatch):
    both = tmp_path / "both"
    write_batches(both)
    write_jpegs(both)
    assert load_dataset("cifar10", data_dir=both, progress=False).format == "batches"
    write_jpegs(tmp_path / "env" / "cifar10" / "CIFAR-10-images")  # a clone of the JPEG repository
    monkeypatch.setenv("TMU_DATA_DIR", str(tmp_path / "env"))
    ds = load_dataset("cifar10", progress=False)
    assert ds.format == "image_folder" and ds.source == str(tmp_path / "env" / "cifar10" / "CIFAR-10-images")


# Three tiny models on 200 images: enough for results.json, seconds to train.
TINY_RUN = {"dataset": "cifar10", "arch": "mlp", "epochs": 2, "curriculum_epochs": 1, "methods": ["original"],
            "tuning": "fixed", "fixed_knobs": "none", "member_fraction": 0.5, "forget_fraction": 0.05,
            "mia_max_per_side": 20, "progress": False}


@pytest.fixture
def fresh_loads():
    """prepare() keeps the last data sets it loaded per process; start and leave with none."""
    context._load_dataset_cached.cache_clear()
    yield context._load_dataset_cached.cache_clear
    context._load_dataset_cached.cache_clear()


def test_run_records_source_and_checksum_and_never_mixes_the_sources_models(tmp_path, monkeypatch, fresh_loads):
    write_batches(tmp_path / "b", per_class_train=10, per_class_test=2)
    write_jpegs(tmp_path / "j", per_class_train=10, per_class_test=2)
    recorded = {}
    for source in ("b", "j"):  # the same parameters; only $TMU_DATA_DIR says which source
        monkeypatch.setenv("TMU_DATA_DIR", str(tmp_path / source))
        fresh_loads()  # as a new process would
        params = make_params({**TINY_RUN, "cache_dir": str(tmp_path / "cache"),
                              "out_dir": str(tmp_path / "runs" / source)})
        ctx = context.prepare(params)
        runs.evaluate(ctx)
        recorded[source] = json.loads((tmp_path / "runs" / source / "results.json").read_text())["data"]
        assert recorded[source] == ctx.dataset.provenance() and len(recorded[source]["checksum"]) == 16
    assert recorded["b"]["format"] == "batches" and recorded["j"]["format"] == "image_folder"
    assert recorded["b"]["source"] == str(tmp_path / "b" / "cifar-10-batches-py")
    assert recorded["b"]["checksum"] != recorded["j"]["checksum"]
    # Same parameters, other pixels: the JPEG run trained its own M_o rather than reading the batches' one.
    assert len(list((tmp_path / "cache" / "original").glob("*.pt"))) == 2


def test_checksum_sees_pixels_labels_and_order(tmp_path):
    ds = load_dataset("cifar10", data_dir=write_batches(tmp_path), progress=False)
    base = ds.checksum
    for change in ("pixel", "label", "order"):
        other = load_dataset("cifar10", data_dir=tmp_path, progress=False)
        if change == "pixel":
            other.train_x[0, 0, 0, 0] += 1
        elif change == "label":
            other.test_y[0] = (other.test_y[0] + 1) % 10
        else:
            other.train_x, other.train_y = other.train_x.flip(0), other.train_y.flip(0)
        assert other.checksum != base, change
    assert load_dataset("cifar10", data_dir=tmp_path, progress=False).checksum == base


def test_second_load_reads_the_cache_and_a_changed_image_is_decoded_again(tmp_path, monkeypatch, capsys):
    root = write_jpegs(tmp_path / "j")
    monkeypatch.setenv("TMU_PROGRESS", "1")
    first = load_dataset("cifar10", data_dir=root)
    assert "decoding CIFAR-10 train" in capsys.readouterr().err  # the repository's bar, shown while decoding
    assert len(list((tmp_path / "cache" / "data").glob("cifar10-*.pt"))) == 1

    def refuse(*args, **kwargs):
        raise AssertionError("decoded again")

    decoder = image_folders.Image.open
    monkeypatch.setattr(image_folders.Image, "open", refuse)
    second = load_dataset("cifar10", data_dir=root)
    assert all(torch.equal(getattr(first, k), getattr(second, k)) for k in ("train_x", "train_y", "test_x", "test_y"))
    monkeypatch.setattr(image_folders.Image, "open", decoder)
    monkeypatch.setenv("TMU_PROGRESS", "0")
    Image.new("RGB", (32, 32), (250, 0, 0)).save(root / "test" / "cat" / "0000.jpg", quality=95)
    third = load_dataset("cifar10", data_dir=root)
    assert capsys.readouterr().err == ""  # TMU_PROGRESS=0: no bar
    changed = int((first.test_y == 3).nonzero()[0])
    assert third.test_x[changed, 0].float().mean() > 240 > first.test_x[changed, 0].float().mean()


def test_class_folders_that_are_not_cifar10s_are_named(tmp_path, capsys):
    names = ("plane", "car") + CLASSES[2:]
    write_jpegs(tmp_path, names=names)
    problem = r"not CIFAR-10's: \['car', 'plane'\]; missing: \['airplane', 'automobile'\]"
    with pytest.raises(ValueError, match=problem):
        load_dataset("cifar10", data_dir=tmp_path, progress=False)
    assert main(["data", "cifar10", "--data-dir", str(tmp_path)]) == 3
    assert "must be CIFAR-10's ten classes" in capsys.readouterr().err


def test_images_that_are_not_32_pixels_are_named(tmp_path):
    write_jpegs(tmp_path)
    Image.new("RGB", (64, 32), (0, 0, 0)).save(tmp_path / "train" / "dog" / "0001.jpg")
    with pytest.raises(ValueError, match=r"dog/0001.jpg: image is 64x32, expected 32x32"):
        load_dataset("cifar10", data_dir=tmp_path, progress=False)


def test_data_command_says_which_source_it_found_or_how_to_get_it(tmp_path, capsys):
    folder = write_batches(tmp_path / "b")
    assert main(["data", "cifar10", "--data-dir", str(tmp_path / "b")]) == 0
    out = capsys.readouterr().out
    assert f"torchvision's python pickle batches at {folder}" in out and "30 train + 10 test" in out
    assert main(["data", "cifar10", "--data-dir", str(write_jpegs(tmp_path / "j"))]) == 0
    out = capsys.readouterr().out
    assert f"class folders of images (train/<class>/*, test/<class>/*) at {tmp_path / 'j'}" in out
    checksum = load_dataset("cifar10", data_dir=tmp_path / "j").checksum
    assert f"(checksum {checksum})" in out
    with pytest.raises(DatasetNotFoundError):
        load_dataset("cifar10", data_dir=tmp_path / "none")
    assert main(["data", "cifar10", "--data-dir", str(tmp_path / "none")]) == 3
    how = [line for line in capsys.readouterr().err.splitlines() if line.startswith("Get it")]
    assert len(how) == 1  # one line says both ways
    assert "python -m tmu_utils data cifar10 --download" in how[0] and "train/<class>/*.jpg" in how[0]
    assert "airplane, automobile, bird" in how[0] and "TMU_DATA_DIR" in how[0]
