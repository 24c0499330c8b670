"""A sandbox for model-written code: each program in its own process with resource limits, no
network, a read-only file system except its own tmpfs, and an unprivileged uid (see executor)."""

from boe_eval.sandbox.executor import (
    EXITED,
    FAILED,
    KILLED,
    PASSED,
    TIMEOUT,
    ExecutionResult,
    Sandbox,
    SandboxError,
    default_sandbox,
    run_programs,
)
from boe_eval.sandbox.isolation import Isolation, probe
from boe_eval.sandbox.limits import SandboxLimits

__all__ = [
    "EXITED",
    "FAILED",
    "KILLED",
    "PASSED",
    "TIMEOUT",
    "ExecutionResult",
    "Isolation",
    "Sandbox",
    "SandboxError",
    "SandboxLimits",
    "default_sandbox",
    "probe",
    "run_programs",
]
