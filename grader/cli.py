"""The ``grader`` command line: ``grader check`` for submissions, ``grader engine`` for the
build engine the course runs on."""

from __future__ import annotations

import argparse
import sys

from grader.engine.steps import StepFailed


def _engine(args: argparse.Namespace) -> int:
    from grader import engine

    if args.action == "doctor":
        report = engine.diagnose()
        print(report.to_json() if args.json else report.table())
        return 0 if report.ready else 1
    if args.action == "down":
        stopped = engine.down()
        print("stopped: " + (", ".join(stopped) if stopped else "nothing the course had started"))
        return 0
    try:
        report = engine.up(
            extra_packages=tuple(p for p in args.with_packages.split(",") if p),
            base_images=not args.no_base_images,
        )
    except (StepFailed, TimeoutError) as e:
        print(f"grader engine up: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"grader engine up: {e.strerror}: {e.filename or ''} (is COURSE_STATE_DIR "
              "writable?)", file=sys.stderr)
        return 1
    print(report.to_json() if args.json else report.table())
    return 0 if report.ready else 1


def _lab(args: argparse.Namespace) -> int:
    from pathlib import Path

    from grader import lab

    if args.action == "stop":
        print("JupyterLab stopped" if lab.stop() else "JupyterLab was not running")
        return 0
    try:
        url = lab.start(Path(args.dir), port=args.port)
    except RuntimeError as e:
        print(f"grader lab start: {e}", file=sys.stderr)
        return 1
    print(f"\nThe course is open at:\n\n    {url}\n\nStop it with: ./course down")
    return 0


def _record(args: argparse.Namespace) -> int:
    from grader.recorded import record_main

    return record_main(args.labs, out=args.out, timeout=args.timeout)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="grader", description="Multi-platform builds course: grader and engine tools."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    eng = sub.add_parser("engine", help="set up, check or stop the build engine")
    eng.add_argument("action", choices=["up", "down", "doctor"])
    eng.add_argument("--json", action="store_true", help="machine-readable report")
    eng.add_argument("--no-base-images", action="store_true",
                     help="up: do not build the base images")
    eng.add_argument("--with-packages", default="",
                     help="up: extra Debian packages to install (comma-separated)")
    eng.set_defaults(func=_engine)

    doc = sub.add_parser("doctor", help="same as `grader engine doctor`")
    doc.add_argument("--json", action="store_true")
    doc.set_defaults(func=_engine, action="doctor")
    lab = sub.add_parser("lab", help="start or stop the course's JupyterLab")
    lab.add_argument("action", choices=["start", "stop"])
    lab.add_argument("--dir", default="labs", help="folder JupyterLab opens (default: labs)")
    lab.add_argument("--port", type=int, default=8888)
    lab.set_defaults(func=_lab)

    rec = sub.add_parser(
        "record", help="run labs on the real engine and store their outputs for no-engine mode"
    )
    rec.add_argument("labs", nargs="*", help="lab ids (default: every lab in source/)")
    rec.add_argument("--out", help="recordings folder (default: grader/recordings)")
    rec.add_argument("--timeout", type=float, default=3600, help="seconds per lab")
    rec.set_defaults(func=_record)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
