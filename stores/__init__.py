"""Databases the service's predictions and candles can be kept in.

- :mod:`stores.clickhouse`: the ClickHouse schema (``predictions``, ``candles``), the DSN of
  ``BTC_SERVE_CLICKHOUSE_URL``, inserts and the queries the monitoring CLIs run.
- :mod:`stores.spool`: the append-only on-disk queue that keeps rows until ClickHouse has them.
"""
