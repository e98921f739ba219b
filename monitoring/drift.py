"""``python -m monitoring.drift``: the drift report of the prediction log, by its old name.

The report is :mod:`monitoring.drift_report`; the statistics are :mod:`monitoring.drift_stats`.
"""

from __future__ import annotations

from monitoring.drift_report import main

if __name__ == "__main__":
    raise SystemExit(main())
