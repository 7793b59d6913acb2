"""The plots of upstream's Triton reports, from our perf rows: latency vs batch size (offline), throughput vs
latency and latency vs concurrency (online). One PNG each; matplotlib (the `[plot]` extra) draws them off-screen."""
from __future__ import annotations

from pathlib import Path

from common.cli_errors import UserError

PERCENTILE_KEYS = (("latency_p50_ms", "p50"), ("latency_p90_ms", "p90"), ("latency_p95_ms", "p95"),
                   ("latency_p99_ms", "p99"), ("latency_avg_ms", "average"))


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise UserError("matplotlib is not installed: pip install matplotlib (the project's [plot] extra) for the "
                        "plots; the CSV is written without it") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    from common.atomic_files import atomic_write

    fig.tight_layout()
    with atomic_write(path) as f:
        fig.savefig(f, format="png", dpi=110)
    return path


def _latency_lines(ax, rows: list[dict], x_key: str) -> None:
    xs = [r[x_key] for r in rows]
    for key, label in PERCENTILE_KEYS:
        ax.plot(xs, [r[key] for r in rows], marker="o", label=label)
    ax.set_ylabel("latency (ms)")
    ax.grid(True, alpha=0.3)
    ax.legend()


def plot_offline(rows: list[dict], path: Path, title: str) -> Path:
    plt = _pyplot()
    rows = sorted(rows, key=lambda r: r["batch_size"])
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    _latency_lines(left, rows, "batch_size")
    left.set_xscale("log", base=2)
    left.set_xticks([r["batch_size"] for r in rows], [str(r["batch_size"]) for r in rows])
    left.set_xlabel("batch size")
    left.set_title("latency vs batch size")
    right.bar([str(r["batch_size"]) for r in rows], [r["inferences_per_second"] for r in rows])
    right.set_xlabel("batch size")
    right.set_ylabel("inferences/s")
    right.set_title("throughput vs batch size")
    fig.suptitle(title)
    path = _save(fig, path)
    plt.close(fig)
    return path


def plot_throughput_vs_latency(rows: list[dict], path: Path, title: str) -> Path:
    plt = _pyplot()
    rows = sorted(rows, key=lambda r: r["concurrency"])
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([r["latency_p95_ms"] for r in rows], [r["inferences_per_second"] for r in rows], marker="o")
    for r in rows:
        ax.annotate(f"c={r['concurrency']}", (r["latency_p95_ms"], r["inferences_per_second"]), fontsize=8,
                    textcoords="offset points", xytext=(4, 4))
    ax.set_xlabel("p95 latency (ms)")
    ax.set_ylabel("inferences/s")
    ax.set_title(f"{title}: throughput vs latency")
    ax.grid(True, alpha=0.3)
    path = _save(fig, path)
    plt.close(fig)
    return path


def plot_latency_vs_concurrency(rows: list[dict], path: Path, title: str) -> Path:
    plt = _pyplot()
    rows = sorted(rows, key=lambda r: r["concurrency"])
    fig, ax = plt.subplots(figsize=(6, 4))
    _latency_lines(ax, rows, "concurrency")
    ax.set_xlabel("concurrent requests")
    ax.set_title(f"{title}: latency vs concurrency")
    path = _save(fig, path)
    plt.close(fig)
    return path
