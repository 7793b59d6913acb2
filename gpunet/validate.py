"""Validate GPUNet (or any registered model) on an ImageFolder with the flags of timm 0.5.4's validate.py:

    python validate.py /imagenet/val --model gpunet_0 -b 200 -j 8 --img-size 320 --checkpoint ./0.65ms.pth.tar

DATA is the validation ImageFolder (<DATA>/<class>/<image>) or a folder holding it as val/ (or validation/).
Prints `--result` and the result as JSON on stdout (progress goes to stderr); `--results-file` adds a CSV and
`--dllogger-name` a DLLogger JSON file. Nothing is downloaded: `--pretrained` (also what happens when no
--checkpoint is given, as in upstream) reads the published file from the torch hub cache.

Bulk mode: `--checkpoint` a directory (every *.pth.tar and *.pth in it) or a glob, or `--model all` / a wildcard
(`--model 'gpunet*'`: the registered models whose published file is cached). Every result is a row of one CSV
(`--results-file`, default ./results-all.csv); a checkpoint that fails gets its message in the `error` column,
the others still run, and the exit status is 1 when any failed.

Accepted for compatibility: --no-prefetcher and --pin-mem (no-ops: batches are always normalised on the device
and pinned on CUDA), --native-amp (= --amp). timm flags that make no sense here (--dataset other than a folder,
--split, --dataset-download, --class-map, --gp, --test-pool, --num-gpu > 1, --apex-amp, --tf-preprocessing,
--torchscript, --fuser, --real-labels, --valid-labels, --legacy-jit) are refused, with the reason, when set.
"""
from __future__ import annotations

import argparse
import glob
import json
import re
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script from a checkout: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.cli_errors import ArgumentParser, UserError, non_negative_int, positive_int, run_cli  # noqa: E402

DEFAULT_BULK_RESULTS = "results-all.csv"
CHECKPOINT_PATTERNS = ("*.pth.tar", "*.pth")

# timm flags we parse but refuse when set: (dest, accepted values, why).
UNSUPPORTED = [
    ("dataset", ("", "folder", "imagefolder", "image_folder"),
     "only an image folder is read (DATA/<class>/<image>, or DATA/val/<class>/<image>)"),
    ("split", ("validation", "val"), "pass the folder to validate as DATA (or its parent holding val/ or validation/)"),
    ("dataset_download", (False,), "nothing is downloaded"),
    ("class_map", ("",), "class maps are not supported: the class folders define the labels"),
    ("gp", (None,), "the models' global pooling is fixed (average pooling)"),
    ("test_pool", (False,), "test-time pooling is not supported"),
    ("num_gpu", (1,), "one GPU per process: DataParallel is not supported"),
    ("apex_amp", (False,), "APEX is not supported; use --amp (torch.amp)"),
    ("tf_preprocessing", (False,), "TensorFlow preprocessing is not supported; use --crop-pct and --interpolation"),
    ("torchscript", (False,), "TorchScript is deprecated in PyTorch and not supported; validate the eager model"),
    ("fuser", ("",), "JIT fusers are not supported (upstream's --fuser crashed with NameError)"),
    ("legacy_jit", (False,), "the legacy JIT is not supported"),
    ("real_labels", ("",), "ImageNet-ReaL labels are not supported: the class folders define the labels"),
    ("valid_labels", ("",), "label subsets are not supported: validate on a folder with the model's classes"),
]


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="validate.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data", metavar="DIR", help="validation ImageFolder, or a folder holding it as val/ or validation/")
    p.add_argument("--model", "-m", metavar="NAME", default=None,
                   help="registered name or alias (gpunet_0, 0.65ms, GPUNet-0, ...), 'all' or a wildcard for bulk "
                        "mode (default: the architecture the checkpoint names)")
    p.add_argument("--model-config", metavar="FILE", default=None,
                   help="upstream-format GPUNet JSON replacing the model's built-in architecture")
    p.add_argument("-j", "--workers", type=non_negative_int, default=4, metavar="N", help="data loading workers")
    p.add_argument("-b", "--batch-size", type=positive_int, default=256, metavar="N", help="batch size")
    p.add_argument("--img-size", type=positive_int, default=None, metavar="N",
                   help="input resolution (default: the model's)")
    p.add_argument("--input-size", type=int, nargs=3, default=None, metavar=("C", "H", "W"),
                   help="input size C H W (square only), wins over --img-size")
    p.add_argument("--crop-pct", type=float, default=None, metavar="PCT",
                   help="centre-crop fraction: resize to img_size / crop_pct, then crop (default: the model's)")
    p.add_argument("--mean", type=float, nargs="+", default=None, metavar="MEAN", help="normalisation mean")
    p.add_argument("--std", type=float, nargs="+", default=None, metavar="STD", help="normalisation std")
    p.add_argument("--interpolation", default="", metavar="NAME",
                   help="resize interpolation: bilinear, bicubic or nearest (default: the model's)")
    p.add_argument("--num-classes", type=positive_int, default=None, metavar="N",
                   help="classes (default: the checkpoint classifier's, else the number of class folders)")
    p.add_argument("--log-freq", type=non_negative_int, default=10, metavar="N",
                   help="progress line every N batches, on stderr (0: none)")
    p.add_argument("--checkpoint", default="", metavar="PATH",
                   help="weights in any supported layout; a directory or a glob validates each file (bulk mode)")
    p.add_argument("--pretrained", action="store_true",
                   help="the published weights from the torch hub cache (the default without --checkpoint)")
    p.add_argument("--use-ema", action="store_true",
                   help="the checkpoint's EMA weights (default: its raw state_dict, as timm)")
    p.add_argument("--channels-last", action="store_true", help="channels_last memory format")
    p.add_argument("--amp", action="store_true", help="fp16 autocast (needs a GPU)")
    p.add_argument("--native-amp", action="store_true", help="same as --amp")
    p.add_argument("--no-prefetcher", action="store_true", help="accepted, no effect (batches are always prepared "
                                                                    "on the device)")
    p.add_argument("--pin-mem", action="store_true", help="accepted, no effect (memory is pinned on CUDA)")
    p.add_argument("--results-file", default="", metavar="FILE",
                   help=f"CSV of the result(s) (bulk mode default: ./{DEFAULT_BULK_RESULTS})")
    p.add_argument("--dllogger-name", default="", metavar="FILE",
                   help="DLLogger JSON file the result is appended to (default: none)")
    p.add_argument("--topk", type=positive_int, default=5, metavar="K", help="second accuracy metric, top-k")
    p.add_argument("--cpu", action="store_true", help="run on the CPU even if a GPU is present")

    g = p.add_argument_group("timm flags that are refused when set (see the description)")
    g.add_argument("--dataset", "-d", default="", metavar="NAME")
    g.add_argument("--split", default="validation", metavar="NAME")
    g.add_argument("--dataset-download", action="store_true")
    g.add_argument("--class-map", default="", metavar="FILE")
    g.add_argument("--gp", default=None, metavar="POOL")
    g.add_argument("--test-pool", action="store_true")
    g.add_argument("--num-gpu", type=int, default=1, metavar="N")
    g.add_argument("--apex-amp", action="store_true")
    g.add_argument("--tf-preprocessing", action="store_true")
    g.add_argument("--torchscript", action="store_true")
    g.add_argument("--fuser", default="", metavar="NAME")
    g.add_argument("--legacy-jit", action="store_true")
    g.add_argument("--real-labels", default="", metavar="FILE")
    g.add_argument("--valid-labels", default="", metavar="FILE")
    return p


