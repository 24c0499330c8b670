"""What isolation this machine allows, probed once per process at run time.

- Namespaces: `unshare --net --ipc --uts --mount --pid --fork --kill-child --mount-proc` (util-linux). As root
  this needs no user namespace; as another user it needs `--user --map-root-user` (unprivileged
  user namespaces). Without it the program has the network, the writable file system of its uid
  and no pid namespace, and the report says so. The IPC namespace takes SysV objects and POSIX
  message queues with it when the program ends; the network namespace does the same for abstract
  unix sockets; the programs' root is a minimal file system (bootstrap.enter_minimal_root), so
  path-bound unix sockets of the host do not exist for them (those under the directories it keeps
  are covered with /dev/null: `hidden_sockets`).
- Privileges: as root each program and its checker run as two unprivileged uids of their own
  (so RLIMIT_NPROC, which root ignores, applies per program, and the program can neither signal
  other processes nor read the checker's files or descriptors). The uids are claimed with an
  exclusive `flock` on a lock file per uid in a directory shared by every harness process on the
  host (`UID_LOCK_DIR`), so concurrent harness processes never share one, and a crashed harness
  releases its claims with its death. As another user both keep that user's uid, and the program
  could reach its checker: the verdict is then only as safe as the program is honest.
"""

from __future__ import annotations

import fcntl
import functools
import logging
import os
import pwd
import tempfile
import threading
from pathlib import Path
import shutil
import subprocess
import sys
from dataclasses import dataclass

log = logging.getLogger(__name__)

NAMESPACE_FLAGS = (
    "--net", "--ipc", "--uts", "--mount", "--propagation", "private", "--pid", "--fork", "--kill-child", "--mount-proc",
)
SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin"
#: first uid tried for sandboxed programs when running as root (override: BOE_SANDBOX_UID_BASE)
DEFAULT_UID_BASE = 61000


@dataclass(frozen=True)
class Isolation:
    """The isolation a sandbox run gets on this machine."""

    unshare_argv: tuple[str, ...]  #: prefix that enters the namespaces; empty when unavailable
    drop_privileges: bool  #: programs run as their own unprivileged uid (needs root)
    namespace_problem: str = ""  #: why namespaces are unavailable, when they are

    @property
    def namespaces(self) -> bool:
        return bool(self.unshare_argv)

    def describe(self) -> str:
        """One line per guarantee, for logs and the closing report."""
        if self.namespaces:
            lines = [
                "network: none (own network namespace, loopback down)",
                "file system: a minimal read-only root (/usr, /etc, /lib*, the interpreter, /dev/null, /proc), "
                "a fresh size-limited tmpfs /tmp and /dev/shm",
                "processes: own pid namespace; leftovers die with it",
            ]
        else:
            lines = [
                f"network: NOT isolated ({self.namespace_problem})",
                "file system: a fresh private temporary directory; the rest is writable wherever the uid may write",
                "processes: own session; leftovers are killed by uid" if self.drop_privileges
                else "processes: own session; leftovers that leave the process group may survive",
            ]
        if self.namespaces:
            lines.insert(1, "ipc, keyring, host unix sockets: own IPC namespace, keyring calls denied (seccomp), "
                            "no path to a host socket")
        else:
            lines.insert(1, "ipc, unix sockets: NOT isolated; keyring calls denied (seccomp)")
        lines.append(
            "privileges: program and checker each run as an unprivileged uid claimed for this process alone, "
            "no capabilities, no_new_privs; the verdict comes from the checker's process"
            if self.drop_privileges
            else f"privileges: runs as the harness's own uid {os.geteuid()} (not root: cannot switch uid), "
                 "no_new_privs; the program could reach its checker"
        )
        return "; ".join(lines)


