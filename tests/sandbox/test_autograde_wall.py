"""``grader autograde``: nbgrader autograde with every notebook kernel behind the wall.

A tiny nbgrader course in tmp_path (one autograded answer cell, a test cell with a hidden
test); submissions: honest ones, a hostile one (root? the gradebook, source/, /root, the
course folder, the host's docker socket), one per limit (memory, processes, file size) and
an endless loop (the cell timeout). Each attack fails inside its cell, the host's files
stay as they were, and the students graded after them are graded as usual. The honest
submission scores what plain ``nbgrader autograde`` gives it.

The registry: ``lab`` pushes where the labs push (``lab04/run-…``) and reads it back; ``rob``,
graded after, pushes into ``library/`` and into lab's namespace through the engine, opens
upload sessions from a ``RUN`` step and by raw HTTP from the kernel (with and without its own
credential), and pushes to the name lab used: every write is refused or lands in rob's own
copy, and lab's image is untouched (fixtures: tests/fixtures/wall/registry-probe/).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import sys
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from grader import proc
from grader.engine import rootless
from grader.grading.batch import autograde as ag
from grader.grading.sandbox import kernel as jailed

pytestmark = [pytest.mark.engine, pytest.mark.registry]

AID = "ps1"
MiB = 1024 * 1024
LIMITS = jailed.KernelLimits(memory=1024 * MiB, processes=128, file_size=64 * MiB)
CELL_TIMEOUT = 60  # rob's cell builds four images
PROBE = Path(__file__).resolve().parents[1] / "fixtures" / "wall" / "registry-probe"
RUN_ID = uuid.uuid4().hex[:8]  # repositories of this run (the registry outlives it)
#: lab's namespace, ``ag.student_namespace("lab")`` (spelt out: the hostile cell names it)
LAB_NS = "autograde/lab-" + hashlib.sha256(b"lab").hexdigest()[:8]

HONEST = "def add(a, b):\n    return a + b\n"

HOSTILE = (
    r"""
import os, subprocess
COURSE = {course!r}
def probe(name, fn):
    try:
        out = fn()
        print(f"ESCAPED {{name}}: {{str(out)[:80]!r}}")
    except BaseException as exc:
        print(f"DENIED {{name}}: {{type(exc).__name__}}")
def root():
    if os.getuid() == 0 or os.geteuid() == 0:
        return "uid 0"
    raise PermissionError(f"uid {{os.getuid()}}")
probe("root", root)
probe("gradebook", lambda: open(COURSE + "/gradebook.db", "rb").read(16))
probe("source", lambda: open(COURSE + "/source/{aid}/{aid}.ipynb").read(100))
probe("root-home", lambda: open("/root/grader-wall-secret").read())
probe("root-write", lambda: open("/root/grader-wall-canary", "w").write("x"))
probe("course-write", lambda: open(COURSE + "/pwned.txt", "w").write("x"))
probe("other-student", lambda: os.listdir(COURSE + "/submitted/ada"))
def host_docker():
    done = subprocess.run(["docker", "-H", "unix:///var/run/docker.sock", "ps"],
                          capture_output=True, text=True, timeout=60)
    if done.returncode:
        raise ConnectionError(done.stderr.strip()[-100:])
    return done.stdout
probe("host-docker", host_docker)
import socket
def loopback():
    seen = []
    for port in {ports!r}:
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            seen.append(port)
    return seen
probe("loopback", loopback)
def unshare(*args):
    return subprocess.run(["unshare", *args, "true"], check=True, capture_output=True, timeout=60)
probe("userns", lambda: unshare("-U"))
probe("userns-root", lambda: unshare("-r"))
print("SECCOMP", open("/proc/self/status").read().split("Seccomp:")[1].split()[0])
print("BASH", subprocess.run(["bash", "-c", "echo $((6 * 7))"], capture_output=True,
                             text=True, timeout=60).stdout.strip())
done = subprocess.run(["docker", "version", "--format", "{{{{.Server.Version}}}}"],
                      capture_output=True, text=True, timeout=60)
print("WORKER-ENGINE", done.returncode, done.stdout.strip(), os.environ.get("COURSE_REGISTRY"))
print("UID", os.getuid())
"""
    + HONEST
)

MEMORY_HOG = (
    r"""
try:
    hog = bytearray(1536 * 1024 * 1024)
    print("ESCAPED memory", len(hog))
