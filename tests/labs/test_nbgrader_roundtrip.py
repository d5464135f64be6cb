"""The nbgrader round trip in a temporary course, with the commands docs/instructors.md gives:
generate -> learners' submissions -> autograde -> feedback -> export.

For every lab: a full solution scores full marks, the unmodified released lab scores 0 on
each graded cell (and autograde does not crash). For labs 00, 04, 06 and the challenge, a
partial solution scores in between. Feedback HTML never shows hidden test source, even for a failed
hidden test. One lab also goes through release -> fetch -> submit -> collect over an exchange.
"""

from __future__ import annotations

import csv
import getpass
import html
import re
import shutil
import sys
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import pytest
from labs_nbtools import ROOT, SOURCE, assignments, venv_env

from grader import proc

pytestmark = [pytest.mark.engine, pytest.mark.registry, pytest.mark.qemu, pytest.mark.slow]

#: The instructor commands (docs/instructors.md shows each, run from the course root).
COMMANDS = {
    "generate": "nbgrader generate_assignment {aid} --force",
    "release": "nbgrader release_assignment {aid}",
    "collect": "nbgrader collect {aid}",
    "autograde": "nbgrader autograde {aid} --force",
    "feedback": "nbgrader generate_feedback {aid} --force",
    "release_feedback": "nbgrader release_feedback {aid}",
    "export": "nbgrader export --to grades.csv",
}
FULL, BLANK, PARTIAL = "ada-full", "bob-blank", "cy-partial"
PARTIAL_LABS = ("00-welcome", "04-build-push", "06-manifests", "07-challenge")


class Course:
    """A course directory of its own: the repo's nbgrader_config.py and source/, so every
    command runs exactly as docs/instructors.md says, from the course root."""

    def __init__(self, root: Path):
        self.root = root
        shutil.copy(ROOT / "nbgrader_config.py", root / "nbgrader_config.py")
        shutil.copytree(SOURCE, root / "source")
        self.env = venv_env()
        self.env.pop("COURSE_GRADEBOOK", None)
        self.db = f"sqlite:///{root}/gradebook.db"

    def nbgrader(self, command: str, *extra: str, **fmt) -> proc.Completed:
        argv = COMMANDS[command].format(**fmt).split()
        done = proc.run(
            [sys.executable, "-m", *argv, *extra],
            timeout=3600, cwd=self.root, env=self.env, check=False,
        )  # fmt: skip
        assert "Exception while loading config file" not in done.stderr, done.stderr[-2000:]
        assert done.ok, f"{argv}: {done.stderr[-3000:]}"
        return done

    def grades(self, aid: str, student: str) -> dict[str, tuple[float, float]]:
        """grade cell id -> (score, max score)."""
        from nbgrader.api import Gradebook

        out = {}
        with Gradebook(self.db, "multiplatform-builds") as gb:
            for nb_path in sorted((SOURCE / aid).glob("*.ipynb")):
                sub = gb.find_submission_notebook(nb_path.stem, aid, student)
                for grade in sub.grades:
                    out[grade.name] = (grade.score, grade.max_score)
        return out


def _solution_sources(aid: str) -> dict[str, dict[str, str]]:
    """notebook name -> {cell id: source} for the solution cells of the source notebook."""
    out = {}
    for nb_path in sorted((SOURCE / aid).glob("*.ipynb")):
        nb = nbformat.read(nb_path, as_version=4)
        out[nb_path.name] = {
            c.id: c.source for c in nb.cells if c.metadata.get("nbgrader", {}).get("solution")
        }
    return out


def _submit(
    course: Course,
    aid: str,
    student: str,
    answers: dict[str, dict[str, str]],
    files_from: Path | None = None,
) -> None:
    """A learner's submission: the released lab with some solution cells answered."""
    dest = course.root / "submitted" / student / aid
    shutil.copytree(course.root / "labs" / aid, dest)
    for name, cells in answers.items():
        nb = nbformat.read(dest / name, as_version=4)
        for cell in nb.cells:
            if cell.id in cells:
                cell.source = cells[cell.id]
        nbformat.write(nb, dest / name)
    if files_from is not None:
        shutil.copytree(files_from, dest, dirs_exist_ok=True)


