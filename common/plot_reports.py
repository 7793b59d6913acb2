"""Plot per-epoch curves of one or more DLLogger JSON reports on one figure.

    python -m common.plot_reports REPORT [REPORT ...] -o curves.png [--labels A B ...] [--metrics train.loss ...]
"""
from __future__ import annotations

from pathlib import Path

from common.atomic_files import atomic_write
from common.cli_errors import ArgumentParser, UserError, run_cli
from common.dllogger import read_report

DEFAULT_METRICS = ("train.loss", "val.top1", "val.top5")
EMA_PREFIX = "val_ema."


def epoch_metrics(path: str | Path) -> dict[int, dict[str, float]]:
    """epoch -> metric -> value, from the LOG records whose step is `[epoch]`."""
    records = read_report(path)
    if not records:
        raise UserError(f"{path} has no DLLL records: pass a DLLogger JSON report")
    epochs: dict[int, dict[str, float]] = {}
    for record in records:
        step = record.get("step")
        if record.get("type") != "LOG" or not isinstance(step, list) or len(step) != 1 or not isinstance(step[0], int):
            continue
        # An epoch arrives as one record per verbosity level; upstream also wrote null for empty metrics.
        data = {k: v for k, v in record.get("data", {}).items() if isinstance(v, (int, float))}
        epochs.setdefault(step[0], {}).update(data)
    if not epochs:
        raise UserError(f"{path} has no per-epoch records (step [epoch]): did the run finish an epoch?")
    return epochs


def _companion(metric: str) -> str | None:
    return EMA_PREFIX + metric[len("val."):] if metric.startswith("val.") else None


def _labels(paths: list[Path], labels: list[str] | None) -> list[str]:
    if labels is not None:
        if len(labels) != len(paths):
            raise UserError(f"got {len(labels)} labels for {len(paths)} reports: pass one --labels entry per report")
        return list(labels)
    names = [p.name for p in paths]
    # Runs often share a report file name; fall back to the paths as given so that lines stay distinguishable.
    return names if len(set(names)) == len(names) else [str(p) for p in paths]


def _load_matplotlib():
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator
    except ImportError:
        raise UserError("matplotlib is not installed: pip install matplotlib (or the project's [plot] extra)") from None
    return Figure, FigureCanvasAgg, MaxNLocator


def plot_reports(paths, out, labels: list[str] | None = None, metrics: list[str] | None = None) -> Path:
    paths = [Path(p) for p in paths]
    out = Path(out)
    metrics = list(metrics or DEFAULT_METRICS)
    if not paths:
        raise UserError("no report given: pass at least one DLLogger JSON report")
    labels = _labels(paths, labels)
    runs = []
    for path in paths:
        epochs = epoch_metrics(path)
        present = set().union(*epochs.values())
        wanted = set(metrics) | {_companion(m) for m in metrics}
        if not present & wanted:
            raise UserError(
                f"{path} has none of the metrics {', '.join(metrics)} in its epoch records "
                f"(it has {', '.join(sorted(present)) or 'none'}): choose others with --metrics"
            )
        runs.append(epochs)

    Figure, FigureCanvasAgg, MaxNLocator = _load_matplotlib()
    fig = Figure(figsize=(5 * len(metrics), 4), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    for ax, metric in zip(axes, metrics):
        for i, (epochs, label) in enumerate(zip(runs, labels)):
            color = f"C{i % 10}"
            for name, style, suffix in ((metric, "-", ""), (_companion(metric), "--", " (EMA)")):
                points = sorted((e, d[name]) for e, d in epochs.items() if name and name in d)
                if points:
                    xs, ys = zip(*points)
                    ax.plot(xs, ys, style, color=color, marker=".", label=label + suffix)
        ax.set_title(metric)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, alpha=0.3)
        if ax.has_data():
            ax.legend(fontsize="small")

    out.parent.mkdir(parents=True, exist_ok=True)
    # Written beside the target and renamed, so a reader never sees a half-written PNG.
    with atomic_write(out) as f:
        fig.savefig(f, format="png", dpi=100)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m common.plot_reports", description=__doc__.splitlines()[0])
    parser.add_argument("reports", nargs="+", metavar="REPORT", help="DLLogger JSON report(s)")
    parser.add_argument("-o", "--output", required=True, help="PNG file to write")
    parser.add_argument("--labels", nargs="+", help="legend entry per report (default: file names)")
    parser.add_argument("--metrics", nargs="+", default=list(DEFAULT_METRICS),
                        help="one subplot per metric; val.* metrics also draw val_ema.* dashed when present")
    args = parser.parse_args(argv)
    print(plot_reports(args.reports, args.output, labels=args.labels, metrics=args.metrics))
    return 0


if __name__ == "__main__":
    run_cli(main)
