"""BuilderPanel: ``docker buildx ls`` as a table; create (idempotent), use, inspect
--bootstrap and rm, each showing its exact command.

The logic (:class:`Builders`) is plain Python: argv lists, JSON parsing, the idempotent
create. ``env`` is passed to every command, so tests can point ``DOCKER_CONFIG`` at a
directory of their own and ``buildx use`` never changes the shared machine's current builder.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import ipywidgets as widgets

from grader import proc
from grader.course.widgets.common import (
    command_html,
    esc,
    known_error_html,
    log_output,
    no_engine_html,
    notice_html,
    panel_box,
    start_thread,
)

DRIVERS = ("docker-container", "kubernetes", "remote")
_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$")


@dataclass(frozen=True)
class BuilderInfo:
    """One row of ``docker buildx ls --format json``."""

    name: str
    driver: str
    status: str
    platforms: tuple[str, ...]
    buildkit: str = ""
    endpoint: str = ""
    nodes: int = 0
    current: bool = False

    @property
    def native_platform(self) -> str | None:
        """The first platform a node reports is the one it runs natively."""
        return self.platforms[0] if self.platforms else None

    @classmethod
    def from_json(cls, d: dict, current: str | None = None) -> BuilderInfo:
        nodes = [n for n in d.get("Nodes") or [] if isinstance(n, dict)]
        platforms: list[str] = []
        for n in nodes:
            for p in n.get("Platforms") or []:
                if isinstance(p, str) and p not in platforms:
                    platforms.append(p)
        first = nodes[0] if nodes else {}
        name = str(d.get("Name", ""))
        return cls(
            name=name,
            driver=str(d.get("Driver", "")),
            status=str(first.get("Status") or ("inactive" if not nodes else "")),
            platforms=tuple(platforms),
            buildkit=str(first.get("Version") or ""),
            endpoint=str(first.get("Endpoint") or ""),
            nodes=len(nodes),
            current=bool(d.get("Current")) or name == current,
        )


@dataclass
class ActionResult:
    argv: tuple[str, ...]
    ok: bool
    output: str
    skipped: bool = False
    error: proc.CommandError | None = None

    @property
    def command(self) -> str:
        return " ".join(self.argv)


@dataclass
class Builders:
    """buildx builder management through :mod:`grader.proc`."""

    env: Mapping[str, str] | None = None
    timeout: float = 120.0
    history: list[ActionResult] = field(default_factory=list)

    # commands
    @staticmethod
    def ls_argv() -> list[str]:
        return ["docker", "buildx", "ls", "--format", "json"]

    @staticmethod
    def create_argv(name: str, driver: str = "docker-container") -> list[str]:
        return ["docker", "buildx", "create", "--name", name, "--driver", driver]

    @staticmethod
    def use_argv(name: str) -> list[str]:
        return ["docker", "buildx", "use", name]

    @staticmethod
    def inspect_argv(name: str, bootstrap: bool = True) -> list[str]:
        return ["docker", "buildx", "inspect", *(["--bootstrap"] if bootstrap else []), name]

    @staticmethod
    def rm_argv(name: str) -> list[str]:
        return ["docker", "buildx", "rm", name]

    @staticmethod
    def check_name(name: str) -> str | None:
        """Why ``name`` cannot be a builder name, or None."""
        if not name:
            return "Type a builder name first."
        if not _NAME.match(name):
            return (
                f"{name!r} is not a usable builder name: letters, digits, '.', '_' and '-', "
                "starting with a letter or digit."
            )
        return None

    # queries
    def current_name(self) -> str | None:
        """The builder ``buildx build`` uses without ``--builder``."""
        done = proc.run(
            ["docker", "buildx", "inspect"], timeout=self.timeout, check=False, env=self.env
        )
        for line in done.stdout.splitlines():
            if line.startswith("Name:"):
                return line.split(":", 1)[1].strip() or None
        return None

    def list(self) -> list[BuilderInfo]:
        done = proc.run(self.ls_argv(), timeout=self.timeout, check=False, env=self.env)
        if not done.ok:
            raise proc.CommandError(self.ls_argv(), done.returncode, done.stdout, done.stderr)
        current = self.current_name()
        return self.parse_ls(done.stdout, current)

    @staticmethod
    def parse_ls(stdout: str, current: str | None = None) -> list[BuilderInfo]:
        """One JSON object per line (buildx 0.13); other lines are ignored. buildx 0.13.1
        prints each builder twice, so names are deduplicated."""
        out: list[BuilderInfo] = []
        seen: set[str] = set()
        for line in stdout.splitlines():
            line = line.strip()
            if not line.startswith("{"):
                continue
            try:
                d = json.loads(line)
            except ValueError:
                continue
            if isinstance(d, dict) and d.get("Name") and d["Name"] not in seen:
                seen.add(d["Name"])
                out.append(BuilderInfo.from_json(d, current))
        return out

    def exists(self, name: str) -> bool:
        done = proc.run(
            self.inspect_argv(name, False), timeout=self.timeout, check=False, env=self.env
        )
        return done.ok

    # actions
    def _act(self, argv: list[str], timeout: float | None = None) -> ActionResult:
        try:
            done = proc.run(argv, timeout=timeout or self.timeout, env=self.env)
            result = ActionResult(tuple(argv), True, (done.stdout + done.stderr).strip())
        except proc.CommandError as e:
            result = ActionResult(tuple(argv), False, (e.stdout + e.stderr).strip(), error=e)
        self.history.append(result)
        return result

    def create(self, name: str, driver: str = "docker-container") -> ActionResult:
        """Create ``name`` unless it exists: running it twice is not an error."""
        if self.exists(name):
            result = ActionResult(
                tuple(self.create_argv(name, driver)),
                True,
                f"builder {name!r} already exists: nothing to do (the guard a script needs: "
                f"docker buildx inspect {name} >/dev/null 2>&1 || docker buildx create ...)",
                skipped=True,
            )
            self.history.append(result)
            return result
        return self._act(self.create_argv(name, driver))

    def use(self, name: str) -> ActionResult:
        return self._act(self.use_argv(name))

    def inspect(self, name: str, bootstrap: bool = True) -> ActionResult:
        return self._act(self.inspect_argv(name, bootstrap), timeout=max(self.timeout, 300))

    def rm(self, name: str) -> ActionResult:
        return self._act(self.rm_argv(name))


def builders_table_html(rows: list[BuilderInfo]) -> str:
    if not rows:
        return "<i>No builders listed.</i>"
    body = []
    for b in rows:
        plats = ", ".join(b.platforms) if b.platforms else "<i>none until bootstrapped</i>"
        mark = " *" if b.current else ""
        body.append(
            f'<tr class="mp-builder-row" data-name="{esc(b.name)}" data-status="{esc(b.status)}">'
            f"<td><b>{esc(b.name)}</b>{mark}</td><td>{esc(b.driver)}</td>"
            f"<td>{esc(b.status)}</td><td>{esc(b.buildkit)}</td>"
            f"<td>{plats if not b.platforms else esc(plats)}</td></tr>"
        )
    return (
        '<table class="mp-table mp-builders"><tr><th>name (* = current)</th><th>driver</th>'
        "<th>status</th><th>BuildKit</th><th>platforms</th></tr>" + "".join(body) + "</table>"
    )


class BuilderPanel:
    """``buildx ls`` as a table, and create / use / inspect --bootstrap / rm buttons."""

    def __init__(
        self,
        *,
        name: str = "multiplatform",
        driver: str = "docker-container",
        env: Mapping[str, str] | None = None,
        engine: bool | None = None,
    ) -> None:
        from grader.course.widgets.common import can_run

        self.logic = Builders(env=env)
        self.engine = can_run() if engine is None else engine
        self.rows: list[BuilderInfo] = []
        self.name = widgets.Text(value=name, description="Builder name")
        self.driver = widgets.Dropdown(options=DRIVERS, value=driver, description="Driver")
        self.table = widgets.HTML()
        self.table.add_class("mp-builders-table")
        self.command = widgets.HTML()
        self.notice = widgets.HTML()
        self.result = widgets.HTML()
        self.log = log_output()
        self.buttons = {
            "refresh": widgets.Button(description="Refresh (ls)", icon="refresh"),
            "create": widgets.Button(description="Create", button_style="primary"),
            "use": widgets.Button(description="Use"),
            "inspect": widgets.Button(description="Inspect --bootstrap"),
            "rm": widgets.Button(description="Remove", button_style="danger"),
        }
        for key, button in self.buttons.items():
            button.add_class(f"mp-builder-{key}")
            # A worker thread: `inspect --bootstrap` may pull an image for minutes.
            button.on_click(lambda _b, k=key: start_thread(lambda: self.do(k), f"builder-{k}"))
        self.name.observe(lambda _c: self._show_commands(), "value")
        self.driver.observe(lambda _c: self._show_commands(), "value")
        self.widget = panel_box(
            [
                widgets.HTML("<h4>Builders</h4>"),
                self.notice,
                self.table,
                widgets.HBox([self.name, self.driver]),
                widgets.HBox(list(self.buttons.values())),
                self.command,
                self.result,
                self.log,
            ],
            "mp-builder-panel",
        )
        if self.engine:
            self.notice.value = notice_html(
                "The driver <code>docker-container</code> runs BuildKit in a container from the "
                "<code>moby/buildkit</code> image: creating it is instant, the first "
                "<code>inspect --bootstrap</code> (or build) pulls that image."
            )
            self.refresh()
        else:
            self.notice.value = no_engine_html("Builders.")
            self.table.value = (
                f"<i>With an engine, <code>{esc(' '.join(Builders.ls_argv()))}</code> would "
                "list the builders here.</i>"
            )
            for button in self.buttons.values():
                button.disabled = True
        self._show_commands()

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)

    def _show_commands(self) -> None:
        n = self.name.value.strip() or "NAME"
        parts = [
            command_html(Builders.ls_argv(), "List"),
            command_html(
                Builders.create_argv(n, self.driver.value), "Create (skipped if it exists)"
            ),
            command_html(Builders.use_argv(n), "Use"),
            command_html(Builders.inspect_argv(n), "Inspect"),
            command_html(Builders.rm_argv(n), "Remove"),
        ]
        self.command.value = "".join(parts)

    def refresh(self) -> list[BuilderInfo]:
        try:
            self.rows = self.logic.list()
            self.table.value = builders_table_html(self.rows)
        except proc.CommandError as e:
            self.table.value = known_error_html(e.known, str(e))
        return self.rows

    def do(self, action: str) -> ActionResult | None:
        """Run one action (button click or test); returns its result."""
        if action == "refresh":
            self.refresh()
            return None
        if not self.engine:
            self.result.value = no_engine_html("Cannot run this here.")
            return None
        name = self.name.value.strip()
        problem = Builders.check_name(name)
        if problem:
            self.result.value = f'<div class="mp-problems">{esc(problem)}</div>'
            return None
        for b in self.buttons.values():
            b.disabled = True
        try:
            if action == "create":
                result = self.logic.create(name, self.driver.value)
            elif action == "use":
                result = self.logic.use(name)
            elif action == "inspect":
                result = self.logic.inspect(name, bootstrap=True)
            elif action == "rm":
                result = self.logic.rm(name)
            else:
                raise ValueError(f"unknown action {action!r}")
        finally:
            for b in self.buttons.values():
                b.disabled = False
        self.log.append_stdout(f"$ {result.command}\n{result.output}\n")
        if result.ok:
            note = " (already there: skipped)" if result.skipped else ""
            self.result.value = (
                f'<div class="mp-notice" data-ok="1">{esc(action)} {esc(name)}: ok{note}</div>'
            )
        else:
            err = result.error
            self.result.value = known_error_html(err.known if err else None, str(err or ""))
        self.refresh()
        return result
