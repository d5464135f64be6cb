"""docs/instructors.md shows the exact commands the nbgrader round-trip test runs."""

from __future__ import annotations

from labs_nbtools import ROOT
from test_nbgrader_roundtrip import COMMANDS


def test_docs_show_every_command_the_round_trip_runs():
    doc = (ROOT / "docs" / "instructors.md").read_text()
    for command in COMMANDS.values():
        assert command.format(aid="07-challenge") in doc, command
