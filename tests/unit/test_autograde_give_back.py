"""What ``grader autograde`` (root) leaves in a course folder belongs to the course's owner
(the instructor on a hub), and handing it back never follows a link out of the folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from grader.grading.batch import autograde

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="chown to another uid needs root")
OWNER = (4242, 4343)


def test_autograded_files_go_to_the_course_owner_and_links_are_not_followed(tmp_path: Path):
    outside = tmp_path / "outside.txt"
    outside.write_text("root's")
    course = tmp_path / "course"
    graded = course / "autograded" / "ada" / "07-challenge"
    graded.mkdir(parents=True)
    (graded / "07-challenge.ipynb").write_text("{}")
    (graded / "link").symlink_to(outside)
    (graded / "dirlink").symlink_to(tmp_path, target_is_directory=True)
    (course / "gradebook.db").write_text("")
    os.chown(course, *OWNER)

    autograde._chown(course / "autograded", autograde.course_owner(course))
    autograde._give_back(course / "autograded" / "ada", autograde.course_owner(course))
    autograde._give_back_gradebook(course)

    for path in (course / "autograded", graded.parent, graded, graded / "07-challenge.ipynb",
                 course / "gradebook.db"):  # fmt: skip
        st = path.lstat()
        assert (st.st_uid, st.st_gid) == OWNER, path
    assert (graded / "link").lstat().st_uid == OWNER[0]  # the link itself ...
    assert outside.stat().st_uid == 0  # ... never what it points to
    assert tmp_path.stat().st_uid == 0


def test_a_symlinked_student_folder_is_left_alone(tmp_path: Path):
    target = tmp_path / "etc"
    target.mkdir()
    (target / "passwd").write_text("x")
    course = tmp_path / "course"
    (course / "autograded").mkdir(parents=True)
    (course / "autograded" / "mallory").symlink_to(target, target_is_directory=True)
    autograde._give_back(course / "autograded" / "mallory", OWNER)
    assert (target / "passwd").stat().st_uid == 0
    assert target.stat().st_uid == 0
