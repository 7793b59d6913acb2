"""Write a file so that readers see the old one or the whole new one, never a part: write beside it, rename."""
from __future__ import annotations

import os
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
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
