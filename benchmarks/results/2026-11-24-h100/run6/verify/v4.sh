export PYTHONPATH=$PWD TORCHINDUCTOR_CACHE_DIR=/tmp/ind
mkdir -p $OUT/e2e
x() { name=$1; shift; S=$(date +%s); timeout -s KILL 170 python benchmarks/train_speed.py --jpeg-data /tmp/jpegs \
  --e2e-mode compile-graphs --e2e-steps 90 --json $OUT/e2e/$name.json "$@" > /tmp/$name.log 2>&1
  echo "$name rc=$? t=$(( $(date +%s)-S ))"; grep -h "img_s\|Error" /tmp/$name.log | cut -c1-200; }
x normal_j8_hw05 --only e2e-b0-dali-gpu --e2e-backends dali-gpu -j 8 --stream-priority normal --dali-hw-decoder-load 0.5
x high_pytorch_j15 --only e2e-b0-pytorch --e2e-backends pytorch -j 15
x high_pytorchgpu_j8 --only e2e-b0-pytorch-gpu --e2e-backends pytorch-gpu -j 8
x high_dalicpu_j15 --only e2e-b0-dali-cpu --e2e-backends dali-cpu -j 15
S=$(date +%s); timeout -s KILL 200 python -m pytest -m gpu -rs -q -p no:cacheprovider tests/gpu/test_cuda_paths.py -k "backends or stream" > $OUT/pytest_gpu_dali.txt 2>&1
echo "pytest rc=$? t=$(( $(date +%s)-S ))"; tail -4 $OUT/pytest_gpu_dali.txt | cut -c1-250
