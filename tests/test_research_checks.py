"""Research checks (tmu_utils/experiments/checks.py): at the notebooks' own parameters a failed check
raises, so nbval guards the committed numbers; on new data a run never aborts on one: it exits 0 with
its table, and the failed check is a warning in its output and in results.json."""
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tmu_utils.__main__ import main
from tmu_utils.core.params import load_params
from tmu_utils.experiments.checks import read_warnings, research_check

ROOT = Path(__file__).resolve().parent.parent


def test_a_failed_check_raises_at_the_notebooks_own_parameters(tmp_path):
    params = load_params(ROOT / "params" / "demo.yaml", [f"out_dir={tmp_path}"])
    research_check(params, "nb", "holds", True, "")
    with pytest.raises(AssertionError, match="claim: by 3 pp"):
        research_check(params, "nb", "claim", False, "by 3 pp")
    assert read_warnings(tmp_path) == []


def test_elsewhere_a_failed_check_is_a_warning_kept_once(tmp_path, capsys):
    params = load_params(ROOT / "params" / "smoke.yaml", [f"out_dir={tmp_path}"])
    for _ in range(2):  # a notebook re-run records it once
        research_check(params, "05_evaluation", "claim", False, "by 3 pp")
    assert read_warnings(tmp_path) == [{"notebook": "05_evaluation", "check": "claim", "detail": "by 3 pp"}]
    assert "warning: research check failed (05_evaluation): claim: by 3 pp" in capsys.readouterr().out


def test_a_run_on_new_data_whose_checks_fail_exits_0_with_its_table_and_the_warnings(tmp_path, capsys):
    """Noise images whose labels say nothing about them: no feature can tell easy from hard there, so
    the predictor's check fails; the run goes on to its table."""
    rng = np.random.default_rng(0)
    for split, n in (("train", 120), ("test", 40)):
        for c in range(3):
            (tmp_path / "data" / split / f"c{c}").mkdir(parents=True)
            for i in range(n):
                pixels = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
                Image.fromarray(pixels, "RGB").save(tmp_path / "data" / split / f"c{c}" / f"{i}.png")
    overrides = ["dataset=imagefolder", f"data_dir={tmp_path / 'data'}", "image_size=16", "train_limit=0",
                 "test_limit=0", "bank_per_class=10", "methods=[original,retrain,tmu,tmu_all_hard]",
                 f"cache_dir={tmp_path / 'cache'}"]
    argv = ["run", str(ROOT / "params" / "smoke.yaml"), "--out", str(tmp_path / "run")]
    assert main(argv + [a for o in overrides for a in ("--set", o)]) == 0
    out = capsys.readouterr().out
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["complete"] and "| tmu |" in out
    assert results["warnings"], "noise data should fail at least one research check"
    for w in results["warnings"]:
        assert f"- {w['notebook']}: {w['check']}: {w['detail']}" in out
    assert (tmp_path / "run" / "05_evaluation.ipynb").is_file()
