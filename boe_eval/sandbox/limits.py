"""Resource limits of one sandboxed program."""

from __future__ import annotations

import math
from dataclasses import dataclass

from boe_eval.errors import ConfigError

MiB = 1 << 20


@dataclass(frozen=True)
class SandboxLimits:
    """What one program may use. `cpu_s` defaults to the wall-clock timeout (rounded up).

    `processes` is RLIMIT_NPROC of the program's own uid (every concurrent program gets its own
    uid, so the count is per program); it includes threads.
    """

    timeout_s: float = 10.0  #: wall clock; the whole process group is killed when it runs out
    cpu_s: int | None = None  #: RLIMIT_CPU (SIGXCPU at the limit, SIGKILL one second later)
    memory_bytes: int = 1024 * MiB  #: RLIMIT_AS (address space)
    file_size_bytes: int = 16 * MiB  #: RLIMIT_FSIZE (largest file it may write)
    disk_bytes: int = 64 * MiB  #: size of its tmpfs working directory (mount namespace only)
    open_files: int = 64  #: RLIMIT_NOFILE
    processes: int = 16  #: RLIMIT_NPROC
    output_bytes: int = 8192  #: stdout and stderr are each kept up to this many bytes

    def __post_init__(self) -> None:
        if not (isinstance(self.timeout_s, (int, float)) and self.timeout_s > 0 and math.isfinite(self.timeout_s)):
            raise ConfigError(f"sandbox timeout_s={self.timeout_s!r}: must be a positive number of seconds")
        if self.cpu_s is not None and not (isinstance(self.cpu_s, int) and self.cpu_s >= 1):
            raise ConfigError(f"sandbox cpu_s={self.cpu_s!r}: must be a whole number of seconds >= 1 (or None)")
        for name, minimum in (
            ("memory_bytes", 64 * MiB),
            ("file_size_bytes", 1),
            ("disk_bytes", MiB),
            ("open_files", 8),
            ("processes", 1),
            ("output_bytes", 0),
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
                raise ConfigError(f"sandbox {name}={value!r}: must be an integer >= {minimum}")

    @property
    def cpu_seconds(self) -> int:
        return self.cpu_s if self.cpu_s is not None else max(1, math.ceil(self.timeout_s))

    def rlimits(self) -> dict[str, int]:
        """The settings the child's bootstrap applies."""
        return {
            "cpu_s": self.cpu_seconds,
            "memory_bytes": self.memory_bytes,
            "file_size_bytes": self.file_size_bytes,
            "open_files": self.open_files,
            "processes": self.processes,
        }


__all__ = ["MiB", "SandboxLimits"]
