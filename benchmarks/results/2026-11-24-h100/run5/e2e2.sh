cp .device-carry/dali.txz.part01 /tmp/dali/
export PYTHONPATH=$PWD TORCHINDUCTOR_CACHE_DIR=/tmp/ind
timeout -s KILL 420 python benchmarks/train_speed.py --only e2e-b0-synthetic e2e-b0-pytorch --jpeg-data /tmp/jpegs \
  --e2e-backends pytorch --e2e-mode compile-graphs --e2e-steps 60 -j 15 --json $OUT/e2e_pytorch.json > $OUT/e2e_pytorch.log 2>&1
echo "rc=$?"; grep -h img_s $OUT/e2e_pytorch.log | cut -c1-130; ls /tmp/dali