except MemoryError:
    print("DENIED memory: MemoryError")
"""
    + HONEST
)

FORK_BOMB = (
    r"""
import os, time
kids, err = [], None
try:
    for _ in range(1000):
        pid = os.fork()
        if pid == 0:
            time.sleep(120)
            os._exit(0)
        kids.append(pid)
except OSError as exc:
    err = exc
print("ESCAPED processes" if err is None else "DENIED processes: " + type(err).__name__,
      len(kids))
for pid in kids:
    os.kill(pid, 9)
    os.waitpid(pid, 0)
"""
    + HONEST
)

BIG_FILE = (
    r"""
try:
    with open("big.bin", "wb") as fh:
        for _ in range(100):
            fh.write(b"\0" * (1024 * 1024))
    print("ESCAPED file-size")
except OSError as exc:
    print("DENIED file-size:", exc.strerror)
"""
    + HONEST
)

ENDLESS = "while True:\n    pass\n"

DOCKER_HELPERS = r"""
import os, subprocess
REG = os.environ.get("COURSE_REGISTRY", "127.0.0.1:5000")
def docker(*args, timeout=120):
    done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    return done.returncode, done.stdout + done.stderr
def push(ref, marker):
    open("push/marker", "w").write(marker + "\n")
    return docker("buildx", "build", "--builder", "default", "--provenance=false",
                  "-t", ref, "--push", "push")
"""

LAB_PUSH = (
    DOCKER_HELPERS
    + r"""
rc, out = push(f"{{REG}}/lab04/run-{run}:1", "lab's image")
print("LAB-PUSH", rc, out[-300:] if rc else "")
rc, out = docker("buildx", "imagetools", "inspect", f"{{REG}}/lab04/run-{run}:1")
print("LAB-DIGEST", rc, next((ln.split()[-1] for ln in out.splitlines()
                              if ln.startswith("Digest:")), out[-200:]))
"""
    + HONEST
)

REGISTRY_HOSTILE = (
    DOCKER_HELPERS
    + r"""
import json, urllib.error, urllib.request
def probe(name, escaped, detail):
    print(f"{{'ESCAPED' if escaped else 'DENIED'}} {{name}}: {{detail[-160:]!r}}")
for name, repo in (("library-push", "library/wall-{run}:1"),
                   ("other-push", "{other}/lab04/run-{run}:1")):
    rc, out = push(f"{{REG}}/{{repo}}", "rob was here")
    probe(name, rc == 0, out)
rc, out = push(f"{{REG}}/lab04/run-{run}:1", "rob was here")  # the name lab's kernel used
print("SHARED-NAME", rc, out[-300:] if rc else "")
PROBE = ('for to in "10.233.0.1 5000" "10.233.0.1 580"; do printf "POST '
         '/v2/library/wall-run-{run}/blobs/uploads/ HTTP/1.0\r\nHost: r\r\n'
         'Content-Length: 0\r\n\r\n" | nc -w 3 $to 2>&1 | head -1 | '
         'sed "s/^/REGISTRY-ANSWER $to: /"; done')
rc, out = docker("buildx", "build", "--builder", "default", "--progress=plain", "--no-cache",
                 "--build-arg", "PROBE=" + PROBE, "run")
answers = [ln for ln in out.splitlines() if "REGISTRY-ANSWER 10" in ln]
probe("run-step", not answers or any(" 20" in a.split(":", 1)[1] for a in answers),
      " | ".join(answers) or out[-300:])
def post(repo, auth):
    req = urllib.request.Request(f"http://{{REG}}/v2/{{repo}}/blobs/uploads/", data=b"",
                                 method="POST", headers={{"Content-Type": "text/plain"}})
    if auth:
        req.add_header("Authorization", "Basic " + auth)
    try:
        with urllib.request.urlopen(req, timeout=10) as answer:
            return answer.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError as exc:
        return repr(exc)
config = os.path.join(os.environ.get("DOCKER_CONFIG", "/nonexistent"), "config.json")
auths = json.load(open(config)).get("auths", {{}}) if os.path.exists(config) else {{}}
mine = next(iter(auths.values()), {{}}).get("auth")
for name, repo, auth in (("raw-library", "library/wall-raw-{run}", None),
                         ("raw-library-own-credential", "library/wall-raw-{run}", mine),
                         ("raw-other-own-credential", "{other}/lab04/raw-{run}", mine)):
    status = post(repo, auth)
    probe(name, status in (201, 202), str(status))
