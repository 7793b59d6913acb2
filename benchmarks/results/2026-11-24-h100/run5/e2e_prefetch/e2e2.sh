cp .device-carry/dali.txz.part01 /tmp/dali/
export PYTHONPATH=$PWD TORCHINDUCTOR_CACHE_DIR=/tmp/ind
# warms the compile cache for the next call's rows
timeout -s KILL 200 python benchmarks/train_speed.py --only e2e-b0-synthetic --jpeg-data /tmp/jpegs --e2e-backends dali-gpu \
  --e2e-mode compile-graphs --e2e-steps 60 -j 15 --json $OUT/e2e_synthetic_warm.json > $OUT/e2e_synthetic_warm.log 2>&1
echo "rc=$?"; grep -h img_s $OUT/e2e_synthetic_warm.log | cut -c1-130; ls /tmp/dali
