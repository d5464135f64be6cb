"""Finding the entrypoint binary in an image's layers, served over HTTP by a local registry:
PATH and WORKDIR, symlinks (relative, absolute, usrmerge), hardlinks, whiteouts and opaque
directories across layers, #! interpreters, gzip/zstd/plain layers, laziness (a lower layer
is not fetched when an upper one decides) and hostile layers."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
import time
from pathlib import Path

import pytest
import zstandard
from fake_registry import FakeRegistry

from grader.docker import elf
from grader.docker.layers import ImageFileError, ImageFilesystem, Limits, find_program
from grader.docker.registry import Descriptor, Reference, RegistryClient, RegistryError

HEADS = {
    h["name"]: bytes.fromhex(h["head_hex"])
    for h in json.loads((Path(__file__).parents[1] / "fixtures/elf/heads.json").read_text())
}
ARM64 = HEADS["busybox-arm64"] + b"\0" * 4000  # a real busybox header, then padding
AMD64 = HEADS["busybox-amd64"] + b"\0" * 4000
LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def layer(*members, compression="gzip") -> bytes:
    """A layer tar from ("file", path, data[, mode]), ("dir", path), ("symlink", path,
    target), ("hardlink", path, target), ("whiteout", path), ("opaque", dir)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for kind, path, *rest in members:
            info = tarfile.TarInfo(path)
            data = b""
            if kind == "file":
                data = rest[0]
                info.mode = rest[1] if len(rest) > 1 else 0o755
            elif kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, 0o755
            elif kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, rest[0]
            elif kind == "hardlink":
                info.type, info.linkname = tarfile.LNKTYPE, rest[0]
            elif kind == "whiteout":
                parent, _, base = path.rpartition("/")
                info.name = f"{parent}/.wh.{base}" if parent else f".wh.{base}"
            elif kind == "opaque":
                info.name = f"{path}/.wh..wh..opq"
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data else None)
    raw = buf.getvalue()
    if compression == "gzip":
        return gzip.compress(raw)
    if compression == "zstd":
        return zstandard.ZstdCompressor().compress(raw)
    return raw


def config(cmd=None, entrypoint=None, env=None, workdir=None) -> dict:
    inner = {"Env": env or ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]}
    if cmd is not None:
        inner["Cmd"] = cmd
    if entrypoint is not None:
        inner["Entrypoint"] = entrypoint
    if workdir:
        inner["WorkingDir"] = workdir
    return {"architecture": "arm64", "os": "linux", "config": inner}


@pytest.fixture
def registry():
    with FakeRegistry() as reg:
        yield reg


def image(registry, *blobs, limits=None, deadline=None) -> ImageFilesystem:
    """An ImageFilesystem over layers (bottom first) pushed to the fake registry."""
    descriptors = [Descriptor(LAYER, registry.add_blob("img", blob), len(blob)) for blob in blobs]
    ref = Reference.parse(registry.ref("img"))
    return ImageFilesystem(
        RegistryClient(timeout=2), ref, descriptors, limits=limits, deadline=deadline
    )


BUSYBOX_BASE = layer(("dir", "bin"), ("file", "bin/busybox", ARM64))
BUSYBOX_LINKS = layer(("dir", "bin"), ("symlink", "bin/sh", "/bin/busybox"))


def test_a_script_on_path_runs_busybox_through_a_symlink(registry):
    app = layer(
        ("dir", "usr"),
        ("dir", "usr/local"),
        ("dir", "usr/local/bin"),
        ("file", "usr/local/bin/hello", b"#!/bin/sh\necho hello\n"),
    )
    with image(registry, BUSYBOX_BASE, BUSYBOX_LINKS, app) as fs:
        program = find_program(fs, config(cmd=["hello"]))
    assert program.file.path == "/usr/local/bin/hello"
    assert [i.path for i in program.interpreters] == ["/bin/busybox"]
    assert program.interpreters[0].chain == ("/bin/sh", "/bin/busybox")
    assert elf.parse_header(program.binary.head).arch == "arm64"
    assert program.route == "hello: /usr/local/bin/hello; #! /bin/sh -> /bin/busybox"


