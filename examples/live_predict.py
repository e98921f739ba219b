"""Predict on the newest closed BTCUSDT candles with a running service.

    # candles from the exchange (Binance's public API by default), service over HTTP
    .venv/bin/python examples/live_predict.py --service-url http://127.0.0.1:3000
    # candles from a dataset kept by `btcusdt data update`, service over gRPC
    .venv/bin/python examples/live_predict.py --dataset data/live/BTCUSDT-1h.parquet \
        --grpc 127.0.0.1:3010

The window is as long as the served model needs (its ``warmup_bars`` + 1, from ``model_info``)
unless ``--bars`` says otherwise. Prints the answer as JSON: ``probability_up``, ``signal``,
``model_tag``, ``timestamp`` (the last closed candle's open time) and ``horizon_bars``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere

from client import (  # noqa: E402
    GrpcClient,
    HttpClient,
    ServiceError,
    closed_candles_from_dataset,
    closed_candles_from_exchange,
)
from ingest import DEFAULT_BASE_URL, ExchangeError, ExchangeUnavailable  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--exchange", default=DEFAULT_BASE_URL, help="Binance REST API root")
    source.add_argument("--dataset", type=Path, help="a Parquet dataset of closed candles")
    service = parser.add_mutually_exclusive_group()
    service.add_argument("--service-url", default="http://127.0.0.1:3000", help="HTTP service")
    service.add_argument("--grpc", metavar="HOST:PORT", help="gRPC service instead of HTTP")
    parser.add_argument("--symbol", default="BTCUSDT")
    parser.add_argument(
        "--bars",
        type=int,
        default=None,
        help="window length (default: the model's warmup_bars + 1)",
    )
    args = parser.parse_args(argv)
    client = GrpcClient(args.grpc) if args.grpc else HttpClient(args.service_url)
    try:
        with client:
            info = client.model_info()
            bars = args.bars or int(info["warmup_bars"]) + 1
            interval = info["labels"].get("interval", "1h")
            if args.dataset is not None:
                candles = closed_candles_from_dataset(args.dataset, bars)
            else:
                candles = closed_candles_from_exchange(
                    bars, base_url=args.exchange, symbol=args.symbol, interval=interval
                )
            answer = client.predict(candles)
    except (ValueError, FileNotFoundError, ExchangeError, ServiceError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (ExchangeUnavailable, httpx.TransportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    answer["expiry"] = info.get("expiry", {}).get("status")
    print(json.dumps(answer, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
