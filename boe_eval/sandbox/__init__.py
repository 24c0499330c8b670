"""A sandbox for model-written code: each program in its own process with resource limits, no
network, its own IPC namespace, a read-only file system except its own tmpfs, and an unprivileged
uid; its tests run in a second process that the program cannot reach (see executor, runner)."""

from boe_eval.sandbox.executor import (
    EXITED,
    FAILED,
    KILLED,
    PASSED,
    TIMEOUT,
    ExecutionResult,
    Sandbox,
    SandboxError,
    TestedProgram,
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
    "TestedProgram",
    "default_sandbox",
    "probe",
    "run_programs",
]
