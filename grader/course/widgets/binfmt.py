"""BinfmtPanel: the emulators registered in binfmt_misc with their flags (F highlighted),
what is missing for the platforms a learner chose, and the install command that fits this
machine (Debian's qemu-user-static via ``grader engine up`` here; ``tonistiigi/binfmt`` where
images can be pulled), shown before it runs.

:class:`BinfmtStatus` and :func:`install_plan` are plain logic; the panel only draws them.
"""

from __future__ import annotations

import os
import platform as _platform
import shutil
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import ipywidgets as widgets

from grader import proc
from grader.course.widgets.common import (
    can_run,
    command_html,
    esc,
    known_error_html,
    log_output,
    no_engine_html,
    notice_html,
    panel_box,
    start_thread,
)
from grader.docker.progress import host_platform

#: binfmt_misc handler name -> the platform it lets the kernel run.
HANDLER_PLATFORMS = {
    "qemu-aarch64": "linux/arm64",
    "qemu-arm": "linux/arm/v7",
    "qemu-riscv64": "linux/riscv64",
    "qemu-ppc64le": "linux/ppc64le",
    "qemu-ppc64": "linux/ppc64",
    "qemu-s390x": "linux/s390x",
    "qemu-x86_64": "linux/amd64",
    "qemu-i386": "linux/386",
    "qemu-mips64el": "linux/mips64le",
    "qemu-mips64": "linux/mips64",
    "qemu-loongarch64": "linux/loong64",
}
#: The other way round; arm/v6 uses the same 32-bit ARM emulator as arm/v7.
PLATFORM_HANDLERS = {p: h for h, p in HANDLER_PLATFORMS.items()} | {"linux/arm/v6": "qemu-arm"}
#: Names ``tonistiigi/binfmt --install`` takes.
BINFMT_IMAGE_NAMES = {
    "linux/arm64": "arm64",
    "linux/arm/v7": "arm",
    "linux/arm/v6": "arm",
    "linux/riscv64": "riscv64",
    "linux/ppc64le": "ppc64le",
    "linux/s390x": "s390x",
    "linux/amd64": "amd64",
    "linux/386": "386",
    "linux/mips64le": "mips64le",
    "linux/mips64": "mips64",
    "linux/loong64": "loong64",
}
CHOOSABLE = (
    "linux/amd64",
    "linux/arm64",
    "linux/arm/v7",
    "linux/riscv64",
    "linux/ppc64le",
    "linux/s390x",
    "linux/386",
)
#: What ``uname -m`` prints in a container of each platform.
UNAME = {
    "linux/amd64": "x86_64",
    "linux/arm64": "aarch64",
    "linux/arm/v7": "armv7l",
    "linux/arm/v6": "armv6l",
    "linux/riscv64": "riscv64",
    "linux/ppc64le": "ppc64le",
    "linux/s390x": "s390x",
    "linux/386": "i686",
}
BINFMT_DIR = Path("/proc/sys/fs/binfmt_misc")


def native_platforms(host: str | None = None) -> set[str]:
    """What this machine runs without emulation (amd64 also runs 386 binaries)."""
    host = host or host_platform()
    out = {host}
    if host == "linux/amd64":
        out.add("linux/386")
    return out


@dataclass(frozen=True)
class Emulator:
    name: str
    platform: str | None
    enabled: bool
    interpreter: str
    flags: str

    @property
    def fix_binary(self) -> bool:
        """F: the kernel opens the interpreter at registration, so containers can use it."""
        return "F" in self.flags


