#!/bin/bash
# GPUNet-0 training: Inductor reduction/tiling knobs beside the plain eager loop (issue #5 exploration).
# KILL, not TERM: the trainer catches SIGTERM to checkpoint and would go on compiling.
export PYTHONPATH=$PWD TORCHINDUCTOR_CACHE_DIR=/tmp/ind
run() { name=$1; shift; timeout -s KILL 100 python benchmarks/train_speed.py --only "$@" --json $OUT/$name.json > $OUT/$name.log 2>&1; echo "$name rc=$? $(grep -h img_s $OUT/$name.log | cut -c1-120 | tr '\n' ' ')"; }
run base plain-gpunet0-eager ours-gpunet0-compile-graphs
run coop ours-gpunet0-compile-graphs --inductor triton.cooperative_reductions=True
run tilered ours-gpunet0-compile-graphs --inductor triton.tile_reductions=True
run mapw ours-gpunet0-compile-graphs --inductor max_autotune_pointwise=True
run base2 plain-gpunet0-eager
