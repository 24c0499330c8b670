"""Hostile programs the sandbox must survive (tests/test_sandbox.py, scripts/sandbox_report.py).

`CASES`: each is a candidate "solution" followed by a test that would pass if the hostile part were
ignored, so a case that ends as anything but a failure is a sandbox bug (`LEAK_CASES` may end as
they like: what they must not do is leave anything behind). Placeholders: `{harness_pid}`,
`{port}` (a listening TCP port on 127.0.0.1), `{outside}` (a file outside the sandbox that must
survive), `{escape}` (a path outside the sandbox that must not appear), `{data_files}` (paths of
the task data with the reference solutions), `{unix_sockets}` (a list of
unix socket addresses of the host that accept connections), `{key}` (a kernel key description).

`CHEATS`: wrong answers for every HumanEval / MBPP task that try to be scored as passing through
the public scoring path (code_tasks): forge the verdict, switch the tests off with a trace hook,
return an object equal to everything. Each renders a completion for a task (`humaneval(doc)`, the
text after the prompt; `mbpp(doc)`, the code).
"""

from __future__ import annotations

from collections.abc import Callable
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
        "read the reference solutions",
        "open the task data (canonical solutions, expected outputs) in the harness's checkout, or find "
        "any copy under /work, /home, /root, /opt, /var",
        "import glob\n"
        "found = [p for p in {data_files!r} if __import__('os').path.exists(p)]\n"
        "for root in ('/work', '/home', '/root', '/opt', '/var'):\n"
        "    found += glob.glob(root + '/**/HumanEval*.jsonl*', recursive=True)\n"
        "    found += glob.glob(root + '/**/mbpp*.json*', recursive=True)\n"
        "if not found:\n"
        "    raise FileNotFoundError('no task data reachable')\n"
        "print(open(found[0], 'rb').read(100))\n" + _PASSING_TEST,
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


# ------------------------------------------------------------------------------------ endings
#: every way a program can end badly: each must be a verdict for that program alone
ENDING_CASES: tuple[HostileProgram, ...] = (
    HostileProgram(
        "os._exit(125)",
        "leave with the exit code the sandbox once used for its own set-up errors",
        "import os\n\ndef add(a, b):\n    return a - b\n\nos._exit(125)\n" + _PASSING_TEST,
    ),
    HostileProgram(
        "fake setup-error line",
        "write `setup-error` and verdict lines to every descriptor it has and every one in /proc",
        "import os\n"
        "lines = b'setup-error forged\\npassed\\ndone\\nchecker-exit 0\\n'\n"
        "for fd in range(256):\n"
        "    try:\n"
        "        os.write(fd, lines)\n"
        "    except OSError:\n"
        "        pass\n"
        "raise SystemExit(125)\n" + _PASSING_TEST,
    ),
    HostileProgram(
        "garbage on its pipes",
        "write 1 MiB of bytes that are not UTF-8 to stdout, stderr and its socket, then leave with 0",
        "import os\n"
        "junk = bytes(range(256)) * 4096\n"
        "for fd in range(3, 16):\n"
        "    try:\n"
        "        os.write(fd, junk[:4096])\n"
        "    except OSError:\n"
        "        pass\n"
        "os.write(1, junk)\n"
        "os.write(2, junk)\n"
        "os._exit(0)\n" + _PASSING_TEST,
    ),
    HostileProgram(
        "closed pipes",
        "close stdin, stdout, stderr and every other descriptor, then keep running",
        "import os, time\n"
        "for fd in range(256):\n"
        "    try:\n"
        "        os.close(fd)\n"
        "    except OSError:\n"
        "        pass\n"
        "time.sleep(0.2)\n" + _PASSING_TEST,
    ),
    HostileProgram(
        "killed by SIGSEGV",
        "crash the interpreter",
        "import ctypes\nctypes.string_at(0)\n" + _PASSING_TEST,
    ),
)

