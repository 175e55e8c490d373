# The two commands of the README: `make demo` and `make test`. Each creates .venv when missing,
# installs the package (pinned torch in the pip path) and makes sure the default data is there;
# a second run only re-checks, which takes seconds.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# torch wheels from the registry's default index; conda users see environment.yml instead
TORCH := torch==2.14.1 torchvision==0.29.1

.PHONY: demo test test-fast test-cluster data install clean-cache notebooks

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install $(TORCH)
	$(PY) -m pip install -e ".[dev]"
	# A python3 kernel inside the venv, so papermill and nbval run the notebooks with this install.
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (tmu)"
	touch $(STAMP)

install: $(STAMP)

# Fashion-MNIST from Debian's dataset-fashion-mnist; elsewhere set TMU_DATA_DIR or let
# `python -m tmu_utils data --download` fetch it through torchvision.
data: $(STAMP)
	@$(PY) -m tmu_utils data fashion_mnist --quiet || \
	  { $(SUDO) apt-get install -y dataset-fashion-mnist || \
	    { $(SUDO) apt-get update && $(SUDO) apt-get install -y dataset-fashion-mnist; }; } || \
	  $(PY) -m tmu_utils data fashion_mnist --download

demo: data
	$(PY) -m tmu_utils run params/default.yaml

test: data
	TMU_PROGRESS=0 $(PY) -m pytest

# The unit and end-to-end tests without the notebooks' nbval pass: the quick loop while working.
test-fast: data
	TMU_PROGRESS=0 $(PY) -m pytest tests

# A real one-node SLURM (Debian's slurm-wlm, started by .ci/slurm.sh) runs the smoke sweep as a job
# array; the script stops every daemon it started, even when the test fails. Needs root.
test-cluster: data
	TMU_SLURM=1 TMU_PROGRESS=0 bash .ci/slurm.sh run $(PY) -m pytest tests/test_cluster.py -m cluster

clean-cache:
	rm -rf $${TMU_CACHE_DIR:-$$HOME/.cache/tmu/artifacts}

# Re-execute the committed notebooks at their defaults (NB=07_population_alignment for one), so
# that nbval compares against a fresh top-to-bottom run; the paired .py files stay the source.
NB ?= 01_original_and_gold 02_twin_problem 03_generalization_features 04_unlearning 05_evaluation 06_sweep_report 07_population_alignment 08_deletion_requests 09_bring_your_own_model
notebooks: data
	for nb in $(NB); do \
	  $(VENV)/bin/jupytext --sync notebooks/$$nb.py && \
	  TMU_PROGRESS=0 $(PY) -c "from pathlib import Path; from tmu_utils.experiments.notebooks import execute_in_place; execute_in_place(Path('notebooks/$$nb.ipynb'))" || exit 1; \
	done
