"""Send an ImageFolder through a Triton server and report top-1/top-5, and agreement with PyTorch run here.

    python triton/client.py --url 127.0.0.1:8001 --protocol grpc --model efficientnet-b0 --data data/digits/val \\
        [--weights model_best.pth.tar] [--batch-size 16] [--limit N] [--dump predictions.json]

The images get the model's own preprocessing: the `preprocessing` parameter deploy.py writes into config.pbtxt,
else the checkpoint's (--weights). With --weights the same input tensors also run through PyTorch on the CPU,
and the report adds how often the two top-1 answers agree and the largest logit difference. --dump writes every
image's label and top-5 as JSON. Upstream's counterpart (run_inference_on_triton.py) wrote npz dumps and checked
nothing; its conversion tolerance was 100.
"""
from __future__ import annotations

import sys
from importlib.util import find_spec
from pathlib import Path

# A checkout used without installing it: make the repository importable (only then: a folder named `triton` on
# sys.path must not get between PyTorch and OpenAI's triton package).
if find_spec("image_classification") is None:
    sys.path.append(str(Path(__file__).resolve().parents[1]))

from common.cli_errors import ArgumentParser, positive_int, run_cli  # noqa: E402
from image_classification.serving.client import PROTOCOLS, ClientOptions, run_client  # noqa: E402


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="triton/client.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--url", default=None, metavar="HOST:PORT",
                   help="the server (default: 127.0.0.1 on the protocol's default port, 8000 or 8001)")
    p.add_argument("--protocol", "-i", choices=PROTOCOLS, default="http", help="default: http")
    p.add_argument("--model", "--model-name", "-m", dest="model", required=True, metavar="NAME",
                   help="the served model's name")
    p.add_argument("--data", required=True, metavar="DIR",
                   help="an ImageFolder (<dir>/<class>/<image>) or a folder holding one as val/")
    p.add_argument("--weights", default=None, metavar="PATH",
                   help="the deployed checkpoint: adds the local PyTorch check (and supplies the preprocessing "
                        "where the server does not publish it)")
    p.add_argument("--labels", default=None, metavar="FILE",
                   help="class names, one per line (default: the checkpoint's)")
    p.add_argument("-b", "--batch-size", type=positive_int, default=16, metavar="N",
                   help="images per request (capped at the model's max batch size); default: 16")
    p.add_argument("--limit", type=positive_int, default=None, metavar="N",
                   help="send only N images, spread over the classes")
    p.add_argument("--dump", default=None, metavar="PATH", help="write the report and every prediction as JSON")
    p.add_argument("-j", "--workers", type=positive_int, default=4, metavar="N", help="image-reading threads")
    p.add_argument("--timeout", type=float, default=60.0, metavar="S", help="network timeout (default: 60)")
    return p


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    # An INT8-quantized checkpoint needs its quantizers restored, which is the quantization package's (above
    # serving); imported only for a checkpoint file, which needs torch anyway.
    restore_quantizers = None
    if args.weights is not None:
        from image_classification.quantization.state import restore_quantizers
    run_client(ClientOptions(data=args.data, model=args.model, url=args.url, protocol=args.protocol,
                             weights=args.weights, labels=args.labels, batch_size=args.batch_size, limit=args.limit,
                             dump=args.dump, workers=args.workers, timeout=args.timeout,
                             log=lambda line: print(line, flush=True), restore_quantizers=restore_quantizers))


if __name__ == "__main__":
    run_cli(main)
