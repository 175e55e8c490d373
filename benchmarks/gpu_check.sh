#!/usr/bin/env bash
# The prepared GPU check: smoke on CUDA, the default recipe's CUDA/CPU speed ratio, and a ResNet-18
# epoch on a fake CIFAR-10 (benchmarks/gpu_check.py says what each part measures). About 3-5 minutes
# on one GPU, capped at 10; every figure goes to one file, $OUT/gpu_check.json (else
# benchmarks/results/gpu/gpu_check.json). Without CUDA the CUDA parts are skipped with the reason.
#
#   bash benchmarks/gpu_check.sh            # the measurement (needs CUDA and Fashion-MNIST)
#   bash benchmarks/gpu_check.sh --quick    # tiny sizes: checks the script on any machine
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
DEST=${OUT:-benchmarks/results/gpu}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} TMU_PROGRESS=0
if ! "$PY" -c "import torch, yaml, scipy, sklearn" 2>/dev/null; then
    echo "gpu_check: $PY cannot import torch and the package's dependencies; run 'make install' first" >&2
    exit 2
fi
"$PY" -c "import torch, sys; sys.exit(not torch.cuda.is_available())" ||
    echo "gpu_check: CUDA is not available here: the CUDA parts will be skipped (reasons in the JSON)" >&2
"$PY" -m tmu_utils data fashion_mnist ||
    echo "gpu_check: no Fashion-MNIST (set TMU_DATA_DIR): smoke and the speed ratio will fail or be skipped" >&2
timeout 600 "$PY" benchmarks/gpu_check.py --out "$DEST" "$@"
echo "gpu_check: figures in $DEST/gpu_check.json"
