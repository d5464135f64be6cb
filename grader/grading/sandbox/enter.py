"""Step into a sandbox run, then exec bubblewrap: run by path (``python -I -S enter.py``), so
it imports only the standard library and starts fast.

As root it joins the run's cgroups, sets rlimits, points stdout/stderr at the run's log
file (RLIMIT_FSIZE caps it: the kernel refuses output past the limit), drops to the run's
unprivileged uid and execs the command. Usage::

    enter.py --log FILE --uid N --gid N [--groups G,G] [--cgroup-procs FILE]...
             [--rlimit NAME=N]... -- CMD...

``--groups``: supplementary groups (a worker engine's socket group, with the gate off).
"""

from __future__ import annotations

import os
import resource
import sys

RLIMITS = {
    "nproc": resource.RLIMIT_NPROC,
    "fsize": resource.RLIMIT_FSIZE,
    "cpu": resource.RLIMIT_CPU,
    "nofile": resource.RLIMIT_NOFILE,
    "as": resource.RLIMIT_AS,
    "core": resource.RLIMIT_CORE,
}


def main(argv: list[str]) -> int:
    if "--" not in argv:
        print("enter.py: missing -- CMD", file=sys.stderr)
        return 2
    split = argv.index("--")
    opts, cmd = argv[:split], argv[split + 1 :]
    log = uid = gid = None
    procs: list[str] = []
    groups: list[int] = []
    limits: list[tuple[int, int]] = []
    it = iter(opts)
    for opt in it:
        value = next(it)
        if opt == "--log":
            log = value
        elif opt == "--uid":
            uid = int(value)
        elif opt == "--gid":
            gid = int(value)
        elif opt == "--groups":
            groups = [int(g) for g in value.split(",") if g]
        elif opt == "--cgroup-procs":
            procs.append(value)
        elif opt == "--rlimit":
            name, _, n = value.partition("=")
            limits.append((RLIMITS[name], int(n)))
        else:
            print(f"enter.py: unknown option {opt}", file=sys.stderr)
            return 2
    if log is None or uid is None or gid is None or not cmd:
        print("enter.py: --log, --uid, --gid and a command are required", file=sys.stderr)
        return 2
    # Join the cgroups first, so every process the script starts is counted.
    for path in procs:
        with open(path, "w") as fh:
            fh.write(str(os.getpid()))
    for which, n in limits:
        resource.setrlimit(which, (n, n))
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    os.close(null)
    os.setgroups(groups)
    os.setgid(gid)
    os.setuid(uid)
    # A clean environment: bwrap's own process (pid 1 in the sandbox, readable there as
    # /proc/1/environ) must not carry the grader's variables.
    os.execve(cmd[0], cmd, {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"})
    return 127  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
