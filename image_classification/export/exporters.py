"""The exporter registry behind `python -m image_classification.export FORMAT`: one entry per format.

An exporter is a name, a line for the list of formats, a parser (given the program name to show) and `run(args)`,
which writes the file and returns its path. Each format's module is imported only when that format runs, and the
parsers of onnx (onnx_flags.py) and of the list itself import no torch, so `--help` answers at once. Every
exporter reads its model through sources.load_model and checks its output path with sources.check_output.
"""
from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from common.cli_errors import ArgumentParser, UserError

PROG = "python -m image_classification.export"


@dataclass(frozen=True)
class Exporter:
    name: str
    summary: str
    build_parser: Callable[[str], ArgumentParser]
    run: Callable[[argparse.Namespace], Path]


def _onnx_dialect(prog: str):
    from .onnx_flags import ExportDialect

    return ExportDialect(prog=prog)


def _onnx_parser(prog: str) -> ArgumentParser:
    from .onnx_flags import build_parser

    return build_parser(_onnx_dialect(prog))


def _onnx_run(args: argparse.Namespace) -> Path:
    from . import onnx

    return onnx.run(args, _onnx_dialect(f"{PROG} onnx"))


def _tensorrt_parser(prog: str) -> ArgumentParser:
    from . import tensorrt

    return tensorrt.build_parser(prog)


def _tensorrt_run(args: argparse.Namespace) -> Path:
    from . import tensorrt

    return tensorrt.run(args)


def _aoti_parser(prog: str) -> ArgumentParser:
    from . import aoti

    return aoti.build_parser(prog)


def _aoti_run(args: argparse.Namespace) -> Path:
    from . import aoti

    return aoti.run(args)


EXPORTERS = {e.name: e for e in (
    Exporter("onnx", "an ONNX file in Triton's layout (dynamic batch), checked against PyTorch with onnxruntime",
             _onnx_parser, _onnx_run),
    Exporter("tensorrt", "a TensorRT engine built from an ONNX export (needs TensorRT and a GPU)",
             _tensorrt_parser, _tensorrt_run),
    Exporter("aoti", "an AOTInductor package (.pt2) compiled ahead of time, which runs with PyTorch alone",
             _aoti_parser, _aoti_run),
)}


def get_exporter(name: str) -> Exporter:
    if name not in EXPORTERS:
        raise UserError(f"unknown export format {name!r}; choose from: {', '.join(EXPORTERS)}")
    return EXPORTERS[name]


def formats_text() -> str:
    """What `python -m image_classification.export` prints without a format."""
    width = max(len(name) for name in EXPORTERS)
    lines = [f"usage: {PROG} FORMAT [options]  (FORMAT --help: its options)", "", "formats:"]
    lines += [f"  {e.name:{width}}  {e.summary}" for e in EXPORTERS.values()]
    return "\n".join(lines)
