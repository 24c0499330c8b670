"""Init side of the sandbox: runs as root (or the harness's uid) as `python -I -B bootstrap.py
SETTINGS_JSON`, stdlib only, and never runs model-written code itself.

Reads `{"candidate": source, "tests": source, "may_shadow": [names]}` (JSON) from stdin, then
1. (mount namespace) remounts every mount read-only, hides every path-bound unix socket of the
   host under what it keeps (/dev/null mounted over it), and changes root into a minimal file
   system: read-only /usr, /bin, /sbin, /lib*, /etc and the interpreter's directories, /dev/null
   and a few other devices, this namespace's /proc, and fresh size-limited tmpfs on /tmp and
   /dev/shm (`enter_minimal_root`); otherwise it uses the directory it is given;
2. writes runner.py, `candidate/main.py` (owned by the candidate's uid) and `checker/tests.py`
   (owned by the checker's uid, mode 0700: the candidate cannot read the tests);
3. sets the resource limits, then forks two children joined by a socket pair, each of which drops
   to its own unprivileged uid (no groups, no_new_privs, a seccomp filter that denies the kernel
   keyring calls), closes every other descriptor and executes `runner.py`: the candidate holds
   only its end of the socket, the checker holds the other end and the status pipe;
4. stays as the reaper (the pid namespace's init) and reports on the status pipe how each child
   ended: `candidate-exit <code>` / `candidate-signal <n>`, `checker-exit <code>` /
   `checker-signal <n>`; when the checker ends, the candidate is killed.

Status lines written here: `setup-error <message>` (the sandbox could not be set up; no program
ran; exit code 125) and `rejected <message>` (this program could not be written into the sandbox,
e.g. larger than its disk), besides the children's end lines. The checker adds its verdict line
(runner.py). The candidate can write to none of this: it never holds the status pipe.
"""

from __future__ import annotations

import ctypes
import json
import os
import platform
import resource
import socket
import sys

SETUP_ERROR_EXIT = 125

# <sys/mount.h>
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC = 32, 4096, 16384
MS_NOATIME, MS_NODIRATIME, MS_RELATIME = 1024, 2048, 1 << 21
# statvfs f_flag bits that keep their meaning when remounting (ST_RELATIME is 4096, not MS_RELATIME)
_KEPT_FLAGS = {
    os.ST_NOSUID: MS_NOSUID,
    os.ST_NODEV: MS_NODEV,
    os.ST_NOEXEC: MS_NOEXEC,
    os.ST_NOATIME: MS_NOATIME,
    os.ST_NODIRATIME: MS_NODIRATIME,
    4096: MS_RELATIME,
}
PR_SET_NO_NEW_PRIVS = 38

_libc = ctypes.CDLL(None, use_errno=True)


class SetupError(Exception):
    """The sandbox could not be set up as asked."""