def test_the_first_executable_on_path_wins_and_non_executables_are_skipped(registry):
    base = layer(
        ("file", "usr/local/bin/tool", b"not executable", 0o644),
        ("file", "usr/bin/tool", AMD64),
        ("file", "bin/tool", ARM64),
    )
    with image(registry, base) as fs:
        program = find_program(fs, config(cmd=["tool"]))
    assert program.file.path == "/usr/bin/tool"
    assert elf.parse_header(program.binary.head).arch == "amd64"


def test_entrypoint_comes_before_cmd_and_relative_paths_use_workdir(registry):
    base = layer(("dir", "srv"), ("file", "srv/app", AMD64), ("file", "bin/other", ARM64))
    with image(registry, base) as fs:
        program = find_program(fs, config(entrypoint=["./app"], cmd=["other"], workdir="/srv"))
    assert program.argv == ("./app", "other")
    assert program.file.path == "/srv/app"


def test_usrmerge_relative_directory_symlinks(registry):
    # Debian: /bin -> usr/bin, /usr/bin/sh -> dash.
    base = layer(
        ("symlink", "bin", "usr/bin"),
        ("dir", "usr"),
        ("dir", "usr/bin"),
        ("file", "usr/bin/dash", AMD64),
        ("symlink", "usr/bin/sh", "dash"),
    )
    with image(registry, base) as fs:
        program = find_program(fs, config(cmd=["/bin/sh", "-c", "echo hi"]))
    assert program.file.path == "/usr/bin/dash"
    assert program.file.chain == ("/bin/sh", "/usr/bin/sh", "/usr/bin/dash")


def test_dotdot_cannot_climb_out_of_the_image(registry):
    base = layer(
        ("file", "bin/busybox", ARM64),
        ("symlink", "usr/bin/env", "../../../../../bin/busybox"),
        ("symlink", "opt/passwd", "/etc/passwd"),  # exists on the grader's machine, not here
    )
    with image(registry, base) as fs:
        assert fs.resolve("/usr/bin/env").path == "/bin/busybox"
        with pytest.raises(ImageFileError) as err:
            fs.resolve("/opt/passwd")
    assert err.value.kind == "not-found"


def test_hardlinks_read_the_first_name(registry):
    base = layer(("file", "bin/busybox", ARM64), ("hardlink", "bin/sh", "bin/busybox"))
    with image(registry, base) as fs:
        found = fs.resolve("/bin/sh")
    assert found.path == "/bin/busybox" and found.head[:4] == b"\x7fELF"


def test_a_whiteout_deletes_a_file_from_lower_layers(registry):
    lower = layer(("file", "usr/local/bin/tool", AMD64), ("file", "usr/bin/tool", ARM64))
    upper = layer(("dir", "usr/local/bin"), ("whiteout", "usr/local/bin/tool"))
    with image(registry, lower, upper) as fs:
        program = find_program(fs, config(cmd=["tool"]))
    assert program.file.path == "/usr/bin/tool"
    assert elf.parse_header(program.file.head).arch == "arm64"


def test_an_upper_layer_replaces_a_file(registry):
    lower = layer(("file", "app", AMD64))
    upper = layer(("file", "app", ARM64))
    with image(registry, lower, upper) as fs:
        assert elf.parse_header(fs.resolve("/app").head).arch == "arm64"


def test_an_opaque_directory_hides_everything_below_it(registry):
    lower = layer(("dir", "opt"), ("file", "opt/run", AMD64), ("file", "opt/keep", AMD64))
    upper = layer(("dir", "opt"), ("opaque", "opt"), ("file", "opt/run", ARM64))
    with image(registry, lower, upper) as fs:
        assert elf.parse_header(fs.resolve("/opt/run").head).arch == "arm64"
        with pytest.raises(ImageFileError) as err:
            fs.resolve("/opt/keep")
    assert err.value.kind == "not-found"


