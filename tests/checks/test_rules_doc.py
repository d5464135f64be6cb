"""docs/rules.md is generated from the catalogue and must be current."""

from __future__ import annotations

from pathlib import Path

from grader.cli import main
from grader.grading.rules import all_rules
from grader.grading.rules import doc as rulesdoc

DOC = Path(__file__).resolve().parents[2] / "docs" / "rules.md"


def test_docs_rules_md_is_up_to_date() -> None:
    assert DOC.read_text(encoding="utf-8") == rulesdoc.render_markdown(), (
        "docs/rules.md is stale: run `grader rules --output docs/rules.md`"
    )


def test_every_rule_has_a_section_with_both_examples() -> None:
    text = rulesdoc.render_markdown()
    for r in all_rules().values():
        section = text.split(f"### {r.id} {r.name}\n", 1)[1].split("\n### ", 1)[0]
        assert "Anti-pattern:" in section and "Best practice:" in section
        assert r.anti_pattern.splitlines()[0] in section


def test_rules_check_flags_a_stale_file(tmp_path: Path, capsys) -> None:
    stale = tmp_path / "rules.md"
    stale.write_text("# old\n")
    assert main(["rules", "--check", str(stale)]) == 1
    assert "out of date" in capsys.readouterr().err
    assert main(["rules", "--output", str(stale)]) == 0
    assert main(["rules", "--check", str(stale)]) == 0


def test_rules_json_lists_every_rule(capsys) -> None:
    import json

    assert main(["rules", "--format", "json"]) == 0
    ids = [r["id"] for r in json.loads(capsys.readouterr().out)]
    assert ids == sorted(all_rules())
