"""The instructor's results page (issue 14 item 3): what it counts, and that learner ids and
finding texts cannot inject markup, script, remote fetches or terminal escapes."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

from grader.grading.batch.page import collect, write_page
from grader.grading.batch.results import assign_ids, atomic_write, report_path
from grader.grading.criteria import CRITERIA
from grader.grading.rules import all_rules

HOSTILE_IDS = [
    "<script>alert(1)</script>",
    "'\"><img src=x onerror=alert(2)>",
    "\x1b]0;pwned\x07term",
    '=HYPERLINK("http://evil")',
    "plain",
]
HOSTILE_TEXT = "</td></tr></table><script>alert(3)</script><a href='http://evil/x'>x</a>\x1b[2J"


def _record(student: str, key: str, fails: dict[str, list[dict]], seconds: float) -> dict:
    criteria = []
    for c in CRITERIA:
        findings = fails.get(c.id, [])
        status = "fail" if findings else "pass"
        criteria.append({"id": c.id, "title": c.title, "status": status,
                         "points": 0.0 if findings else float(c.points),
                         "max_points": float(c.points), "findings": findings})  # fmt: skip
    score = sum(c["points"] for c in criteria)
    return {"student": student, "key": key, "complete": True, "seconds": seconds,
            "report": {"score": score, "max_score": 12.0, "criteria": criteria}}  # fmt: skip


def _finding(rule: str, message: str) -> dict:
    return {"rule": rule, "severity": "error", "message": message, "hint": ""}


def _results(tmp_path: Path) -> Path:
    assigned, _ = assign_ids(HOSTILE_IDS)
    for n, sid in enumerate(HOSTILE_IDS):
        fails = {}
        if n < 3:  # three learners with BS101 findings; one of them has two
            fails["buildx"] = [_finding("BS101", HOSTILE_TEXT)] * (2 if n == 0 else 1)
        if n == 1:
            fails["push"] = [_finding("ZZ999", "a rule the catalogue lost")]
        rec = _record(sid, assigned[sid].key, fails, seconds=1.5 + n)
        atomic_write(report_path(tmp_path, assigned[sid].key), json.dumps(rec).encode())
    return tmp_path


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def test_counts_and_rule_docs(tmp_path: Path) -> None:
    res = collect(_results(tmp_path))
    assert res.rule_findings["BS101"] == 4 and res.rule_learners["BS101"] == 3
    assert res.rule_learners["ZZ999"] == 1
    page = write_page(tmp_path).read_text()
    rule = all_rules()["BS101"]
    assert rule.name in page and rule.hint.split("`")[0][:40] in page
    assert "not in the rule catalogue" in page  # ZZ999
    assert page.count("<svg") == 3  # score distribution, pass rate, time per submission
    assert "3/5" in page  # BS101: learners affected out of the class
    assert "buildx" in page and "5 submissions" in page


def test_hostile_ids_and_finding_texts_are_escaped(tmp_path: Path) -> None:
    page = write_page(_results(tmp_path)).read_text()
    p = _Tags()
    p.feed(page)
    names = [t for t, _ in p.tags]
    assert "script" not in names and "img" not in names and "iframe" not in names
    for tag, attrs in p.tags:
        assert not any(k.startswith("on") for k in attrs), (tag, attrs)
        for k in ("href", "src"):
            v = attrs.get(k) or ""
            assert not v.startswith(("http:", "https:", "//", "javascript:")), (tag, v)
    # The hostile texts are shown, as text.
    text = "".join(p.text)
    assert "<script>alert(1)</script>" in text and "<script>alert(3)</script>" in text
    assert "\x1b" not in page and "\x07" not in page
    assert "\\x1b]0;pwned\\x07term" in text
    # Each learner links to their own report file, which exists.
    links = [a["href"] for t, a in p.tags if t == "a" and a.get("href", "").startswith("reports/")]
    assert len(links) == len(HOSTILE_IDS)
    assert all((tmp_path / link).is_file() for link in links)


def test_an_empty_class_still_gets_a_page(tmp_path: Path) -> None:
    page = write_page(tmp_path).read_text()
    assert "0 submissions" in page and "no findings" in page
