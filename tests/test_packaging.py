"""The environment Binder (repo2docker) builds, and the files it runs.

- environment.yml's pip section and pyproject.toml name the same dependencies, exactly;
- binder/ holds what repo2docker reads (it reads only binder/ when that folder exists);
- binder/start and binder/postBuild are executable and shellcheck-clean; start opens the
  welcome lab on a real JupyterLab;
- a fresh venv built from the pip section alone, after binder/postBuild, imports everything
  the labs import (the conda part cannot be resolved on this machine).
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import nbformat
import pytest
import yaml

from grader import proc

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

ROOT = Path(__file__).resolve().parents[1]
BINDER = ROOT / "binder"
WELCOME = "/lab/tree/labs/00-welcome/00-welcome.ipynb"


def _pip_section() -> list[str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pips = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(pips) == 1, "environment.yml has exactly one pip: section"
    return pips[0]


def test_environment_and_pyproject_name_the_same_dependencies():
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pip = _pip_section()
    assert len(set(pip)) == len(pip), "a dependency is listed twice in environment.yml"
    assert sorted(pip) == sorted(declared), (
        f"only in environment.yml: {sorted(set(pip) - set(declared))}; "
        f"only in pyproject.toml: {sorted(set(declared) - set(pip))}"
    )


def _declared_names(requirements: list[str]) -> set[str]:
    return {
        re.split(r"[=<>~!\[; ]", r, maxsplit=1)[0].lower().replace("_", "-") for r in requirements
    }


def third_party_imports(package: Path) -> dict[str, str]:
    """Top-level modules imported anywhere under ``package`` (inside functions too) that are
    neither the standard library nor the project, each with one file that imports it."""
    found: dict[str, str] = {}
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top != package.name:
                    found.setdefault(top, str(path.relative_to(package.parent)))
    return found


def test_every_module_the_grader_imports_is_declared():
    """A module grader/ imports that comes only as another package's dependency breaks when
    that package drops it (nbformat, nbconvert and IPython were imported, never declared)."""
    import importlib.metadata

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = _declared_names(project["dependencies"])
    dists = importlib.metadata.packages_distributions()
    undeclared = []
    for module, where in sorted(third_party_imports(ROOT / "grader").items()):
        names = {d.lower().replace("_", "-") for d in dists.get(module, [module])}
        if not names & declared:
            undeclared.append(f"{module} ({' or '.join(sorted(names))}), imported by {where}")
    assert not undeclared, "declare in pyproject.toml and environment.yml: " + "; ".join(undeclared)
    assert "nbval" not in declared, "nbval runs the tests only: it belongs in the test extra"
    assert any(r.startswith("nbval") for r in project["optional-dependencies"]["test"])


def test_the_import_scan_sees_imports_inside_functions(tmp_path):
    pkg = tmp_path / "grader"
    pkg.mkdir()
    (pkg / "m.py").write_text(
        "import os\nfrom . import y\ndef f():\n    import nbformat.v4\n    from grader import x\n"
    )
    assert third_party_imports(pkg) == {"nbformat": "grader/m.py"}


def test_conda_part_holds_only_python_and_pip():
    """Every Python dependency is in the pip section, so a venv reproduces the environment."""
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = [d for d in env["dependencies"] if not isinstance(d, dict)]
    names = sorted(re.split(r"[=<>~ ]", d, maxsplit=1)[0] for d in conda)
    assert names == ["pip", "python"], conda
    python = next(d for d in conda if d.startswith("python"))
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    low = tuple(int(x) for x in re.findall(r"\d+", declared)[:2])
    pinned = tuple(int(x) for x in re.findall(r"\d+", python)[:2])
    assert pinned >= low, f"{python} is older than requires-python {declared}"


def test_binder_folder_is_what_repo2docker_reads():
    link = BINDER / "environment.yml"
    assert link.is_symlink() and os.readlink(link) == "../environment.yml", (
        "binder/environment.yml must be a relative link to the top-level file: with binder/ "
        "present, repo2docker ignores files at the top level"
    )
    assert link.read_text() == (ROOT / "environment.yml").read_text()
    assert (ROOT / WELCOME.removeprefix("/lab/tree/")).is_file(), "start opens a lab that exists"
    known = {"environment.yml", "postBuild", "start", "nbgrader_student_config.py"}
    assert {p.name for p in BINDER.iterdir()} == known


@pytest.mark.parametrize("script", ["postBuild", "start"])
def test_binder_scripts_are_executable_and_shellcheck_clean(script):
    path = BINDER / script
    assert os.access(path, os.X_OK), f"chmod +x binder/{script}"
    assert path.read_text().startswith("#!/bin/bash\n")
    if shutil.which("shellcheck") is None:
        pytest.fail("shellcheck is missing: apt-get install shellcheck (./course test does)")
    done = proc.run(["shellcheck", "--shell=bash", str(path)], timeout=60, check=False)
    assert done.ok, done.stdout + done.stderr
    if script == "start":
        assert path.read_text().rstrip().endswith('exec "$@"'), "start must end by exec'ing $@"


def _free_port() -> int:
    import socket

    for port in range(5100, 5200):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) != 0:
                return port
    raise RuntimeError("no free port in 5100-5199")


def _landing(
    args: list[str],
    env: dict[str, str] | None = None,
    app: str = "jupyter-lab",
    page: str | None = None,
) -> str:
    """Start JupyterLab through binder/start; return where its front page redirects (or,
    with ``page``, that page's HTML)."""
    port = _free_port()
    token = "binder-start-test"
    argv = [
        str(BINDER / "start"), str(Path(sys.executable).parent / app), "--no-browser",
        f"--port={port}", "--ip=127.0.0.1", f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={ROOT}", "--LabApp.news_url=", *args,
    ]  # fmt: skip
    if os.geteuid() == 0:
        argv.append("--allow-root")  # this machine and CI run as root; Binder does not
    server = proc.stream(argv, env=env, cwd=ROOT)

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *a, **k):
            return None

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), NoRedirect)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                opener.open(f"http://127.0.0.1:{port}/?token={token}", timeout=5)
            except urllib.error.HTTPError as e:
                if e.code not in (301, 302):
                    raise
                if page is None:
                    return e.headers["Location"].split("?", 1)[0]
                url = f"http://127.0.0.1:{port}{page}?token={token}"
                with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(
                    url, timeout=30
                ) as resp:
                    return resp.read().decode()
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.3)
        raise AssertionError("JupyterLab did not answer within 60 s")
    finally:
        server.cancel()
        server.wait()


