"""The artefact store: trained models, splits and features, keyed by a hash of the parameters
that determine them, so that re-runs and sweeps reuse work and an interrupted run resumes.

Each artefact is `<root>/<kind>/<key>.pt` plus a `<key>.json` sidecar holding its SHA-256 and
metadata. Both are written to a temporary file and renamed, and the sidecar goes last, so a
crash never leaves an artefact that looks complete. Loading checks the hash, then uses
`torch.load(weights_only=True)`: a checkpoint can hold tensors and plain containers, never code.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable

import torch


def default_cache_dir(cache_dir: str = "") -> Path:
    """`cache_dir` if given, else $TMU_CACHE_DIR, else ~/.cache/tmu/artifacts."""
    return Path(cache_dir or os.environ.get("TMU_CACHE_DIR") or Path.home() / ".cache" / "tmu" / "artifacts")


class CacheCorruptionWarning(UserWarning):
    """An artefact on disk failed its hash check or could not be read; it is rebuilt."""


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class Cache:
    """A content-addressed folder of artefacts."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def paths(self, kind: str, key: str) -> tuple[Path, Path]:
        """The payload and sidecar paths of one artefact."""
        folder = self.root / kind  # the suffixes are appended: a key may hold a dot (`..._perturb0.1-<hash>`)
        return folder / f"{key}.pt", folder / f"{key}.json"

    def save(self, kind: str, key: str, payload: Any, meta: dict | None = None) -> None:
        """Write an artefact atomically: payload first, then the sidecar that vouches for it."""
        buf = io.BytesIO()
        torch.save(payload, buf)
        data = buf.getvalue()
        pt, side = self.paths(kind, key)
        _atomic_write(pt, data)
        sidecar = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data), "meta": meta or {}}
        _atomic_write(side, json.dumps(sidecar, indent=1, sort_keys=True).encode())

    def load(self, kind: str, key: str) -> tuple[Any, dict] | None:
        """The (payload, meta) of an artefact, or None when it is absent or corrupt (then removed)."""
        pt, side = self.paths(kind, key)
        if not pt.exists() or not side.exists():
            return None
        try:
            sidecar = json.loads(side.read_text())
            data = pt.read_bytes()
            if hashlib.sha256(data).hexdigest() != sidecar["sha256"]:
                raise ValueError(f"hash mismatch ({len(data)} bytes, expected {sidecar['bytes']})")
            payload = torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")
        except Exception as e:  # noqa: BLE001 - any unreadable artefact is rebuilt
            warnings.warn(f"cache artefact {pt} is corrupt ({e}); rebuilding it", CacheCorruptionWarning, stacklevel=2)
            pt.unlink(missing_ok=True)
            side.unlink(missing_ok=True)
            return None
        return payload, sidecar.get("meta", {})

    def get_or_build(self, kind: str, key: str, build: Callable[[], tuple[Any, dict]]) -> tuple[Any, dict]:
        """Load an artefact, or build, save and return it. `build` returns (payload, meta)."""
        found = self.load(kind, key)
        if found is not None:
            return found
        payload, meta = build()
        self.save(kind, key, payload, meta)
        return payload, meta
