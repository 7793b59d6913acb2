mkdir -p /tmp/dali && cp .device-carry/dali.txz.part00 /tmp/dali/
export PYTHONPATH=$PWD TORCHINDUCTOR_CACHE_DIR=/tmp/ind
(lscpu; nvidia-smi; nvidia-smi --query-gpu=name,clocks.max.sm,power.limit --format=csv) > $OUT/machine.txt 2>&1
S=$(date +%s); python benchmarks/make_jpegs.py /tmp/jpegs --train 24000 --val 2000 --classes 100 -j 16 > /tmp/make_jpegs.log 2>&1
echo "make_jpegs rc=$? t=$(( $(date +%s)-S )) $(du -sh /tmp/jpegs | cut -f1)"; tail -2 /tmp/make_jpegs.log
S=$(date +%s); timeout -s KILL 250 python benchmarks/train_speed.py --only e2e-b0-synthetic --jpeg-data /tmp/jpegs \
  --e2e-mode compile-graphs --e2e-steps 90 -j 8 --json $OUT/warm_synthetic.json > /tmp/warm.log 2>&1
echo "warm rc=$? t=$(( $(date +%s)-S ))"; grep -h "img_s\|Error" /tmp/warm.log | cut -c1-200
grep -c "" $OUT/machine.txt; grep -i "model name\|^CPU(s)\|Thread(s) per core\|Core(s) per socket" $OUT/machine.txt
