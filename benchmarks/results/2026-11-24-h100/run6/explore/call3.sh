cp .device-carry/dali.txz.part02 /tmp/dali/ && cd /tmp/dali && cat dali.txz.part0* | tar xJf - && python -m pip install -q --no-index --no-deps ./*.whl > $OUT/pip.log 2>&1; echo "pip rc=$?"; cd - > /dev/null
export PYTHONPATH=$PWD TORCHINDUCTOR_CACHE_DIR=/tmp/ind
x() { name=$1; shift; S=$(date +%s); timeout -s KILL 150 python .device-carry/e2e_exp.py --jpeg-data /tmp/jpegs --e2e-backends dali-gpu \
  --e2e-mode compile-graphs --e2e-steps 60 -j 15 --json $OUT/$name.json "$@" > $OUT/$name.log 2>&1
  echo "$name rc=$? t=$(( $(date +%s)-S ))"; grep -h "img_s\|Error" $OUT/$name.log | cut -c1-150; }
x dali_base --only e2e-b0-synthetic e2e-b0-dali-gpu
x dali_prio --only e2e-b0-dali-gpu --prio
x dali_fp16 --only e2e-b0-dali-gpu --fp16-out
x dali_prio_fp16 --only e2e-b0-synthetic e2e-b0-dali-gpu --prio --fp16-out
x dali_profile --only e2e-b0-dali-gpu --profile $OUT/prof_dali
x dali_prio_profile --only e2e-b0-dali-gpu --prio --profile $OUT/prof_dali_prio