def _mount(source: str, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    rc = _libc.mount(
        source.encode(), target.encode(), fstype.encode() if fstype else None, flags, data.encode() if data else None
    )
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {target}: {os.strerror(err)}")


def _mount_points() -> list[str]:
    """Mount points of this mount namespace, parents before children (/proc/self/mountinfo)."""
    points = []
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            raw = line.split()[4]
            # mountinfo escapes space, tab, newline and backslash as \ooo
            points.append(raw.encode().decode("unicode_escape").encode("latin-1").decode("utf-8", "replace"))
    return points


def make_filesystem_read_only() -> list[str]:
    """Remount every mount read-only (and nosuid) in this private mount namespace; returns the
    mount points that refused (their paths stay as they were)."""
    refused = []
    for point in _mount_points():
        try:
            kept = os.statvfs(point).f_flag
        except OSError:
            continue  # shadowed or vanished
        flags = MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID
        for st_bit, ms_bit in _KEPT_FLAGS.items():
            if kept & st_bit:
                flags |= ms_bit
        try:
            _mount("none", point, None, flags)
        except OSError:
            if not os.statvfs(point).f_flag & os.ST_RDONLY:
                refused.append(point)
    return refused


def set_limits(limits: dict) -> None:
    """RLIMIT_* as (soft, hard); an unprivileged parent can only lower its hard limits."""
    table = {
        resource.RLIMIT_CPU: (limits["cpu_s"], limits["cpu_s"] + 1),  # SIGXCPU, then SIGKILL 1 s later
        resource.RLIMIT_AS: (limits["memory_bytes"],) * 2,
        resource.RLIMIT_FSIZE: (limits["file_size_bytes"],) * 2,
        resource.RLIMIT_NOFILE: (limits["open_files"],) * 2,
        resource.RLIMIT_NPROC: (limits["processes"],) * 2,
        resource.RLIMIT_CORE: (0, 0),
    }
    for which, (soft, hard) in table.items():
        _, current_hard = resource.getrlimit(which)
        if current_hard != resource.RLIM_INFINITY:
            hard = min(hard, current_hard)
            soft = min(soft, hard)
        resource.setrlimit(which, (soft, hard))


def drop_privileges(uid: int, gid: int) -> None:
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)
    if os.getuid() != uid or os.geteuid() != uid:
        raise SetupError(f"could not switch to uid {uid}")


def no_new_privileges() -> None:
    """Setuid binaries (mount, su, ...) cannot give the program privileges back."""
    if _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise SetupError(f"prctl(PR_SET_NO_NEW_PRIVS): {os.strerror(ctypes.get_errno())}")


# seccomp: deny add_key, request_key and keyctl (EPERM), so no program can read or leave keys in a
# kernel keyring (user keyrings are per uid and outlive the process; session keyrings are inherited)
PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 22, 2
SECCOMP_RET_ALLOW, SECCOMP_RET_ERRNO = 0x7FFF0000, 0x00050000
EPERM = 1
_KEY_SYSCALLS = {  # machine: (AUDIT_ARCH_*, (add_key, request_key, keyctl))
    "x86_64": (0xC000003E, (248, 249, 250)),
    "aarch64": (0xC00000B7, (217, 218, 219)),
}


class _SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte), ("k", ctypes.c_uint)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter))]


def deny_keyring() -> None:
    """Install a seccomp filter: the key management calls fail with EPERM (x86_64, aarch64; the
    x32 ABI is refused altogether). On another architecture this is a setup error."""
    machine = platform.machine()
    if machine not in _KEY_SYSCALLS:
        raise SetupError(f"no seccomp keyring filter for {machine}")
    arch, numbers = _KEY_SYSCALLS[machine]
    ld_abs, jeq, jge, ret = 0x20, 0x15, 0x35, 0x06
    errno = SECCOMP_RET_ERRNO | EPERM
    n = len(numbers)
    program = [
        (ld_abs, 0, 0, 4),  # seccomp_data.arch
        (jeq, 1, 0, arch),
        (ret, 0, 0, errno),  # another ABI (i386 on x86_64): refuse every call
        (ld_abs, 0, 0, 0),  # seccomp_data.nr
        (jge, n + 1, 0, 0x40000000),  # x32
        *[(jeq, n - i, 0, number) for i, number in enumerate(numbers)],
        (ret, 0, 0, SECCOMP_RET_ALLOW),
        (ret, 0, 0, errno),
    ]
    filters = (_SockFilter * len(program))(*[_SockFilter(*instruction) for instruction in program])
    fprog = _SockFprog(len(program), filters)
    if _libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) != 0:
        raise SetupError(f"prctl(PR_SET_SECCOMP): {os.strerror(ctypes.get_errno())}")


