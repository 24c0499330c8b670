"""Hostile programs the sandbox must survive (tests/test_sandbox.py, scripts/sandbox_report.py).

Each is a candidate "solution" followed by a test that would pass if the hostile part were
ignored, so a case that ends as anything but a failure is a sandbox bug. Placeholders:
`{harness_pid}`, `{port}` (a listening TCP port on 127.0.0.1), `{outside}` (a file outside the
sandbox that must survive), `{escape}` (a path outside the sandbox that must not appear).
"""

from __future__ import annotations

from dataclasses import dataclass

_PASSING_TEST = "\ndef add(a, b):\n    return a + b\n\nassert add(2, 3) == 5\n"


@dataclass(frozen=True)
class HostileProgram:
    name: str
    what: str  #: what it tries
    source: str  #: program text with placeholders

    def render(self, **values: object) -> str:
        return self.source.format(**values)


SPAWN_50 = HostileProgram(
    "spawn 50 children",
    "fork 50 short-lived children (checks that the process limit holds before any fork bomb)",
    "import os, time\n"
    "children = []\n"
    "for _ in range(50):\n"
    "    pid = os.fork()\n"
    "    if pid == 0:\n"
    "        time.sleep(0.5)\n"
    "        os._exit(0)\n"
    "    children.append(pid)\n"
    "for pid in children:\n"
    "    os.waitpid(pid, 0)\n" + _PASSING_TEST,
)

CASES: tuple[HostileProgram, ...] = (
    HostileProgram("infinite loop", "spin the CPU forever", "while True:\n    pass\n" + _PASSING_TEST),
    HostileProgram("sleep forever", "block without using CPU", "import time\ntime.sleep(10**6)\n" + _PASSING_TEST),
    HostileProgram(
        "fork bomb",
        "fork without end, ignoring fork errors",
        "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n" + _PASSING_TEST,
    ),
    HostileProgram("allocate 64 GB", "allocate 64 GiB at once", "block = bytearray(64 * 1024**3)\n" + _PASSING_TEST),
    HostileProgram(
        "write a 10 GB file",
        "write 10 GiB to its working directory, then to a path outside it",
        "chunk = b'x' * (1 << 20)\n"
        "try:\n"
        "    with open('big.bin', 'wb') as fh:\n"
        "        for _ in range(10 * 1024):\n"
        "            fh.write(chunk)\n"
        "finally:\n"
        "    with open({escape!r}, 'wb') as fh:\n"
        "        for _ in range(10 * 1024):\n"
        "            fh.write(chunk)\n" + _PASSING_TEST,
    ),
    HostileProgram(
        "delete a file outside",
        "delete, then overwrite, a file outside its directory",
        "import os\n"
        "try:\n"
        "    os.remove({outside!r})\n"
        "finally:\n"
        "    open({outside!r}, 'w').write('overwritten')\n" + _PASSING_TEST,
    ),
    HostileProgram(
        "socket to 127.0.0.1",
        "open a TCP connection to a server listening on 127.0.0.1",
        "import socket\n"
        "connection = socket.create_connection(('127.0.0.1', {port}), timeout=1)\n"
        "connection.sendall(b'escaped')\n" + _PASSING_TEST,
    ),
    HostileProgram(
        "kill the parent",
        "SIGKILL the harness (by pid), then its own parent process",
        "import os, signal\n"
        "try:\n"
        "    os.kill({harness_pid}, signal.SIGKILL)\n"
        "except OSError:\n"
        "    pass\n"
        "os.kill(os.getppid(), signal.SIGKILL)\n" + _PASSING_TEST,
    ),
    HostileProgram(
        "sys.exit(0) before the asserts",
        "leave with status 0 before its test runs",
        "import sys\n\ndef add(a, b):\n    return a - b\n\nsys.exit(0)\nassert add(2, 3) == 5\n",
    ),
    HostileProgram(
        "os._exit(0) before the asserts",
        "leave with status 0, skipping the interpreter's exit handling",
        "import os\n\ndef add(a, b):\n    return a - b\n\nos._exit(0)\nassert add(2, 3) == 5\n",
    ),
)


def case(name: str) -> HostileProgram:
    for program in (SPAWN_50, *CASES):
        if program.name == name:
            return program
    raise KeyError(f"no hostile program named {name!r}: choose one of {', '.join(p.name for p in CASES)}")


__all__ = ["CASES", "SPAWN_50", "HostileProgram", "case"]
