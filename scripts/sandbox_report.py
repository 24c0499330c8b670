"""Run every hostile program of boe_eval.sandbox.adversarial in the sandbox and print a Markdown
table of cases and outcomes (for the closing note of the sandbox work).

    python scripts/sandbox_report.py [--timeout 2] [--cpu 1] [--no-namespaces]
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

from boe_eval.sandbox import Sandbox, SandboxLimits
from boe_eval.sandbox.adversarial import CASES, SPAWN_50
from boe_eval.sandbox.executor import _user_task_count


def _listener() -> tuple[socket.socket, list[bytes], threading.Event]:
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    accepted: list[bytes] = []
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            with conn:
                accepted.append(conn.recv(100) or b"<connected>")

    threading.Thread(target=serve, daemon=True).start()
    return server, accepted, stop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=2.0, help="wall-clock limit per program (s)")
    parser.add_argument("--cpu", type=int, default=1, help="CPU-time limit per program (s)")
    parser.add_argument("--no-namespaces", action="store_true", help="use the fallback without namespaces")
    args = parser.parse_args()

    limits = SandboxLimits(timeout_s=args.timeout, cpu_s=args.cpu)
    sandbox = Sandbox(limits, workers=1, use_namespaces=not args.no_namespaces)
    outside = Path("/var/lib") / f"boe-sandbox-report-{uuid.uuid4().hex}"  # not hidden, unlike /tmp and /var/tmp
    outside.mkdir()
    os.chmod(outside, 0o777)  # world-writable: only the sandbox keeps the program out
    sentinel = outside / "sentinel.txt"
    escape = outside / "escaped.bin"
    server, accepted, stop = _listener()
    values = {"harness_pid": os.getpid(), "port": server.getsockname()[1], "outside": str(sentinel), "escape": str(escape)}

    print(f"isolation: {sandbox.isolation.describe()}")
    print(f"interpreter: {sandbox.python}")
    print(f"limits: wall {limits.timeout_s:g} s, CPU {limits.cpu_seconds} s, address space "
          f"{limits.memory_bytes >> 20} MiB, file size {limits.file_size_bytes >> 20} MiB, tmpfs "
          f"{limits.disk_bytes >> 20} MiB, {limits.open_files} open files, {limits.processes} processes\n")
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
            leftovers = sum(_user_task_count(uid) for uid in list(sandbox._uids.queue) if uid is not None)
            within = result.wall_s < limits.timeout_s + 1.5
            print(f"| {program.name} | {program.what} | {result.status} | {result.detail} | {result.wall_s:.2f} | "
                  f"{'yes' if within else 'NO'} | {'yes' if unchanged else 'NO'} | {leftovers} |")
        check = sandbox.run("assert sum(range(5)) == 10\n")
        print(f"\nafter all cases, an ordinary program: {check.status} (the harness keeps running)")
    finally:
        stop.set()
        server.close()
        shutil.rmtree(outside, ignore_errors=True)


if __name__ == "__main__":
    main()
