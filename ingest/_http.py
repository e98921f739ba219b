"""GET with bounded retries, for the exchange's REST API and its archive files.

Retried: 429 (rate limit) and 418 (IP ban), both honouring ``Retry-After``; 5xx; timeouts and
connection errors; a body that is not the JSON it should be (a truncated page). Not retried:
any other 4xx (the request itself is wrong). The sum of the waits is bounded
(:attr:`RetryPolicy.max_wait_s`): past it the call fails with the last reason instead of
sleeping on (a 418 ban can last days).
"""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

RETRIED_STATUSES = frozenset({418, 429, 500, 502, 503, 504})


class ExchangeError(RuntimeError):
    """The exchange refused the request (a 4xx other than 418/429): retrying cannot help."""


class ExchangeUnavailable(RuntimeError):
    """The exchange did not answer usefully within the retry budget (the message says why)."""


@dataclass(frozen=True)
class RetryPolicy:
    """How long to keep trying.

    Attributes:
        max_attempts: tries per request, the first included.
        base_delay_s: first back-off; doubled after each failure, up to ``max_delay_s``.
        max_delay_s: longest single back-off (a longer ``Retry-After`` is still honoured).
        max_wait_s: bound on the total time slept for one request.
        timeout_s: connect/read timeout of one try.
    """

    max_attempts: int = 8
    base_delay_s: float = 0.5
    max_delay_s: float = 30.0
    max_wait_s: float = 300.0
    timeout_s: float = 30.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        if min(self.base_delay_s, self.max_delay_s, self.max_wait_s) < 0:
            raise ValueError("delays must be >= 0")
        if self.timeout_s <= 0:
            raise ValueError("timeout_s must be > 0")

    def backoff_s(self, failures: int) -> float:
        return min(self.max_delay_s, self.base_delay_s * 2 ** (failures - 1))


def retry_after_s(response: httpx.Response) -> float | None:
    """``Retry-After`` in seconds (delta-seconds or an HTTP date), or None."""
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _reason(response: httpx.Response) -> str:
    text = response.text[:200].strip()
    try:
        body = json.loads(text)
        if isinstance(body, dict) and "msg" in body:
            text = f"{body.get('code')}: {body['msg']}"
    except ValueError:
        pass
    names = {418: "IP banned", 429: "rate limited"}
    status = f"{response.status_code} {names.get(response.status_code, response.reason_phrase)}"
    return f"{status} ({text})" if text else status


class RetryingGetter:
    """``get(url, params)`` returning the decoded body, with :class:`RetryPolicy` retries.

    Args:
        policy: the retry budget.
        client: an ``httpx.Client`` (one is created and owned otherwise).
        sleep: the sleep function (tests may record the waits).
    """

    def __init__(
        self,
        policy: RetryPolicy | None = None,
        *,
        client: httpx.Client | None = None,
        sleep: Callable[[float], None] = time.sleep,
        user_agent: str = "btcusdt-direction-ingest",
    ):
        self.policy = policy or RetryPolicy()
        self._owned = client is None
        self._client = client or httpx.Client(
            timeout=self.policy.timeout_s, headers={"User-Agent": user_agent}, trust_env=False
        )
        self._sleep = sleep
        self.waited_s = 0.0
        """Total seconds slept in retries by this getter (for the final report)."""

    def get_json(self, url: str, params: dict[str, Any] | None = None) -> Any:
        """The JSON body of a 200 answer (a body that does not parse is retried)."""
        return self._get(url, params, decode=lambda r: json.loads(r.content))

    def get_bytes(self, url: str, *, missing_ok: bool = False) -> bytes | None:
        """The body of a 200 answer; None for a 404 when ``missing_ok``."""
        return self._get(url, None, decode=lambda r: r.content, missing_ok=missing_ok)

    def _get(
        self,
        url: str,
        params: dict[str, Any] | None,
        *,
        decode: Callable[[httpx.Response], Any],
        missing_ok: bool = False,
    ) -> Any:
        waited = 0.0
        for attempt in range(1, self.policy.max_attempts + 1):
            retry_after = None
            try:
                response = self._client.get(url, params=params)
            except httpx.TimeoutException as exc:
                reason = f"timed out after {self.policy.timeout_s:g} s ({type(exc).__name__})"
            except httpx.TransportError as exc:
                reason = f"connection failed ({type(exc).__name__}: {exc})"
            else:
                if response.status_code == 200:
                    try:
                        return decode(response)
                    except ValueError as exc:
                        reason = f"answer is not valid JSON ({exc}; {len(response.content)} bytes)"
                elif response.status_code == 404 and missing_ok:
                    return None
                elif response.status_code in RETRIED_STATUSES:
                    reason = _reason(response)
                    retry_after = retry_after_s(response)
                else:
                    raise ExchangeError(f"GET {url} {params or ''}: {_reason(response)}")
            if attempt == self.policy.max_attempts:
                break
            delay = max(self.policy.backoff_s(attempt), retry_after or 0.0)
            if waited + delay > self.policy.max_wait_s:
                raise ExchangeUnavailable(
                    f"GET {url}: {reason}; waiting {delay:g} s more would exceed the retry "
                    f"budget of {self.policy.max_wait_s:g} s (waited {waited:g} s)"
                )
            self._sleep(delay)
            waited += delay
            self.waited_s += delay
        raise ExchangeUnavailable(
            f"GET {url}: {reason} ({self.policy.max_attempts} attempts, waited {waited:g} s)"
        )

    def close(self) -> None:
        if self._owned:
            self._client.close()
