"""What isolation this machine allows, probed once per process at run time.

- Namespaces: `unshare --net --mount --pid --fork --kill-child --mount-proc` (util-linux). As root
  this needs no user namespace; as another user it needs `--user --map-root-user` (unprivileged
  user namespaces). Without it the program has the network, the writable file system of its uid
  and no pid namespace, and the report says so.
- Privileges: as root each concurrent program runs as its own unprivileged uid (so RLIMIT_NPROC,
  which root ignores, applies per program, and the program can neither signal other processes nor
  delete files it does not own). As another user the program keeps that user's uid.
"""

from __future__ import annotations

import functools
import logging
import os
import pwd
import shutil
import subprocess
import sys
from dataclasses import dataclass

log = logging.getLogger(__name__)

NAMESPACE_FLAGS = ("--net", "--mount", "--propagation", "private", "--pid", "--fork", "--kill-child", "--mount-proc")
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
                "file system: read-only, except a fresh size-limited tmpfs working directory",
                "processes: own pid namespace; leftovers die with it",
            ]
        else:
            lines = [
                f"network: NOT isolated ({self.namespace_problem})",
                "file system: a fresh private temporary directory; the rest is writable wherever the uid may write",
                "processes: own session; leftovers are killed by uid" if self.drop_privileges
                else "processes: own session; leftovers that leave the process group may survive",
            ]
        lines.append(
            "privileges: each program runs as its own unprivileged uid, no capabilities, no_new_privs"
            if self.drop_privileges
            else f"privileges: runs as the harness's own uid {os.geteuid()} (not root: cannot switch uid), no_new_privs"
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


__all__ = ["DEFAULT_UID_BASE", "Isolation", "free_uids", "interpreter_for", "probe"]
