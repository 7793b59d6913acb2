export PYTHONPATH=$PWD TORCHINDUCTOR_CACHE_DIR=/tmp/ind
S=$(date +%s); python benchmarks/make_jpegs.py /tmp/jpegs --train 24000 --val 2000 --classes 100 -j 16 > /tmp/make_jpegs.log 2>&1; echo "jpegs t=$(( $(date +%s)-S ))"
mkdir -p $OUT/e2e
x() { name=$1; shift; S=$(date +%s); timeout -s KILL 250 python benchmarks/train_speed.py --jpeg-data /tmp/jpegs \
  --e2e-mode compile-graphs --e2e-steps 90 --e2e-backends pytorch -j 15 --json $OUT/e2e/$name.json "$@" > /tmp/$name.log 2>&1
  echo "$name rc=$? t=$(( $(date +%s)-S ))"; grep -h "img_s\|Error" /tmp/$name.log | cut -c1-200; }
x pytorch_pair_normal_a --only e2e-b0-synthetic e2e-b0-pytorch --stream-priority normal
x pytorch_pair_high_a --only e2e-b0-pytorch
x pytorch_pair_normal_b --only e2e-b0-pytorch --stream-priority normal
x pytorch_pair_high_b --only e2e-b0-pytorch
