"""Locust users for the BTCUSDT direction service: HTTP ``predict``, ``indicators``, a mixed
workload, and gRPC.

Bodies are real windows of bundled candles (:mod:`loadtests.workload`); every answer is checked
against its request, so a wrong answer counts as a failure like a non-200 one. Failure messages
name the HTTP status or gRPC code (``loadtests.workload.http_failure``), which ``loadtests.run``
reads to count server errors (5xx).
``python -m loadtests.run`` starts a server, bounds the run and writes a summary; run from the
repository root, locust can also be used directly::

    locust -f loadtests/locustfile.py --headless -u 16 -r 8 -t 30s \
        --host http://127.0.0.1:3000 PredictUser
    locust -f loadtests/locustfile.py --headless -u 16 -r 8 -t 30s \
        --grpc-address 127.0.0.1:3010 GrpcUser
"""

from __future__ import annotations

import logging
import time
from typing import Any

import gevent
import grpc
import grpc.experimental.gevent as grpc_gevent
import numpy as np
from bentoml.grpc.v1 import service_pb2, service_pb2_grpc
from google.protobuf.json_format import MessageToDict
from locust import FastHttpUser, User, events, task
from locust.env import Environment
from locust.stats import CSV_STATS_INTERVAL_SEC

from loadtests.workload import (
    DEFAULT_WINDOW_BARS,
    AnswerError,
    Call,
    Workload,
    build_workload,
    grpc_failure,
    http_failure,
)

JSON_HEADERS = {"Content-Type": "application/json"}

_workload: Workload | None = None
_budget: _RequestBudget | None = None


def workload() -> Workload:
    if _workload is None:
        raise RuntimeError("the workload is built when locust starts (events.init)")
    return _workload


class _RequestBudget:
    """``--max-requests``: a user takes a ticket before it sends, so no more than that many
    requests go out, and the run stops once the last of them has completed.

    Stopping on the count of completions alone overshot: the quit is a greenlet of its own, and
    until it runs, users kept sending (fast calls such as ``model_info`` complete several times
    over meanwhile)."""

    def __init__(self, limit: int, environment: Environment) -> None:
        self.limit = limit
        self.environment = environment
        self.issued = 0
        self.completed = 0

    def take(self) -> bool:
        if self.issued >= self.limit:
            return False
        self.issued += 1
        return True

    def on_request(self, **_: Any) -> None:
        self.completed += 1
        if self.completed == self.limit and self.environment.runner is not None:
            logging.info("%d requests completed (--max-requests), stopping", self.limit)
            gevent.spawn(self.environment.runner.quit)


def _may_send() -> bool:
    """Whether this user may send another request; once the budget is spent it idles until the
    run's quit stops it."""
    if _budget is None or _budget.take():
        return True
    gevent.sleep(0.1)
    return False


@events.init_command_line_parser.add_listener
def _add_options(parser: Any) -> None:
    parser.add_argument(
        "--window-bars",
        type=int,
        default=DEFAULT_WINDOW_BARS,
        help="candles per window in each request (more than warmup_bars)",
    )
    parser.add_argument("--payload-seed", type=int, default=0, help="seed of the window sampling")
    parser.add_argument(
        "--grpc-address", default="127.0.0.1:3010", help="host:port of the gRPC server (GrpcUser)"
    )
    parser.add_argument(
        "--max-requests",
        type=int,
        default=0,
        help="send at most this many requests and stop once they have completed (0: no limit)",
    )


@events.init.add_listener
def _on_init(environment: Environment, **_: Any) -> None:
    global _workload, _budget
    options = environment.parsed_options
    window_bars = getattr(options, "window_bars", DEFAULT_WINDOW_BARS)
    _workload = build_workload(window_bars=window_bars, seed=getattr(options, "payload_seed", 0))
    grpc_gevent.init_gevent()  # before any channel exists: gRPC's I/O must yield to gevent
    max_requests = getattr(options, "max_requests", 0)
    if max_requests > 0:
        _budget = _RequestBudget(max_requests, environment)
        environment.events.request.add_listener(_budget.on_request)