@pytest.mark.parametrize("app", ["jupyter-lab", "jupyter-notebook"])
def test_start_opens_the_welcome_lab(app):
    """jupyter-notebook is what repo2docker runs by default; jupyter-lab what the course runs."""
    assert _landing([], app=app).endswith(WELCOME)


def test_start_keeps_a_page_the_launch_link_chose():
    assert _landing(["--LabApp.default_url=/lab/tree/README.md"]).endswith("/lab/tree/README.md")
    assert not _landing([], env={"JUPYTERHUB_DEFAULT_URL": "/lab"}).endswith(WELCOME)


def _preferred_path(html: str) -> str | None:
    """The file browser's starting folder in a JupyterLab page's config."""
    found = re.search(r'"preferredPath":\s*"([^"]*)"', html)
    return found[1].strip("/") if found else None


def test_start_opens_the_file_browser_on_labs():
    """Binder serves the whole public repository (source/ holds the solutions): the file
    browser starts in labs/, also when a hub or the launch link chose the page."""
    assert _preferred_path(_landing([], page="/lab")) == "labs"
    hub = _landing([], env={**os.environ, "JUPYTERHUB_DEFAULT_URL": "/lab"}, page="/lab")
    assert _preferred_path(hub) == "labs"
    chosen = _landing(["--ContentsManager.preferred_dir=source"], page="/lab")
    assert _preferred_path(chosen) == "source", "a folder the command chose wins"