def hide(paths: list[str]) -> None:
    """Mount an empty read-only tmpfs over each directory and /dev/null over each other file
    (sockets): what was there is out of reach inside this mount namespace."""
    for path in paths:
        if os.path.isdir(path) and not os.path.islink(path):
            _mount("tmpfs", path, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=4k,mode=0755")
        elif os.path.lexists(path):
            _mount("/dev/null", path, None, MS_BIND)
            _mount("none", path, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NOEXEC)


#: what the programs' root file system holds (read-only binds of the host's), besides the
#: interpreter's own directories, /dev (null, zero, full, random, urandom), /proc and a fresh /tmp
ROOT_BINDS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")
DEVICES = ("null", "zero", "full", "random", "urandom")


def enter_minimal_root(root: str, keep: list[str], disk_bytes: int) -> None:
    """Build a root file system on a fresh tmpfs at `root` from read-only binds of ROOT_BINDS and
    `keep` (the interpreter's directories), a few devices and this namespace's /proc, then chroot
    into it. Everything else of the host (checkouts with reference solutions, home directories,
    /run, /tmp, /var, /mnt, sockets anywhere) does not exist for the programs."""
    _mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=0755")
    binds = []
    for path in (*ROOT_BINDS, *keep):
        path = os.path.normpath(path)
        if any(path == b or path.startswith(b.rstrip("/") + "/") for b in binds):
            continue
        target = root + path
        if os.path.islink(path) and path in ROOT_BINDS:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            if not os.path.lexists(target):
                os.symlink(os.readlink(path), target)
            continue
        if not os.path.isdir(path):
            continue
        os.makedirs(target, exist_ok=True)
        _mount(path, target, None, MS_BIND | MS_REC)
        binds.append(path)
    os.makedirs(root + "/dev", exist_ok=True)
    for name in DEVICES:
        if os.path.exists(f"/dev/{name}"):
            open(f"{root}/dev/{name}", "w").close()
            _mount(f"/dev/{name}", f"{root}/dev/{name}", None, MS_BIND)
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                         ("stderr", "/proc/self/fd/2")):
        os.symlink(target, f"{root}/dev/{name}")
    os.makedirs(root + "/proc", exist_ok=True)
    _mount("/proc", root + "/proc", None, MS_BIND | MS_REC)
    for directory in ("/tmp", "/dev/shm"):
        os.makedirs(root + directory, exist_ok=True)
    refused = make_filesystem_read_only()  # the new binds and the root itself too
    if refused:
        raise SetupError("could not remount read-only: " + ", ".join(refused))
    _mount("tmpfs", root + "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, f"size={disk_bytes},mode=0711")
    _mount("tmpfs", root + "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, f"size={disk_bytes},mode=1777")
    os.chroot(root)
    os.chdir("/")


def _status(fd: int, line: str) -> None:
    try:
        os.write(fd, (line.replace("\n", " ") + "\n").encode())
    except OSError:
        pass


def _write(path: str, text: str, uid: int | None, mode: int) -> None:
    with open(path, "w", encoding="utf-8", errors="replace") as fh:
        fh.write(text)
    os.chmod(path, mode)
    if uid is not None:
        os.chown(path, uid, uid)


def _private_dir(path: str, uid: int | None) -> None:
    os.mkdir(path, 0o700)
    if uid is not None:
        os.chown(path, uid, uid)


def start_child(settings: dict, role: str, uid: int | None, workdir: str, keep: list[int], status_fd: int) -> int:
    """Fork; the child becomes `uid`, keeps only stdout, stderr and `keep`, and executes runner.py."""
    pid = os.fork()
    if pid:
        return pid
    try:
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        if uid is not None:
            drop_privileges(uid, uid)
        no_new_privileges()
        deny_keyring()
        os.umask(0o077)
        os.chdir(workdir)
        for fd in keep:
            os.set_inheritable(fd, True)
        keep_all = {0, 1, 2, *keep}  # the status pipe reaches the checker only
        for name in os.listdir("/proc/self/fd"):
            if int(name) not in keep_all:
                try:
                    os.close(int(name))
                except OSError:
                    pass  # the directory's own descriptor
        python = settings["python"]
        flags = ["-I", "-B"] if role == "candidate" else ["-I", "-S", "-B"]
        argv = [python, *flags, settings["runner"], role, settings["module_name"], *map(str, keep)]
        if role == "checker":
            argv.append(json.dumps(settings["may_shadow"]))
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
               "HOME": workdir, "TMPDIR": workdir}
        os.execve(python, argv, env)
    except BaseException as exc:  # noqa: BLE001 - the child must never return into init
        if role == "checker":
            _status(status_fd, f"setup-error {role}: {exc}")
    os._exit(SETUP_ERROR_EXIT)


def _ending(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"signal {os.WTERMSIG(status)}"
    return f"exit {os.WEXITSTATUS(status)}"


def supervise(candidate: int, checker: int, status_fd: int) -> None:
    """Reap every process (this may be the pid namespace's init); report how the children ended;
    once the checker has ended, kill the candidate and leave."""
    candidate_done = False
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            os._exit(0)
        if pid == candidate and not candidate_done:
            candidate_done = True
            _status(status_fd, f"candidate-{_ending(status)}")
        elif pid == checker:
            _status(status_fd, f"checker-{_ending(status)}")
            if not candidate_done:
                done, end = os.waitpid(candidate, os.WNOHANG)
                if not done:
                    try:
                        os.kill(candidate, 9)
                    except OSError:
                        pass
                    done, end = os.waitpid(candidate, 0)
                _status(status_fd, f"candidate-{_ending(end)}")
            os._exit(0)


def main() -> None:
    settings = json.loads(sys.argv[1])
    status_fd = settings["status_fd"]
    with open(settings["runner"], encoding="utf-8") as fh:  # read before its directory is hidden
        runner_source = fh.read()
    try:
        payload = json.loads(sys.stdin.buffer.read())
        candidate_source, tests_source = payload["candidate"], payload["tests"]
        may_shadow = [str(name) for name in payload["may_shadow"]]
    except (ValueError, KeyError, TypeError) as exc:
        _status(status_fd, f"setup-error unreadable input: {exc}")
        os._exit(SETUP_ERROR_EXIT)
    uids = settings["uids"]  # [candidate, checker] or [None, None]
    try:
        if settings["mount_namespace"]:
            refused = make_filesystem_read_only()
            if refused:
                raise SetupError("could not remount read-only: " + ", ".join(refused))
            hide(settings["hide"])  # sockets inside what the new root keeps
            enter_minimal_root("/tmp", settings["keep"], settings["disk_bytes"])
            base = "/tmp"
        else:
            base = settings["workdir"]
        set_limits(settings["limits"])
    except BaseException as exc:  # noqa: BLE001 - no program has run yet: the sandbox's own failure
        _status(status_fd, f"setup-error {type(exc).__name__}: {exc}")
        os._exit(SETUP_ERROR_EXIT)
    runner = os.path.join(base, "runner.py")
    candidate_dir, checker_dir = os.path.join(base, "candidate"), os.path.join(base, "checker")
    try:
        _write(runner, runner_source, None, 0o644)
        _private_dir(candidate_dir, uids[0])
        _private_dir(checker_dir, uids[1])
        _write(os.path.join(candidate_dir, "main.py"), candidate_source, uids[0], 0o600)
        _write(os.path.join(checker_dir, "tests.py"), tests_source, uids[1], 0o600)
    except OSError as exc:  # e.g. a program larger than the sandbox's disk: this program's verdict
        _status(status_fd, f"rejected {exc}")
        os._exit(1)
    settings = {**settings, "runner": runner, "may_shadow": may_shadow}
    candidate_end, checker_end = socket.socketpair()
    try:
        candidate = start_child(settings, "candidate", uids[0], candidate_dir, [candidate_end.fileno()], status_fd)
        checker = start_child(settings, "checker", uids[1], checker_dir, [checker_end.fileno(), status_fd], status_fd)
    except OSError as exc:  # fork refused
        _status(status_fd, f"setup-error fork: {exc}")
        os._exit(SETUP_ERROR_EXIT)
    candidate_end.close()
    checker_end.close()
    supervise(candidate, checker, status_fd)


if __name__ == "__main__":
    main()