def _try(argv: list[str]) -> str:
    """'' when `argv` runs and exits 0, else the reason."""
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    if proc.returncode != 0:
        return (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
    return ""


@functools.lru_cache(maxsize=None)
def probe(use_namespaces: bool = True) -> Isolation:
    """Detect, once, whether namespaces and a uid switch are available."""
    drop = os.geteuid() == 0
    if not use_namespaces:
        return Isolation((), drop, "namespaces switched off")
    unshare = shutil.which("unshare")
    if unshare is None:
        isolation = Isolation((), drop, "the `unshare` command (util-linux) is not installed")
    else:
        argv = [unshare, *(() if drop else ("--user", "--map-root-user")), *NAMESPACE_FLAGS, "--"]
        problem = _try([*argv, "true"])
        isolation = Isolation(tuple(argv), drop, "") if not problem else Isolation((), drop, f"unshare failed: {problem}")
    if not isolation.namespaces:
        log.warning("sandbox without network isolation: %s", isolation.namespace_problem)
    return isolation


def _readable_by_others(path: str) -> bool:
    """Every ancestor of `path` searchable by "other" and `path` itself readable by "other"."""
    try:
        current = os.path.realpath(path)
        if os.stat(current).st_mode & 0o005 != 0o005:
            return False
        while current != "/":
            current = os.path.dirname(current)
            if not os.stat(current).st_mode & 0o001:
                return False
    except OSError:
        return False
    return True


@functools.lru_cache(maxsize=None)
def interpreter_for(drop_privileges: bool) -> str:
    """A Python 3 interpreter whose standard library an unprivileged uid can import: this
    process's own when it qualifies (or when privileges are not dropped), else the system's
    `python3` (e.g. when this one lives under /root, as pyenv's does)."""
    own = getattr(sys, "_base_executable", None) or sys.executable
    if not drop_privileges:
        return sys.executable
    candidates = [own, sys.executable, *(
        shutil.which(name, path=SYSTEM_PATH) or "" for name in (f"python3.{sys.version_info[1]}", "python3")
    )]
    for candidate in dict.fromkeys(c for c in candidates if c):
        try:
            stdlib = subprocess.run(
                [candidate, "-I", "-c", "import sysconfig; print(sysconfig.get_paths()['stdlib'])"],
                capture_output=True, text=True, timeout=30, check=True,
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            continue
        if _readable_by_others(candidate) and _readable_by_others(stdlib):
            return candidate
    raise RuntimeError(
        "no Python interpreter whose standard library an unprivileged uid can read: tried "
        + ", ".join(dict.fromkeys(c for c in candidates if c))
    )


def free_uids(count: int, base: int | None = None) -> list[int]:
    """`count` uids from `base` upwards that no account on this machine uses."""
    if base is None:
        base = int(os.environ.get("BOE_SANDBOX_UID_BASE", DEFAULT_UID_BASE))
    uids, candidate = [], base
    while len(uids) < count:
        try:
            pwd.getpwuid(candidate)
        except KeyError:
            uids.append(candidate)
        candidate += 1
    return uids


def uid_lock_dir() -> Path:
    """Where uid claims live: $BOE_SANDBOX_LOCK_DIR, else /run/lock/boe-sandbox-uids (shared by every
    process on the host), else the temporary directory."""
    configured = os.environ.get("BOE_SANDBOX_LOCK_DIR")
    if configured:
        return Path(configured)
    run_lock = Path("/run/lock")
    if run_lock.is_dir() and os.access(run_lock, os.W_OK):
        return run_lock / "boe-sandbox-uids"
    return Path(tempfile.gettempdir()) / "boe-sandbox-uids"


def _uid_busy(uid: int) -> bool:
    """A process of `uid` is alive (e.g. left by a harness that was killed)."""
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == uid:
                    return True
            except OSError:
                continue
    return False


class UidClaims:
    """uids held exclusively by this object: an exclusive, non-blocking `flock` on `<dir>/<uid>.lock`
    per uid, kept until `release()` or the process's death (the kernel drops the lock then). flock
    conflicts between two open files of one process as well, so two sandboxes of one process never
    share a uid either."""

    _lock = threading.Lock()

    def __init__(self, count: int, base: int | None = None, directory: Path | None = None):
        self.directory = directory or uid_lock_dir()
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._files: dict[int, int] = {}
        candidate = int(os.environ.get("BOE_SANDBOX_UID_BASE", DEFAULT_UID_BASE)) if base is None else base
        with self._lock:
            while len(self._files) < count:
                uid = free_uids(1, candidate)[0]
                candidate = uid + 1
                fd = os.open(self.directory / f"{uid}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)
                    continue
                if _uid_busy(uid):
                    os.close(fd)
                    continue
                self._files[uid] = fd

    @property
    def uids(self) -> list[int]:
        return list(self._files)

    def release(self) -> None:
        for fd in self._files.values():
            os.close(fd)
        self._files.clear()

    def __del__(self):
        try:
            self.release()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass


def hidden_sockets(kept: tuple[str, ...]) -> list[str]:
    """Every path-bound unix socket of the host (/proc/net/unix, read now) under a directory the
    programs' root file system keeps (`kept`): the bootstrap mounts /dev/null over each."""
    roots = [os.path.realpath(k).rstrip("/") + "/" for k in kept if os.path.isdir(k)]
    try:
        with open("/proc/net/unix") as fh:
            lines = fh.read().splitlines()[1:]
    except OSError:
        return []
    found = []
    for line in lines:
        fields = line.split(None, 7)
        path = fields[7] if len(fields) == 8 else ""
        if path.startswith("/") and os.path.lexists(path):
            real = os.path.realpath(path)
            if any(real.startswith(r) for r in roots) and real not in found:
                found.append(real)
    return found


__all__ = ["DEFAULT_UID_BASE", "Isolation", "UidClaims", "free_uids", "hidden_sockets", "interpreter_for", "probe", "uid_lock_dir"]