@dataclass
class BinfmtStatus:
    emulators: dict[str, Emulator]
    host: str
    mounted: bool = True
    builder_platforms: tuple[str, ...] = ()

    @classmethod
    def read(
        cls,
        entries: Mapping[str, Mapping[str, str]] | None = None,
        host: str | None = None,
        builder_platforms: Iterable[str] = (),
    ) -> BinfmtStatus:
        from grader.engine import services

        mounted = services.binfmt_mounted() if entries is None else True
        entries = services.binfmt_entries() if entries is None else entries
        emulators = {
            name: Emulator(
                name,
                HANDLER_PLATFORMS.get(name),
                info.get("enabled", "enabled") == "enabled",
                info.get("interpreter", ""),
                info.get("flags", ""),
            )
            for name, info in entries.items()
        }
        return cls(emulators, host or host_platform(), mounted, tuple(builder_platforms))

    def problems(self, platforms: Iterable[str]) -> dict[str, str]:
        """platform -> what stops containers of it from running here (missing = absent)."""
        out: dict[str, str] = {}
        native = native_platforms(self.host)
        for plat in platforms:
            if plat in native:
                continue
            handler = PLATFORM_HANDLERS.get(plat)
            if handler is None:
                out[plat] = "the course knows no QEMU emulator name for this platform"
                continue
            if not self.mounted:
                out[plat] = "binfmt_misc is not mounted (/proc/sys/fs/binfmt_misc)"
                continue
            emu = self.emulators.get(handler)
            if emu is None:
                out[plat] = f"no emulator registered ({handler})"
            elif not emu.enabled:
                out[plat] = f"{handler} is registered but disabled"
            elif not emu.fix_binary:
                out[plat] = (
                    f"{handler} lacks the F flag: it works for programs started on the host, "
                    "but not inside containers, where its interpreter path does not exist"
                )
        return out

    def builder_gaps(self, platforms: Iterable[str]) -> list[str]:
        """Platforms chosen that the builder does not report (it may need a restart)."""
        if not self.builder_platforms:
            return []
        return [p for p in platforms if p not in self.builder_platforms]


@dataclass(frozen=True)
class InstallPlan:
    method: str  # debian | binfmt-image | desktop | nothing
    argv: tuple[str, ...]  # what the panel runs
    shown: tuple[str, ...]  # what it shows (may be shorter: ``grader engine up``)
    explanation: str
    runnable: bool
    also: tuple[tuple[str, ...], ...] = field(default=())


def _grader_argv() -> list[str]:
    script = Path(sys.executable).with_name("grader")
    if script.exists():
        return [str(script)]
    found = shutil.which("grader")
    return [found] if found else [sys.executable, "-m", "grader.cli"]


def install_plan(
    missing: Iterable[str],
    *,
    engine: bool,
    system: str | None = None,
    debian: bool | None = None,
    root: bool | None = None,
) -> InstallPlan:
    """The install action that fits this machine for the ``missing`` platforms."""
    from grader.engine import install

    missing = list(missing)
    system = system or _platform.system()
    debian = install.is_debian_like() if debian is None else debian
    root = (os.geteuid() == 0) if root is None else root
    names = sorted({BINFMT_IMAGE_NAMES[p] for p in missing if p in BINFMT_IMAGE_NAMES})
    image = (
        "docker",
        "run",
        "--privileged",
        "--rm",
        "tonistiigi/binfmt",
        "--install",
        ",".join(names) if names else "all",
    )
    if not missing:
        return InstallPlan(
            "nothing", (), (), "Every chosen platform can run here.", False, also=(image,)
        )
    if system != "Linux":
        return InstallPlan(
            "desktop",
            image,
            image,
            "Docker Desktop ships QEMU emulators for arm64 and amd64. If one is missing, run the "
            "binfmt image (it registers emulators in Desktop's Linux VM).",
            engine,
        )
    if debian:
        apt = ("apt-get", "install", "-y", "qemu-user-static", "binfmt-support")
        return InstallPlan(
            "debian",
            (*_grader_argv(), "engine", "up"),
            ("grader", "engine", "up"),
            "On Debian the course installs Debian's qemu-user-static and binfmt-support "
            "(static emulators registered with the F flag) as part of its engine setup; "
            "the engine's images cannot be pulled here, so no binfmt image is used."
            + ("" if root else " It needs root: run it with sudo in a terminal."),
            engine and root,
            also=(apt, ("update-binfmts", "--enable"), image),
        )
    return InstallPlan(
        "binfmt-image",
        image,
        image,
        "Registers QEMU emulators with the F flag from the tonistiigi/binfmt image "
        "(privileged, once per boot).",
        engine,
    )


def verify_argv(platform: str, image: str = "busybox:latest") -> list[str]:
    return ["docker", "run", "--rm", "--platform", platform, image, "uname", "-m"]


