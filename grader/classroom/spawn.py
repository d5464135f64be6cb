"""What happens when JupyterHub starts or stops a user's server.

On spawn (``before``): the user's own rootless Docker engine starts (a worker engine of
:mod:`grader.engine.rootless` in a slot of its own, under an engine uid that is not the user's,
so the engine's files are out of the learner's reach and the learner's files out of the
engine's), the user joins that engine's socket group, and gets a registry credential of their
own from the scope proxy (:mod:`grader.engine.scope`): they push only under ``<login>/``
(the instructor reads and writes everywhere, to grade). The
server's environment names the engine (``DOCKER_HOST``) and the registry as the engine and the
notebooks both reach it (``COURSE_REGISTRY``). On stop (``after``): the engine stops.

A restarted server gets a fresh engine (empty image store and build cache); what the learner
pushed stays in the registry.
"""

from __future__ import annotations

import asyncio
import grp
import json
import os
import pwd
from pathlib import Path

from grader import proc
from grader.classroom.classlist import ClassList
from grader.engine import rootless, scope

#: Learners' engines take the slots from the top down; grading workers use the low ones.
FIRST_SLOT = rootless.SLOTS - 1


def slot_of(classlist: ClassList, login: str) -> int:
    """The worker-engine slot of ``login``: fixed by its place in the class list."""
    index = classlist.everyone.index(login)
    slot = FIRST_SLOT - index
    if slot < rootless.SLOTS // 2:
        raise ValueError(f"{len(classlist.everyone)} users: more than this machine's slots")
    return slot


def engine_of(classlist: ClassList, login: str) -> rootless.WorkerEngine:
    return rootless.WorkerEngine(slot_of(classlist, login), scope.status()["listen"][0])


def default_url(classlist: ClassList, login: str) -> str:
    if login == classlist.instructor:
        return "/lab/tree/course"
    return "/lab/tree/labs/00-welcome/00-welcome.ipynb"


def _write_docker_config(user: pwd.struct_passwd, config: dict) -> Path:
    """``~/.docker/config.json`` with the user's registry credential, theirs alone (0600)."""
    folder = Path(user.pw_dir) / ".docker"
    folder.mkdir(mode=0o700, exist_ok=True)
    os.chown(folder, user.pw_uid, user.pw_gid)
    path = folder / "config.json"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(config, f, indent=2)
    os.chown(path, user.pw_uid, user.pw_gid)
    return path


def start_engine(classlist: ClassList, login: str) -> dict[str, str]:
    """Start ``login``'s engine and credential; the environment their server needs."""
    user = pwd.getpwnam(login)
    engine = engine_of(classlist, login)
    engine.start()
    group = grp.getgrgid(engine.client_group).gr_name
    if login not in grp.getgrnam(group).gr_mem:
        proc.run(["usermod", "--append", "--groups", group, login], timeout=30)
    # A learner's names are read inside ada/ (rooted): the labs push to lab04/run-1 and the
    # like, which every learner shares; another learner's ada/ stays refused.
    teacher = login == classlist.instructor
    secret = scope.add_caller(login, namespace=login, admin=teacher, rooted=not teacher)
    _write_docker_config(user, scope.docker_config(engine.registry, login, secret))
    return {"DOCKER_HOST": engine.host, "COURSE_REGISTRY": engine.registry}


def stop_engine(classlist: ClassList, login: str) -> None:
    engine_of(classlist, login).stop()


def before(classlist: ClassList):
    """JupyterHub's ``pre_spawn_hook``."""

    async def hook(spawner) -> None:
        login = spawner.user.name
        spawner.default_url = default_url(classlist, login)
        env = await asyncio.to_thread(start_engine, classlist, login)  # keeps the hub answering
        if login == classlist.instructor:  # their own Jupyter settings win (instructor tools)
            env["JUPYTER_PREFER_ENV_PATH"] = "0"
        spawner.environment = {**spawner.environment, **env}

    return hook


def after(classlist: ClassList):
    """JupyterHub's ``post_stop_hook``."""

    async def hook(spawner) -> None:
        await asyncio.to_thread(stop_engine, classlist, spawner.user.name)

    return hook
