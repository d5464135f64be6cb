"""Hostile student ids (issue 12): ids that map to one report file or one registry
namespace, ids that are spreadsheet formulas, ids that carry terminal escapes. Static
batches: no engine needed."""

from __future__ import annotations

import csv
from pathlib import Path

from batchkit import make_good, records, unique_prefix

from grader.grading.batch.results import assign_ids, shown
from grader.grading.batch.run import BatchOptions, run_batch


def _static(subs: Path, out: Path, lines: list[str]):
    opts = BatchOptions(out=out, static_only=True, namespace_prefix=unique_prefix(),
                        progress=lines.append)  # fmt: skip
    return run_batch(subs, opts)


def test_ids_that_share_a_report_file_are_all_kept_and_reported(tmp_path: Path) -> None:
    # "a b", "a_b" and "a?b" all became reports/a_b.json: the last one graded won.
    ids = ["a b", "a_b", "a?b"]
    for sid in ids:
        make_good(tmp_path / "subs" / sid, message=sid)
    lines: list[str] = []
    summary = _static(tmp_path / "subs", tmp_path / "out", lines)
    recs = records(tmp_path / "out")
    assert sorted(r["student"] for r in recs.values()) == sorted(ids)
    assert len(recs) == 3
    assert frozenset(ids) in {frozenset(c) for c in summary.collisions}
    told = [ln for ln in lines if "same report file" in ln]
    assert told and all(shown(s) in told[0] for s in ids)
    rows = list(csv.DictReader((tmp_path / "out" / "grades.csv").open()))
    assert sorted(r["student"] for r in rows) == sorted(ids)


def test_ids_that_share_a_registry_namespace_get_distinct_ones(tmp_path: Path) -> None:
    ids = ["Alice", "alice", "ALICE!", "bob"]
    assigned, collisions = assign_ids(ids)
    spaces = [assigned[s].namespace for s in ids]
    assert len(set(spaces)) == 4
    assert assigned["bob"].namespace == "bob" and assigned["bob"].key == "bob"
    assert {frozenset(c.students) for c in collisions if c.what == "registry namespace"} == {
        frozenset(ids[:3])
    }
    for sid in ids:
        make_good(tmp_path / "subs" / sid, message=sid)
    lines: list[str] = []
    summary = _static(tmp_path / "subs", tmp_path / "out", lines)
    recs = records(tmp_path / "out")
    assert len({r["namespace"] for r in recs.values()}) == 4
    assert summary.collisions and any("registry namespace" in ln for ln in lines)


def test_a_safe_id_cannot_take_a_disambiguated_name(tmp_path: Path) -> None:
    # A learner who names their folder like the disambiguated key of two colliding ids
    # must not land on that key: keys stay one-to-one whatever the ids are.
    first, _ = assign_ids(["x y", "x_y"])
    taken = {a.key for a in first.values()} | {a.namespace for a in first.values()}
    hostile = sorted({"x y", "x_y", *taken})
    assigned, _ = assign_ids(hostile)
    assert len({a.key for a in assigned.values()}) == len(hostile)
    assert len({a.namespace for a in assigned.values()}) == len(hostile)


FORMULAS = ['=HYPERLINK("http://x","y")', "+1+1", "-2", "@SUM(A1)", "\tx", "\rcr"]


def test_formula_ids_are_neutralised_in_grades_csv(tmp_path: Path) -> None:
    for sid in FORMULAS:
        make_good(tmp_path / "subs" / sid)
    lines: list[str] = []
    _static(tmp_path / "subs", tmp_path / "out", lines)
    text = (tmp_path / "out" / "grades.csv").read_text()
    rows = list(csv.reader(text.splitlines()))[1:]
    cells = sorted(r[0] for r in rows)
    assert len(cells) == len(FORMULAS)
    for cell in cells:
        assert cell[0] not in "=+-@\t\r", cell
    assert "'=HYPERLINK" in text and "'+1+1" in text and "'-2" in text and "'@SUM" in text


ESCAPES = ["\x1b]0;pwned\x07tab", "\x1b[2J\x1b[Hclear", "bell\x07\x08\x08x", "rtl\u202egnp.exe"]


def test_terminal_escapes_in_ids_never_reach_the_terminal(tmp_path: Path) -> None:
    for sid in ESCAPES:
        make_good(tmp_path / "subs" / sid)
    lines: list[str] = []
    summary = _static(tmp_path / "subs", tmp_path / "out", lines)
    assert summary.total == len(ESCAPES) and summary.exit_code == 0
    progress = [ln for ln in lines if ln.startswith("[")]
    assert len(progress) == len(ESCAPES)
    for ln in lines:
        assert ln.isprintable(), repr(ln)
    csv_text = (tmp_path / "out" / "grades.csv").read_text()
    assert all(ch.isprintable() or ch == "\n" for ch in csv_text), repr(csv_text)
    # One printable form everywhere: the progress line and the CSV show the same text.
    for sid in ESCAPES:
        assert any(shown(sid) in ln for ln in progress)
        assert shown(sid) in csv_text
    page = (tmp_path / "out" / "index.html").read_text()
    assert "\x1b" not in page and all(shown(sid) in page for sid in ESCAPES)
    # The id itself is kept exactly in the JSON record (the gradebook matches on it).
    assert sorted(r["student"] for r in records(tmp_path / "out").values()) == sorted(ESCAPES)
