"""Find one file in a pushed image and read its first bytes, without unpacking the image.

An image is a stack of layer tars (gzip, zstd or plain); the file a container sees at a
path is the one in the topmost layer that has it, unless a layer above deleted it (a
``.wh.NAME`` whiteout) or hid the whole directory (``.wh..wh..opq``). :class:`ImageFilesystem`
answers path lookups the same way, top-down, streaming each layer with ``tarfile`` in stream
mode only as far as a lookup needs: a lower layer is never opened when an upper one decides.
Symlinks (relative, absolute, through directories), hardlinks, ``..`` and loops are resolved
inside the image, never on the grader's machine.

:func:`find_program` resolves what ``docker run`` would execute: ``Entrypoint + Cmd`` from
the image config, ``argv[0]`` looked up in the config's PATH (relative to WORKDIR) the way
runc does, then any ``#!`` interpreter the kernel would load instead, down to the ELF file.

Limits: compressed and uncompressed bytes, tar members, header sizes and a deadline; a layer
that is not a tar, or a broken stream, is a :class:`~grader.docker.registry.RegistryError`
(``garbage``, ``too-large``, ``timeout``); a path that does not resolve is an
:class:`ImageFileError`. A layer read to its end is also checked against its digest.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import posixpath
import tarfile
import time
import zlib
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from grader.docker import elf
from grader.docker.registry import Descriptor, Reference, RegistryClient, RegistryError

__all__ = [
    "DEFAULT_PATH",
    "FileHead",
    "ImageFileError",
    "ImageFilesystem",
    "Limits",
    "Program",
    "command_of",
    "find_program",
]

#: The PATH docker uses when the image config sets none (moby's oci.DefaultPathEnv).
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

#: Symlinks followed while resolving one path before giving up (Linux's MAXSYMLINKS).
MAX_SYMLINKS = 40

#: Nested ``#!`` interpreters the kernel follows before ELOOP.
MAX_INTERPRETERS = 4

_GZIP = b"\x1f\x8b"
_ZSTD = b"\x28\xb5\x2f\xfd"
_BZIP2 = b"BZh"
_XZ = b"\xfd7zXZ\x00"


@dataclass(frozen=True)
class Limits:
    """How much one image may cost to read: bytes off the wire and after decompression,
    tar members, and the size of one tar extension header (PAX / GNU long name)."""

    compressed_bytes: int = 1 << 30
    uncompressed_bytes: int = 4 << 30
    members: int = 1_000_000
    header_bytes: int = 1 << 20
    head_bytes: int = elf.HEAD_SIZE


class ImageFileError(Exception):
    """A path does not resolve to a file in the image; ``kind`` says why: ``not-found``,
    ``not-a-directory``, ``is-a-directory``, ``not-a-file``, ``symlink-loop``,
    ``not-executable``, ``no-command``, ``interpreter-loop``."""

    def __init__(self, kind: str, message: str):
        self.kind = kind
        super().__init__(message)


@dataclass(frozen=True)
class _Entry:
    kind: str  # "file", "dir", "symlink", "hardlink", "other"
    linkname: str
    mode: int
    size: int
    head: bytes | None  # first bytes, captured for executables and for looked-for paths


@dataclass(frozen=True)
class FileHead:
    """A file found in the image: where, how it was reached, and its first bytes."""

    path: str  # absolute path of the file that holds the bytes
    chain: tuple[str, ...]  # the path asked for, then each link followed to reach ``path``
    layer: str  # digest of the layer it came from
    mode: int
    size: int
    head: bytes

    @property
    def executable(self) -> bool:
        return bool(self.mode & 0o111)

    @property
    def route(self) -> str:
        """``/bin/sh -> /bin/busybox``: the chain for messages."""
        return " -> ".join(self.chain)


# --- one layer ------------------------------------------------------------------------------


class _HeaderGuard(tarfile.TarInfo):
    """Refuses oversized PAX / GNU long-name headers before tarfile reads them into memory."""

    max_header = 1 << 20

    def _proc_member(self, tarfile_):
        extension = (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK, tarfile.XHDTYPE)
        if self.type in (*extension, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE) and (
            self.size > self.max_header
        ):
            raise RegistryError(
                "garbage", f"a tar extension header claims {self.size} bytes; refusing it"
            )
        return super()._proc_member(tarfile_)


class _Budget:
    """Bytes and time shared by every layer stream of one image."""

    def __init__(self, limits: Limits, deadline: float):
        self.limits = limits
        self.deadline = deadline
        self.uncompressed = 0
        self.members = 0

    def check_time(self, what: str) -> None:
        if time.monotonic() > self.deadline:
            raise RegistryError("timeout", f"ran out of time while reading {what}")


class _Counted:
    """Decompressed bytes, counted against the image's budget and deadline."""

    def __init__(self, inner: Any, budget: _Budget, what: str):
        self._inner = inner
        self._budget = budget
        self._what = what

    def read(self, n: int = -1) -> bytes:
        self._budget.check_time(self._what)
        data = self._inner.read(n if n is not None and n >= 0 else 1 << 20)
        self._budget.uncompressed += len(data)
        if self._budget.uncompressed > self._budget.limits.uncompressed_bytes:
            raise RegistryError(
                "too-large",
                f"{self._what}: more than {self._budget.limits.uncompressed_bytes} bytes "
                "after decompression; stopped",
            )
        return data