def flags_html(flags: str) -> str:
    return (
        "".join(
            f'<span class="mp-flag-F" title="F: fix binary">{esc(ch)}</span>'
            if ch == "F"
            else esc(ch)
            for ch in flags
        )
        or "<i>none</i>"
    )


def emulators_table_html(status: BinfmtStatus) -> str:
    if not status.mounted:
        return '<div class="mp-missing">binfmt_misc is not mounted here.</div>'
    rows = []
    for emu in sorted(status.emulators.values(), key=lambda e: (e.platform is None, e.name)):
        rows.append(
            f'<tr class="mp-emulator" data-name="{esc(emu.name)}" '
            f'data-flags="{esc(emu.flags)}" data-platform="{esc(emu.platform or "")}">'
            f"<td>{esc(emu.name)}</td><td>{esc(emu.platform or '')}</td>"
            f"<td>{'enabled' if emu.enabled else '<b>disabled</b>'}</td>"
            f"<td>{flags_html(emu.flags)}</td><td><code>{esc(emu.interpreter)}</code></td></tr>"
        )
    if not rows:
        return '<div class="mp-missing">No emulators are registered in binfmt_misc.</div>'
    return (
        '<table class="mp-table mp-emulators"><tr><th>handler</th><th>platform</th>'
        "<th>state</th><th>flags</th><th>interpreter</th></tr>" + "".join(rows) + "</table>"
    )


