"""`python multiproc.py --nproc_per_node N launch.py ...`: upstream's launcher flags, run by torchrun."""
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script from a checkout: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.cli_errors import run_cli  # noqa: E402
from common.launcher import main  # noqa: E402

if __name__ == "__main__":
    run_cli(main)
