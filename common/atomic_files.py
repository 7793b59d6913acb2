"""Write a file so that readers see the old one or the whole new one, never a part: write beside it, rename."""
from __future__ import annotations

import io
import os
import re
import tempfile
from contextlib import contextmanager
from pathlib import Path

_UMASK = os.umask(0)
os.umask(_UMASK)
# mkstemp creates 0600 files; finished files get the permissions a plain open() would give them.
FILE_MODE = 0o666 & ~_UMASK


@contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb", durable: bool = False):
    """`with atomic_write(p) as f: ...` writes p when the block ends without error; `durable` fsyncs first
    (worth it for checkpoints, which a crash right after the rename must not lose)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        # A full disk or a quota fails a write(), which names no file: name the one that could not be written.
        if exc.filename is None or exc.filename == tmp:
            exc.filename = str(path)
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_save(obj, path: str | os.PathLike) -> Path:
    """torch.save that never leaves a truncated file behind, even if the run is killed mid-write.

    Serialised in memory first: torch.save writing into a file that hits a full disk fails with an opaque
    RuntimeError ("unexpected pos"), while a plain write fails with ENOSPC and the file's name."""
    # Imported here: the torch-free tools of common/ (report plots, the logger) import this module too.
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    with atomic_write(path, durable=True) as f:
        f.write(buffer.getbuffer())
    return Path(path)


TEMP_SUFFIX = ".tmp"
# mkstemp's names: "." + the target's name + "." + 8 random characters + TEMP_SUFFIX
_TEMPORARY = re.compile(r"^\..+\.[a-z0-9_]{8}" + re.escape(TEMP_SUFFIX) + "$")


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Deletes the temporaries of writes that a killed process never finished (a SIGKILL skips the cleanup above)
    and returns them. Only for a folder no live process writes to: the caller holds its workspace lock."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    stale = [p for p in folder.iterdir() if _TEMPORARY.match(p.name) and p.is_file()]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale
