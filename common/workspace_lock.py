"""One live run per workspace: two runs in one folder would interleave their checkpoints and tear each other's report.

The lock is an `flock` on `<workspace>/.run.lock`, held for as long as the run's process lives. A run that ends
removes the file; the kernel drops the lock when the process ends however it ends (SIGKILL and a crashed node's
reboot included), so a file left behind by a dead run is stale by construction and the next run simply takes it.
The file names its holder (PID, host, start time) so a refused run can say who holds the folder. flock works across
NFSv4 clients; on a filesystem without locks the holder record alone decides (a live PID on this host holds it).
"""
from __future__ import annotations

import errno
import json
import os
import socket
import time
from pathlib import Path

from common.cli_errors import UserError

LOCK_NAME = ".run.lock"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class WorkspaceLock:
    def __init__(self, workspace: str | os.PathLike):
        self.workspace = Path(workspace)
        self.path = self.workspace / LOCK_NAME
        self._fd: int | None = None

    def __enter__(self) -> WorkspaceLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def holder(self) -> dict:
        try:
            return json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            return {}

    def _refuse(self, holder: dict) -> None:
        who = ", ".join(f"{k} {holder[k]}" for k in ("pid", "host", "started") if k in holder) or "unknown holder"
        raise UserError(f"{self.workspace} is in use by another run ({who}): wait for it to end or stop it, or "
                        f"choose another workspace")

    def acquire(self) -> None:
        import fcntl

        self.workspace.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                self._refuse(self.holder())
            except OSError as exc:
                if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                    os.close(fd)
                    raise
                holder = self.holder()  # no locks on this filesystem: trust a live holder on this host
                if holder.get("host") == socket.gethostname() and holder.get("pid") not in (None, os.getpid()) \
                        and _pid_alive(int(holder["pid"])):
                    os.close(fd)
                    self._refuse(holder)
            # The holder before us unlinks the file as it lets go: a lock on a file that is no longer the one at
            # this path locks nothing, so take the new one.
            try:
                if os.stat(self.path).st_ino == os.fstat(fd).st_ino:
                    break
            except FileNotFoundError:
                pass
            os.close(fd)
        record = {"pid": os.getpid(), "host": socket.gethostname(),
                  "started": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode(), 0)
        self._fd = fd

    def release(self) -> None:
        """Removes the file, then unlocks: the workspace keeps only the run's own files."""
        if self._fd is not None:
            self.path.unlink(missing_ok=True)
            os.close(self._fd)  # closing drops the flock
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None