"""
    + HONEST
)


def _source_notebook() -> nbformat.NotebookNode:
    answer = new_code_cell(
        "### BEGIN SOLUTION\n" + HONEST + "### END SOLUTION\n",
        metadata={"nbgrader": {"grade": False, "solution": True, "locked": False,
                               "grade_id": "answer", "schema_version": 3}},
    )  # fmt: skip
    tests = new_code_cell(
        "assert add(1, 2) == 3\n### BEGIN HIDDEN TESTS\nassert add(20, 22) == 42\n"
        "### END HIDDEN TESTS\n",
        metadata={"nbgrader": {"grade": True, "solution": False, "locked": True,
                               "grade_id": "tests", "points": 2, "schema_version": 3}},
    )  # fmt: skip
    nb = new_notebook(cells=[new_markdown_cell("Write add."), answer, tests])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}  # fmt: skip
    return nb


def _nbgrader(course: Path, *args: str) -> proc.Completed:
    env = {k: v for k, v in os.environ.items() if k != "COURSE_GRADEBOOK"}
    done = proc.run([sys.executable, "-m", "nbgrader", *args], timeout=900, cwd=course,
                    env=env, check=False)  # fmt: skip
    assert done.ok, done.stderr[-3000:]
    return done


def _course(root: Path) -> Path:
    root.mkdir()
    os.chmod(root, 0o755)
    (root / "nbgrader_config.py").write_text(
        "c = get_config()\n"
        f"c.CourseDirectory.root = {str(root)!r}\n"
        "c.CourseDirectory.course_id = 'wall'\n"
        f"c.CourseDirectory.db_url = 'sqlite:///{root}/gradebook.db'\n"
        "c.Execute.timeout = 300\n"
        "c.Execute.interrupt_on_timeout = True\n"
    )
    (root / "source" / AID).mkdir(parents=True)
    nbformat.write(_source_notebook(), root / "source" / AID / f"{AID}.ipynb")
    (root / "canary.txt").write_text("untouched\n")
    _nbgrader(root, "db", "student", "add", "ada")
    _nbgrader(root, "generate_assignment", AID, "--force")
    return root


def _submit(course: Path, student: str, answer: str) -> None:
    dest = course / "submitted" / student / AID
    dest.mkdir(parents=True)
    if student in ("lab", "rob"):
        shutil.copytree(PROBE, dest, dirs_exist_ok=True)
    nb = nbformat.read(course / "release" / AID / f"{AID}.ipynb", as_version=4)
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == "answer":
            cell.source = answer
    nbformat.write(nb, dest / f"{AID}.ipynb")
    (dest / "timestamp.txt").write_text("2026-01-01 00:00:00.000000 UTC\n")


def _scores(course: Path, student: str) -> tuple[float, float]:
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course}/gradebook.db", "wall") as gb:
        sub = gb.find_submission_notebook(AID, AID, student)
        return sub.score, sub.max_score


def _outputs(course: Path, student: str) -> str:
    nb = nbformat.read(course / "autograded" / student / AID / f"{AID}.ipynb", as_version=4)
    texts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            texts.append(out.get("text", "") or "")
            texts.append(out.get("ename", "") or "")
            texts.append("\n".join(out.get("traceback", [])))
    return "\n".join(texts)


def _digest(path: Path) -> dict[str, str]:
    return {
        str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(path.rglob("*"))
        if p.is_file() and "autograded" not in p.parts and p.name != "gradebook.db"
    }


STUDENTS = {
    "ada": HONEST,
    "eve": "",  # filled in with the course path
    "mem": MEMORY_HOG,
    "fork": FORK_BOMB,
    "big": BIG_FILE,
    "loop": ENDLESS,
    "lab": LAB_PUSH.format(run=RUN_ID),
    "rob": REGISTRY_HOSTILE.format(run=RUN_ID, other=LAB_NS),
    "zed": HONEST,  # graded after all of them
}


class _Listener:
    """A service on the host's loopback (like JupyterLab on :8888) the kernel must not reach."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]


