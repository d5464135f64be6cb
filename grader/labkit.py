"""Kept for learners' already-fetched copies of a lab, whose cells say ``from grader.labkit import
...``: the lab helpers now live in :mod:`grader.course.labkit`. The project never imports it."""

from grader.course.labkit import *  # noqa: F403
from grader.course.labkit import __all__  # noqa: F401