def _partial(aid: str, solutions: dict[str, dict[str, str]], tmp: Path) -> tuple[dict, Path | None]:
    if aid == "07-challenge":
        # build.sh fixed, Dockerfile not: the arm64 image holds an amd64 program
        half = tmp / "partial-files"
        half.mkdir()
        shutil.copy(SOURCE / aid / "reference-solution" / "build.sh", half / "build.sh")
        return {}, half
    answers = {name: dict(cells) for name, cells in solutions.items()}
    if aid == "04-build-push":
        # the build cell forgets --provenance=false: it builds and pushes, provenance fails
        nb = answers["04-build-push.ipynb"]
        nb["build-commands"] = (
            "%%docker build\n"
            "docker buildx build --builder default --platform linux/amd64,linux/arm64 \\\n"
            '  -t "$REPO:v1" --push app\n'
        )
        return answers, None
    if aid == "06-manifests":
        nb = answers["06-manifests.ipynb"]
        # config-platforms prints the index's own platform twice (what it claims, not what the
        # configs say); mismatches prints a fixed text: passes the visible check, not the
        # hidden one (the same commands run on another index)
        nb["lab06-13"] = (
            "%%docker config-platforms\n"
            'docker buildx imagetools inspect "$REPO:crossed" --format \\\n'
            "  '{{range .Manifest.Manifests}}{{.Platform.OS}}/{{.Platform.Architecture}} "
            "{{.Platform.OS}}/{{.Platform.Architecture}}{{println}}{{end}}'\n"
        )
        nb["lab06-17"] = (
            "%%docker mismatches\n"
            'docker buildx imagetools inspect "$REPO:crossed" > /dev/null\n'
            "echo linux/arm64\n"
        )
        return answers, None
    nb = answers["00-welcome.ipynb"]
    # passes the visible check (a docker version command printing a Docker platform), fails
    # the hidden one (not this engine's platform): its traceback must not leak
    wrong = "arm64" if "x86_64" in proc.run(["uname", "-m"], timeout=10).stdout else "amd64"
    nb["host-platform"] = (
        f"%%docker platform\ndocker version --format '{{{{.Server.Os}}}}/{wrong}'\n"
    )
    del nb["ready-labs"]
    return answers, None


class _Regions(HTMLParser):
    """The text of a feedback page's code inputs and of its error outputs (tracebacks), the
    two places hidden test source could show; printed output may hold anything."""

    WATCH = ("input_area", "output_error")

    def __init__(self):
        super().__init__()
        self.text = {name: [] for name in self.WATCH}
        self._open: list[str | None] = []  # per open div: the region it starts, if any

    def handle_starttag(self, tag, attrs):
        if tag != "div":
            return
        classes = (dict(attrs).get("class") or "").split()
        self._open.append(next((w for w in self.WATCH if w in classes), None))

    def handle_endtag(self, tag):
        if tag == "div" and self._open:
            self._open.pop()

    def handle_data(self, data):
        for region in self._open:
            if region:
                self.text[region].append(data)


def _code_and_errors(path: Path) -> str:
    parser = _Regions()
    parser.feed(path.read_text())
    assert parser.text["input_area"], f"{path}: no code cells found (template changed?)"
    return html.unescape("".join("".join(parts) for parts in parser.text.values()))


def _visible_text(path: Path) -> str:
    return _code_and_errors(path)


def _hidden_lines(aid: str) -> list[str]:
    """Lines only hidden tests contain (lines also written elsewhere in the lab do not count)."""
    hidden: list[str] = []
    shown: list[str] = []
    for nb_path in sorted((SOURCE / aid).glob("*.ipynb")):
        for cell in nbformat.read(nb_path, as_version=4).cells:
            pattern = r"### BEGIN HIDDEN TESTS(.*?)### END HIDDEN TESTS"
            for region in re.findall(pattern, cell.source, re.S):
                hidden += [ln.strip() for ln in region.splitlines() if len(ln.strip()) > 15]
            shown.append(re.sub(pattern, "", cell.source, flags=re.S))
    visible = "\n".join(shown)
    return [line for line in hidden if line not in visible]


@pytest.fixture(scope="module")
def course(tmp_path_factory) -> Course:
    return Course(tmp_path_factory.mktemp("course"))