_LISTENER = _Listener()


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    why = ag.problem()
    if why:
        pytest.fail(f"grader autograde cannot run here: {why}")
    course = _course(tmp_path_factory.mktemp("autograde") / "course")
    for student, answer in STUDENTS.items():
        if student == "eve":
            answer = HOSTILE.format(course=str(course), aid=AID, ports=[_LISTENER.port])
        _submit(course, student, answer)
    before = _digest(course)
    Path("/root/grader-wall-canary").unlink(missing_ok=True)
    Path("/root/grader-wall-secret").write_text("instructor's secret\n")
    os.chmod("/root/grader-wall-secret", 0o644)  # even a world-readable file in /root
    lines: list[str] = []
    try:
        runs = ag.autograde(
            AID, course=course, limits=LIMITS, timeout=CELL_TIMEOUT, say=lines.append
        )
        yield course, before, runs, lines
    finally:
        Path("/root/grader-wall-secret").unlink(missing_ok=True)


def test_honest_full_marks_like_plain_nbgrader(graded, tmp_path: Path) -> None:
    course, _, runs, lines = graded
    assert all(r.ok for r in runs), [(r.student, r.detail) for r in runs if not r.ok]
    assert _scores(course, "ada") == (2.0, 2.0)
    assert _scores(course, "zed") == (2.0, 2.0)
    assert any(line.startswith("[1/") and "ada" in line for line in lines), lines
    # plain nbgrader, same submission, a course of its own
    plain = _course(tmp_path / "plain")
    _submit(plain, "ada", HONEST)
    _nbgrader(plain, "autograde", AID, "--force")
    assert _scores(plain, "ada") == _scores(course, "ada")


def test_hostile_cells_fail_inside_the_wall(graded) -> None:
    course, before, _, _ = graded
    out = _outputs(course, "eve")
    assert "ESCAPED" not in out, out
    for name in ("root", "gradebook", "source", "root-home", "root-write", "course-write",
                 "other-student", "host-docker", "loopback", "userns", "userns-root"):  # fmt: skip
        assert f"DENIED {name}:" in out, (name, out)
    # the seccomp filter is on (mode 2) and ordinary programs still run under it
    assert "SECCOMP 2" in out and "BASH 42" in out, out
    # the worker engine answers the kernel's docker client, as the labs need
    engine_line = next(ln for ln in out.splitlines() if ln.startswith("WORKER-ENGINE"))
    assert engine_line.split()[1] == "0", engine_line
    assert "127.0.0.1:" in engine_line, engine_line
    uid = int(next(ln for ln in out.splitlines() if ln.startswith("UID")).split()[1])
    assert rootless.KERNEL_UIDS[0] <= uid < rootless.KERNEL_UIDS[1]
    assert _scores(course, "eve") == (2.0, 2.0)  # its add() is right: it is graded as usual
    assert _digest(course) == before
    assert not (course / "pwned.txt").exists()
    assert not Path("/root/grader-wall-canary").exists()
    assert "instructor's secret" not in out


def _registry_digest(repo: str, tag: str = "1") -> str | None:
    """The manifest digest the registry itself holds for ``repo:tag`` (asked as root, on
    the registry's own port), or None."""
    from grader.engine.config import settings

    accept = ", ".join(["application/vnd.oci.image.index.v1+json",
                        "application/vnd.oci.image.manifest.v1+json",
                        "application/vnd.docker.distribution.manifest.v2+json",
                        "application/vnd.docker.distribution.manifest.list.v2+json"])  # fmt: skip
    url = f"http://{settings().registry_host}/v2/{repo}/manifests/{tag}"
    req = urllib.request.Request(url, method="HEAD", headers={"Accept": accept})
    try:
        with urllib.request.urlopen(req, timeout=10) as answer:
            return answer.headers["Docker-Content-Digest"]
    except urllib.error.HTTPError:
        return None


