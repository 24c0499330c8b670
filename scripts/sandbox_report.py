"""Run every hostile program of boe_eval.sandbox.adversarial in the sandbox and print Markdown
tables of cases and outcomes (for the closing note of the sandbox work):

1. resource and escape attacks, each a wrong-or-hostile program that must end as a failure within
   its limit with nothing outside changed;
2. endings (os._exit(125), fake status lines, garbage on or closed pipes, a crash): each a verdict
   for that program alone, next to an ordinary program that must still pass;
3. host state (SysV IPC, /dev/shm, kernel keyring, host unix sockets): counted before and after;
4. cheats through the public scoring path (code_tasks, real CODE_LIMITS): passes out of 164
   HumanEval and 100 MBPP tasks (`--cheat-tasks N` scores only the first N of each).

    python scripts/sandbox_report.py [--timeout 2] [--cpu 1] [--no-namespaces] [--cheat-tasks N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import threading
import time
import uuid
from pathlib import Path

from boe_eval.harness.task_data import read_records
from boe_eval.sandbox import Sandbox, SandboxLimits, TestedProgram, code_tasks
from boe_eval.sandbox.adversarial import CASES, CHEATS, ENDING_CASES, SPAWN_50, case
from boe_eval.sandbox.executor import _user_task_count

TASKS = Path(__file__).resolve().parents[1] / "tasks"
OUTSIDE_ROOT = Path("/var/lib")  # outside the programs' minimal root; seen by the fallback without namespaces


def _serve(server: socket.socket, accepted: list[bytes], stop: threading.Event) -> None:
    server.settimeout(0.2)
    while not stop.is_set():
        try:
            conn, _ = server.accept()
        except OSError:
            continue
        with conn:
            try:
                accepted.append(conn.recv(100) or b"<connected>")
            except OSError:
                accepted.append(b"<connected>")


def _host_state() -> dict:
    state = {}
    for kind in ("shm", "msg", "sem"):
        with open(f"/proc/sysvipc/{kind}") as fh:
            state[f"SysV {kind}"] = len(fh.read().splitlines()) - 1
    with open("/proc/keys") as fh:
        state["keys"] = len(fh.read().splitlines())
    state["/dev/shm files"] = len(os.listdir("/dev/shm"))
    return state


def attacks(sandbox: Sandbox, limits: SandboxLimits) -> None:
    outside = OUTSIDE_ROOT / f"boe-sandbox-report-{uuid.uuid4().hex}"
    outside.mkdir()
    os.chmod(outside, 0o777)  # world-writable: only the sandbox keeps the program out
    sentinel = outside / "sentinel.txt"
    escape = outside / "escaped.bin"
    server = socket.create_server(("127.0.0.1", 0))
    accepted: list[bytes] = []
    stop = threading.Event()
    threading.Thread(target=_serve, args=(server, accepted, stop), daemon=True).start()
    data = [str(TASKS / "humaneval" / "data" / "HumanEval.jsonl.gz"), str(TASKS / "mbpp" / "data" / "mbpp.jsonl")]
    values = {"harness_pid": os.getpid(), "port": server.getsockname()[1], "outside": str(sentinel), "escape": str(escape),
              "data_files": data}
    print("| case | tries to | outcome | detail | wall (s) | within limit | outside unchanged | leftover processes |")
    print("|---|---|---|---|---|---|---|---|")
    try:
        for program in (SPAWN_50, *CASES):
            if not sandbox.isolation.namespaces and not sandbox.isolation.drop_privileges and program.name == "kill the parent":
                print(f"| {program.name} | {program.what} | skipped | could reach the harness without a uid of its own | | | | |")
                continue
            sentinel.write_text("keep me")
            os.chmod(sentinel, 0o666)
            escape.unlink(missing_ok=True)
            accepted.clear()
            free_before = shutil.disk_usage("/").free
            result = sandbox.run(program.render(**values))
            time.sleep(0.3 if program.name.startswith("socket") else 0)
            unchanged = (
                sentinel.exists() and sentinel.read_text() == "keep me" and not escape.exists() and not accepted
                and free_before - shutil.disk_usage("/").free < 1 << 30
            )
            leftovers = sum(_user_task_count(uid) for uid in sandbox.uids)
            within = result.wall_s < limits.timeout_s + 1.5
            print(f"| {program.name} | {program.what} | {result.status} | {result.detail} | {result.wall_s:.2f} | "
                  f"{'yes' if within else 'NO'} | {'yes' if unchanged else 'NO'} | {leftovers} |")
    finally:
        stop.set()
        server.close()
        shutil.rmtree(outside, ignore_errors=True)


def endings(sandbox: Sandbox) -> None:
    print("| case | tries to | outcome | detail | ordinary programs run beside it |")
    print("|---|---|---|---|---|")
    good = TestedProgram("def add(a, b):\n    return a + b\n", "assert add(2, 3) == 5\n")
    for program in ENDING_CASES:
        results = sandbox.run_many([good, TestedProgram(program.render(), "assert add(2, 3) == 5\n"), good])
        hostile = results[1]
        print(f"| {program.name} | {program.what} | {hostile.status} | {hostile.detail} | "
              f"{' '.join(r.status for r in results[0::2])} |")


def host_state(sandbox: Sandbox) -> None:
    print("| case | tries to | outcome | detail | host before | host after |")
    print("|---|---|---|---|---|---|")
    key = f"boe-sandbox-report-{uuid.uuid4().hex[:12]}"
    roots = [base / f"boe-sandbox-report-{uuid.uuid4().hex[:12]}" for base in (Path("/run"), OUTSIDE_ROOT, Path("/etc"))]
    servers, addresses, accepted, stop = [], [], [], threading.Event()
    for root in roots:
        root.mkdir(mode=0o777)
        os.chmod(root, 0o777)
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(str(root / "s.sock"))
        os.chmod(root / "s.sock", 0o777)
        servers.append(server)
        addresses.append(str(root / "s.sock"))
    abstract = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    abstract.bind(f"\0boe-sandbox-report-{uuid.uuid4().hex[:12]}")
    servers.append(abstract)
    addresses.append(abstract.getsockname().decode("latin-1"))
    for server in servers:
        server.listen()
        threading.Thread(target=_serve, args=(server, accepted, stop), daemon=True).start()
    limits = SandboxLimits(timeout_s=10, cpu_s=5)
    try:
        for name in ("SysV shared memory, queue, semaphores", "POSIX shared memory in /dev/shm", "kernel keyring",
                     "read a key left by another program", "unix sockets of the host"):
            before = _host_state()
            accepted.clear()
            result = sandbox.run(case(name).render(key=key, unix_sockets=addresses), limits)
            time.sleep(0.3)
            after = _host_state()
            if name.startswith("unix"):
                shown_before, shown_after = "", f"{len(accepted)} connections accepted"
            else:
                shown_before = ", ".join(f"{k} {v}" for k, v in before.items())
                shown_after = "unchanged" if after == before else ", ".join(f"{k} {v}" for k, v in after.items())
            print(f"| {name} | {case(name).what} | {result.status} | {result.detail} | {shown_before} | {shown_after} |")
    finally:
        stop.set()
        for server in servers:
            server.close()
        for root in roots:
            shutil.rmtree(root, ignore_errors=True)


def cheats(count: int) -> None:
    humaneval = read_records(TASKS / "humaneval" / "data" / "HumanEval.jsonl.gz")[:count]
    mbpp = [r for r in read_records(TASKS / "mbpp" / "data" / "mbpp.jsonl") if 11 <= r["task_id"] <= 510][: min(count, 100)]
    print("| cheat | tries to | HumanEval passes | MBPP passes | wall (s) |")
    print("|---|---|---|---|---|")
    for cheat in CHEATS:
        start = time.monotonic()
        scores = []
        for programs in (
            [code_tasks.humaneval_program(d, cheat.humaneval(d)) for d in humaneval],
            [code_tasks.mbpp_program(d, cheat.mbpp(d, code_tasks.mbpp_functions(d))) for d in mbpp],
        ):
            code_tasks.execute(programs)  # the run-ahead filter, then process_results' pass_at_1
            scores.append(f"{int(sum(code_tasks.pass_at_1(p)['pass_at_1'] for p in programs))}/{len(programs)}")
        print(f"| {cheat.name} | {cheat.what} | {scores[0]} | {scores[1]} | {time.monotonic() - start:.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=2.0, help="wall-clock limit per program (s)")
    parser.add_argument("--cpu", type=int, default=1, help="CPU-time limit per program (s)")
    parser.add_argument("--no-namespaces", action="store_true", help="use the fallback without namespaces")
    parser.add_argument("--cheat-tasks", type=int, default=164, help="score the cheats on the first N tasks of each set")
    args = parser.parse_args()

    limits = SandboxLimits(timeout_s=args.timeout, cpu_s=args.cpu)
    sandbox = Sandbox(limits, workers=2, use_namespaces=not args.no_namespaces)
    print(f"isolation: {sandbox.isolation.describe()}")
    print(f"interpreter: {sandbox.python}")
    print(f"limits: wall {limits.timeout_s:g} s, CPU {limits.cpu_seconds} s, address space "
          f"{limits.memory_bytes >> 20} MiB, file size {limits.file_size_bytes >> 20} MiB, tmpfs "
          f"{limits.disk_bytes >> 20} MiB, {limits.open_files} open files, {limits.processes} processes\n")
    print("### Resource and escape attacks\n")
    attacks(Sandbox(limits, workers=1, use_namespaces=not args.no_namespaces), limits)
    print("\n### Endings (each beside two ordinary programs)\n")
    endings(sandbox)
    print("\n### State left on the host\n")
    host_state(sandbox)
    print(f"\n### Cheats through code_tasks (CODE_LIMITS: wall {code_tasks.CODE_LIMITS.timeout_s:g} s, "
          f"CPU {code_tasks.CODE_LIMITS.cpu_seconds} s)\n")
    cheats(args.cheat_tasks)
    check = sandbox.run("assert sum(range(5)) == 10\n")
    print(f"\nafter all cases, an ordinary program: {check.status} (the harness keeps running)")


if __name__ == "__main__":
    main()
