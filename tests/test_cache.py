"""The artefact store: round trip, atomic writes, corruption detection, weights_only loading."""
import pytest
import torch

from tmu_utils.core.cache import Cache, CacheCorruptionWarning


def test_round_trip_and_build_once(tmp_path):
    cache = Cache(tmp_path)
    calls = []

    def build():
        calls.append(1)
        return {"w": torch.arange(4.0)}, {"seconds": 1.5}

    first = cache.get_or_build("model", "abc", build)
    second = cache.get_or_build("model", "abc", build)
    assert len(calls) == 1
    assert torch.equal(first[0]["w"], second[0]["w"]) and second[1] == {"seconds": 1.5}


def test_no_temporary_files_left_and_sidecar_written_last(tmp_path, monkeypatch):
    cache = Cache(tmp_path)
    cache.save("k", "a", {"x": torch.ones(2)})
    assert sorted(p.name for p in (tmp_path / "k").iterdir()) == ["a.json", "a.pt"]

    # A crash between payload and sidecar leaves no artefact that loads as complete.
    import tmu_utils.core.cache as cache_module

    real = cache_module._atomic_write

    def crash_on_sidecar(path, data):
        if path.suffix == ".json":
            raise KeyboardInterrupt
        real(path, data)

    monkeypatch.setattr(cache_module, "_atomic_write", crash_on_sidecar)
    with pytest.raises(KeyboardInterrupt):
        cache.save("k", "b", {"x": torch.ones(2)})
    monkeypatch.undo()
    assert cache.load("k", "b") is None


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_corrupt_artefact_is_reported_and_rebuilt(tmp_path, damage):
    cache = Cache(tmp_path)
    cache.save("k", "a", {"x": torch.arange(1000.0)})
    pt, _ = cache.paths("k", "a")
    data = bytearray(pt.read_bytes())
    if damage == "truncate":
        pt.write_bytes(data[: len(data) // 2])
    else:
        data[len(data) // 2] ^= 0xFF
        pt.write_bytes(bytes(data))
    with pytest.warns(CacheCorruptionWarning, match="corrupt"):
        assert cache.load("k", "a") is None
    rebuilt, _ = cache.get_or_build("k", "a", lambda: ({"x": torch.zeros(3)}, {}))
    assert torch.equal(rebuilt["x"], torch.zeros(3))


class Payload:
    """Not a tensor: unpickling it would need code execution."""

    def __reduce__(self):
        return (print, ("this must never run",))


def test_checkpoints_cannot_run_code(tmp_path, capsys):
    cache = Cache(tmp_path)
    cache.save("k", "evil", {"x": Payload()})  # a hash-valid file whose payload is not plain data
    with pytest.warns(CacheCorruptionWarning, match="Weights only load failed|weights_only|Unsupported"):
        assert cache.load("k", "evil") is None
    assert "this must never run" not in capsys.readouterr().out


def test_keys_that_differ_after_a_dot_are_different_artefacts(tmp_path):
    # a stored name carries a float knob (`tmu_..._perturb0.1`): a suffix must not swallow what follows the dot
    cache = Cache(tmp_path)
    cache.save("unlearned", "tmu_perturb0.1-abc-r0-cpu", {"x": 1}, {"seconds": 1.0})
    cache.save("unlearned", "tmu_perturb0.3-abc-r0-cpu", {"x": 3}, {"seconds": 3.0})
    assert cache.load("unlearned", "tmu_perturb0.1-abc-r0-cpu")[0] == {"x": 1}
    assert cache.load("unlearned", "tmu_perturb0.3-abc-r0-cpu")[0] == {"x": 3}
    assert cache.paths("unlearned", "plain-key")[0] == tmp_path / "unlearned" / "plain-key.pt"  # as before
