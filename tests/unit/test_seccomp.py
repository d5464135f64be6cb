"""The jails' seccomp filter (grader/grading/sandbox/seccomp.py), loaded for real: a small
Python process installs it with prctl and asks the kernel (each call in a child of its own);
the same probe without the filter shows each answer is the filter's. Then the filter
through bwrap --seccomp, as the jails use it, with bash, unshare and the docker CLI (Go)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from grader import proc
from grader.grading.sandbox import runner, seccomp

PROBE = r"""
import ctypes, errno, json, os, subprocess, sys, threading

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long


class Fprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def load(program):
    buf = ctypes.create_string_buffer(program, len(program))
    fprog = Fprog(len(program) // 8, ctypes.addressof(buf))
    assert libc.prctl(38, 1, 0, 0, 0) == 0  # PR_SET_NO_NEW_PRIVS
    if libc.prctl(22, 2, ctypes.byref(fprog), 0, 0) != 0:  # PR_SET_SECCOMP, FILTER
        raise OSError(ctypes.get_errno(), "PR_SET_SECCOMP")


def call(nr, *args):
    # in a child: unshare and clone must not change this process
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        ret = libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(a) for a in args])
        if ret == 0 and nr == 56:  # the clone child (when the filter let it through)
            os._exit(0)
        err = ctypes.get_errno()
        os.write(w, (errno.errorcode.get(err, str(err)) if ret == -1 else "ok").encode())
        os._exit(0)
    os.close(w)
    out = os.read(r, 100).decode()
    os.close(r)
    os.waitpid(pid, 0)
    return out


if sys.argv[1] == "filtered":
    load(sys.stdin.buffer.read())
if sys.argv[2:] == ["x32"]:  # getpid through the x32 table
    print(libc.syscall(ctypes.c_long(0x40000000 | 39)), flush=True)
    sys.exit(0)
if sys.argv[2:] == ["i386"]:  # mov eax, 20 (getpid); int 0x80; ret
    import mmap
    page = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    page.write(bytes.fromhex("b814000000cd80c3"))
    code = ctypes.CFUNCTYPE(ctypes.c_int)(ctypes.addressof(ctypes.c_char.from_buffer(page)))
    print(code(), flush=True)
    sys.exit(0)
seen = {
    "unshare-user": call(272, 0x10000000),
    "setns": call(308, -1, 0),
    "clone-newuser": call(56, 0x10000000 | 17, 0, 0, 0, 0),
    "keyctl": call(250, 0, -3, 0),  # KEYCTL_GET_KEYRING_ID of the session keyring
    "ptrace": call(101, 0x4206, 0, 0, 0),  # PTRACE_SEIZE of pid 0
    "bpf": call(321, 5, 0, 0),  # BPF_PROG_LOAD without attributes
    "clone3": call(435, 0, 0),
    "getpid": call(39),
}
kid = os.fork()
if kid == 0:
    os._exit(7)
seen["fork"] = os.waitpid(kid, 0)[1] >> 8
box = []
t = threading.Thread(target=box.append, args=("thread",))
t.start()
t.join()
seen["thread"] = box
seen["exec"] = subprocess.run(["/bin/sh", "-c", "echo exec"], capture_output=True,
                              text=True).stdout.strip()
