"""One convention for command-line failures: a single line on stderr and a non-zero exit.

Code deep inside the library raises `UserError` when the *user* can fix the problem (a path, a flag, a
checkpoint); entry points wrap their `main` in `run_cli`, which turns that into one line instead of a traceback.
Programming errors still raise normally so that bugs stay visible. An `OSError` (a path that cannot be created,
read or written) is the user's to fix too, and gets the same one line. With IMAGE_CLASSIFICATION_DEBUG=1 in the
environment, both propagate with their traceback, for when the line is not enough to find the cause.
"""
from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable
from typing import NoReturn

EXIT_USER_ERROR = 2
# A run stopped by a signal after saving a checkpoint: "try again later" (sysexits' EX_TEMPFAIL), so a job script can
# tell a resumable stop from success (0) and from failure (1, 2, 3) and requeue.
EXIT_RESUMABLE = 75
EXIT_INTERRUPTED = 130
DEBUG_VARIABLE = "IMAGE_CLASSIFICATION_DEBUG"


class UserError(Exception):
    """A problem the user can fix; the message must say what is wrong and what to do."""


def fail(message: str, code: int = EXIT_USER_ERROR) -> NoReturn:
    print(f"error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(code)


def debugging() -> bool:
    return os.environ.get(DEBUG_VARIABLE, "").strip().lower() in TRUE_WORDS


def describe_os_error(exc: OSError) -> str:
    """`<path>: <reason>` as a shell tool says it (`a -> b: <reason>` for two paths); the text alone without one."""
    reason = (exc.strerror or str(exc)).strip().split("\n")[0] or type(exc).__name__
    paths = [os.fsdecode(p) if isinstance(p, (str, bytes, os.PathLike)) else str(p)
             for p in (exc.filename, exc.filename2) if p is not None]
    return f"{' -> '.join(paths)}: {reason}" if paths else reason


# Set by the multiproc.py launcher: the file where rank 0 leaves its exit status, which torchrun does not pass on.
EXIT_STATUS_FILE_ENV = "IMAGE_CLASSIFICATION_EXIT_STATUS_FILE"


# 128 + SIGPIPE: what a shell reports for a writer whose reader went away (`main.py --help | head -1`).
EXIT_BROKEN_PIPE = 141


def _run_and_flush(main: Callable[..., object], args, kwargs) -> object:
    """main's result, with stdout flushed before returning (or exiting, as argparse does after --help): a reader
    that went away shows up here, as a BrokenPipeError, rather than in the interpreter's last flush."""
    try:
        result = main(*args, **kwargs)
    except SystemExit:
        sys.stdout.flush()
        raise
    sys.stdout.flush()
    return result


def _stdout_reader_gone() -> bool:
    """Whether stdout is a pipe nobody reads any more (POLLERR on its write end); True where that cannot be asked,
    since stdout is then the likeliest writer that failed."""
    import select

    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(event & select.POLLERR for _, event in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # no poll() (Windows), no fileno (a test's capture)
        return True


def _silence_stdout() -> None:
    """The Python docs' recipe for SIGPIPE: point stdout at /dev/null, so that the interpreter's final flush of what
    is still buffered does not fail again and print 'Exception ignored ... BrokenPipeError'."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (AttributeError, OSError, ValueError):
        sys.stdout = None  # no real file descriptor: drop the stream, so nothing is flushed at exit


def run_cli(main: Callable[..., object], *args, **kwargs) -> None:
    code: object = 1
    try:
        try:
            result = _run_and_flush(main, args, kwargs)
        except BrokenPipeError:
            # The reader of stdout went away (`... | head`): what it wanted is written; stop quietly. A broken pipe
            # elsewhere (a socket, a child's stdin) is a real failure and keeps its traceback.
            if not _stdout_reader_gone():
                raise
            _silence_stdout()
            raise SystemExit(EXIT_BROKEN_PIPE) from None
        except UserError as exc:
            if debugging():
                raise
            fail(str(exc), getattr(exc, "exit_code", EXIT_USER_ERROR))  # e.g. 3: training diverged
        except OSError as exc:
            if debugging():
                raise
            fail(describe_os_error(exc))
        except KeyboardInterrupt:
            fail("interrupted", EXIT_INTERRUPTED)
        code = result if isinstance(result, int) else 0
        if code != 0:
            raise SystemExit(code)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        raise
    finally:
        _leave_exit_status(code)


def _leave_exit_status(code: object) -> None:
    path = os.environ.get(EXIT_STATUS_FILE_ENV)
    if path and os.environ.get("RANK", "0") == "0" and isinstance(code, int):
        try:
            with open(path, "w") as f:
                f.write(str(code))
        except OSError:
            pass  # the launcher then reports torchrun's own outcome


import argparse  # noqa: E402

# The words of timm's str2bool (upstream GPUNet's --enable-distill/--test-teacher: yes/true/t/y/1, no/false/f/n/0),
# plus on/off.
TRUE_WORDS = ("1", "true", "yes", "y", "t", "on")
FALSE_WORDS = ("0", "false", "no", "n", "f", "off")


def str2bool(value: str) -> bool:
    """Real booleans for flags upstream typed as `type=bool` (where `--trt False` meant True) or with timm's
    str2bool (`--test-teacher False`)."""
    text = str(value).strip().lower()
    if text in TRUE_WORDS:
        return True
    if text in FALSE_WORDS:
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


class ArgumentParser(argparse.ArgumentParser):
    """argparse with the project's error convention: one line and exit 2 (not the whole usage block).

    `bool_flags` may be given bare (`--trt`, meaning true) or with a value (`--trt False`, `--trt=no`); a bare one
    never swallows the next argument, so `main.py --trt /imagenet` keeps /imagenet as the data path. A word after a
    bare one that nothing else takes (`--test-teacher maybe`) is reported as that flag's bad value.
    """

    def __init__(self, *args, bool_flags: tuple[str, ...] = (), **kwargs):
        super().__init__(*args, **kwargs)
        self.bool_flags = set(bool_flags)
        self._after_bare_bool: dict[str, str] = {}  # token -> the bare bool flag it followed (last parse)

    def add_bool_flag(self, *names, group=None, **kwargs):
        self.bool_flags.update(n for n in names if n.startswith("--"))
        return (group or self).add_argument(*names, type=str2bool, **kwargs)

    def _normalise_bools(self, args):
        out, i = [], 0
        self._after_bare_bool = {}
        while i < len(args):
            token = args[i]
            if token in self.bool_flags:
                nxt = args[i + 1] if i + 1 < len(args) else None
                if nxt is not None and nxt.strip().lower() in TRUE_WORDS + FALSE_WORDS:
                    out.append(f"{token}={nxt}")
                    i += 2
                    continue
                out.append(f"{token}=true")
                if nxt is not None and not nxt.startswith("-"):
                    self._after_bare_bool.setdefault(nxt, token)
            else:
                out.append(token)
            i += 1
        return out

    def parse_known_args(self, args=None, namespace=None):
        import sys

        args = list(sys.argv[1:] if args is None else args)
        return super().parse_known_args(self._normalise_bools(args), namespace)

    def parse_args(self, args=None, namespace=None):
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            flag = self._after_bare_bool.get(extras[0])
            if flag is not None:  # `--test-teacher maybe`: the word was meant as the flag's value
                self.error(f"argument {flag}: expected true or false (or nothing, for true), got {extras[0]!r}")
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed

    def error(self, message):
        fail(f"{message} (see {self.prog} --help)")


class DefaultsHelpFormatter(argparse.RawDescriptionHelpFormatter):
    """--help with the description as written and each option's default after its help text, as argparse's
    ArgumentDefaultsHelpFormatter does, except where the text already says the default, where the default is None
    or '' (the text says what happens then) and for on/off switches."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text or action.nargs == 0 or action.default in (None, "", argparse.SUPPRESS):
            return text
        return f"{text} (default: %(default)s)"


def _whole_number(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {value!r}") from None


def positive_int(value: str) -> int:
    """argparse type: a whole number >= 1."""
    n = _whole_number(value)
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return n


def non_negative_int(value: str) -> int:
    """argparse type: a whole number >= 0."""
    n = _whole_number(value)
    if n < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {value}")
    return n


def positive_float(value: str) -> float:
    """argparse type: a finite number > 0."""
    try:
        x = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {value!r}") from None
    if not (math.isfinite(x) and x > 0):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {value}")
    return x
