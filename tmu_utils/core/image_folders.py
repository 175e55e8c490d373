"""Class-per-folder images (`train/<class>/*`, `test/<class>/*`) decoded once with PIL into uint8 tensors:
the `imagefolder` data set, and CIFAR-10 as JPEGs, whose decoded tensors are kept in the artefact cache."""
from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import numpy as np
import PIL
import torch
from PIL import Image
from tqdm import tqdm

from .cache import Cache, default_cache_dir
from .training import progress_enabled

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp"}
_GRAY_MODES = {"1", "L", "LA"}
# The order of the batches' batches.meta. Labels follow it whatever order the folders list in, so label
# k means the same class in both sources.
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
# The folder names the class-per-folder CIFAR-10 ships in: at the top, or a clone of the CIFAR-10-images
# repository placed there.
CIFAR10_FOLDER_NAMES = ("", "CIFAR-10-images")
# Bump when the decoding changes, so cached tensors decoded the old way are not read back.
_DECODE_VERSION = 1

Tensors = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def class_dirs(split_dir: Path) -> list[str]:
    """Sorted class folder names, skipping hidden ones such as .ipynb_checkpoints."""
    return sorted(p.name for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith("."))


def image_files(split_dir: Path, classes: list[str] | tuple[str, ...]) -> list[tuple[Path, int]]:
    """Image paths of a split with their class indices (positions in `classes`), in a stable order."""
    files = []
    for label, cls in enumerate(classes):
        if (split_dir / cls).is_dir():
            # scandir knows each entry's type without a stat: CIFAR-10's 60 000 names in 0.8 s, iterdir 2.6 s
            with os.scandir(split_dir / cls) as entries:
                names = sorted(e.name for e in entries
                               if e.is_file() and os.path.splitext(e.name)[1].lower() in IMAGE_SUFFIXES)
            files += [(split_dir / cls / name, label) for name in names]
    return files


def common_mode(files: list[tuple[Path, int]]) -> str:
    """"L" when every image is grayscale, else "RGB": one channel count for the whole data set."""
    modes = set()
    for path, _ in files:
        with Image.open(path) as img:  # reads only the header, so this pass is cheap
            modes.add(img.mode)
    return "L" if modes <= _GRAY_MODES else "RGB"


def read_images(files: list[tuple[Path, int]], mode: str, size: int, resize: bool = True,
                desc: str = "decoding images", progress: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode and convert images into one uint8 (N, C, size, size) tensor; `resize=False` rejects other sizes."""
    channels = 1 if mode == "L" else 3
    x = np.empty((len(files), channels, size, size), dtype=np.uint8)
    bar = tqdm(files, desc=desc, unit="img", disable=not progress_enabled(progress), leave=False)
    for i, (path, _) in enumerate(bar):
        with Image.open(path) as img:
            if not resize and img.size != (size, size):
                raise ValueError(f"{path}: image is {img.size[0]}x{img.size[1]}, expected {size}x{size}")
            pixels = np.asarray(img.convert(mode).resize((size, size), Image.BILINEAR))
        x[i] = pixels.reshape(size, size, channels).transpose(2, 0, 1)
    return torch.from_numpy(x), torch.tensor([label for _, label in files], dtype=torch.int64)


def has_split_folders(folder: Path) -> bool:
    """Whether a folder has the train/ and test/ subfolders of a class-per-folder layout."""
    return (folder / "train").is_dir() and (folder / "test").is_dir()


def check_cifar10_classes(root: Path) -> None:
    """Raise, naming the folders, unless train/ and test/ hold exactly CIFAR-10's ten class folders."""
    for split in ("train", "test"):
        found = class_dirs(root / split)
        unknown = [c for c in found if c not in CIFAR10_CLASSES]
        missing = [c for c in CIFAR10_CLASSES if c not in found]
        if unknown or missing:
            raise ValueError(f"{root / split}: the class folders must be CIFAR-10's ten classes "
                             f"({', '.join(CIFAR10_CLASSES)}); not CIFAR-10's: {unknown or 'none'}; "
                             f"missing: {missing or 'none'}")


def _listing_key(root: Path, files: list[tuple[Path, int]]) -> str:
    """A cache key that changes when any image is added, removed, renamed, relabelled or rewritten."""
    h = hashlib.sha256(f"v{_DECODE_VERSION} PIL {PIL.__version__}\n".encode())
    skip = len(str(root)) + 1  # the path below root, without Path.relative_to's cost on 60 000 files
    for path, label in files:
        st = os.stat(path)
        h.update(f"{str(path)[skip:]}\t{label}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    return f"cifar10-{h.hexdigest()[:24]}"


def load_cifar10_folder(root: Path, cache_dir: str | os.PathLike | None = None, progress: bool = True) -> Tensors:
    """CIFAR-10's (train_x, train_y, test_x, test_y) from class folders of 32x32 images, labels in the
    batches' class order; decoded once, then read back from the artefact cache (kind `data`)."""
    check_cifar10_classes(root)
    train, test = image_files(root / "train", CIFAR10_CLASSES), image_files(root / "test", CIFAR10_CLASSES)
    if not train or not test:
        raise ValueError(f"{root}: no {'/'.join(sorted(IMAGE_SUFFIXES))} images in the class folders of "
                         f"{'train' if not train else 'test'}/")
    # Decoding CIFAR-10's 60 000 JPEGs took 23 s on 2 shared cores, reading them back from here about 3 s;
    # and each notebook of a run loads the data again.
    cache = Cache(default_cache_dir(str(cache_dir or "")))
    key = _listing_key(root, train + test)
    found = cache.load("data", key)
    if found is not None:
        return tuple(found[0][k] for k in ("train_x", "train_y", "test_x", "test_y"))
    start = time.perf_counter()
    train_x, train_y = read_images(train, "RGB", 32, False, "decoding CIFAR-10 train", progress)
    test_x, test_y = read_images(test, "RGB", 32, False, "decoding CIFAR-10 test", progress)
    meta = {"source": str(root), "images": len(train) + len(test), "decode_s": round(time.perf_counter() - start, 1)}
    cache.save("data", key, {"train_x": train_x, "train_y": train_y, "test_x": test_x, "test_y": test_y}, meta)
    return train_x, train_y, test_x, test_y