def test_registry_writes_stay_in_the_students_own_namespace(graded) -> None:
    """lab pushes where the labs push and reads it back; rob's writes into library/ and
    lab's namespace are refused (engine, RUN step, raw HTTP), and rob's push to the name lab
    used lands in rob's own copy."""
    course, _, runs, _ = graded
    lab = _outputs(course, "lab")
    pushed = next(ln for ln in lab.splitlines() if ln.startswith("LAB-PUSH"))
    assert pushed.split()[1] == "0", lab
    shown = next(ln for ln in lab.splitlines() if ln.startswith("LAB-DIGEST")).split()
    assert shown[1] == "0" and shown[2].startswith("sha256:"), lab
    rob = _outputs(course, "rob")
    assert "ESCAPED" not in rob, rob
    for name in ("library-push", "other-push", "run-step", "raw-library",
                 "raw-library-own-credential", "raw-other-own-credential"):  # fmt: skip
        assert f"DENIED {name}:" in rob, (name, rob)
    assert next(ln for ln in rob.splitlines() if ln.startswith("SHARED-NAME")).split()[1] == "0"
    # lab's image is where lab's namespace keeps it, untouched; nothing at the shared names
    assert ag.student_namespace("lab") == LAB_NS
    assert _registry_digest(f"{LAB_NS}/lab04/run-{RUN_ID}") == shown[2]
    rob_ns = ag.student_namespace("rob")
    assert _registry_digest(f"{rob_ns}/lab04/run-{RUN_ID}") not in (None, shown[2])
    for repo in (f"lab04/run-{RUN_ID}", f"library/wall-{RUN_ID}"):
        assert _registry_digest(repo) is None, repo
    refused = next(r.refused for r in runs if r.student == "rob")
    assert refused and any("library/wall-" in why for why in refused), refused
    assert _scores(course, "lab") == (2.0, 2.0) and _scores(course, "rob") == (2.0, 2.0)


@pytest.mark.parametrize(
    "student, expect",
    [("mem", "DENIED memory: MemoryError"), ("fork", "DENIED processes: BlockingIOError"),
     ("big", "DENIED file-size: File too large")],
)  # fmt: skip
def test_limits_are_enforced(graded, student: str, expect: str) -> None:
    course, _, _, _ = graded
    out = _outputs(course, student)
    assert expect in out, out
    assert "ESCAPED" not in out, out
    assert _scores(course, student) == (2.0, 2.0)


def test_endless_cell_is_stopped_by_the_timeout(graded) -> None:
    course, _, runs, _ = graded
    out = _outputs(course, "loop")
    assert "CellTimeoutError" in out or "KeyboardInterrupt" in out, out
    assert _scores(course, "loop") == (0.0, 2.0)
    order = [r.student for r in runs]
    assert order.index("zed") > order.index("loop")
    assert _scores(course, "zed") == (2.0, 2.0)