class BinfmtPanel:
    """Emulators, what the chosen platforms lack, and the install / verify actions."""

    def __init__(
        self,
        platforms: Iterable[str] = ("linux/amd64", "linux/arm64"),
        *,
        engine: bool | None = None,
        env: Mapping[str, str] | None = None,
        verify_image: str = "busybox:latest",
    ) -> None:
        self.engine = can_run() if engine is None else engine
        self.env = env
        self.verify_image = verify_image
        self.status: BinfmtStatus = BinfmtStatus({}, host_platform())
        self.plan: InstallPlan | None = None
        self.verified: dict[str, str] = {}
        wanted = set(platforms)
        self.checks = {
            p: widgets.Checkbox(
                value=p in wanted, description=p, indent=False, layout=widgets.Layout(width="140px")
            )
            for p in CHOOSABLE
        }
        for p, c in self.checks.items():
            c.add_class(f"mp-binfmt-platform-{p.replace('/', '-')}")
            c.observe(lambda _c: self._update(), "value")
        self.table = widgets.HTML()
        self.table.add_class("mp-emulators-table")
        self.missing = widgets.HTML()
        self.missing.add_class("mp-binfmt-missing")
        self.command = widgets.HTML()
        self.notice = widgets.HTML()
        self.result = widgets.HTML()
        self.log = log_output()
        self.install_button = widgets.Button(
            description="Install emulators", button_style="primary"
        )
        self.install_button.add_class("mp-binfmt-install")
        self.verify_button = widgets.Button(description="Run uname -m on each")
        self.verify_button.add_class("mp-binfmt-verify")
        self.refresh_button = widgets.Button(description="Refresh", icon="refresh")
        self.install_button.on_click(lambda _b: start_thread(self.install, "binfmt-install"))
        self.verify_button.on_click(lambda _b: start_thread(self.verify, "binfmt-verify"))
        self.refresh_button.on_click(lambda _b: self.refresh())
        self.widget = panel_box(
            [
                widgets.HTML("<h4>QEMU emulators (binfmt_misc)</h4>"),
                self.notice,
                self.table,
                widgets.HTML("<b>Platforms you want to build or run</b>"),
                widgets.HBox(
                    list(self.checks.values()), layout=widgets.Layout(flex_flow="row wrap")
                ),
                self.missing,
                self.command,
                widgets.HBox([self.install_button, self.verify_button, self.refresh_button]),
                self.result,
                self.log,
            ],
            "mp-binfmt-panel",
        )
        if not self.engine:
            self.notice.value = no_engine_html("Emulators.")
        self.refresh()

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)

    @property
    def chosen(self) -> list[str]:
        return [p for p, c in self.checks.items() if c.value]

    def refresh(self) -> BinfmtStatus:
        builder_platforms: tuple[str, ...] = ()
        if self.engine:
            from grader.course.widgets.builders import Builders

            try:
                rows = Builders(env=self.env, timeout=60).list()
                current = next((r for r in rows if r.current), rows[0] if rows else None)
                builder_platforms = current.platforms if current else ()
            except proc.CommandError:
                builder_platforms = ()
        self.status = BinfmtStatus.read(builder_platforms=builder_platforms)
        self.table.value = emulators_table_html(self.status)
        self._update()
        return self.status

    def _update(self) -> None:
        chosen = self.chosen
        problems = self.status.problems(chosen)
        native = native_platforms(self.status.host)
        lines = []
        for plat in chosen:
            if plat in native:
                state, text = "native", f"{plat}: native on this {self.status.host} machine"
            elif plat in problems:
                state, text = "missing", f"{plat}: {problems[plat]}"
            else:
                emu = self.status.emulators[PLATFORM_HANDLERS[plat]]
                state, text = "ok", f"{plat}: emulated by {emu.name} (flags {emu.flags})"
            cls = "mp-missing" if state == "missing" else ""
            lines.append(
                f'<li class="mp-binfmt-state {cls}" data-platform="{esc(plat)}" '
                f'data-state="{state}">{esc(text)}</li>'
            )
        gaps = [p for p in self.status.builder_gaps(chosen) if p not in problems]
        if gaps:
            lines.append(
                f'<li class="mp-warning">The current builder does not report '
                f"{esc(', '.join(gaps))} although binfmt_misc has an emulator: BuildKit "
                "detects emulators when it starts, so restart it (or create a new builder) "
                "after registering them.</li>"
            )
        self.missing.value = f"<ul>{''.join(lines)}</ul>" if lines else ""
        self.plan = install_plan(list(problems), engine=self.engine)
        parts = [notice_html(esc(self.plan.explanation))]
        if self.plan.shown:
            parts.append(command_html(list(self.plan.shown), "Install command"))
        for extra in self.plan.also:
            parts.append(
                command_html(
                    list(extra),
                    "Or by hand" if self.plan.method != "nothing" else "Where images can be pulled",
                )
            )
        foreign = [p for p in chosen if p not in native]
        for plat in foreign:
            parts.append(command_html(verify_argv(plat, self.verify_image), f"Check {plat}"))
        self.command.value = "".join(parts)
        self.install_button.disabled = not self.plan.runnable
        self.verify_button.disabled = not (self.engine and foreign)

    def install(self) -> proc.Completed | None:
        plan = self.plan
        if plan is None or not plan.runnable:
            return None
        self.install_button.disabled = True
        self.log.append_stdout(f"$ {' '.join(plan.shown)}\n")
        try:
            done = proc.run(list(plan.argv), timeout=1800, env=self.env)
            self.log.append_stdout(done.stdout[-4000:] + done.stderr[-4000:])
            self.result.value = notice_html("Installed; the table is up to date.")
        except proc.CommandError as e:
            self.result.value = known_error_html(e.known, str(e))
            done = None
        self.refresh()
        return done

    def verify(self) -> dict[str, str]:
        """Run ``uname -m`` in a container of each chosen foreign platform."""
        self.verified = {}
        native = native_platforms(self.status.host)
        rows = []
        for plat in (p for p in self.chosen if p not in native):
            argv = verify_argv(plat, self.verify_image)
            try:
                done = proc.run(argv, timeout=300, env=self.env)
                got = done.stdout.strip()
                expected = UNAME.get(plat, "?")
                ok = got == expected
                self.verified[plat] = got
                rows.append(
                    f'<tr class="mp-verify" data-platform="{esc(plat)}" data-ok="{int(ok)}">'
                    f"<td>{esc(plat)}</td><td><code>{esc(got)}</code></td>"
                    f"<td>{'as expected' if ok else f'expected {esc(expected)}'}</td></tr>"
                )
            except proc.CommandError as e:
                self.verified[plat] = ""
                rows.append(
                    f'<tr class="mp-verify" data-platform="{esc(plat)}" data-ok="0">'
                    f"<td>{esc(plat)}</td><td colspan=2>{known_error_html(e.known, str(e))}</td>"
                    "</tr>"
                )
        self.result.value = (
            '<table class="mp-table"><tr><th>platform</th><th>uname -m</th><th></th></tr>'
            + "".join(rows)
            + "</table>"
        )
        return self.verified
