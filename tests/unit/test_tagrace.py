"""What the %%docker shim reads in buildx's output to see the course registry's tag race and
dockerd's second push: buildx's own lines only, and only for the course registry. (On the
engine, with a registry that answers the race: tests/engine/test_magics_engine.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from grader.course import magics, tagrace

COURSE = "127.0.0.1:5000"
#: buildx 0.13.1's own last line when dockerd's HEAD of the tag got the registry's 500
RACE = (
    "ERROR: unexpected status from HEAD request to http://127.0.0.1:5000/v2/lab04/app/"
    "manifests/v1: 500 Internal Server Error"
)


def test_buildx_s_own_error_for_the_course_registry_is_the_race():
    assert tagrace.race_error(RACE, COURSE)
    assert tagrace.race_error(RACE.replace("HEAD", "PUT"), COURSE)


@pytest.mark.parametrize(
    "line",
    [
        # a RUN that echoes it: rawjson's step name (indented JSON) and buildx's own error line
        '      "name": "[2/2] RUN echo \\"' + RACE.replace('"', '\\"') + '\\"; false",',
        'ERROR: failed to solve: process "/bin/sh -c echo \\"' + RACE + '\\"; false" did not',
        "   2 | >>> RUN echo '" + RACE + "'",  # the Dockerfile excerpt
        "ERROR: invalid checksum digest format",  # no request to the course registry
        RACE.replace("127.0.0.1:5000", "registry-1.docker.io"),  # another registry's 500
        RACE.replace("127.0.0.1:5000", "127.0.0.1:50000"),
        RACE.replace(": 500 ", ": 404 "),
    ],
)
def test_what_a_learner_prints_or_another_registry_answers_is_not_the_race(line):
    assert not tagrace.race_error(line, COURSE)


def test_no_course_registry_no_race():
    assert not tagrace.race_error(RACE, "")


def test_the_second_push_is_read_from_rawjson_s_step_names():
    line = '      "name": "pushing 127.0.0.1:5000/a/b:v1,127.0.0.1:5000/a/b:latest with docker",'
    assert tagrace.pushed_with_docker(line) == [
        "127.0.0.1:5000/a/b:v1",
        "127.0.0.1:5000/a/b:latest",
    ]
    for other in (
        '      "name": "[2/2] RUN echo pushing 127.0.0.1:5000/a/b:v1 with docker",',
        "pushing 127.0.0.1:5000/a/b:v1 with docker",  # not rawjson: a learner's echo
        '      "id": "pushing manifest for 127.0.0.1:5000/a/b:v1@sha256:00",',
    ):
        assert tagrace.pushed_with_docker(other) == []


def test_what_the_shim_says_at_a_build_s_end_is_shown(capsys):
    cell = magics.DockerCell("said", "", "", Path("."))
    runner = magics._Runner(cell, show=lambda _p: None, panels=False)
    runner.line("stderr", magics.BUILD_START + ' {"id": 7, "argv": ["docker", "buildx", "build"]}')
    runner.line("stderr", magics.BUILD_END + ' {"id": 7, "returncode": 0, "said": ["[course] x"]}')
    assert cell.output[-2].startswith("[build for") and cell.output[-1] == "[course] x"
    assert cell.builds[0].returncode == 0
