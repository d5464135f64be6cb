"""nbgrader configuration for the course; the course directory is the repository root.

source/<assignment>/   notebooks with solutions and hidden tests (edited by hand)
labs/<assignment>/     released student versions (`scripts/release-labs`, checked in)
submitted/, autograded/, feedback/, gradebook.db   instructor data, never committed

See docs/instructors.md for the commands.
"""

import os
from pathlib import Path

from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor
from nbgrader.converters import GenerateAssignment
from nbgrader.preprocessors import ClearSolutions, GetGrades

from grader.course.hidden_tests import StripHiddenTests
from grader.course.starters import ClearSolutionsWithStarters

c = get_config()  # noqa: F821 - injected by nbgrader when it loads this file

ROOT = Path(__file__).resolve().parent

c.CourseDirectory.root = str(ROOT)
c.CourseDirectory.course_id = "multiplatform-builds"
c.CourseDirectory.source_directory = "source"
c.CourseDirectory.release_directory = "labs"
# The gradebook holds learners' grades: outside git (ignored), movable with COURSE_GRADEBOOK.
c.CourseDirectory.db_url = os.environ.get(
    "COURSE_GRADEBOOK", "sqlite:///" + str(ROOT / "gradebook.db")
)
# The challenge's reference solution stays in source/07-challenge/reference-solution/: never
# released to learners, never copied into their autograded submissions.
c.CourseDirectory.ignore = [
    ".ipynb_checkpoints",
    "*.pyc",
    "__pycache__",
    "feedback",
    "reference-solution",
]

# Emulated (QEMU) builds of a whole image take minutes per cell.
c.Execute.timeout = 1800
c.ExecutePreprocessor.timeout = 1800
c.Execute.interrupt_on_timeout = True

# Learners' own files (build.sh, Dockerfile, the app's sources) are their work: autograde
# must grade them, not overwrite them with the master copies from source/.
c.Autograde.exclude_overwriting = {
    assignment.name: sorted(
        str(path.relative_to(assignment))
        for path in assignment.rglob("*")
        if path.is_file()
        and path.suffix != ".ipynb"
        and ".ipynb_checkpoints" not in path.parts
        and "reference-solution" not in path.parts
    )
    for assignment in sorted((ROOT / "source").glob("*"))
    if assignment.is_dir()
}

# A %%writefile answer cell is released with its starter text (the file to fix), not with
# nbgrader's Python stub, which would become the file (grader/course/starters.py).
c.GenerateAssignment.preprocessors = [
    ClearSolutionsWithStarters if p is ClearSolutions else p
    for p in GenerateAssignment.class_traits()["preprocessors"].make_dynamic_default()
]

# Hidden tests stay hidden in feedback too (nbgrader's default feedback shows them).
c.GenerateFeedback.preprocessors = [GetGrades, StripHiddenTests, CSSHTMLHeaderPreprocessor]
