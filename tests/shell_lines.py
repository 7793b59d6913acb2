"""The recipe tests read the `python ... launch.py` line of each shell recipe and run it with the shell's variables
filled in; this is that filling-in, once for the training, inference and quantization recipes."""
from __future__ import annotations

import shlex


def expand(line: str, values: dict[str, str], passthrough: str) -> list[str]:
    """shlex-split `line`, drop the pass-through argument (e.g. "${@:2}") and substitute `values`; any `$` left over
    means a recipe uses a variable the test does not know."""
    tokens = []
    for tok in shlex.split(line):
        if tok == passthrough:
            continue
        for var, value in values.items():
            tok = tok.replace(var, value)
        assert "$" not in tok, f"unexpanded shell variable in {tok!r}"
        tokens.append(tok)
    return tokens
