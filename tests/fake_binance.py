"""A fake Binance on loopback: ``GET /api/v3/klines`` and ``GET /api/v3/time`` only, serving
recorded real candles, with scripted faults; plus archive ZIPs in Binance's published layout.

Provenance of the recorded candles: they are cut from the bundled
``data/Binance_BTCUSDT_1h.csv.gz`` (Binance BTC/USDT 1h, CryptoDataDownload export, see
data/README.md) as :func:`training.data.load_bundled_btcusdt` cleans it, and re-encoded the way
Binance serves klines (12 values; times in epoch ms, or us for the 2025+ archive layout;
prices and volumes as decimal strings with 8 places, which parse back to the exact same
doubles). Open, high, low, close, volume (BTC), quote volume (``Volume USDT``) and the trade
count (``tradecount``, exported from 2020-08-01 on; 0 before) are the recorded values; the
close time is open time + 1 h - 1 ms, as Binance writes it; the export has no taker-buy
volumes, so those two fields are ``"0"``, and ``ignore`` is ``"0"`` as in Binance's own files.
"""

from __future__ import annotations

import hashlib
import io
import json
import threading
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pandas as pd

from training.data import BUNDLED_BTCUSDT

HOUR_MS = 3_600_000


def recorded_klines(frame: pd.DataFrame) -> list[list[Any]]:
    """Binance-format klines (ms times, string values) of validated candles ``frame``."""
    raw = pd.read_csv(BUNDLED_BTCUSDT, skiprows=1, usecols=["unix", "Volume USDT", "tradecount"])
    unix = raw["unix"].astype("int64")
    raw["open_ms"] = unix.where(unix > 10**11, unix * 1000)
    extra = raw.drop_duplicates("open_ms", keep="first").rename(columns={"Volume USDT": "quote"})
    epoch = pd.Timestamp(0, tz="UTC")
    candles = frame.assign(open_ms=(frame["timestamp"] - epoch) // pd.Timedelta(milliseconds=1))
    joined = candles.merge(extra, on="open_ms", how="left", validate="one_to_one")
    assert joined["quote"].notna().all(), "every candle comes from the bundled file"
    joined["tradecount"] = joined["tradecount"].fillna(0)  # not exported before 2020-08-01
    return [
        [
            int(row.open_ms),
            f"{row.open:.8f}",
            f"{row.high:.8f}",
            f"{row.low:.8f}",
            f"{row.close:.8f}",
            f"{row.volume:.8f}",
            int(row.open_ms) + HOUR_MS - 1,
            f"{row.quote:.8f}",
            int(row.tradecount),
            "0",
            "0",
            "0",
        ]
        for row in joined.itertuples(index=False)
    ]


def forming(kline: list[Any]) -> list[Any]:
    """The same hour seen while it is still open: other values (a partial bar)."""
    partial = list(kline)
    partial[2] = partial[1]  # high = open so far
    partial[3] = partial[1]
    partial[4] = partial[1]
    partial[5] = f"{float(kline[5]) / 3:.8f}"
    return partial


@dataclass
class Fault:
    """One scripted answer, used once, for a request to ``path``: the ``on_request``-th one
    (1-based), or the next one if None.

    ``status`` with ``headers`` (e.g. 429 + Retry-After), ``delay_s`` before answering (a
    timeout), ``truncate`` (a 200 whose JSON body is cut short).
    """

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    truncate: bool = False
    path: str = "/api/v3/klines"
    on_request: int | None = None


@dataclass
class Request:
    path: str
    params: dict[str, str]
    at: float
    status: int = 200


class FakeBinance:
    """The exchange: ``klines`` are every candle it has (closed ones, recorded values);
    ``now_ms`` is its clock. The candle containing ``now_ms`` is served as forming (other
    values, close time in the future). ``overlap_rows`` makes every page start that many
    candles before ``startTime`` (pages that overlap)."""

    def __init__(
        self,
        klines: list[list[Any]],
        *,
        now_ms: int | None = None,
        overlap_rows: int = 0,
        archive_root: Path | None = None,
        symbol: str = "BTCUSDT",
    ):
        self.klines = klines
        self.now_ms = now_ms if now_ms is not None else klines[-1][0] + HOUR_MS + 1
        self.overlap_rows = overlap_rows
        self.archive_root = archive_root
        self.symbol = symbol
        self.faults: list[Fault] = []
        self.requests: list[Request] = []
        self.replace: dict[int, list[Any]] = {}  # open ms -> other values (a corrupted page)
        self.replace_from_page = 1  # ... served from this klines request on
        self.lock = threading.Lock()
        self.served_klines = 0
        self.pages_sent = 0  # klines pages answered with 200
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def klines_requests(self) -> list[Request]:
        return [r for r in self.requests if r.path == "/api/v3/klines"]

    def _page(self, params: dict[str, str]) -> tuple[int, Any]:
        if params.get("symbol") != self.symbol:
            return 400, {"code": -1121, "msg": "Invalid symbol."}
        limit = int(params.get("limit", 500))
        if not 1 <= limit <= 1000:
            return 400, {"code": -1130, "msg": "Data sent for parameter 'limit' is not valid."}
        start = int(params.get("startTime", 0))
        end = int(params.get("endTime", 2**62))
        rows = [k for k in self.klines if k[0] <= self.now_ms]
        first = next((i for i, k in enumerate(rows) if k[0] >= start), len(rows))
        first = max(0, first - self.overlap_rows) if first < len(rows) else first
        page = [k for k in rows[first:] if k[0] <= end][:limit]
        if len(self.klines_requests()) >= self.replace_from_page:
            page = [self.replace.get(k[0], k) for k in page]
        if page and page[-1][6] > self.now_ms:
            page[-1] = forming(page[-1])
        return 200, page

    def handle(self, handler: BaseHTTPRequestHandler) -> None:
        parsed = urlparse(handler.path)
        params = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
        with self.lock:
            record = Request(parsed.path, params, time.monotonic())
            self.requests.append(record)
            count = sum(r.path == parsed.path for r in self.requests)
            fault = next(
                (f for f in self.faults if f.path == parsed.path and f.on_request in (None, count)),
                None,
            )
            if fault is not None:
                self.faults.remove(fault)
        if fault is not None and fault.delay_s:
            time.sleep(fault.delay_s)
        if fault is not None and fault.status != 200:
            record.status = fault.status
            body = json.dumps({"code": -1003, "msg": "Too many requests; scripted fault."})
            self._send(handler, fault.status, body.encode(), fault.headers)
            return
        if parsed.path == "/api/v3/time":
            self._send(handler, 200, json.dumps({"serverTime": self.now_ms}).encode())
        elif parsed.path == "/api/v3/klines":
            status, answer = self._page(params)
            record.status = status
            body = json.dumps(answer, separators=(",", ":")).encode()
            if fault is not None and fault.truncate:
                body = body[: len(body) // 2]
            elif status == 200:
                with self.lock:
                    self.served_klines += len(answer)
            self._send(handler, status, body)
            if status == 200:
                with self.lock:
                    self.pages_sent += 1
        elif self.archive_root is not None and parsed.path.startswith("/data/"):
            target = self.archive_root / parsed.path.lstrip("/")
            if target.is_file():
                self._send(handler, 200, target.read_bytes(), content_type="application/zip")
            else:
                record.status = 404
                self._send(handler, 404, b"<Error><Code>NoSuchKey</Code></Error>")
        else:
            record.status = 404
            self._send(handler, 404, b'{"code":-1,"msg":"not served by the fake"}')

    @staticmethod
    def _send(
        handler: BaseHTTPRequestHandler,
        status: int,
        body: bytes,
        headers: dict[str, str] | None = None,
        content_type: str = "application/json",
    ) -> None:
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", content_type)
            handler.send_header("Content-Length", str(len(body)))
            for name, value in (headers or {}).items():
                handler.send_header(name, value)
            handler.end_headers()
            handler.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timeout fault)

    @contextmanager
    def running(self) -> Iterator[FakeBinance]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                fake.handle(self)

            def log_message(self, *_: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._server.shutdown()
            self._server.server_close()


HEADER = (
    "open_time,open,high,low,close,volume,close_time,quote_volume,count,"
    "taker_buy_volume,taker_buy_quote_volume,ignore"
)


def archive_csv(klines: list[list[Any]], *, unit: str = "ms", header: bool = False) -> bytes:
    """The CSV inside a Binance archive ZIP (times in ``ms`` or ``us``)."""
    scale = 1000 if unit == "us" else 1
    lines = [HEADER] if header else []
    for k in klines:
        values = [k[0] * scale, *k[1:6], (k[6] + 1) * scale - 1, *k[7:]]
        lines.append(",".join(str(v) for v in values))
    return ("\n".join(lines) + "\n").encode()


def write_archive(
    root: Path,
    name: str,
    klines: list[list[Any]],
    *,
    unit: str = "ms",
    header: bool = False,
    checksum: bool = True,
    period: str = "monthly",
    symbol: str = "BTCUSDT",
    interval: str = "1h",
) -> Path:
    """Write ``<root>/data/spot/<period>/klines/<symbol>/<interval>/<name>`` (+ ``.CHECKSUM``)
    as Binance publishes them."""
    folder = root / "data" / "spot" / period / "klines" / symbol / interval
    folder.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(
            name.replace(".zip", ".csv"), archive_csv(klines, unit=unit, header=header)
        )
    path = folder / name
    path.write_bytes(buffer.getvalue())
    if checksum:
        digest = hashlib.sha256(buffer.getvalue()).hexdigest()
        (folder / f"{name}.CHECKSUM").write_text(f"{digest}  {name}\n")
    return path


def month_klines(klines: list[list[Any]], month: str) -> list[list[Any]]:
    """The klines opening in ``month`` (``YYYY-MM``)."""
    start = pd.Timestamp(f"{month}-01", tz="UTC")
    end = start + pd.offsets.MonthBegin(1)
    lo, hi = (
        int((t - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(milliseconds=1)) for t in (start, end)
    )
    return [k for k in klines if lo <= k[0] < hi]
