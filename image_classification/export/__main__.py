"""`python -m image_classification.export FORMAT [options]`: every exporter behind one command (exporters.py lists
them); without a format it lists the formats."""
from __future__ import annotations

import sys
from collections.abc import Sequence

from common.cli_errors import UserError, run_cli

from .exporters import EXPORTERS, PROG, formats_text, get_exporter


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(formats_text())
        return 0
    name, rest = argv[0], argv[1:]
    if name.startswith("-"):
        raise UserError(f"the export format comes first: {PROG} {{{','.join(EXPORTERS)}}} {name} ...")
    exporter = get_exporter(name)
    exporter.run(exporter.build_parser(f"{PROG} {name}").parse_args(rest))
    return 0


if __name__ == "__main__":
    run_cli(main)
