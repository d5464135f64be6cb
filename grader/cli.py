"""The ``grader`` command line: ``grader check`` for submissions, ``grader engine`` for the
build engine the course runs on."""

from __future__ import annotations

import argparse
import sys


def _engine(args: argparse.Namespace) -> int:
    from grader import engine, proc
    from grader.engine.steps import StepFailed  # imported here: keeps `grader check` fast

    if args.action == "scope":  # only reached with options before it; main() routes the rest
        print("usage: grader engine scope {start,stop,status,add,remove,list,denied,settings}")
        return 2
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
    except (StepFailed, TimeoutError, proc.CommandError) as e:
        print(f"grader engine up: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(
            f"grader engine up: {e.strerror}: {e.filename or ''} (is COURSE_STATE_DIR writable?)",
            file=sys.stderr,
        )
        return 1
    print(report.to_json() if args.json else report.table())
    return 0 if report.ready else 1


def _lab(args: argparse.Namespace) -> int:
    from pathlib import Path

    from grader.course import jupyterlab as lab

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
    from grader.course.record import record_main

    return record_main(
        args.labs, out=args.out, timeout=args.timeout, keep_partial=args.keep_partial
    )


def _check(args: argparse.Namespace) -> int:
    """Exit 0: every evaluated criterion passed; 1: some did not; 2: could not run."""
    from grader.grading.api import SubmissionUnreadable, check, parse_platforms

    try:
        platforms = parse_platforms(args.platforms)
    except ValueError as e:
        print(f"grader check: --platforms {args.platforms!r}: {e}", file=sys.stderr)
        return 2
    try:
        report = check(args.submission, image=args.image, static=args.static, platforms=platforms)
    except SubmissionUnreadable as e:
        print(f"grader check: cannot read the submission: {e}", file=sys.stderr)
        return 2
    code = 0 if report.passed else 1
    try:
        if args.format == "json":
            from grader.grading.reporters import render_json

            print(render_json(report))
        else:
            from grader.grading.reporters import write_text

            write_text(report, sys.stdout)
        sys.stdout.flush()
    except BrokenPipeError:  # `grader check ... | head`: the reader left; the grade stands
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return code


def _rules(args: argparse.Namespace) -> int:
    from pathlib import Path

    from grader.grading.rules import doc as rulesdoc

    text = rulesdoc.render_json() if args.format == "json" else rulesdoc.render_markdown()
    if args.check:
        path = Path(args.check)
        current = path.read_text(encoding="utf-8") if path.exists() else ""
        if current != text:
            print(f"{path} is out of date: run `grader rules --output {path}`", file=sys.stderr)
            return 1
        return 0
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
        return 0
    sys.stdout.write(text)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="grader", description="Multi-platform builds course: grader and engine tools."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    eng = sub.add_parser("engine", help="set up, check or stop the build engine")
    eng.add_argument(
        "action",
        choices=["up", "down", "doctor", "scope"],
        help="scope: the registry scope proxy (`grader engine scope --help`)",
    )
    eng.add_argument("--json", action="store_true", help="machine-readable report")
    eng.add_argument(
        "--no-base-images", action="store_true", help="up: do not build the base images"
    )
    eng.add_argument(
        "--with-packages", default="", help="up: extra Debian packages to install (comma-separated)"
    )
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
    rec.add_argument("--out", help="recordings folder (default: grader/course/recordings)")
    rec.add_argument("--timeout", type=float, default=3600, help="seconds per lab")
    rec.add_argument(
        "--keep-partial", action="store_true", help="a lab that fails keeps what it recorded"
    )
    rec.set_defaults(func=_record)

    chk = sub.add_parser("check", help="grade a challenge submission (build.sh + Dockerfile)")
    chk.add_argument("submission", metavar="SUBMISSION_DIR")
    chk.add_argument(
        "--image", metavar="REF", help="the image to check (default: the tag build.sh pushes)"
    )
    chk.add_argument(
        "--static", action="store_true", help="only the static checks of build.sh and Dockerfile"
    )
    chk.add_argument("--format", choices=["text", "json"], default="text")
    chk.add_argument(
        "--platforms",
        default="linux/amd64,linux/arm64",
        help="platforms the image must support (default: %(default)s)",
    )
    chk.set_defaults(func=_check)

    rul = sub.add_parser("rules", help="print the rule catalogue (docs/rules.md)")
    rul.add_argument("--format", choices=["markdown", "json"], default="markdown")
    rul.add_argument("--output", metavar="PATH", help="write to PATH instead of stdout")
    rul.add_argument("--check", metavar="PATH", help="exit 1 when PATH is not up to date")
    rul.set_defaults(func=_rules)

    from grader.grading.batch import run as batch

    batch.add_subparser(sub)
    from grader.grading.batch import autograde

    autograde.add_subparser(sub)
    from grader.grading.batch import seeded_cache

    seeded_cache.add_subparser(sub)
    from grader.classroom import cli as hub

    hub.add_subparser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:2] == ["engine", "scope"]:  # a command set of its own (grader/engine/scope.py)
        from grader.engine import scope

        return scope.main(argv[2:], prog="grader engine scope")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
