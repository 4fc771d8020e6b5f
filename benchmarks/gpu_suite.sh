#!/usr/bin/env bash
# Issue 5's GPU figures in one device run: correctness of the GPU code first, then each benchmark's
# table (record them in docs/benchmarks.md with the date and the device). From the repository root:
#   bash ../shared/tools/gpu-wheels.sh torchdata==0.11.0     # once, here: hydra, omegaconf, torchdata
#   mkdir -p .device-data && cp -r ../shared/data/voc .device-data/
#   device run, carry [".whl", ".device-data"]:  bash benchmarks/gpu_suite.sh
set -euo pipefail
if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
    export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
fi
export PYTHONPATH="$PWD:${PYTHONPATH:-}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -m pytest -q -p no:cacheprovider tests/losses/test_fused.py tests/rounding/test_kwikcluster.py
cd benchmarks
python3 loss_exact.py --compile
python3 metrics.py --device all
python3 rounding.py --device all --batch 16
python3 train_step.py --loop --voc-root ../.device-data/voc/VOCdevkit/VOC2012 --replicate 64 --workers 12
