"""Does build.sh need bashlex? The project's tolerant parser against bashlex-first parsing.

    .venv/bin/python benchmarks/bench_bashlex.py [--runs 7]

1. Every build.sh under tests/ (fixture files and the `build.sh:` texts of the rule cases in
   tests/rules/cases/) is analysed twice: bashlex first (the tolerant parser when bashlex
   fails), and the tolerant parser alone. The analyses (``grader.parse.buildscript``) and the
   static findings must be the same, apart from the parser's name and BS105, which only
   says bashlex failed.
2. ``grader check --static`` as a new process (CPU seconds, user + system) and the import of
   the CLI, with bashlex importable and with it blocked: median (min-max) of ``--runs``.

bashlex was dropped after this measurement (README: "Dropping bashlex"): since then only the
tolerant side runs. To compare both again, run this script at the commit that added it
("benchmarks/bench_bashlex.py: every build.sh in tests/ ...") with bashlex installed.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import inspect
import resource
import statistics
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SUBJECT = ROOT / "tests" / "fixtures" / "submissions" / "solution-c-cross"
# A process that cannot import bashlex, whatever is installed: what dropping it leaves.
BLOCK = (
    "import sys\n"
    "class _No:\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    "        if name == 'bashlex' or name.startswith('bashlex.'):\n"
    "            raise ImportError('bashlex blocked')\n"
    "sys.meta_path.insert(0, _No())\n"
)


def scripts() -> dict[str, str]:
    """Every build.sh text in the tests, by where it comes from."""
    out = {}
    for p in sorted((ROOT / "tests").rglob("build.sh")):
        if p.is_file() and not p.is_symlink():
            out[str(p.relative_to(ROOT))] = p.read_text(errors="replace")
    for p in sorted((ROOT / "tests" / "rules" / "cases").glob("*.yaml")):
        for case in yaml.safe_load(p.read_text()).get("cases") or []:
            text = case.get("build.sh")
            if isinstance(text, str):
                out[f"{p.relative_to(ROOT)}: {case['name']}"] = text
    return out


def _parser(real, use_bashlex: bool):
    """shell.parse with bashlex on or off (once bashlex is gone: the one parser)."""
    if "use_bashlex" not in inspect.signature(real).parameters:
        return real
    return lambda t: real(t, use_bashlex=use_bashlex)


def _analysis(text: str, use_bashlex: bool) -> dict:
    from grader.parse import buildscript, shell

    real = shell.parse
    shell.parse = _parser(real, use_bashlex)
    try:
        got = dataclasses.asdict(buildscript.analyse(text))
    finally:
        shell.parse = real
    for k in ("parser", "bashlex_error"):
        got.pop(k, None)
    return got


def _findings(text: str, use_bashlex: bool, tmp: Path) -> list[tuple]:
    import grader
    from grader.parse import shell

    (tmp / "build.sh").write_text(text)
    real = shell.parse
    shell.parse = _parser(real, use_bashlex)
    try:
        report = grader.check(tmp, static=True)
    finally:
        shell.parse = real
    found = [(f.rule, f.line or 0, f.message) for c in report.criteria for f in c.findings]
    return sorted(f for f in found if f[0] != "BS105")


def compare(tmp: Path) -> tuple[int, int, list[str]]:
    """(scripts, scripts bashlex could parse, the ones read differently)."""
    from grader.parse import shell

    (tmp / "Dockerfile").write_text((SUBJECT / "Dockerfile").read_text())
    for extra in SUBJECT.iterdir():
        if extra.is_file() and extra.name not in ("build.sh", "Dockerfile"):
            (tmp / extra.name).write_bytes(extra.read_bytes())
    texts = scripts()
    parsed_by_bashlex = 0
    differ = []
    for name, text in texts.items():
        if shell.parse(text).parser == "bashlex":
            parsed_by_bashlex += 1
        same = _analysis(text, True) == _analysis(text, False)
        same = same and _findings(text, True, tmp) == _findings(text, False, tmp)
        if not same:
            differ.append(name)
    return len(texts), parsed_by_bashlex, differ


def _cpu(code: str, runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=120, cwd=ROOT)  # fmt: skip
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if done.returncode not in (0, 1):
            raise SystemExit(done.stderr)
        out.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return out


def _fmt(xs: list[float]) -> str:
    return f"{statistics.median(xs):.3f} ({min(xs):.3f}-{max(xs):.3f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    from grader.parse import shell

    have = (importlib.util.find_spec("bashlex") is not None
            and "use_bashlex" in inspect.signature(shell.parse).parameters)  # fmt: skip
    import tempfile

    with tempfile.TemporaryDirectory(prefix="bench-bashlex-") as tmp:
        if have:
            total, by_bashlex, differ = compare(Path(tmp))
            print(f"build.sh texts: {total}; bashlex parsed {by_bashlex}, the tolerant parser "
                  f"the other {total - by_bashlex}; read differently: {len(differ)}")  # fmt: skip
            for name in differ:
                print(f"  differs: {name}")
        else:
            print("bashlex is not used (or not installed): only the tolerant parser is measured")
    check = (f"import sys; sys.argv = ['grader', 'check', {str(SUBJECT)!r}, '--static', "
             "'--format', 'json']\nfrom grader.cli import main\ntry:\n    main()\n"
             "except SystemExit:\n    pass\n")  # fmt: skip
    imports = "import grader.cli\n"  # bashlex is imported on the first parse, not here
    rows = [("python -c 'import grader.cli'", imports),
            ("grader check --static --format json (one submission)", check)]  # fmt: skip
    print(f"\n| CPU seconds, median (min-max) of {args.runs} processes | with bashlex | without |")
    print("|---|---|---|")
    for label, code in rows:
        with_b = _fmt(_cpu(code, args.runs)) if have else "-"
        without = _fmt(_cpu(BLOCK + code, args.runs))
        print(f"| {label} | {with_b} | {without} |")
    texts = list(scripts().values())
    with_b = _fmt(_in_process(texts, True, args.runs)) if have else "-"
    without = _fmt(_in_process(texts, False, args.runs))
    print(f"| analyse all {len(texts)} build.sh texts in-process (warm) | {with_b} | {without} |")


def _in_process(texts: list[str], use_bashlex: bool, runs: int) -> list[float]:
    import time

    out = []
    _analysis(texts[0], use_bashlex)  # imports
    for _ in range(runs):
        start = time.process_time()
        for t in texts:
            _analysis(t, use_bashlex)
        out.append(time.process_time() - start)
    return out


if __name__ == "__main__":
    main()
