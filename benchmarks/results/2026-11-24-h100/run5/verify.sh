#!/bin/bash
# Issue #5 after TRAINING_INDUCTOR_OPTIONS: the GPU test, then the rows side by side in one process each.
export PYTHONPATH=$PWD TORCHINDUCTOR_CACHE_DIR=/tmp/ind
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > $OUT/gpu.txt
timeout -s KILL 120 python -m pytest -m gpu -p no:xdist -p no:cacheprovider -q -rs \
  tests/image_classification/training/test_training_step.py -k fp32_buffers > $OUT/pytest_fp32_buffers.txt 2>&1
echo "pytest rc=$? $(tail -1 $OUT/pytest_fp32_buffers.txt)"
timeout -s KILL 400 python benchmarks/train_speed.py --only timm-b0-eager ours-b0-compile-graphs plain-gpunet0-eager \
  ours-gpunet0-compile-graphs timm-b0-compile --json $OUT/train_speed.json > $OUT/train_speed.log 2>&1
echo "train_speed rc=$?"; grep -h img_s $OUT/train_speed.log | cut -c1-130
