import os
import sys
from pathlib import Path

import pytest


def pytest_configure(config):
    """Under pytest-xdist (CI runs `-n 2` on its 2 cores), each worker and every process it starts computes on one
    thread: two workers with PyTorch's default of one thread per core would ask for twice the cores there are, and
    oversubscribed OpenMP threads spin. Results do not depend on it: every test compares runs made alike."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        os.environ["OMP_NUM_THREADS"] = "1"
        import torch

        torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture(scope="session")
def digits_root(tmp_path_factory) -> Path:
    """The built-in digits data set at 32 px: small enough for CPU tests, real enough to learn from."""
    from common.datasets.digits import write_digits

    root = tmp_path_factory.mktemp("data") / "digits"
    write_digits(root, size=32)
    return root


def run_script(*argv, cwd=REPO, timeout=600):
    """Run a repository script as a user would; returns the CompletedProcess."""
    import subprocess

    return subprocess.run([sys.executable, *map(str, argv)], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


def run_in_process(capsys, main, *argv):
    """A CLI's main as run_cli runs it (exit codes, one-line errors), without a new interpreter: the result looks
    like run_script's CompletedProcess."""
    from types import SimpleNamespace

    from common.cli_errors import run_cli

    capsys.readouterr()
    try:
        run_cli(main, [str(a) for a in argv])
        code = 0
    except SystemExit as exc:
        code = exc.code
    captured = capsys.readouterr()
    return SimpleNamespace(returncode=code, stdout=captured.out, stderr=captured.err)


def assert_one_line_error(proc, *fragments):
    assert proc.returncode == 2, (proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


@pytest.fixture(scope="session")
def trained_digits(digits_root, tmp_path_factory):
    """EfficientNet-B0 trained on the 32 px digits for 4 epochs (about 40 s on 2 cores), shared by the tests that
    need a model that really learned: (summary, workspace).

    Learning rate 0.02, not the helpers' 0.05: at 0.05 (batch 32, 32 px, where the last stages see 1x1 maps) the
    run diverged for two epochs and ended at 51-87% depending on the seed; at 0.02 seeds 0, 1 and 3 ended at 98.6,
    97.2 and 95.3% (PyTorch 2.14.1, 2 cores). BN momentum 0.1 comes from the helpers' FAST flags."""
    from tests.image_classification.training.helpers import run

    workspace = tmp_path_factory.mktemp("trained_digits")
    summary = run(digits_root, workspace, "--epochs", 4, "-j", 2, "--prof", -1, "-b", 32, "--lr", 0.02,
                  "--label-smoothing", 0.1, "--crop-scale", 0.6, 1, "--hflip", 0, "--warmup", 1,
                  "--weight-decay", 5e-5, "--bn_momentum", 0.1, "--print-freq", 50, "--cpu")
    # Every test that uses this fixture needs a model that learned; say so here rather than in 11 puzzling failures.
    assert summary["best_top1"] >= 90.0, f"the shared digits model did not learn: best top-1 {summary['best_top1']}"
    return summary, workspace


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    """An empty torch hub cache for the test (TORCH_HOME=<tmp>/torch); returns the `checkpoints` folder where the
    published weights are looked for. A test that called torch.hub.set_dir leaves torch's private `_hub_dir` set,
    which outranks TORCH_HOME, so it is cleared here (and restored afterwards)."""
    import torch

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    checkpoints = tmp_path / "torch" / "hub" / "checkpoints"
    assert Path(torch.hub.get_dir()) == checkpoints.parent
    checkpoints.mkdir(parents=True)
    return checkpoints


def save_published_weights(name: str, checkpoint: dict) -> Path:
    """Put `checkpoint` where create_model(name, pretrained=True) looks for the published weights (under the
    torch_home fixture's cache); returns the path."""
    import torch

    from image_classification.models import get_model_info
    from image_classification.models.checkpoint import published_weights_path

    path = published_weights_path(get_model_info(name))
    torch.save(checkpoint, path)
    return path
