#!/bin/bash
# Does letting Inductor inline the recomputed BN output (instead of storing it in fp32) speed up training?
export PYTHONPATH=$PWD
run() { name=$1; shift; export TORCHINDUCTOR_CACHE_DIR=/tmp/ind_$name
  timeout -s KILL 130 python benchmarks/train_speed.py --only "$@" --json $OUT/$name.json > $OUT/$name.log 2>&1
  f32=$(grep -rhoE "empty_strided_cuda\(\((192|256), [0-9, ]*\), \([0-9, ]*\), torch.float32\)" $TORCHINDUCTOR_CACHE_DIR 2>/dev/null | grep -vE "\(\((192|256), [0-9]+, 1, 1\)" | wc -l)
  echo "$name rc=$? f32_activation_buffers=$f32 $(grep -h img_s $OUT/$name.log | cut -c1-110 | tr '\n' ' ')"; }
run base plain-gpunet0-eager ours-gpunet0-compile-graphs
run rrt5 ours-gpunet0-compile-graphs --inductor realize_reads_threshold=5
run rrt8 ours-gpunet0-compile-graphs --inductor realize_reads_threshold=8
run b0base ours-b0-compile-graphs
run b0rrt8 ours-b0-compile-graphs --inductor realize_reads_threshold=8
