"""Prove the container path for real: bento -> OCI image -> podman run -> HTTP and gRPC answers.

Without a Docker engine (this project's machines and CI): ``bentoml containerize --backend
buildah`` builds the image FROM the debootstrap'ed stand-in of ``python:3.11-slim``
(:mod:`scripts.container_tools`); podman then runs it twice, ``serve`` and ``serve-grpc``, on
the host network with free loopback ports. Checked: ``/livez`` and ``/readyz`` answer 200, the
gRPC health check says SERVING, ``predict`` over HTTP and over gRPC equals the host's prediction
(same model from the store, reference features, ONNX Runtime), and the server runs as a non-root
user. Containers are always removed; a temporary workspace (storage, images) is deleted at the
end, only the base rootfs tarball stays cached under ``.work/cache``.

    python -m scripts.containerize_check                      # newest btcusdt_direction bento
    python -m scripts.containerize_check --bento btcusdt_direction:<version>
    python -m scripts.containerize_check --build-only --keep  # = make containerize without Docker

Prints the figures (seconds, image size) as JSON.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import click
import httpx
import pandas as pd

from cli import folder, run
from devtools import free_port  # the containers share the host's network
from scripts.container_tools import (
    BASE_CACHE_DIR,
    BASE_IMAGE,
    DEFAULT_WORK_DIR,
    ContainerToolError,
    ContainerWorkspace,
    build_base_rootfs,
    image_size_bytes,
    import_base_image,
    run_command,
    unavailable_reason,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
BENTO_NAME = "btcusdt_direction"
START_TIMEOUT_S = 240.0
CONTAINERIZE_TIMEOUT_S = 900.0
WINDOW_BARS = 300
PROBABILITY_TOLERANCE = 1e-6
"""Container vs host: same ONNX model and inputs; float32 inference, so not bit-exact by rule."""


class ContainerCheckError(RuntimeError):
    """The image did not build, start or answer as it should; the message says which."""


@dataclass
class ContainerCheck:
    """What was checked and measured (seconds, bytes)."""

    bento_tag: str
    image: str
    base_image: str = BASE_IMAGE
    base_rootfs_seconds: float | None = None
    base_import_seconds: float | None = None
    containerize_seconds: float | None = None
    image_size_bytes: int | None = None
    http_start_to_ready_seconds: float | None = None
    grpc_start_to_ready_seconds: float | None = None
    http_rss_bytes: int | None = None
    grpc_rss_bytes: int | None = None
    server_uid: int | None = None
    model_tag: str | None = None
    expected_probability_up: float | None = None
    http_answer: dict[str, Any] = field(default_factory=dict)
    grpc_answer: dict[str, Any] = field(default_factory=dict)


def newest_bento_tag(name: str = BENTO_NAME) -> str:
    """The newest bento ``name`` in the local store."""
    import bentoml

    bentos = bentoml.list(name)
    if not bentos:
        raise ContainerCheckError(f"no {name} bento in the store: run `make build` first")
    return str(max(bentos, key=lambda b: b.info.creation_time).tag)


def check_window(bars: int = WINDOW_BARS) -> pd.DataFrame:
    """The newest ``bars`` gap-free real candles of the bundled BTCUSDT data."""
    from features import contiguous_segments
    from training.data import load_bundled_btcusdt

    segments = contiguous_segments(load_bundled_btcusdt().frame)
    window = next(s for s in reversed(segments) if len(s) >= bars)
    return window.iloc[-bars:].reset_index(drop=True)


def host_probability(model_tag: str, window: pd.DataFrame) -> float:
    """P(up) at the window's last candle, on the host: stored model + reference features."""
    from artifact import load_model
    from features import compute_features

    loaded = load_model(model_tag)
    features = compute_features(window).to_numpy()[-1:]
    return float(loaded.model.predict_proba(features)[0])


def containerize(bento_tag: str, image: str, workspace: ContainerWorkspace) -> float:
    """``bentoml containerize`` with buildah into ``workspace``; returns the seconds it took.

    ``BENTOML_CONFIG`` points at the shipped configuration so that the Dockerfile exposes the
    configured gRPC metrics port.
    """
    env = {
        **workspace.configure(),
        "BENTOML_CONFIG": str(REPO_ROOT / "configuration.yaml"),
        "BENTOML_DO_NOT_TRACK": "True",
    }
    command = [
        sys.executable,
        "-m",
        "bentoml",
        "containerize",
        bento_tag,
        "--backend",
        "buildah",
        "--opt",
        "isolation=chroot",
        "--opt",
        "network=host",
        "--image-tag",
        image,
    ]
    started = time.monotonic()
    run_command(command, env=env, timeout_s=CONTAINERIZE_TIMEOUT_S)
    return time.monotonic() - started