def refuse_unsupported(args: argparse.Namespace) -> None:
    for dest, accepted, why in UNSUPPORTED:
        value = getattr(args, dest)
        normalised = value.lower() if isinstance(value, str) else value
        if normalised not in accepted:
            flag = "--" + dest.replace("_", "-")
            shown = "" if isinstance(value, bool) else f" {value}"
            raise UserError(f"{flag}{shown} is not supported: {why}")


def natural_key(text: str) -> list:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", text)]


def _is_glob(text: str) -> bool:
    return any(c in text for c in "*?[")


def expand_checkpoints(spec: str) -> list[Path] | None:
    """The checkpoints of bulk mode (a directory or a glob), or None for a single file."""
    path = Path(spec)
    if path.is_dir():
        found = sorted({p for pattern in CHECKPOINT_PATTERNS for p in path.glob(pattern)}, key=lambda p: natural_key(
            p.name))
        if not found:
            raise UserError(f"checkpoint directory {path} holds no {' or '.join(CHECKPOINT_PATTERNS)} files")
        return found
    if not path.exists() and _is_glob(spec):
        found = sorted((Path(p) for p in glob.glob(spec) if Path(p).is_file()), key=lambda p: natural_key(str(p)))
        if not found:
            raise UserError(f"no checkpoint matches {spec}")
        return found
    return None


def bulk_models(pattern: str) -> list[str] | None:
    """Models of `--model all` or a wildcard whose published weights are cached; None when not bulk."""
    from image_classification.inference.validate import cached_models, published_weights_path
    from image_classification.models import get_model_info, list_models

    if pattern != "all" and not _is_glob(pattern):
        return None
    glob_pattern = "*" if pattern == "all" else pattern.strip().lower().replace("_", "-")
    names = list_models(glob_pattern)
    if not names:
        raise UserError(f"no registered model matches {pattern!r}; python -m image_classification.models lists them")
    cached = cached_models(glob_pattern)
    if not cached:
        where = published_weights_path(get_model_info(names[0])).parent
        raise UserError(f"none of the {len(names)} models matching {pattern!r} has its published weights in the "
                        f"torch hub cache ({where}) and nothing is downloaded: fetch them there (python eval.py "
                        f"lists the files) or pass --checkpoint")
    return cached


