"""List the GPUNet model zoo without downloading anything: `python eval.py [--json]`.

One row per published model: registry name, marketing name, latency key, resolution, crop_pct, parameters
(millions), NGC URL, and whether the published checkpoint is already in the torch hub cache (where
`validate.py --pretrained` and `create_model(..., pretrained=True)` look for it).

Upstream's eval.py was a demo with no flags: it downloaded GPUNet-0, exported ONNX and validated on a hard-wired
/root/data/imagenet/val. Here validation is `validate.py DATA --model gpunet_0 --checkpoint FILE`, and the
Python API of upstream (configs.model_hub, models.gpunet_builder) is kept for scripts.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script from a checkout: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.cli_errors import ArgumentParser, run_cli  # noqa: E402


def _param_count(name: str) -> int:
    import torch

    from image_classification.models import create_model

    with torch.device("meta"):  # shapes only: no memory, no initialisation
        model = create_model(name)
    return sum(p.numel() for p in model.parameters())


def model_zoo() -> list[dict]:
    from gpunet.configs.model_hub import MODEL_ZOO_NAME2TYPE_B1
    from image_classification.inference.validate import published_weights_path
    from image_classification.models import get_model_info
    from image_classification.models.gpunet_archs import ARCHS

    rows = []
    by_latency = {arch.latency_key: arch for arch in ARCHS.values()}
    for marketing, latency in MODEL_ZOO_NAME2TYPE_B1.items():
        arch = by_latency[latency]
        info = get_model_info(arch.name)
        cache = published_weights_path(info)
        params = _param_count(arch.name)
        rows.append({
            "name": info.name,
            "marketing_name": marketing,
            "latency": latency,
            "resolution": info.input_size,
            "crop_pct": info.crop_pct,
            "interpolation": info.interpolation,
            "params": params,
            "params_m": round(params / 1e6, 2),
            "ngc_url": info.weights_url,
            "cache_path": str(cache),
            "cached": cache.is_file(),
        })
    return rows


def format_table(rows: list[dict]) -> str:
    header = f"{'name':10s} {'marketing':10s} {'latency':9s} {'res':>4s} {'crop':>5s} {'params(M)':>9s} cached  url"
    lines = [header]
    for r in rows:
        lines.append(f"{r['name']:10s} {r['marketing_name']:10s} {r['latency']:9s} {r['resolution']:4d} "
                     f"{r['crop_pct']:5.3f} {r['params_m']:9.2f} {'yes' if r['cached'] else 'no':6s}  {r['ngc_url']}")
    cache_dir = Path(rows[0]["cache_path"]).parent if rows else None
    missing = sum(not r["cached"] for r in rows)
    if cache_dir is not None:
        lines.append("")
        lines.append(f"published checkpoints are looked for in {cache_dir} ({len(rows) - missing} of {len(rows)} "
                     f"there); nothing is downloaded: fetch a zip, unzip it and keep <latency>.pth.tar there, or "
                     f"pass the file to validate.py --checkpoint")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = ArgumentParser(prog="eval.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print the zoo as a JSON list (for machines)")
    args = parser.parse_args(argv)
    rows = model_zoo()
    try:
        print(json.dumps(rows, indent=2) if args.json else format_table(rows), flush=True)
    except BrokenPipeError:  # `eval.py | head`: the reader has all it wants
        sys.stdout = None
    return 0


if __name__ == "__main__":
    run_cli(main)