@pytest.mark.parametrize("aid", assignments())
def test_round_trip(course, aid, tmp_path):
    course.nbgrader("generate", aid=aid)
    assert not list((course.root / "labs" / aid).rglob("reference-solution"))
    solutions = _solution_sources(aid)
    reference = SOURCE / aid / "reference-solution"
    _submit(course, aid, FULL, solutions, reference if reference.is_dir() else None)
    _submit(course, aid, BLANK, {})
    if aid in PARTIAL_LABS:
        answers, files = _partial(aid, solutions, tmp_path)
        _submit(course, aid, PARTIAL, answers, files)
    course.nbgrader("autograde", aid=aid)

    full = course.grades(aid, FULL)
    assert full and all(score == top for score, top in full.values()), full
    blank = course.grades(aid, BLANK)
    assert blank.keys() == full.keys()
    assert all(score == 0 for score, _ in blank.values()), {k: v for k, v in blank.items() if v[0]}
    if aid in PARTIAL_LABS:
        partial = course.grades(aid, PARTIAL)
        total = sum(score for score, _ in partial.values())
        assert 0 < total < sum(top for _, top in partial.values()), partial
        if aid == "04-build-push":
            assert partial["test-push-provenance"][0] == 0, partial
            assert partial["test-buildx-platforms"][0] == 2 and partial["test-oci"][0] == 2
        if aid == "06-manifests":
            assert partial["test-config-platforms"][0] == partial["test-mismatches"][0] == 0
            assert partial["test-digest-ok"][0] == 1 and partial["test-combine"][0] == 2
        if aid == "07-challenge":
            assert partial["test-image-arch"][0] == 0, "an amd64 program in the arm64 image"
            assert partial["test-cross-compile"][0] == 0
            assert partial["test-buildx"][0] == partial["test-platforms"][0] == 1

    course.nbgrader("feedback", aid=aid)
    hidden = _hidden_lines(aid)
    students = [FULL, BLANK] + ([PARTIAL] if aid in PARTIAL_LABS else [])
    for student in students:
        pages = sorted((course.root / "feedback" / student / aid).glob("*.html"))
        assert pages, f"no feedback for {student}"
        for page in pages:
            text = _visible_text(page)
            assert "check_" in text or "criterion_passed" in text, "visible tests are shown"
            leaked = [line for line in hidden if line in text]
            assert leaked == [], f"{student}: hidden test source in feedback: {leaked[:3]}"
            assert "BEGIN HIDDEN TESTS" not in text
    if aid == "04-build-push":  # the grader's rule id and hint reach the learner's feedback
        page = next((course.root / "feedback" / PARTIAL / aid).glob("*.html"))
        assert "provenance: [BS140]" in _visible_text(page), "rule id in the feedback"
    if aid == "06-manifests":  # both hints say what to do next, the hidden one too
        text = _visible_text(next((course.root / "feedback" / PARTIAL / aid).glob("*.html")))
        assert "then that config's .OS/.Architecture" in text
        assert "not with a fixed text" in text
    if aid == "00-welcome":
        page = next((course.root / "feedback" / PARTIAL / aid).glob("*.html"))
        assert "AssertionError: expected linux/" in _visible_text(page), (
            "the failed hidden test's one-line message shows"
        )

    course.nbgrader("export")
    with open(course.root / "grades.csv") as f:
        rows = [r for r in csv.DictReader(f) if r["assignment"] == aid]
    by_student = {r["student_id"]: float(r["raw_score"]) for r in rows}
    assert by_student[FULL] == sum(top for _, top in full.values())
    assert by_student[BLANK] == 0


def test_release_fetch_submit_collect_feedback(course, tmp_path):
    """The exchange: what an instructor releases, a learner fetches and submits, the
    instructor collects into submitted/<learner>/<assignment>/, grades, and returns as
    feedback the learner fetches."""
    aid = "00-welcome"
    exchange = tmp_path / "exchange"
    exchange.mkdir()
    ex = f"--Exchange.root={exchange}"
    course.nbgrader("generate", aid=aid)
    course.nbgrader("release", ex, aid=aid)
    learner = tmp_path / "learner"
    learner.mkdir()
    learner_env = venv_env()
    for argv in (["fetch_assignment", aid], ["submit", aid]):
        done = proc.run(
            [sys.executable, "-m", "nbgrader", *argv, "--course=multiplatform-builds", ex],
            timeout=300,
            cwd=learner,
            env=learner_env,
            check=False,
        )
        assert done.ok, done.stderr[-2000:]
    assert (learner / aid / "00-welcome.ipynb").is_file()
    course.nbgrader("collect", ex, aid=aid)
    learner_id = getpass.getuser()  # the exchange names submissions after the user
    assert (course.root / "submitted" / learner_id / aid / "00-welcome.ipynb").is_file()
    course.nbgrader("autograde", "--student", learner_id, aid=aid)
    course.nbgrader("feedback", "--student", learner_id, aid=aid)
    course.nbgrader("release_feedback", ex, "--student", learner_id, aid=aid)
    done = proc.run([sys.executable, "-m", "nbgrader", "fetch_feedback", aid,
                     "--course=multiplatform-builds", ex], timeout=300, cwd=learner,
                    env=learner_env, check=False)  # fmt: skip
    assert done.ok, done.stderr[-2000:]
    pages = list((learner / aid / "feedback").glob("*/00-welcome.html"))
    assert pages and "BEGIN HIDDEN TESTS" not in pages[0].read_text()
