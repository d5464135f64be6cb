"""Keep hidden tests hidden in nbgrader feedback (the course's ``nbgrader_config.py`` uses it).

nbgrader 0.9.6's ``generate_feedback`` renders the autograded notebook, where ``autograde``
has put the hidden tests back, and IPython tracebacks quote the lines around a failing
``assert``. This preprocessor removes the hidden-test regions (as ``generate_assignment`` does)
and, in those cells, reduces each error to its one-line message, which says what to fix.
"""

from __future__ import annotations

from nbconvert.exporters.exporter import ResourcesDict
from nbformat.notebooknode import NotebookNode
from nbgrader.preprocessors import ClearHiddenTests


class StripHiddenTests(ClearHiddenTests):
    """ClearHiddenTests for feedback: also drop tracebacks that could quote hidden lines."""

    def preprocess_cell(
        self, cell: NotebookNode, resources: ResourcesDict, cell_index: int
    ) -> tuple[NotebookNode, ResourcesDict]:
        had_hidden = cell.cell_type == "code" and self.begin_test_delimeter in cell.source
        cell, resources = super().preprocess_cell(cell, resources, cell_index)
        if had_hidden:
            for output in cell.get("outputs", []):
                if output.get("output_type") == "error":
                    output["traceback"] = [
                        f"{output.get('ename', 'Error')}: {output.get('evalue', '')}"
                    ]
        return cell, resources
