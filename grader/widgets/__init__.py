"""Interactive panels for the labs: each runs real commands (buildx, docker run, the
registry API, binfmt_misc) and shows what the terminal hides. Thin widgets over plain
logic classes that tests drive without a kernel.

    from grader.widgets import BuildPanel, ManifestExplorer, BinfmtPanel, BuilderPanel
    BuildPanel(context="app", tag="127.0.0.1:5000/me/app:v1")
"""

from grader.widgets.binfmt import BinfmtPanel
from grader.widgets.build import BuildPanel
from grader.widgets.builders import BuilderPanel
from grader.widgets.manifests import ManifestExplorer

__all__ = ["BinfmtPanel", "BuildPanel", "BuilderPanel", "ManifestExplorer"]