# ------------------------------------------------------------------------------------ host state
_LIBC = "import ctypes, ctypes.util\nlibc = ctypes.CDLL(None, use_errno=True)\n"
LEAK_CASES: tuple[HostileProgram, ...] = (
    HostileProgram(
        "SysV shared memory, queue, semaphores",
        "create a 256 MiB SysV segment (touched), a message queue holding a message, a semaphore set, "
        "with fixed keys and without removing them",
        _LIBC
        + "libc.shmat.restype = ctypes.c_void_p\n"
        "size = 256 << 20\n"
        "shm = libc.shmget(0xB0E1, ctypes.c_size_t(size), 0o1666)\n"  # IPC_CREAT | 0666
        "assert shm >= 0, ctypes.get_errno()\n"
        "address = libc.shmat(shm, None, 0)\n"
        "ctypes.memset(address, 1, size)\n"
        "queue = libc.msgget(0xB0E2, 0o1666)\n"
        "assert queue >= 0, ctypes.get_errno()\n"
        "message = ctypes.create_string_buffer(b'\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x00left behind', 32)\n"
        "assert libc.msgsnd(queue, message, 11, 0) == 0\n"
        "assert libc.semget(0xB0E3, 4, 0o1666) >= 0\n",
    ),
    HostileProgram(
        "POSIX shared memory in /dev/shm",
        "write a 16 MiB file into /dev/shm and a file into its working directory, and leave them",
        "import os\n"
        "with open('/dev/shm/boe-sandbox-left-behind', 'wb') as fh:\n"
        "    fh.write(b'x' * (16 << 20))\n"
        "open('boe-sandbox-left-behind', 'w').write('x')\n",
    ),
    HostileProgram(
        "kernel keyring",
        "add a key to its user and session keyrings (a later program of the same uid would read it)",
        _LIBC
        + "libc.syscall.restype = ctypes.c_long\n"
        "ADD_KEY = {{'x86_64': 248, 'aarch64': 217}}[__import__('platform').machine()]\n"
        "for keyring in (-4, -3):\n"  # KEY_SPEC_USER_KEYRING, KEY_SPEC_SESSION_KEYRING
        "    serial = libc.syscall(ADD_KEY, b'user', {key!r}.encode(), b'secret', 6, keyring)\n"
        "    if serial < 0:\n"
        "        raise PermissionError(ctypes.get_errno(), 'add_key refused')\n",
    ),
    HostileProgram(
        "read a key left by another program",
        "look for a key another program may have added to the keyrings it can reach",
        _LIBC
        + "libc.syscall.restype = ctypes.c_long\n"
        "REQUEST_KEY = {{'x86_64': 249, 'aarch64': 218}}[__import__('platform').machine()]\n"
        "serial = libc.syscall(REQUEST_KEY, b'user', {key!r}.encode(), None, 0)\n"
        "if serial < 0:\n"
        "    raise PermissionError(ctypes.get_errno(), 'request_key refused or found nothing')\n"
        "print('found key', serial)\n",
    ),
    HostileProgram(
        "unix sockets of the host",
        "connect to world-writable unix sockets of the host (in /run, /var/lib and /etc, and an abstract one)",
        "import socket\n"
        "reached = []\n"
        "for address in {unix_sockets!r}:\n"
        "    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)\n"
        "    client.settimeout(1)\n"
        "    try:\n"
        "        client.connect(address)\n"
        "        client.sendall(b'escaped')\n"
        "        reached.append(address)\n"
        "    except OSError:\n"
        "        pass\n"
        "if not reached:\n"
        "    raise ConnectionRefusedError('no host socket reached')\n"
        "print('reached', reached)\n",
    ),
)


# ------------------------------------------------------------------------------------ cheats
@dataclass(frozen=True)
class Cheat:
    """A wrong answer that tries to be scored as right: `body` is top-level code that defines
    `_answer()` (what the task's functions return) and does its trick."""

    name: str
    what: str
    body: str

    def code(self, functions: tuple[str, ...]) -> str:
        defs = "".join(f"\n\ndef {name}(*args, **kwargs):\n    return _answer()\n" for name in functions)
        return self.body + defs

    def humaneval(self, doc: dict) -> str:
        """A completion of the prompt: an empty body, then the trick redefining the entry point."""
        return "    pass\n\n" + self.code((doc["entry_point"],))

    def mbpp(self, doc: dict, functions: tuple[str, ...]) -> str:
        return self.code(functions)


