"""The bento's OCI image for real, without a Docker engine: built by ``bentoml containerize
--backend buildah`` FROM the debootstrap'ed stand-in of ``python:3.11-slim``, run by podman
(``serve`` and ``serve-grpc``), answering like the host. Needs root and buildah/podman/debootstrap
(``.ci/run`` installs them); a first run also debootstraps the base (~1-2 min, then cached in
``.work/cache``)."""

from __future__ import annotations

import json

import pytest

from scripts.container_tools import ContainerWorkspace, unavailable_reason
from scripts.containerize_check import containerize_check

UNAVAILABLE = unavailable_reason()
pytestmark = [
    pytest.mark.container,
    pytest.mark.skipif(UNAVAILABLE is not None, reason=f"container tools: {UNAVAILABLE}"),
]

MAX_IMAGE_BYTES = 900_000_000
"""The image is ~0.6 GB (base ~0.2 GB + the serving venv); torch or build tools would break this."""


def test_podman_uses_the_workspace_storage_runc_and_cgroupfs(tmp_path):
    workspace = ContainerWorkspace(tmp_path / "workspace")
    info = json.loads(workspace.podman("info", "--format", "json"))
    assert info["store"]["graphRoot"] == str(workspace.storage_dir)
    assert info["host"]["ociRuntime"]["name"] == "runc"
    assert info["host"]["cgroupManager"] == "cgroupfs"
    workspace.destroy()
    assert not workspace.root.exists()


def test_image_of_the_built_bento_serves_http_and_grpc_as_non_root_like_the_host(
    built_bento, trained_model_tag, tmp_path
):
    work_dir = tmp_path / "workspace"
    report = containerize_check(built_bento.tag, work_dir=work_dir)
    assert report.model_tag == trained_model_tag
    assert report.server_uid is not None and report.server_uid != 0
    assert report.http_answer["model_tag"] == trained_model_tag
    assert report.http_answer["probability_up"] == pytest.approx(
        report.expected_probability_up, abs=1e-6
    )
    assert report.grpc_answer == report.http_answer
    assert report.image_size_bytes is not None and report.image_size_bytes < MAX_IMAGE_BYTES
    assert not work_dir.exists(), "the workspace (storage, images, containers) is removed"