print(json.dumps(seen))
"""


def _run(filtered: bool, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-I", "-c", PROBE, "filtered" if filtered else "plain", *extra],
        input=seccomp.bpf() if filtered else b"",
        capture_output=True,
        timeout=60,
    )


def _probe(filtered: bool) -> dict:
    done = _run(filtered)
    assert done.returncode == 0, done.stderr.decode()
    return json.loads(done.stdout)


def test_the_filter_is_a_bpf_program() -> None:
    program = seccomp.bpf()
    assert program and len(program) % 8 == 0
    assert len(program) // 8 > len(seccomp.DENIED)  # a compare per syscall at least
    fd = seccomp.fd()
    try:
        assert os.read(fd, len(program) + 1) == program  # at offset 0, for bwrap
    finally:
        os.close(fd)


def test_denied_syscalls_fail_and_processes_threads_exec_work() -> None:
    seen = _probe(filtered=True)
    for name in ("unshare-user", "setns", "clone-newuser", "keyctl", "ptrace", "bpf"):
        assert seen[name] == "EPERM", (name, seen)
    assert seen["clone3"] == "ENOSYS", seen
    assert seen["getpid"] == "ok"
    assert seen["fork"] == 7
    assert seen["thread"] == ["thread"]  # glibc's clone3 got ENOSYS and fell back to clone
    assert seen["exec"] == "exec"


def test_without_the_filter_the_same_calls_get_other_answers() -> None:
    """The probe's answers above are the filter's, not the machine's."""
    seen = _probe(filtered=False)
    assert seen["clone3"] == "EINVAL", seen  # a real clone3 refusing a zero-size struct
    assert seen["ptrace"] == "ESRCH", seen
    assert seen["setns"] == "EBADF", seen
    assert seen["keyctl"] != "EPERM", seen
    if os.geteuid() == 0:  # root may always make a user namespace
        assert seen["unshare-user"] == "ok", seen
        assert seen["clone-newuser"] == "ok", seen


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="x86_64's other ABIs")
@pytest.mark.parametrize("abi", ["x32", "i386"])
def test_another_abi_kills_the_process(abi: str) -> None:
    """The filter lists x86_64's numbers; the same call through another syscall table would
    pass it, so such a call kills the process (SIGSYS) instead."""
    plain = _run(False, abi)
    assert plain.returncode == 0, plain.stderr.decode()  # the kernel answers it normally
    filtered = _run(True, abi)
    assert filtered.returncode == -signal.SIGSYS, filtered
    assert filtered.stdout == b""


def _bwrap(*command: str) -> subprocess.CompletedProcess:
    fd = seccomp.fd()  # one per bwrap: bwrap reads it to the end
    try:
        return subprocess.run(
            ["bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
             "--unshare-pid", "--die-with-parent", "--seccomp", str(fd), "--", *command],
            pass_fds=(fd,), capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    finally:
        os.close(fd)


@pytest.mark.skipif(proc.which("bwrap") is None, reason="bubblewrap is not installed")
def test_through_bwrap_namespaces_fail_and_bash_and_go_run() -> None:
    for command in (["unshare", "-U", "true"], ["unshare", "-r", "true"]):
        done = _bwrap(*command)
        assert done.returncode != 0 and "Operation not permitted" in done.stderr, done
    done = _bwrap("bash", "-c", "awk '/^Seccomp:/ {print $2}' /proc/self/status; echo $((6*7))")
    assert done.stdout.split() == ["2", "42"], done
    if proc.which("docker"):  # Go: threads by clone, exec of the buildx plugin
        done = _bwrap("docker", "buildx", "version")
        assert done.returncode == 0 and "buildx" in done.stdout, done


def test_without_libseccomp_the_sandbox_does_not_start(monkeypatch, tmp_path: Path) -> None:
    """Fail closed: no filter, no run (and the error says what to install)."""
    monkeypatch.setattr(seccomp, "LIBRARY", "libseccomp-missing.so.9")
    seccomp._library.cache_clear()
    seccomp.bpf.cache_clear()
    # everything else the sandbox needs is there
    monkeypatch.setattr(runner.jail, "bwrap", lambda: "/usr/bin/bwrap")
    monkeypatch.setattr(runner.jail, "system_python", lambda: "/usr/bin/python3")
    monkeypatch.setattr(runner.proc, "which", lambda tool: f"/usr/bin/{tool}")
    monkeypatch.setattr(runner.os, "geteuid", lambda: 0)
    try:
        why = seccomp.problem()
        assert why and "apt-get install libseccomp2" in why
        with pytest.raises(seccomp.SeccompUnavailable):
            seccomp.fd()
        assert runner.sandbox_problem() == why
        (tmp_path / "build.sh").write_text("touch ran\n")
        out = runner.run_build_sh(tmp_path, namespace="t/x", registry="127.0.0.1:5000")
        assert out.error == why and not out.runs
        assert not (tmp_path / "ran").exists()
    finally:
        seccomp._library.cache_clear()
        seccomp.bpf.cache_clear()
