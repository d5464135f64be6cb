"""Run one command with a binfmt_misc table of its own, leaving the machine's table alone.

Since Linux 6.7, a user namespace that mounts binfmt_misc gets a private, empty instance:
handlers registered there (and the lack of them) affect only processes inside. The labs use
it to show, on a machine whose emulators everyone shares, what a machine *without* emulators
does with a foreign binary, and what the ``F`` flag changes::

    from grader.course import binfmt_sandbox
    sh(binfmt_sandbox.command(["./hello-arm64"]))                  # exec format error
    sh(binfmt_sandbox.command(["./hello-arm64"], register=[line]))  # runs through QEMU

``command`` builds an argv (``unshare --user --map-root-user --mount python -m
grader.course.binfmt_sandbox ...``) to pass to ``labkit.sh``; the module's ``main`` runs inside the
namespaces: mounts the private binfmt_misc, registers the lines, hides directories (an empty
tmpfs over them, as a container's root file system would lack them), then execs the command.
Exit status 125 means the sandbox itself could not be set up (message on stderr).
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
from collections.abc import Sequence

from grader import proc

BINFMT_DIR = "/proc/sys/fs/binfmt_misc"

#: Exit status when the sandbox cannot be set up (not the command's own failure).
SETUP_FAILED = 125


def command(
    argv: Sequence[str], *, register: Sequence[str] = (), hide: Sequence[str] = ()
) -> list[str]:
    """The argv that runs ``argv`` with a private binfmt_misc holding only ``register``
    (lines in the kernel's ``:name:type:offset:magic:mask:interpreter:flags`` format),
    with each directory in ``hide`` covered by an empty tmpfs."""
    out = ["unshare", "--user", "--map-root-user", "--mount", sys.executable, "-m", __name__]
    for line in register:
        out += ["--register", line]
    for path in hide:
        out += ["--hide", path]
    return [*out, "--", *argv]


def available(timeout: float = 20) -> tuple[bool, str]:
    """Whether private binfmt_misc instances work here, and if not, why."""
    if proc.which("unshare") is None:
        return False, "`unshare` (util-linux) is not installed"
    done = proc.run(command(["true"]), timeout=timeout, check=False)
    if done.ok:
        return True, "private binfmt_misc instances work (Linux >= 6.7 with user namespaces)"
    reason = done.stderr.strip().splitlines()[-1:] or [f"exit status {done.returncode}"]
    return False, reason[0]


def _fail(message: str) -> int:
    print(f"binfmt sandbox: {message}", file=sys.stderr)
    return SETUP_FAILED


def main(args: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m grader.course.binfmt_sandbox")
    parser.add_argument("--register", action="append", default=[])
    parser.add_argument("--hide", action="append", default=[])
    parser.add_argument("argv", nargs="+")
    opts = parser.parse_args(args)
    done = proc.run(
        ["mount", "-t", "binfmt_misc", "binfmt_misc", BINFMT_DIR], timeout=20, check=False
    )
    if not done.ok:
        return _fail(
            "cannot mount a private binfmt_misc here (needs Linux >= 6.7 and user "
            f"namespaces): {done.stderr.strip()}"
        )
    for line in opts.register:
        try:
            with open(f"{BINFMT_DIR}/register", "w") as reg:
                reg.write(line)
        except OSError as e:
            return _fail(f"the kernel refused the line {line!r}: {e.strerror}")
    for path in opts.hide:
        done = proc.run(["mount", "-t", "tmpfs", "tmpfs", path], timeout=20, check=False)
        if not done.ok:
            return _fail(f"cannot hide {path}: {done.stderr.strip()}")
    sys.stdout.flush()
    try:
        os.execvp(opts.argv[0], opts.argv)
    except OSError as e:
        # Say it the way a container runtime does: `exec ./app: exec format error`.
        print(f"exec {opts.argv[0]}: {(e.strerror or str(e)).lower()}", file=sys.stderr)
        return 126 if e.errno in (errno.ENOEXEC, errno.EACCES) else 127
    return 0  # not reached: execvp replaces this process


if __name__ == "__main__":
    sys.exit(main())
