"""Servers shared by the integration tests: a real ``bentoml serve`` and ``serve-grpc`` of the
session's small model on free loopback ports (one API worker each), started once per test
module that asks for them and stopped with it (a module's tests see only their own traffic)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

import pytest

from artifact import LoadedModel, load_model
from client import GrpcClient, HttpClient
from devtools import LOOPBACK, free_port, isolated_home, running_server
from tests.servers import server_env


class GrpcServer(NamedTuple):
    """A running ``serve-grpc``: its address, Prometheus endpoint and log."""

    address: str
    metrics_url: str
    log: Path


@pytest.fixture(scope="module")
def http_server(trained_model_tag, tmp_path_factory):
    """``(url, log path)`` of an HTTP server with one API worker (the session's home)."""
    port = free_port()
    url = f"http://{LOOPBACK}:{port}"
    env = server_env(os.environ["BENTOML_HOME"], trained_model_tag)
    args = ["serve", "service:svc", "--host", LOOPBACK, "--port", str(port), "--api-workers", "1"]
    log = tmp_path_factory.mktemp("http-server") / "server.log"
    with HttpClient(url) as probe, running_server(args, env, log, probe.is_ready):
        yield url, log


@pytest.fixture(scope="module")
def http_url(http_server) -> str:
    return http_server[0]


@pytest.fixture(scope="module")
def grpc_server(trained_model_tag, tmp_path_factory):
    """A gRPC server with one API worker (its own BENTOML_HOME, the same model store)."""
    port, metrics_port = free_port(), free_port()
    base = tmp_path_factory.mktemp("grpc-server")
    home = isolated_home(base / "home", os.environ["BENTOML_HOME"])
    metrics = {"api_server": {"grpc": {"metrics": {"port": metrics_port}}}}
    env = server_env(home, trained_model_tag, metrics)
    args = ["serve-grpc", "service:svc", "--host", LOOPBACK, "--port", str(port)]
    args += ["--api-workers", "1"]
    address = f"{LOOPBACK}:{port}"
    with GrpcClient(address) as probe:
        with running_server(args, env, base / "server.log", probe.is_ready):
            yield GrpcServer(address, f"http://{LOOPBACK}:{metrics_port}/", base / "server.log")


@pytest.fixture(scope="module")
def grpc_address(grpc_server: GrpcServer) -> str:
    return grpc_server.address


@pytest.fixture(scope="module")
def offline(trained_model_tag) -> LoadedModel:
    """The served model loaded in the test process: what the servers must agree with."""
    return load_model(trained_model_tag)
