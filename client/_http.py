"""HTTP client (httpx) for ``bentoml serve``."""

from __future__ import annotations

import json
from typing import Any

import httpx

from client._common import ServiceClient, ServiceError, error_message


class HttpClient(ServiceClient):
    """Calls the service's JSON APIs at ``base_url`` (e.g. ``http://127.0.0.1:3000``)."""

    def __init__(self, base_url: str = "http://127.0.0.1:3000", *, timeout_s: float = 60.0):
        self._http = httpx.Client(base_url=base_url, timeout=timeout_s)

    def call(self, api: str, payload: Any, *, request_id: str | None = None) -> Any:
        """POST ``payload`` as JSON (or JSON bytes as they are) to ``/<api>``; the decoded
        answer, or :class:`ServiceError`."""
        headers = {"Content-Type": "application/json"}
        if request_id:
            headers["X-Request-ID"] = request_id
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        response = self._http.post(f"/{api}", content=body, headers=headers)
        if response.status_code != 200:
            raise ServiceError(response.status_code, error_message(response.content))
        return response.json()

    def is_ready(self) -> bool:
        """``/readyz`` answers 200 (the model is loaded and the runners are up)."""
        try:
            return self._http.get("/readyz").status_code == 200
        except httpx.TransportError:
            return False

    def close(self) -> None:
        self._http.close()
