export PYTHONPATH=$PWD TORCHINDUCTOR_CACHE_DIR=/tmp/ind
x() { name=$1; shift; S=$(date +%s); timeout -s KILL 150 python .device-carry/e2e_exp.py --jpeg-data /tmp/jpegs --e2e-backends dali-gpu \
  --e2e-mode compile-graphs --e2e-steps 60 -j 15 --json $OUT/$name.json "$@" > $OUT/$name.log 2>&1
  echo "$name rc=$? t=$(( $(date +%s)-S ))"; grep -h "img_s\|Error" $OUT/$name.log | cut -c1-150; }
x dali_prio_hw05 --only e2e-b0-dali-gpu --prio --dali-hw-decoder-load 0.5
x dali_prio_hw08 --only e2e-b0-dali-gpu --prio --dali-hw-decoder-load 0.8
x dali_prio_hw10 --only e2e-b0-dali-gpu --prio --dali-hw-decoder-load 1.0
x dali_prio_j8 --only e2e-b0-dali-gpu --prio -j 8
x dali_base2 --only e2e-b0-synthetic e2e-b0-dali-gpu
x dali_prio2 --only e2e-b0-dali-gpu --prio
