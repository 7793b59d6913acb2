"""run_cli's contract: a UserError or an OSError is one `error:` line and exit 2, unless IMAGE_CLASSIFICATION_DEBUG
asks for the traceback."""
import errno

import pytest

from common.cli_errors import UserError, describe_os_error, run_cli
from tests.conftest import assert_one_line_error, run_in_process


def raising(exc):
    def main(argv):
        raise exc
    return main


@pytest.mark.parametrize("exc, line", [
    (PermissionError(errno.EACCES, "Permission denied", "/data/train"), "/data/train: Permission denied"),
    (OSError(errno.EXDEV, "Invalid cross-device link", "/a/tmp", None, "/b/final"),
     "/a/tmp -> /b/final: Invalid cross-device link"),
    (OSError(errno.ENOSPC, "No space left on device"), "No space left on device"),
    (OSError("a message only"), "a message only"),
    (OSError(), "OSError"),
])
def test_os_error_is_path_and_reason(exc, line):
    assert describe_os_error(exc) == line


def test_os_error_is_one_line_and_exit_2(capsys):
    proc = run_in_process(capsys, raising(FileNotFoundError(errno.ENOENT, "No such file or directory", "/x/y")))
    assert_one_line_error(proc, "error: /x/y: No such file or directory")


@pytest.mark.parametrize("exc", [UserError("bad flag"), NotADirectoryError(errno.ENOTDIR, "Not a directory", "/f/d")])
def test_debug_variable_reraises(exc, monkeypatch):
    monkeypatch.setenv("IMAGE_CLASSIFICATION_DEBUG", "1")
    with pytest.raises(type(exc)):
        run_cli(raising(exc), [])


def test_debug_variable_off_keeps_one_line(monkeypatch, capsys):
    monkeypatch.setenv("IMAGE_CLASSIFICATION_DEBUG", "0")
    assert_one_line_error(run_in_process(capsys, raising(UserError("bad flag"))), "error: bad flag")
