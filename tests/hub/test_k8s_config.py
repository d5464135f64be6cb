"""The Kubernetes path (hub/k8s/) cannot run here (no cluster): its files are syntax-checked and
held to what docs/jupyterhub.md says about them."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

K8S = Path(__file__).resolve().parents[2] / "hub" / "k8s"


def test_the_helm_values_parse_and_keep_what_the_guide_relies_on() -> None:
    values = yaml.safe_load((K8S / "values.yaml").read_text())
    single = values["singleuser"]
    assert single["defaultUrl"].startswith("/lab/tree/labs/")  # learners open labs/, not source/
    mounts = {m["mountPath"] for m in single["storage"]["extraVolumeMounts"]}
    assert "/srv/nbgrader/exchange" in mounts
    sidecar = {c["name"]: c for c in single["extraContainers"]}["buildkitd"]
    assert sidecar["image"].endswith("-rootless") and sidecar["securityContext"]["runAsUser"] != 0
    assert "privileged" not in sidecar["securityContext"]
    assert "BUILDKIT_HOST" in values["hub"]["extraConfig"]["course-registry"]
    admins = values["hub"]["config"]["Authenticator"]["admin_users"]
    assert set(admins) <= set(values["hub"]["config"]["Authenticator"]["allowed_users"])


def test_the_kubernetes_driver_script_is_valid_bash() -> None:
    script = K8S / "buildx-kubernetes-driver.sh"
    subprocess.run(["bash", "-n", str(script)], check=True)
    if shutil.which("shellcheck") is None:
        if os.environ.get("COURSE_REQUIRE_ENGINE"):
            pytest.fail("shellcheck is missing: `./course test` installs it")
        pytest.skip("shellcheck is not installed (`./course test` installs it)")
    subprocess.run(["shellcheck", str(script)], check=True)


def test_the_guide_links_the_kubernetes_files() -> None:
    guide = (K8S.parents[1] / "docs" / "jupyterhub.md").read_text()
    for name in ("hub/k8s/values.yaml", "hub/k8s/buildx-kubernetes-driver.sh"):
        assert name in guide, f"docs/jupyterhub.md does not mention {name}"
