"""Turn a training checkpoint into a weights file that carries what a model needs besides its tensors.

    python checkpoint2model.py --checkpoint-path model_best.pth.tar --weight-path model.pth [--ema]
    python checkpoint2model.py --checkpoint-path model_best.pth.tar --weight-path model.safetensors
    python checkpoint2model.py --checkpoint-path model_best.pth.tar --weight-path my-model/ --format hf

The weights record the architecture, class count and names, preprocessing (image size, crop, interpolation,
mean/std), the architecture options and this project's version, so classify.py, validate.py, the exporters and
Triton need no flags to use them. `.pth` stays a plain state dict (upstream's `model.load_state_dict(torch.load(f))`
still works; the record rides in its `_metadata`); `.safetensors` keeps it in the header; `--format hf` writes a
Hugging Face-style folder (config.json + model.safetensors) that timm.create_model("local-dir:FOLDER") loads.
Unlike upstream, --ema really exports the EMA weights (upstream looked up a misspelt key and saved the raw ones).
"""
import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script from a checkout: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.cli_errors import ArgumentParser, run_cli  # noqa: E402

FORMATS = ("pth", "safetensors", "hf")


def main(argv=None):
    p = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint-path", required=True, metavar="PATH", help="training checkpoint")
    p.add_argument("--weight-path", required=True, metavar="PATH", help="where to write the weights")
    p.add_argument("--ema", action="store_true", help="export the EMA weights (state_dict_ema)")
    p.add_argument("--format", choices=FORMATS, default=None,
                   help="pth (a state dict), safetensors, or hf (a folder: config.json + model.safetensors); "
                        "default: from --weight-path (.safetensors, an existing folder or a trailing /, else pth)")
    p.add_argument("--arch", default=None, metavar="NAME",
                   help="the architecture, for a checkpoint that does not name it (upstream's oldest)")
    args = p.parse_args(argv)

    from image_classification.models.loading import export_weights

    meta = export_weights(args.checkpoint_path, args.weight_path, ema=args.ema, fmt=args.format, arch=args.arch)
    print(f"Loaded model, acc : {meta['best_prec1']}")
    described = "with its architecture, classes and preprocessing" if meta["record"] else \
        "(a plain state dict: the checkpoint does not name its architecture; --arch NAME records it)"
    print(f"=> wrote {meta['entries']} {meta['which']} tensors to {args.weight_path} as {meta['format']} {described}")


if __name__ == "__main__":
    run_cli(main)