@contextmanager
def running_container(
    workspace: ContainerWorkspace,
    image: str,
    name: str,
    args: list[str],
    env: dict[str, str] | None = None,
) -> Iterator[str]:
    """``podman run -d`` the image (entrypoint args ``args``); always removed on exit.

    Runs it as ``deploy/kubernetes`` does: no capabilities, no privilege escalation.
    """
    env_args = [item for key, value in (env or {}).items() for item in ("--env", f"{key}={value}")]
    security = ["--cap-drop", "ALL", "--security-opt", "no-new-privileges"]
    workspace.podman("rm", "--force", "--time", "0", name, check=False)
    workspace.podman("run", "--detach", "--name", name, *security, *env_args, image, *args)
    try:
        yield name
    finally:
        workspace.podman("rm", "--force", "--time", "0", name, check=False)


def wait_until_ready(
    workspace: ContainerWorkspace, name: str, is_ready: Callable[[], bool], started: float
) -> float:
    """Seconds from ``started`` until ``is_ready()``; the container's log tail on failure."""
    deadline = started + START_TIMEOUT_S
    while not is_ready():
        state = workspace.podman("inspect", "--format", "{{.State.Status}}", name, check=False)
        if state.strip() not in ("running", "created", "configured"):
            logs = workspace.podman("logs", name, check=False)
            raise ContainerCheckError(f"{name} stopped ({state.strip()}):\n{logs[-4000:]}")
        if time.monotonic() > deadline:
            logs = workspace.podman("logs", name, check=False)
            raise ContainerCheckError(
                f"{name} not ready in {START_TIMEOUT_S:.0f} s:\n{logs[-4000:]}"
            )
        time.sleep(0.5)
    return time.monotonic() - started


def server_uid(workspace: ContainerWorkspace, name: str) -> int:
    """Real uid of the container's main process (PID 1: the BentoML arbiter)."""
    status = workspace.podman("exec", name, "cat", "/proc/1/status")
    uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
    return int(uid_line.split()[1])


