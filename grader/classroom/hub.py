"""``grader hub up|down|status``: a class on this machine.

JupyterHub (PyPI) behind configurable-http-proxy (npm), one system user per login in the class
list, each learner's JupyterLab running as that user from a Python environment every user can
execute, and the nbgrader exchange between them. Everything is idempotent: ``up`` twice does
the work once.

Where things live (root owns all three):

- ``HUB_HOME`` (/opt/multiplatform-course, world-readable): the hub's venv (Debian's Python,
  because a venv made from /root/.pyenv is not executable by learners) and the proxy.
- ``HUB_STATE`` (/srv/multiplatform-course, 0700): the hub's database, cookie secret, logs, pid
  files and ``passwords`` (0600: one ``login password`` line per user, for the instructor to
  hand out).
- ``EXCHANGE`` (/srv/nbgrader/exchange, 1777 as nbgrader wants it).

Homes are 0700. Learners' homes get ``labs/`` (never ``source/``); the instructor's home gets
the course directory (``~/course``: the repository's files, with ``source/``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pwd
import secrets
import shutil
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from grader import proc
from grader.classroom.classlist import ClassList
from grader.engine import rootless, scope, services
from grader.engine.config import Settings, settings
from grader.engine.steps import StepFailed, say, step

REPO = Path(__file__).resolve().parents[2]
SYSTEM_PYTHON = "/usr/bin/python3"
JUPYTERHUB = "jupyterhub~=5.5"
PROXY = "configurable-http-proxy@4"
LEARNERS_GROUP = "course-learners"
INSTRUCTORS_GROUP = "course-instructors"


@dataclass(frozen=True)
class HubPaths:
    home: Path = Path(os.environ.get("COURSE_HUB_HOME", "/opt/multiplatform-course"))
    state: Path = Path(os.environ.get("COURSE_HUB_STATE", "/srv/multiplatform-course"))
    exchange: Path = Path(os.environ.get("COURSE_HUB_EXCHANGE", "/srv/nbgrader/exchange"))

    @property
    def venv(self) -> Path:
        return self.home / "venv"

    @property
    def proxy(self) -> Path:
        return self.home / "chp" / "node_modules" / ".bin" / "configurable-http-proxy"

    @property
    def passwords(self) -> Path:
        return self.state / "passwords"

    @property
    def services(self) -> Settings:
        """The hub's pid and log files, kept the way the engine's services keep theirs."""
        return Settings(self.state, 0)


def _tree_hash(*roots: Path) -> str:
    """A hash of the course package's files: a change means the hub's copy is reinstalled."""
    h = hashlib.sha256()
    for root in roots:
        files = [root] if root.is_file() else sorted(root.rglob("*"))
        for path in files:
            if path.is_file() and "__pycache__" not in path.parts:
                h.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def ensure_venv(paths: HubPaths) -> None:
    """The venv learners' servers run from: JupyterHub and the course package (a copy, not an
    editable install, which would point into the instructor's private clone)."""
    stamp = paths.venv / ".course-installed"
    want = _tree_hash(REPO / "pyproject.toml", REPO / "grader")
    if stamp.exists() and stamp.read_text() == want:
        return
    with step("the class's Python environment (JupyterHub + the course, for every user)"):
        if not (paths.venv / "bin" / "python").exists():
            proc.run([SYSTEM_PYTHON, "-m", "venv", str(paths.venv)], timeout=300)
        pip = [str(paths.venv / "bin" / "python"), "-m", "pip", "install", "-q",
               "--disable-pip-version-check"]  # fmt: skip
        proc.run([*pip, JUPYTERHUB, str(REPO)], timeout=1800)
        proc.run([*pip, "--no-deps", "--force-reinstall", str(REPO)], timeout=600)
        _instructor_tools_off(paths)
        proc.run(["chmod", "-R", "a+rX", str(paths.home)], timeout=120)
        stamp.write_text(want)


