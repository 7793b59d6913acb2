cp .device-carry/dali.txz.part02 /tmp/dali/ && cd /tmp/dali && cat dali.txz.part0* | tar xJf - && python -m pip install -q --no-index --no-deps ./*.whl > /tmp/pip.log 2>&1; echo "pip rc=$?"; cd - > /dev/null
export PYTHONPATH=$PWD TORCHINDUCTOR_CACHE_DIR=/tmp/ind
mkdir -p $OUT/e2e
x() { name=$1; shift; S=$(date +%s); timeout -s KILL 170 python benchmarks/train_speed.py --jpeg-data /tmp/jpegs --e2e-backends dali-gpu \
  --e2e-mode compile-graphs --e2e-steps 90 -j 8 --json $OUT/e2e/$name.json "$@" > /tmp/$name.log 2>&1
  echo "$name rc=$? t=$(( $(date +%s)-S ))"; grep -h "img_s\|Error" /tmp/$name.log | cut -c1-200; }
x high_j8_hw065_a --only e2e-b0-synthetic e2e-b0-dali-gpu
x normal_j8_hw065_a --only e2e-b0-dali-gpu --stream-priority normal
x high_j8_hw05_a --only e2e-b0-dali-gpu --dali-hw-decoder-load 0.5
x high_j15_hw065 --only e2e-b0-dali-gpu -j 15
x normal_j15_hw065 --only e2e-b0-dali-gpu -j 15 --stream-priority normal
x high_j8_hw05_b --only e2e-b0-dali-gpu --dali-hw-decoder-load 0.5
x high_j8_hw065_b --only e2e-b0-synthetic e2e-b0-dali-gpu
