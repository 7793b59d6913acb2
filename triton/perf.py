"""Offline (batch sweep) and online (concurrency sweep) measurements against a running Triton server.

    python triton/perf.py --url 127.0.0.1:8000 --model efficientnet-b0 --output perf/ [--mode offline|online|both]
        [--batch-sizes 1 2 4 8] [--concurrency 1 2 4 8 16] [--requests 200] [--seconds 10] [--tool auto]

Uses perf_analyzer when it is on PATH, else a bounded load generator of our own (at most --requests requests and
--seconds seconds per point, loopback servers only). Writes perf.csv (inferences/s, average and p50/p90/p95/p99
latency per point), perf.json, and latency_vs_batch.png, throughput_vs_latency.png, latency_vs_concurrency.png.
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
from image_classification.serving.client import PROTOCOLS  # noqa: E402
from image_classification.serving.perf import MODES, TOOLS, PerfOptions, run_perf  # noqa: E402


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="triton/perf.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--url", default=None, metavar="HOST:PORT",
                   help="the server (default: 127.0.0.1 on the protocol's default port)")
    p.add_argument("--protocol", "-i", choices=PROTOCOLS, default="http", help="default: http")
    p.add_argument("--model", "--model-name", "-m", dest="model", required=True, metavar="NAME")
    p.add_argument("--output", "-o", required=True, metavar="DIR", help="where perf.csv, perf.json and the plots go")
    p.add_argument("--mode", choices=MODES, default="both", help="offline, online or both (default)")
    p.add_argument("--batch-sizes", type=positive_int, nargs="+", default=[], metavar="N",
                   help="offline sweep (default: powers of two up to the model's max batch size)")
    p.add_argument("--concurrency", type=positive_int, nargs="+", default=[1, 2, 4, 8, 16], metavar="N",
                   help="online sweep (default: 1 2 4 8 16)")
    p.add_argument("--requests", type=positive_int, default=200, metavar="N",
                   help="at most N measured requests per point (default: 200)")
    p.add_argument("--seconds", type=float, default=10.0, metavar="S", help="at most S seconds per point (default: 10)")
    p.add_argument("--warmup", type=int, default=10, metavar="N", help="unmeasured requests before each point")
    p.add_argument("--tool", choices=TOOLS, default="auto",
                   help="auto (perf_analyzer when on PATH), perf_analyzer, or loadgen (the built-in generator)")
    return p


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    run_perf(PerfOptions(model=args.model, output=args.output, url=args.url, protocol=args.protocol, mode=args.mode,
                         batch_sizes=tuple(args.batch_sizes), concurrency=tuple(args.concurrency),
                         requests=args.requests, seconds=args.seconds, warmup=args.warmup, tool=args.tool,
                         log=lambda line: print(line, flush=True)))


if __name__ == "__main__":
    run_cli(main)