#: nbgrader's instructor tools: off for everyone in the class's environment (as binder/postBuild
#: does), on again for the instructor at user level (``ensure_homes``).
INSTRUCTOR_PLUGINS = tuple(f"@jupyter/nbgrader:{p}" for p in ("formgrader", "create-assignment",
                                                               "course-list"))  # fmt: skip
INSTRUCTOR_SERVER = ("formgrader", "course_list")


def _instructor_tools_off(paths: HubPaths) -> None:
    jupyter = str(paths.venv / "bin" / "jupyter")
    proc.run([jupyter, "labextension", "disable", "--level=sys_prefix", *INSTRUCTOR_PLUGINS],
             timeout=120)  # fmt: skip
    # JupyterLab >= 4.1 locks what it disabled, which would stop the instructor's `enable`.
    proc.run([jupyter, "labextension", "unlock", "--level=sys_prefix", *INSTRUCTOR_PLUGINS],
             timeout=120)  # fmt: skip
    for ext in INSTRUCTOR_SERVER:
        proc.run([jupyter, "server", "extension", "disable", "--sys-prefix",
                  f"nbgrader.server_extensions.{ext}"], timeout=120)  # fmt: skip


def _instructor_tools_on(paths: HubPaths, user: pwd.struct_passwd) -> None:
    """The instructor's own settings turn the tools on (their server starts with
    ``JUPYTER_PREFER_ENV_PATH=0`` so their level wins over the environment's)."""
    jupyter = str(paths.venv / "bin" / "jupyter")
    env = f"HOME={user.pw_dir}"
    proc.run(["runuser", "-u", user.pw_name, "--", "env", env, jupyter, "labextension", "enable",
              "--level=user", *INSTRUCTOR_PLUGINS], timeout=120)  # fmt: skip
    folder = Path(user.pw_dir) / ".jupyter" / "jupyter_server_config.d"
    proc.run(["runuser", "-u", user.pw_name, "--", "mkdir", "-p", str(folder)], timeout=30)
    exts = {f"nbgrader.server_extensions.{e}": True for e in INSTRUCTOR_SERVER}
    path = folder / "nbgrader-instructor.json"
    path.write_text(json.dumps({"ServerApp": {"jpserver_extensions": exts}}) + "\n")
    os.chown(path, user.pw_uid, user.pw_gid)


def ensure_proxy(paths: HubPaths) -> None:
    if paths.proxy.exists():
        return
    with step("configurable-http-proxy (npm)"):
        if proc.which("npm") is None:
            raise StepFailed("npm is needed for configurable-http-proxy (apt-get install npm)")
        prefix = paths.home / "chp"
        proc.run(["npm", "install", "--silent", "--prefix", str(prefix), PROXY], timeout=600)
        proc.run(["chmod", "-R", "a+rX", str(prefix)], timeout=60)


def _user(login: str) -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam(login)
    except KeyError:
        return None


def _groups_of(login: str) -> set[str]:
    return set(proc.run(["id", "-nG", login], timeout=10).stdout.split())


def ensure_user(login: str, group: str, paths: HubPaths) -> pwd.struct_passwd:
    """A system user for ``login`` in ``group``; an existing account the course did not make
    is never taken over."""
    user = _user(login)
    if user is not None:
        if group not in _groups_of(login):
            raise StepFailed(
                f"a user {login!r} already exists and is not one of this course's "
                f"({group}): pick another login, or remove that account"
            )
        return user
    proc.run(["groupadd", "-f", group], timeout=30)
    proc.run(["useradd", "--create-home", "--shell", "/bin/bash", "--groups", group,
              "--key", "UMASK=077", login], timeout=30)  # fmt: skip
    password = secrets.token_urlsafe(12)
    proc.run(["chpasswd"], input=f"{login}:{password}\n", timeout=30)
    _append_password(paths, login, password)
    return pwd.getpwnam(login)


