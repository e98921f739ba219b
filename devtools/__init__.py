"""Tools for developing and measuring the service (not shipped in the bento).

Public API:
    free_port, server_env, isolated_home, running_server, stop, tail: the one way tests, load
        tests and benchmarks start a real ``bentoml serve`` / ``serve-grpc`` on loopback.
    REPO_ROOT, CONFIGURATION, LOOPBACK, START_TIMEOUT_S: where and how.
"""

from devtools._launcher import (
    CONFIGURATION,
    LOOPBACK,
    REPO_ROOT,
    START_TIMEOUT_S,
    free_port,
    isolated_home,
    running_server,
    server_env,
    stop,
    tail,
)

__all__ = [
    "CONFIGURATION",
    "LOOPBACK",
    "REPO_ROOT",
    "START_TIMEOUT_S",
    "free_port",
    "isolated_home",
    "running_server",
    "server_env",
    "stop",
    "tail",
]