@events.quitting.add_listener
def _final_csv_rows(environment: Environment, **_: Any) -> None:
    """Let locust's CSV writer (it rewrites the files once a second) catch the final counts:
    the run has stopped by now, and without this the CSVs miss the last second of requests."""
    if getattr(environment.parsed_options, "csv_prefix", None):
        gevent.sleep(CSV_STATS_INTERVAL_SEC + 0.5)


class _HttpUser(FastHttpUser):
    """Sends prepared calls over HTTP and checks each answer."""

    abstract = True

    def on_start(self) -> None:
        self.rng = np.random.default_rng()

    def send(self, kind: str) -> None:
        if not _may_send():
            return
        call = workload().pick(kind, self.rng)
        with self.client.post(
            f"/{call.api}",
            data=call.body,  # type: ignore[arg-type]  # bytes go out as they are
            headers=JSON_HEADERS,
            name=call.name,
            catch_response=True,
        ) as response:
            if response.status_code == 0:
                response.failure(f"connection error: {response.error}")
            elif response.status_code != 200:
                response.failure(http_failure(response.status_code, response.text or ""))
            else:
                try:
                    call.check(response.json())
                except (ValueError, AnswerError) as exc:
                    response.failure(f"bad answer: {exc}")


class PredictUser(_HttpUser):
    """``POST /predict``, one window per request."""

    @task
    def predict(self) -> None:
        self.send("predict")


class IndicatorsUser(_HttpUser):
    """``POST /indicators``, the last candle's features."""

    @task
    def indicators(self) -> None:
        self.send("indicators")


class MixedUser(_HttpUser):
    """A mix like a trading client's: mostly single predictions, some batches, indicators (a
    few with every row) and the odd ``model_info``."""

    @task(6)
    def predict(self) -> None:
        self.send("predict")

    @task(1)
    def predict_batch(self) -> None:
        self.send("predict_batch")

    @task(2)
    def indicators(self) -> None:
        self.send("indicators")

    @task(1)
    def indicators_all_rows(self) -> None:
        self.send("indicators_all_rows")

    @task(1)
    def model_info(self) -> None:
        self.send("model_info")


class GrpcUser(User):
    """The mixed workload over gRPC (``bentoml serve-grpc``), at ``--grpc-address``.

    Locust's pattern for other protocols: time the call, then fire ``events.request`` so it
    shows in the statistics like an HTTP request (https://docs.locust.io/en/stable/testing-other-systems.html).
    """

    def on_start(self) -> None:
        self.rng = np.random.default_rng()
        self.channel = grpc.insecure_channel(
            self.environment.parsed_options.grpc_address,
            options=[("grpc.max_receive_message_length", 64 * 1024 * 1024)],
        )
        self.stub = service_pb2_grpc.BentoServiceStub(self.channel)

    def on_stop(self) -> None:
        self.channel.close()

    def call(self, call: Call) -> None:
        if not _may_send():
            return
        request = service_pb2.Request(api_name=call.api, serialized_bytes=call.body)
        response_length = 0
        exception: Exception | None = None
        started = time.perf_counter()
        try:
            response = self.stub.Call(request, timeout=60)
            response_length = response.ByteSize()
            call.check(MessageToDict(response.json))
        except grpc.RpcError as exc:
            code, details = exc.code(), exc.details()  # type: ignore[attr-defined]
            exception = GrpcFailure(grpc_failure(code.name, details or ""))
        except AnswerError as exc:
            exception = AnswerError(f"bad answer: {exc}")
        self.environment.events.request.fire(
            request_type="grpc",
            name=call.name,
            response_time=(time.perf_counter() - started) * 1000,
            response_length=response_length,
            exception=exception,
            context={},
        )

    @task(6)
    def predict(self) -> None:
        self.call(workload().pick("predict", self.rng))

    @task(1)
    def predict_batch(self) -> None:
        self.call(workload().pick("predict_batch", self.rng))

    @task(2)
    def indicators(self) -> None:
        self.call(workload().pick("indicators", self.rng))

    @task(1)
    def model_info(self) -> None:
        self.call(workload().pick("model_info", self.rng))


class GrpcFailure(Exception):
    """A gRPC call that ended with a status other than OK."""


__all__ = ["GrpcUser", "IndicatorsUser", "MixedUser", "PredictUser"]
