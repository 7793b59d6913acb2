mkdir -p /tmp/dali && cp .device-carry/dali.txz.part00 /tmp/dali/
export PYTHONPATH=$PWD TORCHINDUCTOR_CACHE_DIR=/tmp/ind
S=$(date +%s); python benchmarks/make_jpegs.py /tmp/jpegs --train 16000 --val 2000 --classes 100 -j 16 > $OUT/make_jpegs.log 2>&1
echo "make_jpegs rc=$? t=$(( $(date +%s)-S )) $(du -sh /tmp/jpegs | cut -f1)"
nvidia-smi --query-gpu=name,clocks.max.sm,power.limit --format=csv > $OUT/gpu.txt
x() { name=$1; shift; S=$(date +%s); timeout -s KILL 200 python .device-carry/e2e_exp.py --jpeg-data /tmp/jpegs --e2e-backends dali-gpu \
  --e2e-mode compile-graphs --e2e-steps 60 -j 15 --json $OUT/$name.json "$@" > $OUT/$name.log 2>&1
  echo "$name rc=$? t=$(( $(date +%s)-S ))"; grep -h "img_s\|Error" $OUT/$name.log | cut -c1-150; }
x syn_warm --only e2e-b0-synthetic
x syn_fp16_warm --only e2e-b0-synthetic --fp16-out
ls /tmp/dali
