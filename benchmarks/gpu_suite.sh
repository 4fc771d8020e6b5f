#!/usr/bin/env bash
# The GPU figures in one run: correctness of the GPU code first, then each benchmark's table
# (record them in docs/benchmarks.md with the date and the device). From the repository root:
#   bash benchmarks/gpu_suite.sh [VOC_ROOT]      # VOC_ROOT: default data/voc/VOCdevkit/VOC2012
# Where the GPU machine's Python lacks hydra-core, omegaconf or torchdata, put their wheels in .whl/
# (`pip wheel --no-deps -w .whl hydra-core omegaconf antlr4-python3-runtime==4.9.3 torchdata`):
# they are installed beside the system packages for this run only.
set -euo pipefail
voc_root="$(realpath "${1:-data/voc/VOCdevkit/VOC2012}")"
if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
    export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
fi
export PYTHONPATH="$PWD:${PYTHONPATH:-}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -m pytest -q -p no:cacheprovider tests/losses/test_fused.py tests/rounding/test_kwikcluster.py \
    tests/rounding/test_compiled_cpu_rounding.py
cd benchmarks
python3 loss_exact.py --compile
python3 metrics.py --device all
python3 rounding.py --device all --scenes shapes --batch 16
python3 rounding.py --sweep --device cuda --sizes 256,512 --seeds 2
python3 train_step.py --loop --voc-root "$voc_root" --replicate 64 --workers 12
