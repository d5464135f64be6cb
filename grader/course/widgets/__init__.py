"""Interactive panels for the labs: each runs real commands (buildx, docker run, the
registry API, binfmt_misc) and shows what the terminal hides. Thin widgets over plain
logic classes that tests drive without a kernel (``BuildOptions``/``BuildRun``,
``manifests.explore``, ``BinfmtStatus``/``install_plan``, ``Builders``).

    from grader.course.widgets import BuildPanel, ManifestExplorer, BinfmtPanel, BuilderPanel
    BuildPanel(context="app", tag="127.0.0.1:5000/me/app:v1")   # last line of a cell

Every panel shows its exact command before running it, and with no engine renders, explains
and disables running (ManifestExplorer still works: it only needs a reachable registry).

Stable DOM class names (browser tests, lab styling):

- every panel: ``mp-panel``; ``mp-command`` (the command), ``mp-notice--no-engine``,
  ``mp-known-error[data-known=<id>]``, ``mp-log``
- BuildPanel: ``mp-build-panel``, ``mp-build-button``, ``mp-cancel-button``,
  ``mp-build-state[data-state=running|succeeded|failed|cancelled]``, ``mp-platform-<slug>``,
  ``mp-lane mp-lane-<slug>`` (slug: ``linux-arm64``) holding
  ``mp-lane-body[data-platform][data-state]`` and rows ``mp-step[data-state][data-kind]``,
  ``mp-timing-chart``; ``mp-build-panel--watching`` on a panel that follows a build the
  ``%%docker`` magic runs (no form: the learner's own command, then the lanes)
- ManifestExplorer: ``mp-manifest-explorer``, ``mp-explore-button``, ``mp-node
  mp-node-<kind>``, ``mp-manifest-warning``, ``mp-node-detail[data-path][data-kind]``
- BinfmtPanel: ``mp-binfmt-panel``, ``mp-emulator[data-name][data-flags]``, ``mp-flag-F``,
  ``mp-binfmt-state[data-platform][data-state=native|ok|missing]``, ``mp-binfmt-install``
- BuilderPanel: ``mp-builder-panel``, ``mp-builder-row[data-name][data-status]``,
  ``mp-builder-<action>`` buttons
"""

from grader.course.widgets.binfmt import BinfmtPanel
from grader.course.widgets.build import BuildPanel
from grader.course.widgets.builders import BuilderPanel
from grader.course.widgets.manifests import ManifestExplorer

__all__ = ["BinfmtPanel", "BuildPanel", "BuilderPanel", "ManifestExplorer"]
