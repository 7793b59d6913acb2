"""Where fused and plain SGD differ after 4 AMP steps, beside the effect of a 10% lower learning rate (run from the
repository root on a GPU: python benchmarks/results/2026-11-24-h100/run4/diag_fused.py)."""
import json
import pathlib
import sys
import tempfile

sys.path.insert(0, ".")
from tests.image_classification.training.helpers import load, run  # noqa: E402

tmp = pathlib.Path(tempfile.mkdtemp())
common = ("--data-backend", "synthetic", "--amp", "--epochs", 1, "--prof", 4, "--num_classes", 10, "-b", 16,
          "--training-only", "--deterministic")
run("unused", tmp / "fused", *common)
run("unused", tmp / "fused2", *common)
run("unused", tmp / "plain", *common, "--fused-optimizer", "off")
run("unused", tmp / "lower", *common, "--fused-optimizer", "off", "--lr", 0.045)
w = {d: load(tmp / d / "checkpoint.pth.tar")["state_dict"] for d in ("fused", "fused2", "plain", "lower")}


def top(a, b):
    """The five largest differences: (max |a - b|, key, max |a|)."""
    d = sorted(((a[k].double() - b[k].double()).abs().max().item(), k, a[k].double().abs().max().item()) for k in a)
    return d[-5:]


for pair in (("fused", "fused2"), ("fused", "plain"), ("plain", "lower")):
    print(pair, json.dumps(top(w[pair[0]], w[pair[1]])))
