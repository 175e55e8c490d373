"""pytest in notebooks/: nbval runs the .ipynb files; their paired .py files are jupytext sources."""
import os
from pathlib import Path

os.environ.setdefault("TMU_PROGRESS", "0")  # no progress bars in the kernels nbval starts

collect_ignore_glob = ["*.py"]


def pytest_configure(config):
    """Find the sanitizer next to this file whatever folder pytest was started from."""
    given = config.getoption("nbval_sanitize_with", default=None)
    if given and not Path(given).is_file():
        config.option.nbval_sanitize_with = str(Path(__file__).with_name("nbval_sanitize.cfg"))
