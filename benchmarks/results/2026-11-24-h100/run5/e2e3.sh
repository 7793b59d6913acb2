cp .device-carry/dali.txz.part02 /tmp/dali/ && cd /tmp/dali && cat dali.txz.part0* | tar xJf - && python -m pip install -q --no-index --no-deps ./*.whl > $OUT/pip.log 2>&1; echo "pip rc=$?"; cd - > /dev/null
export PYTHONPATH=$PWD TORCHINDUCTOR_CACHE_DIR=/tmp/ind
timeout -s KILL 480 python benchmarks/train_speed.py --only e2e-b0-synthetic e2e-b0-dali-gpu e2e-b0-dali-cpu --jpeg-data /tmp/jpegs \
  --e2e-backends dali-gpu dali-cpu --e2e-mode compile-graphs --e2e-steps 60 -j 15 --json $OUT/e2e_dali.json > $OUT/e2e_dali.log 2>&1
echo "rc=$?"; grep -h img_s $OUT/e2e_dali.log | cut -c1-130