class _Prefixed:
    """A stream with bytes already read from it put back in front."""

    def __init__(self, prefix: bytes, inner: Any):
        self._prefix = prefix
        self._inner = inner

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        if self._prefix:
            if n is None or n < 0:
                data, self._prefix = self._prefix + self._inner.read(), b""
                return data
            data, self._prefix = self._prefix[:n], self._prefix[n:]
            return data
        return self._inner.read(n)


def _decompressor(raw: Any) -> tuple[Any, str]:
    """Sniff the compression from the magic bytes (media types are not always honest)."""
    magic = b""
    while len(magic) < 6:
        block = raw.read(6 - len(magic))
        if not block:
            break
        magic += block
    stream = _Prefixed(magic, raw)
    if magic.startswith(_GZIP):
        return gzip.GzipFile(fileobj=stream, mode="rb"), "gzip"
    if magic.startswith(_ZSTD):
        try:
            import zstandard
        except ImportError:
            raise RegistryError(
                "garbage", "a zstd-compressed layer needs the zstandard package"
            ) from None
        reader = zstandard.ZstdDecompressor().stream_reader(
            stream, read_size=1 << 16, read_across_frames=True
        )
        return reader, "zstd"
    if magic.startswith(_BZIP2):
        return bz2.BZ2File(stream), "bzip2"
    if magic.startswith(_XZ):
        return lzma.LZMAFile(stream), "xz"
    return stream, "uncompressed"


def _stream_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [
        tarfile.TarError,
        zlib.error,
        EOFError,
        OSError,  # gzip.BadGzipFile, bz2
        lzma.LZMAError,
        ValueError,
        UnicodeError,
    ]
    try:
        import zstandard

        errors.append(zstandard.ZstdError)
    except ImportError:
        pass
    return tuple(errors)


_STREAM_ERRORS = _stream_errors()


def _norm(name: str) -> str:
    """Tar member name -> path relative to the image root, no leading or trailing slash."""
    return posixpath.normpath("/" + name).lstrip("/")


_GONE = object()  # deleted by a whiteout, or hidden by an opaque directory, in this layer
_MISSING = object()  # not in this (complete) layer: look in the one below
_IMPLICIT = object()  # a directory this layer only implies (it has paths under it)
_IMPLICIT_DIR = _Entry("dir", "", 0o755, 0, None)


