"""``grader hub up|down|status``: the class hub on this machine (:mod:`grader.classroom.hub`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_subparser(sub) -> None:
    p = sub.add_parser("hub", help="bring a class's JupyterHub up or down on this machine")
    p.add_argument("action", choices=["up", "down", "status"])
    p.add_argument("--class", dest="class_file", default="hub/class.example.txt",
                   help="the class list: `instructor: LOGIN`, then a learner login per line "
                   "(default: %(default)s)")  # fmt: skip
    p.add_argument("--port", type=int, default=8000, help="the hub's port on 127.0.0.1")
    p.set_defaults(func=cli)


def cli(args: argparse.Namespace) -> int:
    from grader import proc
    from grader.classroom import classlist, hub
    from grader.engine.steps import StepFailed

    if args.action == "down":
        print("JupyterHub stopped" if hub.down() else "JupyterHub was not running")
        return 0
    if args.action == "status":
        running = hub.hub_answers(args.port)
        print(f"JupyterHub {'answers on ' + hub.hub_url(args.port) if running else 'is down'}")
        return 0 if running else 1
    try:
        class_file = Path(args.class_file)
        url = hub.up(class_file, classlist.load(class_file), port=args.port)
    except (classlist.ClassListError, StepFailed, proc.CommandError, RuntimeError) as e:
        print(f"grader hub up: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"grader hub up: {e.strerror or e}: {e.filename or ''}", file=sys.stderr)
        return 1
    paths = hub.HubPaths()
    print(f"\nThe class hub is open at:\n\n    {url}\n\nLogins and passwords (root only): "
          f"{paths.passwords}\nStop it with: ./course hub down")  # fmt: skip
    return 0
