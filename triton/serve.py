"""Serve a model of this project with PyTriton (a real Triton Inference Server, bundled) on 127.0.0.1.

    python triton/serve.py --weights model_best.pth.tar [--device cpu|cuda] [--max-batch-size 16] [--instances 1]
        [--preferred-batch-sizes 8 16] [--max-queue-delay-us 100] [--http-port 8000] [--grpc-port 8001]
    python triton/serve.py --repository model_repository      (entries written by deploy.py --format python)

Prints the HTTP, gRPC and metrics ports once the model is ready; stops cleanly on Ctrl+C (SIGINT) or SIGTERM.
Port 0 picks a free port; --ready-file writes the ports as JSON once the server answers (for scripts).
Needs nvidia-pytriton, which pins numpy<2: use its own virtual environment (`nox -s triton` builds one).
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
from image_classification.serving.pytriton_server import DEFAULT_PORTS, ServeOptions, serve  # noqa: E402


def port(value: str) -> int:
    import argparse

    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {value!r}") from None
    if not 0 <= number <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0 (any free one) to 65535, got {value}")
    return number


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="triton/serve.py", description=__doc__.split("\n\n")[0])
    what = p.add_argument_group("what to serve (one of)")
    what.add_argument("--weights", "--pretrained-from-file", dest="weights", default=None, metavar="PATH",
                      help="checkpoint: ours, upstream's, timm's, NGC's or a plain state dict")
    what.add_argument("--pretrained", action="store_true",
                      help="the published weights of --model from the torch hub cache (nothing is downloaded)")
    what.add_argument("--repository", "--model-repository", dest="repository", default=None, metavar="DIR",
                      help="a model repository of Python-backend entries (deploy.py --format python)")
    p.add_argument("--model", "--arch", "-a", dest="arch", default=None, metavar="NAME",
                   help="registered model name (default: the architecture the checkpoint names)")
    p.add_argument("--model-name", default=None, metavar="NAME",
                   help="the name it is served under (default: the architecture)")
    p.add_argument("--device", default="cpu", metavar="DEV", help="cpu (default), cuda or cuda:N")
    p.add_argument("--precision", choices=("fp16", "fp32"), default=None,
                   help="fp16 (default on a GPU) or fp32 (default, and the only choice, on the CPU)")
    p.add_argument("--no-compile", dest="compile", action="store_false",
                   help="on a GPU, skip torch.compile in the fast path (starts faster, runs slower)")
    p.add_argument("--max-batch-size", type=positive_int, default=16, metavar="N", help="default: 16")
    p.add_argument("--instances", type=positive_int, default=1, metavar="K", help="model instances (default: 1)")
    p.add_argument("--preferred-batch-sizes", type=positive_int, nargs="+", default=[], metavar="N",
                   help="the dynamic batcher's preferred batch sizes")
    p.add_argument("--max-queue-delay-us", type=int, default=100, metavar="US",
                   help="how long the dynamic batcher may hold a request to fill a batch (default: 100)")
    for name in ("http", "grpc", "metrics"):
        p.add_argument(f"--{name}-port", type=port, default=DEFAULT_PORTS[name], metavar="PORT",
                       help=f"default: {DEFAULT_PORTS[name]}; 0 picks a free port")
    p.add_argument("--startup-timeout", type=float, default=120.0, metavar="S",
                   help="seconds to wait for the server and its models (default: 120)")
    p.add_argument("--exit-timeout", type=int, default=5, metavar="S",
                   help="seconds the server waits for in-flight requests when stopping (default: 5)")
    p.add_argument("--log-file", default=None, metavar="PATH",
                   help="the server's log (default: a temporary file, removed after a clean stop)")
    p.add_argument("--ready-file", default=None, metavar="PATH",
                   help="write {pid, models, http_port, grpc_port, metrics_port, log} here once ready")
    p.add_argument("--verbose", action="store_true", help="PyTriton's own log messages (INFO and up) on stderr")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.verbose:
        import logging

        logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    # An INT8-quantized checkpoint needs its quantizers restored, which is the quantization package's (above
    # serving); imported only for a checkpoint file, which needs torch anyway.
    restore_quantizers = None
    if args.weights is not None:
        from image_classification.quantization.state import restore_quantizers
    options = ServeOptions(
        weights=args.weights, arch=args.arch, pretrained=args.pretrained, repository=args.repository,
        model_name=args.model_name, device=args.device, precision=args.precision, compile=args.compile,
        max_batch_size=args.max_batch_size, instances=args.instances,
        preferred_batch_sizes=tuple(args.preferred_batch_sizes), max_queue_delay_us=args.max_queue_delay_us,
        http_port=args.http_port, grpc_port=args.grpc_port, metrics_port=args.metrics_port,
        startup_timeout=args.startup_timeout, exit_timeout=args.exit_timeout, log_file=args.log_file,
        ready_file=args.ready_file, verbose=args.verbose, log=lambda line: print(line, flush=True),
        restore_quantizers=restore_quantizers,
    )
    return serve(options)


if __name__ == "__main__":
    run_cli(main)
