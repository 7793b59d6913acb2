"""One convention for command-line failures: a single line on stderr and a non-zero exit.

Code deep inside the library raises `UserError` when the *user* can fix the problem (a path, a flag, a
checkpoint); entry points wrap their `main` in `run_cli`, which turns that into one line instead of a traceback.
Programming errors still raise normally so that bugs stay visible.
"""
from __future__ import annotations

import sys
from typing import Callable, NoReturn

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


class UserError(Exception):
    """A problem the user can fix; the message must say what is wrong and what to do."""


def fail(message: str, code: int = EXIT_USER_ERROR) -> NoReturn:
    print(f"error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(code)


def run_cli(main: Callable[..., object], *args, **kwargs) -> None:
    try:
        result = main(*args, **kwargs)
    except UserError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        fail("interrupted", EXIT_INTERRUPTED)
    if isinstance(result, int) and result != 0:
        raise SystemExit(result)
