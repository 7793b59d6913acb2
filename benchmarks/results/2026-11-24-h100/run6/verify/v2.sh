cp .device-carry/dali.txz.part01 /tmp/dali/
export PYTHONPATH=$PWD TORCHINDUCTOR_CACHE_DIR=/tmp/ind
S=$(date +%s); timeout -s KILL 420 python -m pytest -m gpu -rs -q -p no:cacheprovider tests/gpu/test_cuda_paths.py tests/image_classification/training > $OUT/pytest_gpu_training.txt 2>&1
echo "pytest rc=$? t=$(( $(date +%s)-S ))"; tail -15 $OUT/pytest_gpu_training.txt | cut -c1-250
