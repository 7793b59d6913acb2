cp .device-carry/dali.txz.part02 /tmp/dali/ && cd /tmp/dali && cat dali.txz.part0* | tar xJf - && python -m pip install -q --no-index --no-deps ./*.whl > $OUT/pip.log 2>&1; echo "pip rc=$?"; cd - > /dev/null
export PYTHONPATH=$PWD TORCHINDUCTOR_CACHE_DIR=/tmp/ind
e2e() { name=$1; shift; timeout -s KILL 150 python benchmarks/train_speed.py --jpeg-data /tmp/jpegs --e2e-backends dali-gpu \
  --e2e-mode compile-graphs --e2e-steps 60 -j 15 --json $OUT/$name.json "$@" > $OUT/$name.log 2>&1
  echo "$name rc=$?"; grep -h img_s $OUT/$name.log | cut -c1-130; }
e2e e2e_dali_prefetch2 --only e2e-b0-synthetic e2e-b0-dali-gpu
e2e e2e_dali_prefetch4 --only e2e-b0-dali-gpu --e2e-prefetch 4
e2e e2e_dali_prefetch8 --only e2e-b0-dali-gpu --e2e-prefetch 8
e2e e2e_dali_prefetch4_hw08 --only e2e-b0-dali-gpu --e2e-prefetch 4 --dali-hw-decoder-load 0.8
