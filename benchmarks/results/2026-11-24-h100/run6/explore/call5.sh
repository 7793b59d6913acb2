export PYTHONPATH=$PWD TORCHINDUCTOR_CACHE_DIR=/tmp/ind
x() { name=$1; shift; S=$(date +%s); timeout -s KILL 150 python .device-carry/e2e_exp.py --jpeg-data /tmp/jpegs --e2e-backends dali-gpu \
  --e2e-mode compile-graphs --e2e-steps 60 -j 15 --json $OUT/$name.json "$@" > /tmp/$name.log 2>&1
  echo "$name rc=$? t=$(( $(date +%s)-S ))"; grep -h "img_s\|Error" /tmp/$name.log | cut -c1-150; }
x base_j8 --only e2e-b0-synthetic e2e-b0-dali-gpu -j 8
x prio_j8b --only e2e-b0-dali-gpu --prio -j 8
x prio_j6 --only e2e-b0-dali-gpu --prio -j 6
x prio_j11 --only e2e-b0-dali-gpu --prio -j 11
x prio_j8_hw05 --only e2e-b0-dali-gpu --prio -j 8 --dali-hw-decoder-load 0.5
x prio_j4 --only e2e-b0-dali-gpu --prio -j 4