class _Layer:
    """One layer's tar stream, read lazily and remembering every header seen so far."""

    def __init__(
        self,
        open_blob: Callable[[], Any],
        digest: str,
        budget: _Budget,
        guard: type[tarfile.TarInfo] = _HeaderGuard,
    ):
        self.digest = digest
        self._guard = guard
        self._open_blob = open_blob
        self._budget = budget
        self.entries: dict[str, _Entry] = {}
        self.whiteouts: set[str] = set()
        self.opaque: set[str] = set()
        self.implied: set[str] = set()  # parents of members that have no entry of their own
        self.complete = False
        self.compression = ""
        self._raw: Any = None
        self._tar: tarfile.TarFile | None = None

    @property
    def what(self) -> str:
        return f"layer {self.digest}"

    def _start(self) -> None:
        self._raw = self._open_blob()
        try:
            stream, self.compression = _decompressor(self._raw)
            self._tar = tarfile.open(  # noqa: SIM115 (kept open across lookups; closed in close)
                fileobj=_Counted(stream, self._budget, self.what),
                mode="r|",
                tarinfo=self._guard,
                bufsize=1 << 16,
            )
        except tarfile.ReadError as e:
            if "empty file" in str(e):  # a zero-length layer: nothing in it
                self._finish()
                return
            raise self._garbage(e) from None
        except _STREAM_ERRORS as e:
            raise self._garbage(e) from None

    def _garbage(self, e: BaseException) -> RegistryError:
        return RegistryError(
            "garbage", f"{self.what} is not a readable {self.compression or ''} tar: {e}"
        )

    def lookup(self, path: str, want_head: bool = False) -> Any:
        """The entry for ``path`` in this layer, reading on until this layer decides."""
        while True:
            entry = self.entries.get(path)
            if entry is not None:
                return entry
            if path in self.whiteouts:
                return _GONE
            if self.complete:
                parent = path
                while parent:
                    parent = posixpath.dirname(parent)
                    if parent in self.whiteouts or parent in self.opaque:
                        return _GONE
                return _IMPLICIT if path in self.implied else _MISSING
            self._advance_until(path, want_head)

    def _advance_until(self, path: str, want_head: bool) -> None:
        if self._raw is None:
            self._start()
            if self.complete:
                return
        tar = self._tar
        assert tar is not None
        try:
            while True:
                info = tar.next()
                if info is None:
                    break
                self._budget.members += 1
                if self._budget.members > self._budget.limits.members:
                    raise RegistryError(
                        "too-large",
                        f"more than {self._budget.limits.members} files in the image's layers",
                    )
                name = _norm(info.name)
                if self._record(tar, info, name, capture=want_head and name == path) == path:
                    return
        except _STREAM_ERRORS as e:
            raise self._garbage(e) from None
        self._finish()

    def _record(
        self, tar: tarfile.TarFile, info: tarfile.TarInfo, name: str, capture: bool
    ) -> str | None:
        """Remember one member; returns the path it decides (a whiteout's is the deleted one)."""
        base = posixpath.basename(name)
        parent = posixpath.dirname(name)
        while parent and parent not in self.implied:
            self.implied.add(parent)
            parent = posixpath.dirname(parent)
        if base.startswith(".wh."):
            parent = posixpath.dirname(name)
            if base == ".wh..wh..opq":
                self.opaque.add(parent)
                return None
            deleted = posixpath.join(parent, base[4:]) if parent else base[4:]
            self.whiteouts.add(deleted)
            return deleted
        if info.isreg():
            head = None
            if (info.mode & 0o111 or capture) and info.size > 0:
                fileobj = tar.extractfile(info)
                head = fileobj.read(self._budget.limits.head_bytes) if fileobj else b""
            elif info.size == 0:
                head = b""
            self.entries[name] = _Entry("file", "", info.mode, info.size, head)
        elif info.isdir():
            self.entries[name] = _Entry("dir", "", info.mode, 0, None)
        elif info.issym():
            self.entries[name] = _Entry("symlink", info.linkname, info.mode, 0, None)
        elif info.islnk():
            self.entries[name] = _Entry("hardlink", _norm(info.linkname), info.mode, 0, None)
        else:
            self.entries[name] = _Entry("other", "", info.mode, 0, None)
        return name

    def _finish(self) -> None:
        self.complete = True
        if self._raw is not None:
            # Read what the tar reader left (padding, the gzip trailer) so the digest is checked.
            while self._raw.read(1 << 16):
                pass
            self.close()

    def read_head(self, path: str) -> bytes:
        """First bytes of the regular file ``path``, from a fresh stream of this layer."""
        again = _Layer(self._open_blob, self.digest, self._budget, self._guard)
        try:
            entry = again.lookup(path, want_head=True)
        finally:
            again.close()
        return entry.head if isinstance(entry, _Entry) and entry.head is not None else b""

    def close(self) -> None:
        if self._raw is not None:
            self._raw.close()


# --- the image ------------------------------------------------------------------------------


