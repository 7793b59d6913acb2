cp .device-carry/dali.txz.part01 /tmp/dali/
export PYTHONPATH=$PWD TORCHINDUCTOR_CACHE_DIR=/tmp/ind
x() { name=$1; shift; S=$(date +%s); timeout -s KILL 200 python .device-carry/e2e_exp.py --jpeg-data /tmp/jpegs --e2e-backends dali-gpu \
  --e2e-mode compile-graphs --e2e-steps 60 -j 15 --json $OUT/$name.json "$@" > $OUT/$name.log 2>&1
  echo "$name rc=$? t=$(( $(date +%s)-S ))"; grep -h "img_s\|Error" $OUT/$name.log | cut -c1-150; }
x syn_prio --only e2e-b0-synthetic --prio
x syn_profile --only e2e-b0-synthetic --profile $OUT/prof_syn
ls /tmp/dali
