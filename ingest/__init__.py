"""Fresh candles from Binance into an incremental on-disk dataset (extract -> transform -> load).

Extract: Binance's public archive ZIPs (:mod:`ingest._archive`) or the spot REST API
(:mod:`ingest._rest`). Transform: the one candle rule set plus the exchange's rules
(:mod:`ingest._transform`). Load: Parquet + provenance, atomic and idempotent
(:mod:`ingest._dataset`). Command line: ``btcusdt data update`` and ``btcusdt retrain``
(:mod:`ingest.cli`); see docs/data.md.
"""

from ingest._archive import ArchiveError
from ingest._dataset import provenance_path, read_provenance
from ingest._http import ExchangeError, ExchangeUnavailable, RetryPolicy
from ingest._rest import DEFAULT_BASE_URL, BinanceRest
from ingest._update import DatasetMismatch, UpdateRequest, UpdateResult, update_dataset

__all__ = [
    "DEFAULT_BASE_URL",
    "ArchiveError",
    "BinanceRest",
    "DatasetMismatch",
    "ExchangeError",
    "ExchangeUnavailable",
    "RetryPolicy",
    "UpdateRequest",
    "UpdateResult",
    "provenance_path",
    "read_provenance",
    "update_dataset",
]