class ImageFilesystem:
    """A read-only, lazily streamed view of an image's merged filesystem.

    ``layers`` are the image manifest's layer descriptors, bottom first (as in the manifest).
    """

    def __init__(
        self,
        client: RegistryClient,
        ref: Reference,
        layers: Sequence[Descriptor],
        *,
        deadline: float | None = None,
        limits: Limits | None = None,
    ):
        self.limits = limits or Limits()
        if deadline is None:
            deadline = time.monotonic() + 120
        self._budget = _Budget(self.limits, deadline)
        guard = type("_Guard", (_HeaderGuard,), {"max_header": self.limits.header_bytes})
        self._layers = [
            _Layer(self._opener(client, ref, d.digest, deadline), d.digest, self._budget, guard)
            for d in reversed(layers)
        ]

    def _opener(self, client: RegistryClient, ref: Reference, digest: str, deadline: float):
        def open_blob():
            self._budget.check_time(f"layer {digest}")
            return client.open_blob(
                ref, digest, max_bytes=self.limits.compressed_bytes, deadline=deadline
            )

        return open_blob

    @property
    def layers_opened(self) -> int:
        """How many layers had to be read (for tests and benchmarks)."""
        return sum(1 for layer in self._layers if layer._raw is not None or layer.complete)

    def _lookup(self, path: str, start: int = 0, want_head: bool = False):
        """(entry, layer index) for ``path`` in the merged view, or None when absent."""
        implied_at = None
        for index in range(start, len(self._layers)):
            found = self._layers[index].lookup(path, want_head)
            if found is _GONE:
                break
            if found is _IMPLICIT:
                # A tar without the directory's own entry: a lower layer may still say what
                # it is (a symlink, say); if none does, it is a plain directory.
                implied_at = index if implied_at is None else implied_at
                continue
            if found is not _MISSING:
                return found, index
        return (_IMPLICIT_DIR, implied_at) if implied_at is not None else None

    def resolve(self, path: str, cwd: str = "/") -> FileHead:
        """The regular file ``path`` names (relative to ``cwd``), links followed in the image."""
        start = posixpath.join(cwd, path)
        chain = ["/" + _norm(start)]
        parts = deque(p for p in start.split("/") if p)
        current = ""
        links = 0
        found: tuple[_Entry, int] | None = None
        while parts:
            part = parts.popleft()
            if part == ".":
                continue
            if part == "..":
                current = posixpath.dirname(current)
                found = None
                continue
            candidate = posixpath.join(current, part) if current else part
            last = not parts
            hit = self._lookup(candidate, want_head=last)
            if hit is None:
                raise ImageFileError("not-found", f"/{candidate} does not exist in the image")
            entry, index = hit
            if entry.kind == "symlink":
                links += 1
                if links > MAX_SYMLINKS:
                    raise ImageFileError(
                        "symlink-loop", f"too many symlinks resolving {chain[0]} (a loop?)"
                    )
                target = entry.linkname
                if target.startswith("/"):
                    current = ""
                rest = [p for p in target.split("/") if p] + list(parts)
                parts = deque(rest)
                chain.append("/" + _norm(posixpath.join(current, *rest) if rest else current))
                found = None
                continue
            if entry.kind == "hardlink":
                if not last:
                    raise ImageFileError("not-a-directory", f"/{candidate} is not a directory")
                candidate, entry, index = self._hardlink_target(entry, index, candidate)
                chain.append("/" + candidate)
            if not last and entry.kind != "dir":
                raise ImageFileError("not-a-directory", f"/{candidate} is not a directory")
            current = candidate
            found = (entry, index)
        if found is None or found[0].kind == "dir":
            raise ImageFileError("is-a-directory", f"{chain[-1]} is a directory")
        entry, index = found
        if entry.kind != "file":
            raise ImageFileError("not-a-file", f"{chain[-1]} is not a regular file")
        layer = self._layers[index]
        head = entry.head
        if head is None:
            head = layer.read_head(current)
        return FileHead("/" + current, tuple(chain), layer.digest, entry.mode, entry.size, head)

    def _hardlink_target(self, link: _Entry, index: int, name: str) -> tuple[str, _Entry, int]:
        # The data lives with the file's first name, earlier in the same layer's tar (or, for
        # layers written that way, in a layer below).
        target = link.linkname
        entry = self._layers[index].entries.get(target)
        hit = (entry, index) if entry is not None else self._lookup(target, index)
        if hit is None or hit[0].kind != "file":
            raise ImageFileError(
                "not-found", f"/{name} is a hardlink to /{target}, which is not in the image"
            )
        return target, hit[0], hit[1]

    def which(self, name: str, path_env: str = DEFAULT_PATH, cwd: str = "/") -> FileHead:
        """Resolve a command name as runc does (Go's exec.LookPath): a name with a slash
        as is, otherwise the first PATH entry holding an executable regular file."""
        if "/" in name:
            return self.resolve(name, cwd)
        tried = []
        for directory in path_env.split(":"):
            candidate = posixpath.join(cwd, directory or ".", name)
            tried.append(candidate)
            try:
                found = self.resolve(candidate)
            except ImageFileError as e:
                if e.kind in ("not-found", "not-a-directory", "is-a-directory", "not-a-file"):
                    continue
                raise
            if found.executable:
                return found
        raise ImageFileError(
            "not-found", f"{name!r} is not an executable file in PATH={path_env} in the image"
        )

    def close(self) -> None:
        for layer in self._layers:
            layer.close()

    def __enter__(self) -> ImageFilesystem:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# --- what docker run executes ---------------------------------------------------------------