def _append_password(paths: HubPaths, login: str, password: str) -> None:
    paths.state.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(paths.passwords, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a") as f:
        f.write(f"{login} {password}\n")


def passwords(paths: HubPaths) -> dict[str, str]:
    """``{login: password}`` of the users ``up`` made (the file only root reads)."""
    try:
        lines = paths.passwords.read_text().splitlines()
    except OSError:
        return {}
    return dict(line.split(" ", 1) for line in lines if " " in line)


def _copy_owned(src: Path, dst: Path, user: pwd.struct_passwd) -> None:
    """Copy ``src`` to ``dst`` (absent so far) and give it to ``user``, private."""
    ignore = shutil.ignore_patterns(
        ".ipynb_checkpoints",
        "__pycache__",
        ".venv",
        ".git",
        "results",
        "test-output",
        "*.db",
        "build",
        "*.egg-info",
        "submitted",
        "autograded",
        "feedback",
    )
    shutil.copytree(src, dst, ignore=ignore, symlinks=True)  # links stay links, not followed
    proc.run(["chown", "-R", f"{user.pw_uid}:{user.pw_gid}", str(dst)], timeout=120)
    proc.run(["chmod", "-R", "go-rwx", str(dst)], timeout=120)


def ensure_homes(classlist: ClassList, paths: HubPaths) -> None:
    with step(f"users and homes ({len(classlist.learners)} learners, 1 instructor)"):
        teacher = ensure_user(classlist.instructor, INSTRUCTORS_GROUP, paths)
        homes = [Path(teacher.pw_dir)]
        if not (Path(teacher.pw_dir) / "course").exists():
            _copy_owned(REPO, Path(teacher.pw_dir) / "course", teacher)
        _instructor_tools_on(paths, teacher)
        for login in classlist.learners:
            learner = ensure_user(login, LEARNERS_GROUP, paths)
            homes.append(Path(learner.pw_dir))
            if not (Path(learner.pw_dir) / "labs").exists():
                _copy_owned(REPO / "labs", Path(learner.pw_dir) / "labs", learner)
        for home in homes:
            os.chmod(home, 0o700)
            _quiet_jupyterlab(home)


def _quiet_jupyterlab(home: Path) -> None:
    """No news fetching and no toast asking about it (no internet on many class networks)."""
    folder = home / ".jupyter/lab/user-settings/@jupyterlab/apputils-extension"
    path = folder / "notification.jupyterlab-settings"
    if path.exists():
        return
    owner = home.stat()
    proc.run(["runuser", "-u", pwd.getpwuid(owner.st_uid).pw_name, "--", "mkdir", "-p",
              str(folder)], timeout=30)  # fmt: skip
    path.write_text('{"fetchNews": "false", "checkForUpdates": false}\n')
    os.chown(path, owner.st_uid, owner.st_gid)


def ensure_exchange(paths: HubPaths) -> None:
    paths.exchange.mkdir(parents=True, exist_ok=True)
    os.chmod(paths.exchange, 0o1777)
    config = Path("/etc/jupyter/nbgrader_config.py")
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(
        "# Written by `grader hub up`: every user's nbgrader finds the class's exchange.\n"
        "c = get_config()  # noqa: F821\n"
        "c.CourseDirectory.course_id = 'multiplatform-builds'\n"
        f"c.Exchange.root = {str(paths.exchange)!r}\n"
    )


def hub_url(port: int) -> str:
    return f"http://127.0.0.1:{port}"


def hub_answers(port: int, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(hub_url(port) + "/hub/api", timeout=timeout) as r:
            return r.status == 200
    except (OSError, urllib.error.URLError):
        return False


def _hub_env(paths: HubPaths, port: int, class_file: Path) -> dict:
    return {
        "COURSE_HUB_HOME": str(paths.home),
        "COURSE_HUB_STATE": str(paths.state),
        "COURSE_HUB_EXCHANGE": str(paths.exchange),
        "COURSE_HUB_PORT": str(port),
        "COURSE_HUB_CLASS": str(class_file),
        "PATH": f"{paths.venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
    }


def start(class_file: Path, paths: HubPaths, port: int) -> None:
    cfg = paths.services
    if services.owned_pid(cfg, "jupyterhub") and hub_answers(port):
        say(f"   JupyterHub already answers on {hub_url(port)}")
        return
    with step(f"JupyterHub on {hub_url(port)}"):
        argv = [str(paths.venv / "bin" / "jupyterhub"), "-f",
                str(REPO / "hub" / "jupyterhub_config.py")]  # fmt: skip
        env = {**os.environ, **_hub_env(paths, port, class_file)}  # the config reads them
        cfg.run.mkdir(parents=True, exist_ok=True)
        pid = proc.spawn_detached(argv, log_file=cfg.logfile("jupyterhub"), env=env).pid
        cfg.pidfile("jupyterhub").write_text(str(pid))
        deadline = time.monotonic() + 60
        while not hub_answers(port):
            if services.owned_pid(cfg, "jupyterhub") is None or time.monotonic() > deadline:
                tail = cfg.logfile("jupyterhub").read_text(errors="replace")[-3000:]
                raise StepFailed(f"JupyterHub did not start; its log ends:\n{tail}")
            time.sleep(0.3)


def up(class_file: Path, classlist: ClassList, *, port: int = 8000) -> str:
    if os.geteuid() != 0:
        raise StepFailed("`grader hub up` makes system users: run it as root")
    paths = HubPaths()
    paths.home.mkdir(parents=True, exist_ok=True)
    paths.state.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(paths.state, 0o700)
    ensure_venv(paths)
    ensure_proxy(paths)
    ensure_homes(classlist, paths)
    ensure_exchange(paths)
    ensure_registry_scope(paths)
    kept = paths.state / "class.txt"  # the list `down` stops engines for
    shutil.copyfile(class_file, kept)
    start(kept, paths, port)
    return hub_url(port)


def _registry_rules() -> list[list[str]]:
    """The registry's own port: the grader's per-run clients (gate-checked commands, uids
    ``rootless.RUN_UIDS``) pass, every other uid but root's (the proxy, the course engine) is
    refused. Worker and kernel uids pass by their own chains, which come first."""
    port = str(settings().registry_port)
    lo, hi = rootless.RUN_UIDS
    match = ["OUTPUT", "-o", "lo", "-p", "tcp", "--dport", port, "-m", "owner"]
    return [
        [*match, "--uid-owner", f"{lo}-{hi}", "-j", "ACCEPT"],
        [*match, "!", "--uid-owner", "0", "-j", "REJECT", "--reject-with", "tcp-reset"],
    ]


def ensure_registry_scope(paths: HubPaths) -> None:
    """Learners reach the registry only through the scope proxy, with their own credential:
    the registry's own port refuses every learner (see :func:`_registry_rules`)."""
    with step("registry scope proxy; the registry's port closed to learners"):
        scope.start()
        for rule in _registry_rules():
            if proc.run(["iptables", "-w", "5", "-C", *rule], timeout=30, check=False).ok:
                proc.run(["iptables", "-w", "5", "-D", *rule], timeout=30)
            proc.run(["iptables", "-w", "5", "-A", *rule], timeout=30)


def _open_registry_port() -> None:
    for rule in _registry_rules():
        while proc.run(["iptables", "-w", "5", "-D", *rule], timeout=30, check=False).ok:
            pass


def down() -> bool:
    """Stop JupyterHub (it stops the servers it spawned) and every learner's engine; True when
    the hub was running."""
    paths = HubPaths()
    was = services.stop_service(paths.services, "jupyterhub", timeout=30)
    with contextlib.suppress(OSError, ValueError):
        from grader.classroom import classlist, spawn

        people = classlist.load(paths.state / "class.txt")
        for login in people.everyone:
            spawn.engine_of(people, login).stop()
    _open_registry_port()
    return was