def resident_bytes(workspace: ContainerWorkspace, name: str) -> int:
    """Sum of the resident memory (VmRSS) of every process in the container (shared pages
    counted in each process: an upper bound, the figure to size memory requests from)."""
    status = workspace.podman("exec", name, "sh", "-c", "cat /proc/[0-9]*/status 2>/dev/null")
    kilobytes = [int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")]
    return 1024 * sum(kilobytes)


def _http_status(url: str) -> int | None:
    try:
        return httpx.get(url, timeout=2.0).status_code
    except httpx.HTTPError:
        return None


def _same_prediction(answer: dict[str, Any], expected: float, model_tag: str, via: str) -> None:
    if answer.get("model_tag") != model_tag:
        raise ContainerCheckError(
            f"{via}: answered model {answer.get('model_tag')}, not {model_tag}"
        )
    if abs(float(answer["probability_up"]) - expected) > PROBABILITY_TOLERANCE:
        raise ContainerCheckError(
            f"{via}: probability_up {answer['probability_up']} != host {expected}"
        )


def check_http(
    workspace: ContainerWorkspace, image: str, report: ContainerCheck, window: pd.DataFrame
) -> None:
    """``serve`` in the image: probes, predict equal to the host's, non-root server."""
    from client import HttpClient

    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    args = ["serve", "--host", "127.0.0.1", "--port", str(port)]
    started = time.monotonic()
    with running_container(workspace, image, f"btcusdt-http-{port}", args) as name:
        report.http_start_to_ready_seconds = wait_until_ready(
            workspace, name, lambda: _http_status(f"{base_url}/readyz") == 200, started
        )
        if _http_status(f"{base_url}/livez") != 200:
            raise ContainerCheckError("HTTP: /livez did not answer 200")
        report.server_uid = server_uid(workspace, name)
        if report.server_uid == 0:
            raise ContainerCheckError("HTTP: the server runs as root")
        with HttpClient(base_url) as service:
            report.http_answer = service.predict(window)
        report.http_rss_bytes = resident_bytes(workspace, name)
    assert report.model_tag is not None and report.expected_probability_up is not None
    _same_prediction(report.http_answer, report.expected_probability_up, report.model_tag, "HTTP")


def check_grpc(
    workspace: ContainerWorkspace, image: str, report: ContainerCheck, window: pd.DataFrame
) -> None:
    """``serve-grpc`` in the same image: health SERVING, predict equal to the host's."""
    from client import GrpcClient

    port, metrics_port = free_port(), free_port()
    args = ["serve-grpc", "--host", "127.0.0.1", "--port", str(port)]
    options = f"api_server.grpc.metrics.host=127.0.0.1 api_server.grpc.metrics.port={metrics_port}"
    started = time.monotonic()
    with (
        running_container(
            workspace, image, f"btcusdt-grpc-{port}", args, {"BENTOML_CONFIG_OPTIONS": options}
        ) as name,
        GrpcClient(f"127.0.0.1:{port}") as service,
    ):
        report.grpc_start_to_ready_seconds = wait_until_ready(
            workspace, name, service.is_ready, started
        )
        report.grpc_answer = service.predict(window)
        report.grpc_rss_bytes = resident_bytes(workspace, name)
        if _http_status(f"http://127.0.0.1:{metrics_port}/") != 200:
            raise ContainerCheckError("gRPC: the metrics server did not answer 200")
    assert report.model_tag is not None and report.expected_probability_up is not None
    _same_prediction(report.grpc_answer, report.expected_probability_up, report.model_tag, "gRPC")


def containerize_check(
    bento_tag: str | None = None,
    *,
    work_dir: Path | None = None,
    keep: bool = False,
    build_only: bool = False,
    cache_dir: Path = BASE_CACHE_DIR,
) -> ContainerCheck:
    """Build the bento's image and (unless ``build_only``) run and check it.

    Args:
        bento_tag: the bento; default the newest ``btcusdt_direction``.
        work_dir: workspace of buildah/podman; default a temporary one.
        keep: keep the workspace and image (``make containerize``); else delete everything.
        build_only: build the image, do not run it.
        cache_dir: where the base rootfs tarball is cached between runs.

    Raises:
        ContainerCheckError, ContainerToolError: with the failing step and its output.
    """
    reason = unavailable_reason()
    if reason:
        raise ContainerCheckError(f"cannot build images here: {reason}")
    import bentoml

    bento_tag = str(bentoml.get(bento_tag or newest_bento_tag()).tag)
    image = bento_tag  # the image is named like the bento: btcusdt_direction:<version>
    report = ContainerCheck(bento_tag=bento_tag, image=f"localhost/{image}")
    root = work_dir or Path(tempfile.mkdtemp(prefix="containerize-check-"))
    workspace = ContainerWorkspace(root)
    try:
        if not workspace.image_exists(BASE_IMAGE):
            started = time.monotonic()
            tarball = build_base_rootfs(cache_dir)
            report.base_rootfs_seconds = time.monotonic() - started
            started = time.monotonic()
            import_base_image(workspace, tarball)
            report.base_import_seconds = time.monotonic() - started
        report.containerize_seconds = containerize(bento_tag, image, workspace)
        report.image_size_bytes = image_size_bytes(workspace, image)
        if build_only:
            return report
        bento = bentoml.get(bento_tag)
        (model,) = bento.info.all_models
        report.model_tag = str(model.tag)
        window = check_window()
        report.expected_probability_up = host_probability(report.model_tag, window)
        check_http(workspace, image, report, window)
        check_grpc(workspace, image, report, window)
        return report
    finally:
        if not keep:
            workspace.destroy()


@click.command("containerize-check", help=__doc__.split("\n\n")[0])
@click.option("--bento", default=None, help="bento tag (default: newest)")
@click.option("--work-dir", type=folder, help="buildah/podman workspace")
@click.option("--keep", is_flag=True, help="keep the workspace and the image")
@click.option("--build-only", is_flag=True, help="build the image, do not run it")
def containerize_check_command(
    bento: str | None, work_dir: Path | None, keep: bool, build_only: bool
) -> int:
    """``btcusdt containerize-check`` / ``python -m scripts.containerize_check``."""
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")
    work_dir = work_dir or (DEFAULT_WORK_DIR if keep else None)
    try:
        report = containerize_check(bento, work_dir=work_dir, keep=keep, build_only=build_only)
    except (ContainerCheckError, ContainerToolError) as exc:
        click.echo(f"containerize check failed: {exc}", err=True)
        return 1
    print(json.dumps(asdict(report), indent=2))
    if work_dir is not None and keep:
        config = ContainerWorkspace(work_dir).config_dir
        print(
            f"run it:  CONTAINERS_CONF={config}/containers.conf "
            f"CONTAINERS_STORAGE_CONF={config}/storage.conf podman run --rm {report.image} serve"
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m scripts.containerize_check``: the ``btcusdt containerize-check`` command."""
    return run(containerize_check_command, argv, prog_name="python -m scripts.containerize_check")


if __name__ == "__main__":
    sys.exit(main())
