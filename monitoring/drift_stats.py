"""Data-drift statistics: a compact reference profile per feature, PSI and the KS statistic.

A model stores :func:`reference_profile` of the features it was trained on (``reference.json``
in its model directory, written and read by :mod:`artifact`); the service and the offline CLI
(``python -m monitoring.drift``) compare recent features with it.

- PSI (population stability index) over the reference deciles:
  ``sum((p_cur - p_ref) * ln(p_cur / p_ref))``; common reading: < 0.1 stable, 0.1-0.25 moderate,
  > 0.25 significant shift. https://www.listendata.com/2015/05/population-stability-index.html
- KS: the two-sample Kolmogorov-Smirnov statistic ``sup |F_ref - F_cur|``, with ``F_ref`` read off
  the stored quantile grid (resolution 1/``QUANTILES``).
  https://en.wikipedia.org/wiki/Kolmogorov%E2%80%93Smirnov_test
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

PSI_BINS = 10
QUANTILES = 200
PSI_EPSILON = 1e-4
"""Floor for empty bins, so ln(0) never happens (a bin that empties still adds a large term)."""
PSI_MODERATE, PSI_SIGNIFICANT = 0.1, 0.25


def reference_profile(features: np.ndarray, names: Sequence[str]) -> dict[str, Any]:
    """Decile edges, bin shares and a quantile grid for each column of ``features``."""
    x = np.asarray(features, dtype="float64")
    if x.ndim != 2 or x.shape[1] != len(names):
        raise ValueError(f"features must be (n, {len(names)}), got {x.shape}")
    profile: dict[str, Any] = {"n_rows": int(x.shape[0]), "features": {}}
    grid = np.linspace(0.0, 1.0, QUANTILES + 1)
    for j, name in enumerate(names):
        column = x[:, j]
        inner_edges = np.unique(np.quantile(column, np.linspace(0, 1, PSI_BINS + 1)[1:-1]))
        shares = _bin_shares(column, inner_edges)
        profile["features"][name] = {
            "edges": inner_edges.tolist(),
            "shares": shares.tolist(),
            "quantiles": np.quantile(column, grid).tolist(),
            "mean": float(column.mean()),
            "std": float(column.std()),
        }
    return profile


def _bin_shares(values: np.ndarray, inner_edges: np.ndarray) -> np.ndarray:
    counts = np.bincount(
        np.searchsorted(inner_edges, values, side="right"), minlength=len(inner_edges) + 1
    )
    return counts / max(len(values), 1)


def psi(reference: Mapping[str, Any], values: np.ndarray) -> float:
    """PSI of ``values`` against one feature's reference entry."""
    edges = np.asarray(reference["edges"], dtype="float64")
    counts = np.bincount(
        np.searchsorted(edges, np.asarray(values, dtype="float64"), side="right"),
        minlength=len(edges) + 1,
    )
    return psi_from_counts(reference, counts)


def psi_from_counts(reference: Mapping[str, Any], counts: np.ndarray) -> float:
    """PSI from the counts of values in each reference bin (bin ``i`` holds the values with
    ``i`` inner edges ``<=`` them), e.g. counted by a database."""
    counts = np.asarray(counts)
    expected = np.maximum(np.asarray(reference["shares"], dtype="float64"), PSI_EPSILON)
    actual = np.maximum(counts / max(int(counts.sum()), 1), PSI_EPSILON)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def psi_level(value: float) -> str:
    """``stable`` (PSI <= 0.1), ``moderate`` (<= 0.25) or ``significant``."""
    if value > PSI_SIGNIFICANT:
        return "significant"
    return "moderate" if value > PSI_MODERATE else "stable"


def ks_statistic(reference: Mapping[str, Any], values: np.ndarray) -> float:
    """Two-sample KS statistic of ``values`` against one feature's stored quantile grid."""
    quantiles = np.asarray(reference["quantiles"], dtype="float64")
    levels = np.linspace(0.0, 1.0, len(quantiles))
    sample = np.sort(np.asarray(values, dtype="float64"))
    n = len(sample)
    if n == 0:
        return 0.0
    ref_cdf = np.interp(sample, quantiles, levels, left=0.0, right=1.0)
    upper = np.arange(1, n + 1) / n
    lower = np.arange(0, n) / n
    return float(max(np.max(np.abs(upper - ref_cdf)), np.max(np.abs(ref_cdf - lower))))


def drift_table(profile: Mapping[str, Any], features: np.ndarray, names: Sequence[str]) -> dict:
    """PSI and KS for every feature: ``{name: {"psi": .., "ks": .., "level": ..}}``."""
    x = np.asarray(features, dtype="float64")
    out = {}
    for j, name in enumerate(names):
        ref = profile["features"][name]
        value = psi(ref, x[:, j])
        out[name] = {"psi": value, "ks": ks_statistic(ref, x[:, j]), "level": psi_level(value)}
    return out