def _status(bindir: Path, env: dict[str, str], path: str) -> int:
    """Start that venv's jupyter-server with ``env``; the HTTP status of ``path``."""
    port, token = _free_port(), "packaging-test"
    argv = [
        str(bindir / "jupyter-server"), f"--port={port}", "--ip=127.0.0.1", "--no-browser",
        f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={ROOT}",
    ]  # fmt: skip
    if os.geteuid() == 0:
        argv.append("--allow-root")
    server = proc.stream(argv, env=env, cwd=ROOT)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with opener.open(f"http://127.0.0.1:{port}{path}?token={token}", timeout=10) as r:
                    return r.status
            except urllib.error.HTTPError as e:
                return e.code
            except (urllib.error.URLError, ConnectionError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
    finally:
        server.cancel()
        server.wait()


def lab_import_statements() -> list[str]:
    """Every import statement in the labs' notebooks (released and source), as written."""
    found: set[str] = set()
    for nb_path in sorted([*ROOT.glob("labs/*/*.ipynb"), *ROOT.glob("source/*/*.ipynb")]):
        for cell in nbformat.read(nb_path, as_version=4).cells:
            if cell.cell_type != "code":
                continue
            code = "\n".join(
                line
                for line in cell.source.splitlines()
                if not line.lstrip().startswith(("%", "!"))
            )
            try:
                tree = ast.parse(code)
            except SyntaxError:
                continue  # a learner's unfinished cell; released labs are checked by nbval
            for node in ast.walk(tree):
                if isinstance(node, ast.Import | ast.ImportFrom) and not getattr(node, "level", 0):
                    found.add(ast.unparse(node))
    return sorted(found)


def test_the_labs_import_the_course_package():
    statements = lab_import_statements()
    assert any("grader.course.labkit" in s for s in statements), statements


@pytest.mark.slow
def test_fresh_venv_from_the_pip_section_runs_postbuild_and_imports_what_labs_import(tmp_path):
    venv = tmp_path / "venv"
    proc.run([sys.executable, "-m", "venv", str(venv)], timeout=300)
    bindir = venv / "bin"
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("\n".join(_pip_section()) + "\n")
    pip = [str(bindir / "python"), "-m", "pip", "--disable-pip-version-check", "-q"]
    proc.run([*pip, "install", "-r", str(requirements)], timeout=1500)

    home = tmp_path / "home"
    home.mkdir()
    env = {
        "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}",
        "HOME": str(home),
        "COURSE_GRADEBOOK": f"sqlite:///{tmp_path / 'gradebook.db'}",  # not the repo's
    }
    env.update({k: "" for k in ("VIRTUAL_ENV", "PYTHONPATH", "JUPYTER_CONFIG_DIR")})
    done = proc.run([str(BINDER / "postBuild")], timeout=900, env=env, cwd=ROOT, check=False)
    assert done.ok, done.stdout[-3000:] + done.stderr[-3000:]

    statements = lab_import_statements()
    script = tmp_path / "imports.py"
    script.write_text("\n".join(statements) + f"\nprint('imported', {len(statements)})\n")
    done = proc.run([str(bindir / "python"), str(script)], timeout=300, env=env, check=False)
    assert done.ok and f"imported {len(statements)}" in done.stdout, done.stderr[-3000:]

    where = proc.run(
        [str(bindir / "python"), "-c", "import grader; print(grader.__file__)"], timeout=60, env=env
    )
    assert where.stdout.strip() == str(ROOT / "grader" / "__init__.py"), "postBuild installs -e ."

    labext = proc.run([str(bindir / "jupyter"), "labextension", "list"], timeout=120, env=env)
    listing = re.sub(r"\x1b\[[0-9;]*m", "", labext.stdout + labext.stderr)
    for plugin in ("formgrader", "create-assignment", "course-list"):
        assert f"@jupyter/nbgrader:{plugin}" in listing, f"{plugin} should be disabled:\n{listing}"
    assert "@jupyter/nbgrader:validate-assignment" not in listing, "learners keep Validate"
    server = proc.run(
        [str(bindir / "jupyter"), "server", "extension", "list"], timeout=120, env=env
    )
    text = re.sub(r"\x1b\[[0-9;]*m", "", server.stdout + server.stderr)
    assert re.search(r"nbgrader\.server_extensions\.formgrader\s+disabled", text), text
    assert re.search(r"nbgrader\.server_extensions\.validate_assignment\s+enabled", text), text

    # docs/jupyterhub.md, section 4: an instructor turns the tools on for their own account
    sys.path.insert(0, str(Path(__file__).resolve().parent / "hub"))
    import guide

    instructor_home = tmp_path / "instructor"
    instructor_home.mkdir()
    # the spawner gives instructors JUPYTER_PREFER_ENV_PATH=0 (guide, section 2)
    instructor = {**env, "HOME": str(instructor_home), "JUPYTER_PREFER_ENV_PATH": "0"}
    guide.run("instructor-tools", instructor, tmp_path)
    labext = proc.run(
        [str(bindir / "jupyter"), "labextension", "list"], timeout=120, env=instructor
    )
    mine = re.sub(r"\x1b\[[0-9;]*m", "", labext.stdout + labext.stderr)
    assert "@jupyter/nbgrader:formgrader" not in mine, f"enabled for the instructor:\n{mine}"
    assert "@jupyter/nbgrader:course-list" in mine, "only what the guide turns on"
    assert _status(bindir, instructor, "/formgrader") == 200, "the instructor's formgrader"
    assert _status(bindir, env, "/formgrader") == 404, "learners have no formgrader"
    labext = proc.run([str(bindir / "jupyter"), "labextension", "list"], timeout=120, env=env)
    assert "@jupyter/nbgrader:formgrader" in labext.stdout + labext.stderr, "learners: still off"

    student = home / ".jupyter" / "nbgrader_config.py"
    course_id = re.compile(r'course_id\s*=\s*"([^"]+)"')
    assert (
        course_id.search(student.read_text())[1]
        == course_id.search((ROOT / "nbgrader_config.py").read_text())[1]
    ), "the student config names the instructor's course"


def test_readme_binder_link_opens_the_welcome_lab():
    links = re.findall(r"https://mybinder\.org/v2/gh/[^)\s`]+", (ROOT / "README.md").read_text())
    assert links, "README.md has a Binder link"
    for link in links:
        assert link.endswith("?urlpath=lab/tree/labs/00-welcome/00-welcome.ipynb"), link
    assert (ROOT / "labs/00-welcome/00-welcome.ipynb").is_file()