def validate_one(args: argparse.Namespace, model: str | None, checkpoint: Path | None, device, pretrained: bool):
    from image_classification.inference.validate import validate_folder
    from image_classification.quantization.state import restore_quantizers

    kwargs = {"model_config": args.model_config} if args.model_config else {}
    return validate_folder(
        model, args.data, checkpoint=checkpoint, pretrained=pretrained, use_ema=args.use_ema,
        num_classes=args.num_classes, model_kwargs=kwargs, img_size=args.img_size,
        input_size=tuple(args.input_size) if args.input_size else None, crop_pct=args.crop_pct,
        interpolation=args.interpolation or None, mean=args.mean, std=args.std, batch_size=args.batch_size,
        workers=args.workers, device=device, amp=args.amp or args.native_amp, channels_last=args.channels_last,
        topk=args.topk, log_freq=args.log_freq, restore_quantizers=restore_quantizers,
    )


def _first_line(exc: BaseException) -> str:
    """A failure as one CSV cell: a UserError's message, or the type and first line of anything else."""
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    if isinstance(exc, UserError):
        return first or type(exc).__name__
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def _canonical(model: str | None) -> str:
    from image_classification.models import get_model_info

    try:
        return get_model_info(model).name if model else ""
    except UserError:
        return model


def write_dllogger(path: str, results: list[dict], bulk: bool) -> None:
    from common import dllogger

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    logger = dllogger.Logger([dllogger.JSONStreamBackend(dllogger.Verbosity.VERBOSE, path, append=True)])
    for metric in ("top1", "top1_err", "param_count", "average_ips", "compute_latency"):
        unit = {"param_count": "M", "average_ips": "images/s", "compute_latency": "s"}.get(metric, "%")
        logger.metadata(metric, {"unit": unit})
    for index, result in enumerate(results):
        logger.log(step=(index,) if bulk else (), data=result)
    logger.close()


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    refuse_unsupported(args)
    import torch

    from image_classification.data.bundle import warn_if_topk_covers_every_class
    from image_classification.inference.validate import folder_classes, resolve_image_folder, write_results_csv

    root, split = resolve_image_folder(args.data)  # a missing or wrong data folder fails before any model is built
    warn_if_topk_covers_every_class(args.topk, len(folder_classes(root, split)), root, "--topk")
    if args.model_config and not Path(args.model_config).is_file():
        raise UserError(f"--model-config {args.model_config} does not exist: pass an upstream GPUNet JSON file")
    device = torch.device("cpu" if args.cpu or not torch.cuda.is_available() else "cuda")

    checkpoints = expand_checkpoints(args.checkpoint) if args.checkpoint else None
    models = bulk_models(args.model) if args.model and not args.checkpoint else None
    if models is None and args.model:
        from image_classification.models import get_model_info

        get_model_info(args.model)  # an unknown name fails with one line, before any checkpoint is read
    if checkpoints is None and models is None:
        checkpoint = Path(args.checkpoint) if args.checkpoint else None
        result = validate_one(args, args.model, checkpoint, device, pretrained=checkpoint is None)
        print(f" * Acc@1 {result['top1']:.3f} ({result['top1_err']:.3f}) "
              f"Acc@{args.topk} {result[f'top{args.topk}']:.3f} ({result[f'top{args.topk}_err']:.3f})",
              file=sys.stderr, flush=True)
        print(f"--result\n{json.dumps(result, indent=4)}", flush=True)
        if args.results_file:
            write_results_csv(args.results_file, [result])
        if args.dllogger_name:
            write_dllogger(args.dllogger_name, [result], bulk=False)
        return 0

    jobs = [(args.model, c) for c in checkpoints] if checkpoints is not None else [(m, None) for m in models]
    print(f"bulk validation of {len(jobs)} " + ("checkpoints" if checkpoints is not None else "models") + ": "
          + ", ".join(str(c) if c is not None else m for m, c in jobs), file=sys.stderr, flush=True)
    results, failed = [], 0
    for model, checkpoint in jobs:
        try:
            result = validate_one(args, model, checkpoint, device, pretrained=checkpoint is None)
        except Exception as exc:  # one bad checkpoint must not stop the others (UserError or not)
            failed += 1
            result = {"model": _canonical(model), "checkpoint": str(checkpoint or ""), "error": _first_line(exc)}
            print(f"error: {checkpoint or model}: {result['error']}", file=sys.stderr, flush=True)
        results.append(result)
    # timm's order: best top1 first; failures last.
    results.sort(key=lambda r: (r.get("top1") is None, -(r.get("top1") or 0.0)))
    csv_path = write_results_csv(args.results_file or DEFAULT_BULK_RESULTS, results)
    if args.dllogger_name:
        write_dllogger(args.dllogger_name, results, bulk=True)
    print(f"--result\n{json.dumps(results, indent=4)}", flush=True)
    if failed:
        print(f"error: {failed} of {len(jobs)} validations failed; see the error column of {csv_path}",
              file=sys.stderr, flush=True)
        return 1
    print(f"results: {csv_path}", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    run_cli(main)
