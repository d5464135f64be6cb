"""Running untrusted build.sh scripts safely: a bubblewrap sandbox per run, kernel limits,
and a gate through which the script's docker commands reach the engine.

``run_build_sh(submission, namespace=..., registry=...)`` is the entry point; see
``runner`` (workspace, runs), ``jail`` (bwrap command lines), ``gate`` (the socket server
and the jailed docker client), ``policy`` (what docker commands are allowed) and
``limits`` (cgroups and rlimits).
"""

from __future__ import annotations

from grader.grading.sandbox.limits import Limits
from grader.grading.sandbox.runner import SandboxOutcome, run_build_sh, sandbox_problem

__all__ = ["Limits", "SandboxOutcome", "run_build_sh", "sandbox_problem"]
