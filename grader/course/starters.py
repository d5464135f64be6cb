"""Starter text for ``%%writefile`` answer cells (the course's ``nbgrader_config.py`` uses it).

nbgrader replaces a solution region with its code stub, ``# YOUR CODE HERE`` and
``raise NotImplementedError()``. In a ``%%writefile`` cell those lines would become the file:
a learner fixing a Dockerfile would start from two lines that are not one. A ``%%writefile``
solution cell may name its starter instead, in the cell's metadata::

    "metadata": {"course": {"starter": "FROM ...\\n"}, "nbgrader": {...}}

and the released cell then holds the magic line and that text (the buggy Dockerfile the task
asks to fix, or a template) where the solution was. Cells without a starter, and every
other cell, get nbgrader's stub as before. The ``course`` metadata is not released.
"""

from __future__ import annotations

from nbconvert.exporters.exporter import ResourcesDict
from nbformat.notebooknode import NotebookNode
from nbgrader.preprocessors import ClearSolutions

__all__ = ["ClearSolutionsWithStarters", "starter"]


def starter(cell: NotebookNode) -> str | None:
    """The starter text of a ``%%writefile`` cell, or None."""
    if cell.cell_type != "code" or not cell.source.lstrip().startswith("%%writefile"):
        return None
    text = cell.metadata.get("course", {}).get("starter")
    return text if isinstance(text, str) else None


class ClearSolutionsWithStarters(ClearSolutions):
    """ClearSolutions; a ``%%writefile`` cell's solution region becomes its starter text."""

    def _replace_solution_region(self, cell: NotebookNode, language: str) -> bool:
        text = starter(cell)
        if text is None:
            return super()._replace_solution_region(cell, language)
        saved = self.code_stub
        try:
            self.code_stub = {**saved, language: text.rstrip("\n")}
            return super()._replace_solution_region(cell, language)
        finally:
            self.code_stub = saved

    def preprocess_cell(
        self, cell: NotebookNode, resources: ResourcesDict, cell_index: int
    ) -> tuple[NotebookNode, ResourcesDict]:
        cell, resources = super().preprocess_cell(cell, resources, cell_index)
        course = cell.metadata.get("course")
        if isinstance(course, dict):
            course.pop("starter", None)
            if not course:
                del cell.metadata["course"]
        return cell, resources
