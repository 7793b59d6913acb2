import sys
from pathlib import Path

import pytest

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


def assert_one_line_error(proc, *fragments):
    assert proc.returncode == 2, (proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