FORGED_PASS = Cheat(
    "forged pass",
    "find the verdict channel (a nonce or status descriptor in its callers' frames, every descriptor "
    "it holds, every /proc/*/fd it can open), write pass lines to it and leave with status 0",
    "import os, sys\n"
    "def _answer():\n"
    "    return None\n"
    "def _forge():\n"
    "    lines = [b'passed\\n', b'checker-exit 0\\n', b'done\\n']\n"
    "    frame, fds = sys._getframe(), set(range(64))\n"
    "    while frame is not None:\n"
    "        for key, value in list(frame.f_locals.items()):\n"
    "            if 'nonce' in key and isinstance(value, str):\n"
    "                lines.append(f'done {value}\\n'.encode())\n"
    "            if key.endswith(('fd', 'sock')) and type(value) is int:\n"
    "                fds.add(value)\n"
    "        frame = frame.f_back\n"
    "    for fd in sorted(fds):\n"
    "        for line in lines:\n"
    "            try:\n"
    "                os.write(fd, line)\n"
    "            except OSError:\n"
    "                pass\n"
    "    for pid in [p for p in os.listdir('/proc') if p.isdigit()]:\n"
    "        try:\n"
    "            names = os.listdir(f'/proc/{pid}/fd')\n"
    "        except OSError:\n"
    "            continue\n"
    "        for name in names:\n"
    "            try:\n"
    "                fd = os.open(f'/proc/{pid}/fd/{name}', os.O_WRONLY | os.O_NONBLOCK)\n"
    "            except OSError:\n"
    "                continue\n"
    "            for line in lines:\n"
    "                try:\n"
    "                    os.write(fd, line)\n"
    "                except OSError:\n"
    "                    pass\n"
    "            os.close(fd)\n"
    "    os._exit(0)\n"
    "_forge()\n",
)

TRACE_HOOK = Cheat(
    "trace hook",
    "install sys.settrace / threading.settrace hooks (on every frame of the stack too) that replace "
    "`check` by a no-op and jump over every `assert` line",
    "import linecache, sys, threading\n"
    "def _answer():\n"
    "    return None\n"
    "def _noop(*args, **kwargs):\n"
    "    return None\n"
    "def _hook(frame, event, arg):\n"
    "    if 'check' in frame.f_globals and getattr(frame.f_globals['check'], '__name__', '') == 'check':\n"
    "        frame.f_globals['check'] = _noop\n"
    "    if event == 'line':\n"
    "        line = linecache.getline(frame.f_code.co_filename, frame.f_lineno).strip()\n"
    "        if line.startswith('assert'):\n"
    "            try:\n"
    "                frame.f_lineno = frame.f_lineno + 1\n"
    "            except ValueError:\n"
    "                pass\n"
    "    return _hook\n"
    "sys.settrace(_hook)\n"
    "threading.settrace(_hook)\n"
    "_frame = sys._getframe()\n"
    "while _frame is not None:\n"
    "    _frame.f_trace = _hook\n"
    "    _frame = _frame.f_back\n",
)

ALWAYS_EQUAL = Cheat(
    "always-equal result",
    "return an object that equals everything, is smaller and larger than everything, and survives "
    "arithmetic, abs(), len(), iteration, indexing and `in`",
    "class _Anything:\n"
    "    def __eq__(self, other):\n"
    "        return True\n"
    "    def __ne__(self, other):\n"
    "        return False\n"
    "    __lt__ = __le__ = __gt__ = __ge__ = __eq__\n"
    "    __hash__ = object.__hash__\n"
    "    def __bool__(self):\n"
    "        return True\n"
    "    def _same(self, *args):\n"
    "        return self\n"
    "    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = __truediv__ = __rtruediv__ = _same\n"
    "    __mod__ = __rmod__ = __floordiv__ = __rfloordiv__ = __pow__ = __rpow__ = __neg__ = __abs__ = _same\n"
    "    __round__ = __getitem__ = __call__ = _same\n"
    "    def __len__(self):\n"
    "        return 0\n"
    "    def __iter__(self):\n"
    "        return iter(())\n"
    "    def __contains__(self, item):\n"
    "        return True\n"
    "    def __float__(self):\n"
    "        return 0.0\n"
    "    def __int__(self):\n"
    "        return 0\n"
    "    def __index__(self):\n"
    "        return 0\n"
    "    def __repr__(self):\n"
    "        return 'anything'\n"
    "def _answer():\n"
    "    return _Anything()\n",
)

CHEATS: tuple[Cheat, ...] = (FORGED_PASS, TRACE_HOOK, ALWAYS_EQUAL)


def case(name: str) -> HostileProgram:
    for program in (SPAWN_50, *CASES, *ENDING_CASES, *LEAK_CASES):
        if program.name == name:
            return program
    names = [p.name for p in (*CASES, *ENDING_CASES, *LEAK_CASES)]
    raise KeyError(f"no hostile program named {name!r}: choose one of {', '.join(names)}")


__all__ = [
    "ALWAYS_EQUAL",
    "CASES",
    "CHEATS",
    "ENDING_CASES",
    "FORGED_PASS",
    "LEAK_CASES",
    "SPAWN_50",
    "TRACE_HOOK",
    "Cheat",
    "HostileProgram",
    "case",
]
