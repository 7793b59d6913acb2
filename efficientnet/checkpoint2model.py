"""Turn a training checkpoint into a plain weights file (a state dict without `module.` prefixes).

    python checkpoint2model.py --checkpoint-path model_best.pth.tar --weight-path model.pth [--ema]

Unlike upstream, --ema really exports the EMA weights (upstream looked up a misspelt key and saved the raw ones).
"""
import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script from a checkout: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.cli_errors import ArgumentParser, run_cli  # noqa: E402


def main(argv=None):
    p = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint-path", required=True, metavar="PATH", help="training checkpoint")
    p.add_argument("--weight-path", required=True, metavar="PATH", help="where to write the weights")
    p.add_argument("--ema", action="store_true", help="export the EMA weights (state_dict_ema)")
    args = p.parse_args(argv)

    from image_classification.models.checkpoint import export_weights

    meta = export_weights(args.checkpoint_path, args.weight_path, ema=args.ema)
    print(f"Loaded model, acc : {meta['best_prec1']}")
    print(f"=> wrote {meta['entries']} {meta['which']} tensors to {args.weight_path}")


if __name__ == "__main__":
    run_cli(main)