def test_a_deleted_directory_takes_its_files_with_it(registry):
    lower = layer(("dir", "opt"), ("file", "opt/app/run", AMD64))
    upper = layer(("whiteout", "opt/app"))
    with image(registry, lower, upper) as fs, pytest.raises(ImageFileError):
        fs.resolve("/opt/app/run")


def test_the_lower_layer_is_not_fetched_when_the_top_one_decides(registry):
    garbage_below = b"this layer is never read" * 10
    top = layer(("file", "app", ARM64))
    with image(registry, garbage_below, top) as fs:
        found = find_program(fs, config(entrypoint=["/app"]))
        assert fs.layers_opened == 1
    assert elf.parse_header(found.file.head).arch == "arm64"
    below_digest = next(d for (r, d), b in registry.blobs.items() if b == garbage_below)
    assert registry.blob_requests(below_digest) == 0


@pytest.mark.parametrize("compression", ["gzip", "zstd", "none"])
def test_layer_compressions(registry, compression):
    blob = layer(("file", "app", ARM64), compression=compression)
    with image(registry, blob) as fs:
        assert elf.parse_header(fs.resolve("app").head).arch == "arm64"


def test_a_non_executable_file_is_read_on_demand(registry):
    base = layer(
        ("file", "etc/os-release", b'PRETTY_NAME="Debian GNU/Linux 12"\n' * 20, 0o644),
        ("file", "bin/sh", ARM64),
    )
    with image(registry, base) as fs:
        found = fs.resolve("/bin/sh")  # reads the whole layer past os-release
        assert found.executable
        text = fs.resolve("/etc/os-release")  # seen without its bytes: read again
    assert text.head.startswith(b'PRETTY_NAME="Debian') and len(text.head) == 256


@pytest.mark.parametrize(
    ("members", "cfg", "kind"),
    [
        ([("file", "bin/sh", ARM64)], config(), "no-command"),
        ([("file", "bin/sh", ARM64)], config(cmd=["hello"]), "not-found"),
        ([("file", "app", ARM64, 0o644)], config(entrypoint=["/app"]), "not-executable"),
        ([("dir", "app")], config(entrypoint=["/app"]), "is-a-directory"),
        ([("file", "etc", b"x"), ("dir", "bin")], config(cmd=["/etc/app"]), "not-a-directory"),
        (
            [("symlink", "a", "b"), ("symlink", "b", "a")],
            config(entrypoint=["/a"]),
            "symlink-loop",
        ),
        ([("file", "loop", b"#!/loop\n")], config(entrypoint=["/loop"]), "interpreter-loop"),
        ([("file", "s", b"#!/nowhere/sh\n")], config(entrypoint=["/s"]), "not-found"),
    ],
    ids=[
        "no-command",
        "not-on-path",
        "not-executable",
        "directory",
        "file-as-directory",
        "symlink-loop",
        "interpreter-loop",
        "missing-interpreter",
    ],
)
def test_commands_that_do_not_resolve(registry, members, cfg, kind):
    with image(registry, layer(*members)) as fs, pytest.raises(ImageFileError) as err:
        find_program(fs, cfg)
    assert err.value.kind == kind
    assert str(err.value)


def test_env_python_script_checks_env(registry):
    base = layer(
        ("file", "usr/bin/env", AMD64),
        ("file", "usr/bin/python3", ARM64),
        ("file", "app/main.py", b"#!/usr/bin/env python3 -u\nprint('hi')\n"),
    )
    with image(registry, base) as fs:
        program = find_program(fs, config(entrypoint=["/app/main.py"]))
    # The kernel loads /usr/bin/env, not python3: that is the binary whose machine matters.
    assert program.binary.path == "/usr/bin/env"