def command_of(config: dict) -> tuple[list[str], str, str]:
    """``(argv, PATH, WORKDIR)`` a container of this image config starts with.

    argv is ``Entrypoint + Cmd``; PATH comes from the config's Env (docker's default when
    unset); WORKDIR defaults to ``/``.
    """
    inner = config.get("config") if isinstance(config.get("config"), dict) else {}
    entrypoint = inner.get("Entrypoint") or []
    cmd = inner.get("Cmd") or []
    argv = [a for a in [*entrypoint, *cmd] if isinstance(a, str)]
    path_env = DEFAULT_PATH
    env = inner.get("Env") or []
    for item in env if isinstance(env, list) else []:
        if isinstance(item, str) and item.startswith("PATH="):
            path_env = item[5:]
    workdir = inner.get("WorkingDir") or "/"
    if not isinstance(workdir, str) or not workdir.startswith("/"):
        workdir = "/" + str(workdir)
    return argv, path_env, workdir


@dataclass(frozen=True)
class Program:
    """What ``docker run IMAGE`` executes: argv, the file argv[0] names, and the chain of
    ``#!`` interpreters down to the binary the kernel loads."""

    argv: tuple[str, ...]
    file: FileHead
    interpreters: tuple[FileHead, ...] = field(default=())

    @property
    def binary(self) -> FileHead:
        """The file whose header the kernel checks last: an interpreter when there is one."""
        return self.interpreters[-1] if self.interpreters else self.file

    @property
    def route(self) -> str:
        """``hello: /usr/local/bin/hello; #! /bin/sh -> /bin/busybox``, for messages."""
        text = self.file.route
        if self.argv and self.argv[0] != self.file.chain[0]:
            text = f"{self.argv[0]}: {text}"
        return text + "".join(f"; #! {i.route}" for i in self.interpreters)


def find_program(fs: ImageFilesystem, config: dict) -> Program:
    """Resolve the image's command to files in ``fs`` (see :class:`Program`)."""
    argv, path_env, workdir = command_of(config)
    if not argv:
        raise ImageFileError(
            "no-command", "the image has no ENTRYPOINT or CMD: `docker run` needs a command"
        )
    found = fs.which(argv[0], path_env, workdir)
    if not found.executable:
        raise ImageFileError(
            "not-executable", f"{found.path} has no execute permission (mode {found.mode:o})"
        )
    interpreters: list[FileHead] = []
    current = found
    while (shebang := elf.parse_shebang(current.head)) is not None:
        if len(interpreters) >= MAX_INTERPRETERS:
            raise ImageFileError(
                "interpreter-loop", f"more than {MAX_INTERPRETERS} nested #! interpreters"
            )
        try:
            current = fs.resolve(shebang.interpreter, workdir)
        except ImageFileError as e:
            why = f"{current.path} starts with #!{shebang.interpreter!r}: {e}"
            if shebang.interpreter.endswith("\r"):
                why += " (the #! line ends in \\r: the script has Windows line endings)"
            raise ImageFileError(e.kind, why) from None
        interpreters.append(current)
    return Program(tuple(argv), found, tuple(interpreters))


def read_program(
    client: RegistryClient,
    ref: Reference,
    layers: Sequence[Descriptor],
    config: dict,
    *,
    deadline: float | None = None,
    limits: Limits | None = None,
) -> Program:
    """:func:`find_program` on an image in a registry, closing its streams afterwards."""
    with ImageFilesystem(client, ref, layers, deadline=deadline, limits=limits) as fs:
        return find_program(fs, config)
