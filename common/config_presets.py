"""Upstream's preset system: configs.yml merged in a fixed order, then explicit flags on top.

Merge order (later wins): precision[P] -> platform[X] -> models[M][X][P] -> mode[mode]. The result becomes the
argument parser's defaults, so anything typed on the command line still overrides a preset.
"""
from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from common.cli_errors import UserError

SECTIONS = ("precision", "platform", "mode", "models")


def load_presets(path: str | Path) -> dict:
    import yaml

    path = Path(path)
    if not path.is_file():
        raise UserError(f"preset file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise UserError(f"{path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    missing = [s for s in SECTIONS if not isinstance(data, dict) or s not in data]
    if missing:
        raise UserError(f"{path} lacks the section(s) {', '.join(missing)}")
    return data


def _pick(table: dict, key: str, what: str) -> dict:
    if key not in table:
        raise UserError(f"unknown {what} {key!r}; choose from {', '.join(map(str, table))}")
    return table[key] or {}


def merge_presets(presets: dict, model: str, platform: str, precision: str, mode: str) -> dict:
    merged: dict = {}
    merged.update(_pick(presets["precision"], precision, "precision"))
    merged.update(_pick(presets["platform"], platform, "platform"))
    per_platform = _pick(presets["models"], model, "model")
    if platform not in per_platform:
        raise UserError(f"{model} has no preset for platform {platform}; it has {', '.join(per_platform)}")
    if precision not in (per_platform[platform] or {}):
        raise UserError(f"{model} on {platform} has no {precision} preset; "
                        f"it has {', '.join(per_platform[platform] or {})}")
    merged.update(per_platform[platform][precision] or {})
    merged.update(_pick(presets["mode"], mode, "mode"))
    return merged


def launch_parser(default_cfg: Path) -> argparse.ArgumentParser:
    from common.cli_errors import ArgumentParser

    p = ArgumentParser(add_help=False, prog="launch.py")
    p.add_argument("--cfg_file", default=str(default_cfg), help="preset file (default: configs.yml here)")
    p.add_argument("--model", required=True, help="model preset")
    p.add_argument("--mode", required=True, help="mode preset")
    p.add_argument("--precision", required=True, help="precision preset")
    p.add_argument("--platform", required=True, help="platform preset")
    return p


def apply_presets(parser: argparse.ArgumentParser, values: dict, source: str) -> None:
    """Set `values` as parser defaults; a key that names no flag is a typo in the preset file, not a no-op."""
    dests = {a.dest for a in parser._actions}
    unknown = sorted(k for k in values if k not in dests)
    if unknown:
        raise UserError(f"{source} sets unknown option(s) {', '.join(unknown)}")
    parser.set_defaults(**values)


def launch(argv: list[str] | None, default_cfg: Path, build_parser: Callable[[], argparse.ArgumentParser],
           run: Callable[[argparse.Namespace], object], model_dest: str = "arch") -> object:
    """launch.py's whole job: pick presets, make them the defaults of the entry point's parser, run it."""
    import sys

    argv = list(sys.argv[1:] if argv is None else argv)
    lp = launch_parser(default_cfg)
    if any(a in ("-h", "--help") for a in argv):
        lp.print_help()
        print()
        build_parser().print_help()
        return None
    largs, rest = lp.parse_known_args(argv)
    presets = load_presets(largs.cfg_file)
    values = merge_presets(presets, largs.model, largs.platform, largs.precision, largs.mode)
    values.setdefault(model_dest, largs.model)
    parser = build_parser()
    apply_presets(parser, values, f"{largs.cfg_file} ({largs.model}/{largs.platform}/{largs.precision}/{largs.mode})")
    args = parser.parse_args(rest)
    args.launch = vars(largs)
    return run(args)
