"""A seccomp filter for the jails (defence in depth behind the uid, the namespaces and the
missing capabilities): the syscalls a build.sh, the docker client or a notebook kernel never
needs and that open up most of the kernel to an attacker.

The filter is a classic BPF program made by Debian's libseccomp (``libseccomp2``) through
ctypes and handed to bwrap with ``--seccomp FD``: bwrap builds the jail first (its own
mount/unshare/pivot_root calls come before the filter), sets no_new_privs and loads the
filter just before it execs the jailed command, which inherits it with every process it
starts. Everything not listed is allowed. Non-native ABIs (i386 ``int 0x80``, x32) are not
in the filter: a process that uses them is killed (the "bad arch" action), so the list
cannot be bypassed through another syscall table.

Which syscalls and why: docs/grading-safely.md, "The seccomp filter".
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os

LIBRARY = "libseccomp.so.2"
PACKAGE = "libseccomp2"

#: Refused with EPERM (as Docker's default profile does for a container without capabilities).
DENIED = (
    # new namespaces, mounts, root changes: bwrap has built the jail before the filter
    "unshare", "setns", "mount", "umount2", "pivot_root", "chroot", "mount_setattr",
    "open_tree", "move_mount", "fsopen", "fsconfig", "fsmount", "fspick",
    # the kernel keyring
    "keyctl", "add_key", "request_key",
    # reading or writing other processes
    "ptrace", "process_vm_readv", "process_vm_writev", "process_madvise", "pidfd_getfd",
    "kcmp",
    # large kernel attack surfaces and exploit helpers
    "bpf", "perf_event_open", "userfaultfd", "io_uring_setup", "io_uring_enter",
    "io_uring_register", "fanotify_init", "lookup_dcookie", "open_by_handle_at",
    "name_to_handle_at",
    # the machine's own state
    "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
    "reboot", "swapon", "swapoff", "acct", "quotactl", "quotactl_fd", "syslog",
    "settimeofday", "clock_settime", "clock_adjtime", "adjtimex", "iopl", "ioperm",
    "vhangup", "sysfs", "uselib", "ustat", "_sysctl", "nfsservctl",
)  # fmt: skip
#: Refused with ENOSYS: its flags live in a struct a filter cannot read, so it cannot be
#: checked like clone's; ENOSYS makes glibc and Go fall back to clone (Docker does the same).
NOT_IMPLEMENTED = ("clone3",)
#: clone with any of these flags (a new namespace) is refused with EPERM; threads and forks
#: (CLONE_VM, CLONE_THREAD, ... without these) pass.
CLONE_NEW = {
    "CLONE_NEWNS": 0x00020000,
    "CLONE_NEWCGROUP": 0x02000000,
    "CLONE_NEWUTS": 0x04000000,
    "CLONE_NEWIPC": 0x08000000,
    "CLONE_NEWUSER": 0x10000000,
    "CLONE_NEWPID": 0x20000000,
    "CLONE_NEWNET": 0x40000000,
}

_ACT_ALLOW = 0x7FFF0000
_ACT_ERRNO = 0x00050000
_ACT_KILL_PROCESS = 0x80000000
_ATTR_ACT_BADARCH = 2  # SCMP_FLTATR_ACT_BADARCH (1 is ACT_DEFAULT)
_CMP_MASKED_EQ = 7


class SeccompUnavailable(RuntimeError):
    """libseccomp cannot be loaded or refused the filter: the jail must not start."""


class _ArgCmp(ctypes.Structure):
    """libseccomp's ``struct scmp_arg_cmp``."""

    _fields_ = [
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    ]


@functools.lru_cache(maxsize=1)
def _library() -> ctypes.CDLL:
    try:
        lib = ctypes.CDLL(LIBRARY, use_errno=True)
    except OSError as e:
        raise SeccompUnavailable(f"{LIBRARY} cannot be loaded ({e})") from None
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_release.argtypes = [ctypes.c_void_p]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_rule_add_array.argtypes = [
        ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint, ctypes.POINTER(_ArgCmp)
    ]  # fmt: skip
    lib.seccomp_export_bpf.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.seccomp_attr_set.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32]
    return lib


def problem() -> str | None:
    """Why the filter cannot be made here (what to install), or None."""
    try:
        bpf()
    except SeccompUnavailable as e:
        return f"{e}: the jails need a seccomp filter (apt-get install {PACKAGE})"
    return None


def _errno_action(code: int) -> int:
    return _ACT_ERRNO | (code & 0xFFFF)


def _rule(lib: ctypes.CDLL, ctx: int, action: int, name: str, *cmps: _ArgCmp) -> None:
    nr = lib.seccomp_syscall_resolve_name(name.encode())
    if nr == -1:  # __NR_SCMP_ERROR: a name libseccomp does not know
        raise SeccompUnavailable(f"libseccomp does not know the syscall {name}")
    array = (_ArgCmp * len(cmps))(*cmps) if cmps else None
    rc = lib.seccomp_rule_add_array(ctx, action, nr, len(cmps), array)
    if rc < 0:
        raise SeccompUnavailable(f"seccomp_rule_add({name}): {os.strerror(-rc)}")


def _rules(lib: ctypes.CDLL, ctx: int) -> None:
    if lib.seccomp_attr_set(ctx, _ATTR_ACT_BADARCH, _ACT_KILL_PROCESS) < 0:
        raise SeccompUnavailable("seccomp_attr_set(ACT_BADARCH) failed")
    eperm = _errno_action(errno.EPERM)
    for name in DENIED:
        _rule(lib, ctx, eperm, name)
    for name in NOT_IMPLEMENTED:
        _rule(lib, ctx, _errno_action(errno.ENOSYS), name)
    for flag in CLONE_NEW.values():  # one rule per flag: rules of one syscall are OR-ed
        _rule(lib, ctx, eperm, "clone", _ArgCmp(0, _CMP_MASKED_EQ, flag, flag))


def _export(lib: ctypes.CDLL, ctx: int) -> bytes:
    fd = os.memfd_create("grader-seccomp")
    try:
        rc = lib.seccomp_export_bpf(ctx, fd)
        if rc < 0:
            raise SeccompUnavailable(f"seccomp_export_bpf: {os.strerror(-rc)}")
        os.lseek(fd, 0, os.SEEK_SET)
        return _read_all(fd)
    finally:
        os.close(fd)


def _read_all(fd: int) -> bytes:
    chunks = []
    while block := os.read(fd, 65536):
        chunks.append(block)
    return b"".join(chunks)


@functools.lru_cache(maxsize=1)
def bpf() -> bytes:
    """The compiled filter (classic BPF for this machine's architecture, what
    ``bwrap --seccomp`` reads); raises :class:`SeccompUnavailable`."""
    lib = _library()
    ctx = lib.seccomp_init(_ACT_ALLOW)
    if not ctx:
        raise SeccompUnavailable("seccomp_init failed")
    try:
        _rules(lib, ctx)
        program = _export(lib, ctx)
    finally:
        lib.seccomp_release(ctx)
    if not program or len(program) % 8:
        raise SeccompUnavailable(f"libseccomp exported {len(program)} bytes, not a BPF program")
    return program


def fd() -> int:
    """A fresh descriptor holding the filter at offset 0 (a memfd, close-on-exec: pass it
    on with ``pass_fds`` or ``os.set_inheritable``); the caller closes it."""
    out = os.memfd_create("grader-seccomp")
    os.write(out, bpf())
    os.lseek(out, 0, os.SEEK_SET)
    return out
