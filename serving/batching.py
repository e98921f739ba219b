"""Adaptive batching that never holds a request while its runner is idle (issue 12, goal 5).

BentoML 1.4's runner dispatcher (``CorkDispatcher``) learns a mean wait from recent batches
and holds each new request while ``n * (newest wait + 1 ms + a) <= 0.95 x`` that mean, polling
every 1 ms, even when the runner has nothing to do. After a burst of load the learnt wait stays
high for minutes (it is the mean of the last 50 batches, refreshed every 5 s, and shrinks by
about 5 % a refresh), so a lone request then waits tens of milliseconds for company that never
comes: measured here, one client after a 32-client burst got 26-33 req/s with batching on against
94-124 with it off. The 1 ms polling also takes the GIL from the thread that computes the batch.
BentoML 1.4.39 has no setting for either (only ``max_batch_size`` and ``max_latency_ms``).

:class:`IdleDispatcher` keeps BentoML's dispatcher (its queue, batch splitting, metrics,
``max_batch_size``, ``max_latency_ms`` and the 503 fallback) and replaces only the decision of
when to send a batch: as soon as the runner worker is free, everything queued (up to
``max_batch_size``) goes as one batch. While a batch runs, new requests queue up and form the
next one, so batches still grow with load, and nothing polls. A request still queued
``max_latency_ms`` after it arrived is answered 503, as before.
On a CPU-bound runner whose worker computes one batch at a time, waiting while the worker is
idle can only add latency: the batch would be sent no sooner, and no work overlaps the wait.

``BTC_SERVE_BATCH_DISPATCH=bentoml`` (``ServeSettings.batch_dispatch``) keeps BentoML's own
dispatcher, for comparison.
"""

from __future__ import annotations

import time
from typing import Any

from bentoml._internal.marshal.dispatcher import CorkDispatcher, Job


class IdleDispatcher(CorkDispatcher):  # type: ignore[misc]
    """BentoML's ``CorkDispatcher``, sending a batch whenever its worker is free (module doc).

    A request that finds the worker idle starts a drain task, which owns the worker until the
    queue is empty: it sends everything queued as one batch, then whatever queued up meanwhile,
    and so on. No controller loop, no condition to wake, no polling.
    """

    async def controller(self) -> None:
        """Nothing to control: :meth:`inbound_call` starts a drain when the worker is idle."""

    async def inbound_call(self, data: Any) -> Any:
        future = self._loop.create_future()
        self._queue.append(Job(time.time(), data, future))
        if self._sema.acquire():  # the worker was idle: this request starts a drain
            self._loop.create_task(self._drain())
        return await future

    def _expire_overdue(self) -> None:
        """Answer 503 (BentoML's fallback, through the cancelled future) to every request
        queued ``max_latency_ms`` or longer."""
        now = time.time()
        while self._queue and now - self._queue[0].enqueue_time >= self.max_latency:
            self._queue.popleft().future.cancel()

    async def _drain(self) -> None:
        """Send batches until the queue is empty (entered holding the worker's semaphore)."""
        while True:
            self._expire_overdue()
            if not self._queue:
                self._sema.release()
                return
            jobs = tuple(self._get_inputs())
            await self.outbound_call(jobs)  # sets every answer; releases the semaphore
            self._sema.acquire()  # nothing ran in between: it is still free


def install_dispatcher(choice: str) -> None:
    """Make the runner servers of this process build their batched methods' dispatchers as
    ``choice`` says: ``idle`` (:class:`IdleDispatcher`) or ``bentoml`` (BentoML's own). Call it
    before the runner app is built (importing the service does).

    Raises:
        ValueError: ``choice`` is neither.
    """
    from bentoml._internal.server import runner_app

    dispatchers = {"idle": IdleDispatcher, "bentoml": CorkDispatcher}
    if choice not in dispatchers:
        raise ValueError(f"batch dispatch must be one of {', '.join(dispatchers)}, got {choice!r}")
    runner_app.CorkDispatcher = dispatchers[choice]  # type: ignore[misc]
