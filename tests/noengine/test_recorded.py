"""grader.course.recorded: the store of real outputs the labs show without an engine, and the
`grader record` tool that fills it. Real commands through labkit.sh, a real store on disk."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import nbformat
import pytest

from grader.course import labkit, magics, noengine, record, recorded

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable
_RECORD_KEY = re.compile(r"""record\s*=\s*["']([^"']+)["']""")


@pytest.fixture
def store(tmp_path, monkeypatch):
    """An empty recordings folder of our own (never the packaged one)."""
    folder = tmp_path / "recordings"
    monkeypatch.setenv("COURSE_RECORDINGS_DIR", str(folder))
    monkeypatch.delenv("COURSE_RECORD_LAB", raising=False)
    return folder


@pytest.fixture
def no_engine(monkeypatch):
    monkeypatch.setenv("COURSE_NO_ENGINE", "1")
    noengine.engine_available.cache_clear()
    yield
    noengine.engine_available.cache_clear()


def test_labkit_records_a_real_run_and_replays_it_labelled(store, monkeypatch, capsys):
    monkeypatch.setenv("COURSE_RECORD", "1")
    script = "import sys; print('to stdout'); print('to stderr', file=sys.stderr); sys.exit(3)"
    labkit.sh([PY, "-c", script], record="03-demo-failure")
    data = json.loads((store / "03-builders.json").read_text())["recordings"]["03-demo-failure"]
    assert data["stdout"] == "to stdout" and data["stderr"] == "to stderr"
    assert data["returncode"] == 3 and data["command"].startswith(PY)
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", data["recorded_at"])
    assert set(data["engine"]) == {"docker", "buildx", "host"}

    capsys.readouterr()
    rec = recorded.replay("03-demo-failure")
    shown = capsys.readouterr().out
    assert rec is not None and rec.lab == "03-builders"
    assert f"recorded output of `{rec.command}` on {rec.recorded_at}" in shown
    assert "not run now" in shown and "exit status 3" in shown
    assert shown.index("to stdout") < shown.index("end of recorded output")


def test_labkit_shows_the_recording_when_no_engine(store, no_engine, monkeypatch, capsys):
    monkeypatch.setenv("COURSE_RECORD", "1")
    noengine.engine_available.cache_clear()
    # Record a docker-looking command by running it with engine=False (a real run of echo).
    labkit.sh(["echo", "linux/arm64"], record="04-platform", engine=False)
    monkeypatch.delenv("COURSE_RECORD")
    capsys.readouterr()
    r = labkit.sh(["echo", "linux/arm64"], record="04-platform", engine=True)
    shown = capsys.readouterr().out
    assert not r.ran and r.recording is not None and r.stdout == "linux/arm64"
    assert "[no engine]" in shown and "recorded output" in shown and "linux/arm64" in shown


def test_keys_belong_to_their_lab_by_number_or_name(monkeypatch):
    monkeypatch.delenv("COURSE_RECORD_LAB", raising=False)
    assert recorded.lab_for_key("01-run-liar") == "01-exec-format-error"
    assert recorded.lab_for_key("07-build") == "07-challenge"
    assert recorded.lab_for_key("08-cache") == "08-beyond"
    assert recorded.lab_for_key("zz-other") == "misc"
    monkeypatch.setenv("COURSE_RECORD_LAB", "05-cross-compile")
    assert recorded.lab_for_key("anything") == "05-cross-compile"


def test_long_outputs_are_cut_visibly(store, monkeypatch):
    monkeypatch.setenv("COURSE_RECORD", "1")
    labkit.sh([PY, "-c", "for i in range(1000): print(f'line {i}', 'x' * 900)"], record="02-long")
    out = recorded.lookup("02-long").stdout.splitlines()
    assert len(out) == recorded.MAX_LINES + 1
    assert out[0].startswith("line 0 ") and out[-1].startswith("line 999 ")
    assert f"[... {1000 - recorded.MAX_LINES} lines not recorded ...]" in out
    assert all(len(line) <= recorded.MAX_LINE_CHARS + 6 for line in out)


def test_a_key_in_two_labs_is_an_error_and_a_damaged_store_is_no_recording(store):
    store.mkdir()
    entry = {"command": "docker ps", "returncode": 0, "recorded_at": "2025-01-01"}
    for lab in ("01-exec-format-error", "02-qemu-binfmt"):
        (store / f"{lab}.json").write_text(json.dumps({"recordings": {"same-key": entry}}))
    with pytest.raises(ValueError, match="same-key"):
        recorded.load_all()
    assert recorded.lookup("same-key") is None  # a lab shows "no recorded output", not a crash
    (store / "02-qemu-binfmt.json").write_text("{not json")
    assert recorded.lookup("same-key") is None and recorded.lab_recordings("01-x") == []


def test_the_shipped_store_is_small_valid_and_covers_every_key_the_labs_use():
    """Fails when a lab gains a `record=` key or a `%%docker` cell nobody recorded: run
    `grader record <lab>`."""
    files = sorted(recorded.RECORDINGS_DIR.glob("*.json"))
    assert files, "grader/course/recordings/ is empty"
    assert sum(f.stat().st_size for f in files) < 400_000
    store = recorded.load_all(recorded.RECORDINGS_DIR)  # raises on a duplicate key
    for rec in store.values():
        assert rec.command and rec.recorded_at and rec.engine.get("docker"), rec.key
    used = {}
    for nb_path in sorted(ROOT.glob("labs/*/*.ipynb")):
        nb = nbformat.read(nb_path, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                for key in _RECORD_KEY.findall(cell.source):
                    used[key] = nb_path.parent.name
                magic = magics.MAGIC_LINE.match(cell.source)
                key = magic and magics.recording_key(magic.group(1), nb_path.parent.name)
                if key:
                    used[key] = nb_path.parent.name
    skipped = {
        key for f in files for key in recorded.not_run(f)
    }  # branches the recording machine does not take, listed by `grader record`
    missing = sorted(
        f"{lab}: {key}" for key, lab in used.items() if key not in store and key not in skipped
    )
    assert not missing, "no recording for (run `grader record LAB`):\n" + "\n".join(missing)
    wrong_lab = sorted(key for key, lab in used.items() if key in store and store[key].lab != lab)
    assert not wrong_lab, f"recorded under another lab: {wrong_lab}"


def test_recorded_package_data_is_declared():
    text = (ROOT / "pyproject.toml").read_text()
    assert '"course/recordings/*.json"' in text


@pytest.mark.engine
def test_grader_record_runs_a_source_notebook_on_the_engine(tmp_path, monkeypatch):
    """The record tool end to end on a one-cell lab: a real docker command, stored."""
    monkeypatch.delenv("COURSE_NO_ENGINE", raising=False)
    noengine.engine_available.cache_clear()
    source = tmp_path / "source" / "03-builders"
    source.mkdir(parents=True)
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(
            "from grader.course.labkit import sh\n"
            "sh('docker buildx version', record='03-t-version')\n"
            "sh(['docker', 'buildx', 'inspect', 'no-such-builder-t7'], record='03-t-missing')\n"
            "if False:  # a branch this machine does not take\n"
            "    sh('docker compose build', record='03-t-never')"
        )
    ]
    nbformat.write(nb, source / "03-builders.ipynb")
    out = tmp_path / "out"
    out.mkdir()
    (out / "03-builders.json").write_text('{"recordings": {"03-stale": {}}}')
    run = record.record_lab("03-builders", source_dir=tmp_path / "source", out_dir=out)
    assert run.ok and run.recorded == 2, run.error
    got = json.loads((out / "03-builders.json").read_text())["recordings"]
    assert set(got) == {"03-t-version", "03-t-missing"}, "re-recording replaces the lab's file"
    assert got["03-t-version"]["returncode"] == 0 and "buildx" in got["03-t-version"]["stdout"]
    assert got["03-t-missing"]["returncode"] != 0
    assert "no-such-builder-t7" in got["03-t-missing"]["stderr"]
    assert recorded.not_run(out / "03-builders.json") == ["03-t-never"]


@pytest.mark.engine
def test_a_failing_lab_keeps_the_previous_recordings(tmp_path):
    source = tmp_path / "source" / "03-builders"
    source.mkdir(parents=True)
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("raise RuntimeError('lab is broken')")]
    nbformat.write(nb, source / "03-builders.ipynb")
    out = tmp_path / "out"
    out.mkdir()
    previous = '{"recordings": {}}'
    (out / "03-builders.json").write_text(previous)
    run = record.record_lab("03-builders", source_dir=tmp_path / "source", out_dir=out)
    assert not run.ok and "lab is broken" in run.error
    assert (out / "03-builders.json").read_text() == previous


def test_grader_record_without_engine_says_what_is_missing(no_engine, capsys):
    from grader.cli import main

    assert main(["record", "00-welcome", "--out", "/nonexistent"]) == 2
    assert "needs the real engine" in capsys.readouterr().err


@pytest.mark.engine
def test_keep_partial_stores_what_a_failing_lab_recorded(tmp_path):
    source = tmp_path / "source" / "03-builders"
    source.mkdir(parents=True)
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(
            "from grader.course.labkit import sh\n"
            "sh('docker buildx version', record='03-t-partial')"
        ),
        nbformat.v4.new_code_cell("raise RuntimeError('a later check fails')"),
    ]
    nbformat.write(nb, source / "03-builders.ipynb")
    out = tmp_path / "out"
    out.mkdir()
    entry = {"command": "old", "returncode": 0, "recorded_at": "2025-01-01"}
    (out / "03-builders.json").write_text(json.dumps({"recordings": {"03-t-old": entry}}))
    run = record.record_lab(
        "03-builders", source_dir=tmp_path / "source", out_dir=out, keep_partial=True
    )
    assert not run.ok and run.recorded == 1
    got = json.loads((out / "03-builders.json").read_text())["recordings"]
    assert set(got) == {"03-t-old", "03-t-partial"}, "merged into what was there"