def test_clear_errors(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(jailed.proc, "which", lambda tool: None if tool == "bwrap" else "/x")
    assert "apt-get install bubblewrap" in (jailed.jail_problem() or "")
    monkeypatch.undo()
    monkeypatch.setattr(jailed.os, "geteuid", lambda: 1000)
    assert "sudo grader autograde" in (jailed.jail_problem() or "")
    monkeypatch.undo()
    # no libseccomp: the jail does not start (fail closed) and says what to install
    monkeypatch.setattr(jailed.seccomp, "LIBRARY", "libseccomp-missing.so.9")
    jailed.seccomp._library.cache_clear()
    jailed.seccomp.bpf.cache_clear()
    try:
        assert "apt-get install libseccomp2" in (jailed.jail_problem() or "")
    finally:
        monkeypatch.undo()
        jailed.seccomp._library.cache_clear()
        jailed.seccomp.bpf.cache_clear()
    with pytest.raises(ag.AutogradeError, match=r"nbgrader_config\.py"):
        ag.autograde(AID, course=tmp_path, say=lambda s: None, engine=False)
    # the command line: the same message, exit status 2, nothing graded
    from grader.cli import main

    assert main(["autograde", AID, "--course", str(tmp_path), "--no-engine"]) == 2
    assert "nbgrader_config.py" in capsys.readouterr().err
    shutil.rmtree(tmp_path, ignore_errors=True)


@pytest.mark.qemu
@pytest.mark.slow
def test_challenge_reference_solution_scores_full_marks_behind_the_wall(
    tmp_path: Path, monkeypatch
) -> None:
    """source/07-challenge autograded through the wall. ``ada`` submits the reference solution:
    the kernel's ``bash build.sh`` and the checks' builds go to the worker engine, and before
    the notebook runs, ``grader autograde`` (root, outside the jail) grades build.sh in the
    grader's own sandbox (two runs behind the gate, as uids of their own), which cannot start
    inside the kernel's jail: the notebook takes ``idempotent`` and ``runs`` from that
    report, read-only in the jail, and every criterion scores (12 of 12).

    ``bob`` submits the same with the starter's build.sh (plain ``docker build``, nothing
    pushed): the sandbox's report fails ``runs``, ``idempotent`` does not count, and the
    Dockerfile's criteria still pass."""
    repo = Path(__file__).resolve().parents[2]
    aid = "07-challenge"
    course = _challenge_course(repo, tmp_path / "course", aid)
    _challenge_submission(repo, course, aid, "ada")
    bob = _challenge_submission(repo, course, aid, "bob")
    shutil.copy(course / "labs" / aid / "build.sh", bob / "build.sh")
    lines: list[str] = []
    monkeypatch.delenv("COURSE_GRADEBOOK", raising=False)
    runs = ag.autograde(aid, course=course, students=["ada", "bob"], say=lines.append)
    assert all(r.ok for r in runs), [r.detail for r in runs]
    sandboxed = {"test-idempotent", "test-runs"}
    ada, ada_out = _challenge_grades(course, aid, "ada")
    assert ada.keys() > sandboxed, ada
    assert all(score == top for score, top in ada.values()), (ada, ada_out[-4000:])
    assert sum(top for _, top in ada.values()) == 12, ada
    bob_grades, bob_out = _challenge_grades(course, aid, "bob")
    assert all(bob_grades[k][0] == 0 for k in sandboxed), (bob_grades, bob_out[-4000:])
    assert bob_grades["test-build"][0] == 1 and bob_grades["test-cross-compile"][0] == 2
    assert "build.sh pushed no image" in bob_out, bob_out[-4000:]
    assert "autograde-check/bob-" in bob_out, bob_out[-4000:]  # the sandbox's own finding
    for out in (ada_out, bob_out):  # the sandbox's report, not the jail's own attempt
        assert "graded by grader autograde in its build.sh sandbox" in out, out[-4000:]
        assert "the grading sandbox cannot start here" not in out, out[-4000:]
    said = "\n".join(lines)
    assert "ada: build.sh graded in the sandbox (idempotent: pass, runs: pass)" in said, said
    assert "bob: build.sh graded in the sandbox" in said and "runs: fail" in said, said


def _challenge_course(repo: Path, course: Path, aid: str) -> Path:
    (course / "source").mkdir(parents=True)
    shutil.copy(repo / "nbgrader_config.py", course / "nbgrader_config.py")
    shutil.copytree(repo / "source" / aid, course / "source" / aid)
    env = {k: v for k, v in os.environ.items() if k != "COURSE_GRADEBOOK"}
    done = proc.run([sys.executable, "-m", "nbgrader", "generate_assignment", aid, "--force"],
                    timeout=900, cwd=course, env=env, check=False)  # fmt: skip
    assert done.ok, done.stderr[-3000:]
    return course


def _challenge_submission(repo: Path, course: Path, aid: str, student: str) -> Path:
    """The released lab with the source's answers and the reference solution's files."""
    source_nb = nbformat.read(repo / "source" / aid / f"{aid}.ipynb", as_version=4)
    answers = {
        c.id: c.source for c in source_nb.cells if c.metadata.get("nbgrader", {}).get("solution")
    }
    dest = course / "submitted" / student / aid
    shutil.copytree(course / "labs" / aid, dest)
    nb = nbformat.read(dest / f"{aid}.ipynb", as_version=4)
    for cell in nb.cells:
        if cell.id in answers:
            cell.source = answers[cell.id]
    nbformat.write(nb, dest / f"{aid}.ipynb")
    shutil.copytree(repo / "source" / aid / "reference-solution", dest, dirs_exist_ok=True)
    return dest


def _challenge_grades(course: Path, aid: str, student: str):
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course}/gradebook.db", "multiplatform-builds") as gb:
        sub = gb.find_submission_notebook(aid, aid, student)
        grades = {g.name: (g.score, g.max_score) for g in sub.grades}
    return grades, _outputs_of(course / "autograded" / student / aid / f"{aid}.ipynb")


def _outputs_of(path: Path) -> str:
    nb = nbformat.read(path, as_version=4)
    return "\n".join(
        (o.get("text", "") or "") + (o.get("ename", "") or "") + " " + (o.get("evalue", "") or "")
        for c in nb.cells
        for o in c.get("outputs", [])
    )
