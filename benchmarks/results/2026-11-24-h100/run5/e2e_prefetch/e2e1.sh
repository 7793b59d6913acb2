mkdir -p /tmp/dali && cp .device-carry/dali.txz.part00 /tmp/dali/
export PYTHONPATH=$PWD
S=$(date +%s); python benchmarks/make_jpegs.py /tmp/jpegs --train 16000 --val 2000 --classes 100 -j 16 > $OUT/make_jpegs.log 2>&1
echo "make_jpegs rc=$? t=$(( $(date +%s)-S )) $(du -sh /tmp/jpegs | cut -f1)"; ls /tmp/dali