# --- hostile layers -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "blob",
    [
        b"\x1f\x8b" + b"not really gzip" * 20,
        gzip.compress(b"not a tar archive at all" * 40),
        layer(("file", "app", ARM64))[:60],  # gzip cut short
        b"\x28\xb5\x2f\xfd" + b"zstd garbage" * 20,
        b"\x00" * 100 + b"plain garbage" * 50,
    ],
    ids=["bad-gzip", "gzip-not-tar", "truncated-gzip", "bad-zstd", "not-a-tar"],
)
def test_garbage_layers_are_registry_errors(registry, blob):
    with image(registry, blob) as fs, pytest.raises(RegistryError) as err:
        fs.resolve("/app")
    assert err.value.kind in ("garbage", "digest-mismatch")


def test_a_layer_that_does_not_match_its_digest(registry):
    blob = layer(("file", "other", ARM64))
    with image(registry, blob) as fs:
        digest = fs._layers[0].digest
        registry.blobs[("img", digest)] = layer(("file", "other", AMD64))
        with pytest.raises(RegistryError) as err:
            fs.resolve("/app")  # not there: the whole layer is read, so its digest is checked
    assert err.value.kind == "digest-mismatch"


def test_a_decompression_bomb_stops_at_the_limit(registry):
    bomb = layer(("file", "zeros", b"\0" * 20_000_000, 0o644), ("file", "app", ARM64))
    assert len(bomb) < 100_000
    limits = Limits(uncompressed_bytes=5_000_000)
    with image(registry, bomb, limits=limits) as fs, pytest.raises(RegistryError) as err:
        fs.resolve("/app")
    assert err.value.kind == "too-large"


def test_too_many_members(registry):
    blob = layer(*[("dir", f"d{i}") for i in range(300)])
    fs = image(registry, blob, limits=Limits(members=100))
    with fs, pytest.raises(RegistryError) as err:
        fs.resolve("/app")
    assert err.value.kind == "too-large"


def test_a_huge_pax_header_is_refused_before_it_is_read(registry):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("app")
        info.pax_headers = {"comment": "x" * 3_000_000}
        tar.addfile(info, io.BytesIO(b""))
    fs = image(registry, gzip.compress(buf.getvalue()))
    with fs, pytest.raises(RegistryError) as err:
        fs.resolve("/app")
    assert err.value.kind == "garbage" and "extension header" in str(err.value)


def test_a_slow_layer_meets_the_deadline(registry):
    blob = layer(("file", "app", ARM64))
    with image(registry, blob, deadline=time.monotonic() + 0.5) as fs:
        registry.faults[f"/blobs/{fs._layers[0].digest}"] = "drip"
        start = time.monotonic()
        with pytest.raises(RegistryError) as err:
            fs.resolve("/app")
    assert err.value.kind == "timeout"
    assert time.monotonic() - start < 3


def test_an_empty_layer_is_empty_not_garbage(registry):
    with image(registry, b"", layer(("file", "app", ARM64))) as fs:
        assert fs.resolve("/app").size == len(ARM64)
        with pytest.raises(ImageFileError):
            fs.resolve("/missing")


def test_directories_a_tar_only_implies(registry):
    # Some tools write "bin/extra" with no "bin/" entry; the lower layer's /bin symlink stays.
    lower = layer(("symlink", "bin", "usr/bin"), ("file", "usr/bin/busybox", ARM64))
    upper = layer(("file", "bin/extra", b"x", 0o644), ("file", "opt/app/run", AMD64))
    with image(registry, lower, upper) as fs:
        assert fs.resolve("/bin/busybox").chain == ("/bin/busybox", "/usr/bin/busybox")
        assert fs.resolve("/opt/app/run").path == "/opt/app/run"
        with pytest.raises(ImageFileError) as err:
            fs.resolve("/opt")
    assert err.value.kind == "is-a-directory"
