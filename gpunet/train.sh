#!/usr/bin/env bash
# Usage: ./train.sh NUM_PROC DATA [train.py flags...]: one train.py process per GPU, started by torchrun.
# (Upstream used torch.distributed.launch, which is deprecated and hands train.py a --local-rank it did not know;
# train.py reads LOCAL_RANK from the environment, as torchrun sets it.)
set -euo pipefail
if [[ $# -lt 2 ]]; then
  echo "usage: $0 NUM_PROC DATA [train.py flags...]" >&2
  exit 2
fi
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
NUM_PROC="$1"
DATA="$2"
shift 2
torchrun --nproc_per_node="$NUM_PROC" "$HERE/train.py" "$DATA" "$@"
