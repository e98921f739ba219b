"""The runner's batch dispatcher (serving/batching.py): batches sent when the worker is free."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

import pytest
from bentoml._internal.marshal.dispatcher import CorkDispatcher
from bentoml._internal.server import runner_app
from bentoml.exceptions import ServiceUnavailable

from serving.batching import IdleDispatcher, install_dispatcher


def _dispatcher(
    kind: type[CorkDispatcher] = IdleDispatcher,
    *,
    max_latency_ms: int = 20_000,
    max_batch: int = 64,
) -> CorkDispatcher:
    return kind(
        max_latency_in_ms=max_latency_ms,
        max_batch_size=max_batch,
        fallback=lambda: ServiceUnavailable("process is overloaded"),
        get_batch_size=lambda _: 1,
    )


class Recorder:
    """A batch callback that doubles its inputs, records each batch and can be held."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.release = asyncio.Event()
        self.release.set()
        self.fail_next = False

    async def __call__(self, items: Sequence[int]) -> list[int]:
        self.batches.append(list(items))
        await self.release.wait()
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("the model failed")
        return [2 * x for x in items]


async def _until(predicate: Callable[[], bool]) -> None:
    while not predicate():
        await asyncio.sleep(0)


def _learnt_long_wait(dispatcher: CorkDispatcher) -> None:
    """What BentoML's optimiser holds after a burst of load: a mean wait of 10 s."""
    dispatcher.optimizer.wait = 10.0
    dispatcher.optimizer.o_a, dispatcher.optimizer.o_b = 0.001, 0.001


def test_a_lone_request_is_sent_at_once_whatever_wait_was_learnt():
    async def run() -> tuple[int, list[list[int]]]:
        recorder = Recorder()
        dispatcher = _dispatcher()
        _learnt_long_wait(dispatcher)
        call = dispatcher(recorder)
        answer = await asyncio.wait_for(call(21), timeout=5)
        dispatcher.shutdown()
        return answer, recorder.batches

    answer, batches = asyncio.run(run())
    assert answer == 42
    assert batches == [[21]]


def test_bentoml_dispatcher_holds_the_same_lone_request():
    """The contrast that makes the test above mean something: BentoML's own dispatcher, past
    its warm-up calls and with the same learnt wait, holds a lone request (seconds here)."""

    async def run() -> bool:
        recorder = Recorder()
        dispatcher = _dispatcher(CorkDispatcher)
        call = dispatcher(recorder)
        for i in range(12):  # its warm-up and training calls
            await call(i)
        _learnt_long_wait(dispatcher)
        lone = asyncio.ensure_future(call(99))
        _, pending = await asyncio.wait({lone}, timeout=1.0)
        dispatcher.shutdown()
        lone.cancel()
        return lone in pending

    assert asyncio.run(run())


def test_requests_that_arrive_during_a_batch_form_the_next_batch():
    async def run() -> tuple[list[int], list[list[int]]]:
        recorder = Recorder()
        dispatcher = _dispatcher()
        call = dispatcher(recorder)
        recorder.release.clear()
        first = asyncio.ensure_future(call(1))
        await _until(lambda: len(recorder.batches) == 1)
        rest = [asyncio.ensure_future(call(x)) for x in range(2, 7)]
        await asyncio.sleep(0.01)
        held = len(recorder.batches)  # nothing more is sent while the worker is busy
        recorder.release.set()
        answers = await asyncio.gather(first, *rest)
        dispatcher.shutdown()
        assert held == 1
        return answers, recorder.batches

    answers, batches = asyncio.run(run())
    assert answers == [2, 4, 6, 8, 10, 12]
    assert batches == [[1], [2, 3, 4, 5, 6]]


def test_batches_never_exceed_max_batch_size():
    async def run() -> list[list[int]]:
        recorder = Recorder()
        dispatcher = _dispatcher(max_batch=4)
        call = dispatcher(recorder)
        recorder.release.clear()
        first = asyncio.ensure_future(call(0))
        await _until(lambda: len(recorder.batches) == 1)
        rest = [asyncio.ensure_future(call(x)) for x in range(1, 11)]
        await asyncio.sleep(0)
        recorder.release.set()
        assert await asyncio.gather(first, *rest) == [2 * x for x in range(11)]
        dispatcher.shutdown()
        return recorder.batches

    batches = asyncio.run(run())
    assert batches == [[0], [1, 2, 3, 4], [5, 6, 7, 8], [9, 10]]


def test_a_request_queued_past_max_latency_gets_the_503_fallback():
    async def run() -> tuple[list[object], list[list[int]]]:
        recorder = Recorder()
        dispatcher = _dispatcher(max_latency_ms=50)
        call = dispatcher(recorder)
        recorder.release.clear()
        first = asyncio.ensure_future(call(1))
        await _until(lambda: len(recorder.batches) == 1)
        late = [asyncio.ensure_future(call(x)) for x in (2, 3)]
        await asyncio.sleep(0.2)  # the worker is busy for longer than max_latency
        recorder.release.set()
        answers = await asyncio.gather(first, *late)
        after = await call(4)  # and the dispatcher goes on
        dispatcher.shutdown()
        return [*answers, after], recorder.batches

    answers, batches = asyncio.run(run())
    assert answers[0] == 2 and answers[3] == 8
    assert all(isinstance(a, ServiceUnavailable) for a in answers[1:3])
    assert batches == [[1], [4]]


def test_a_failing_batch_fails_its_requests_only():
    async def run() -> tuple[list[object], int]:
        recorder = Recorder()
        dispatcher = _dispatcher()
        call = dispatcher(recorder)
        recorder.fail_next = True
        outcomes = await asyncio.gather(call(1), return_exceptions=True)
        answer = await call(5)
        dispatcher.shutdown()
        return [*outcomes, answer], len(recorder.batches)

    outcomes, n_batches = asyncio.run(run())
    assert isinstance(outcomes[0], RuntimeError)
    assert outcomes[1] == 10
    assert n_batches == 2


def test_install_dispatcher_chooses_the_runner_apps_dispatcher():
    original = runner_app.CorkDispatcher
    try:
        install_dispatcher("bentoml")
        assert runner_app.CorkDispatcher is CorkDispatcher
        install_dispatcher("idle")
        assert runner_app.CorkDispatcher is IdleDispatcher
        with pytest.raises(ValueError, match="batch dispatch must be one of idle, bentoml"):
            install_dispatcher("greedy")
        assert runner_app.CorkDispatcher is IdleDispatcher
    finally:
        runner_app.CorkDispatcher = original
