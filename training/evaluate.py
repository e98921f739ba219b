"""Scoring probabilities of an up move, and the baselines a model has to beat.

Metrics (all on P(up) and the 0/1 label): ``accuracy`` at the decision threshold, ``roc_auc``
(ranking skill, 0.5 = none), ``log_loss`` and ``brier`` (proper scores: lower is better, and
a constant forecast of the base rate already scores about ``0.693`` / ``0.25``).

Baselines, each fit on the same training rows as the model and scored on the same test rows:
``majority`` (always the training base rate: P(up) constant, the signal always the majority
class), ``previous_bar`` (the last finished bar's direction, ``ret_1 > 0``, as the only input: P(up)
the up-share after such bars in the training rows, and the call the direction that share
favours, continuation or reversal), and ``logistic`` (a scikit-learn
logistic regression on the same scaled features).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, brier_score_loss, log_loss, roc_auc_score
from sklearn.preprocessing import StandardScaler

from features import FEATURE_NAMES

METRIC_NAMES = ("accuracy", "roc_auc", "log_loss", "brier")
HIGHER_IS_BETTER = {"accuracy": True, "roc_auc": True, "log_loss": False, "brier": False}
BASELINE_NAMES = ("majority", "previous_bar", "logistic")
PROBABILITY_CLIP = 1e-6
"""P(up) is clipped to ``[1e-6, 1 - 1e-6]`` for the log loss, so one certain miss is finite."""


def classification_metrics(
    labels: np.ndarray,
    probability_up: np.ndarray,
    *,
    threshold: float = 0.5,
    predicted_up: np.ndarray | None = None,
) -> dict[str, float]:
    """Accuracy, ROC-AUC, log loss and Brier score of P(up) against 0/1 labels.

    Accuracy scores ``predicted_up`` when given (a rule's own call), else ``P(up) >= threshold``.

    Raises:
        ValueError: different lengths, or labels that are not all 0/1.
    """
    y = np.asarray(labels, dtype="float64")
    p = np.asarray(probability_up, dtype="float64")
    if y.shape != p.shape or y.ndim != 1:
        raise ValueError(f"labels {y.shape} and probabilities {p.shape} must be equal 1-d arrays")
    if not np.isin(y, (0.0, 1.0)).all():
        raise ValueError("labels must be 0 or 1")
    clipped = np.clip(p, PROBABILITY_CLIP, 1.0 - PROBABILITY_CLIP)
    both_classes = 0 < y.sum() < len(y)
    calls = p >= threshold if predicted_up is None else np.asarray(predicted_up, dtype=bool)
    return {
        "accuracy": float(accuracy_score(y, calls)),
        "roc_auc": float(roc_auc_score(y, p)) if both_classes else math.nan,
        "log_loss": float(log_loss(y, clipped, labels=[0.0, 1.0])),
        "brier": float(brier_score_loss(y, p)),
    }


class MajorityBaseline:
    """Always the training base rate; its signal is always the training majority class."""

    name = "majority"

    def fit(self, features: np.ndarray, labels: np.ndarray) -> MajorityBaseline:
        self.up_share = float(np.mean(labels))
        return self

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        return np.full(len(features), self.up_share)

    def predict_up(self, features: np.ndarray, threshold: float) -> np.ndarray:
        """Always the training majority class, whatever the threshold."""
        return np.full(len(features), self.up_share >= 0.5)


class PreviousBarBaseline:
    """The last bar's direction as the only input: P(up) is the training up-share after a bar
    like the last one (up or not), and the call is the direction it favours (up where that
    share is >= 0.5: momentum if up bars were followed by up bars in training, reversal if
    they were not). Call and probability agree, so its accuracy and ROC-AUC read alike."""

    name = "previous_bar"
    column = FEATURE_NAMES.index("ret_1")

    def fit(self, features: np.ndarray, labels: np.ndarray) -> PreviousBarBaseline:
        previous_up = np.asarray(features)[:, self.column] > 0
        y = np.asarray(labels, dtype="float64")
        overall = float(y.mean())
        self.p_after_up = float(y[previous_up].mean()) if previous_up.any() else overall
        self.p_after_down = float(y[~previous_up].mean()) if (~previous_up).any() else overall
        return self

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        previous_up = np.asarray(features)[:, self.column] > 0
        return np.where(previous_up, self.p_after_up, self.p_after_down)

    def predict_up(self, features: np.ndarray, threshold: float) -> np.ndarray:
        """Up where the training up-share after such a bar is >= 0.5, whatever the threshold."""
        return self.predict_proba(features) >= 0.5


class LogisticBaseline:
    """Logistic regression on the same features, scaled by a scaler fit on the training rows."""

    name = "logistic"

    def __init__(self, *, max_iter: int = 1000, c: float = 1.0):
        self.max_iter = max_iter
        self.c = c

    def fit(self, features: np.ndarray, labels: np.ndarray) -> LogisticBaseline:
        self.scaler = StandardScaler().fit(features)
        self.regression = LogisticRegression(C=self.c, max_iter=self.max_iter)
        self.regression.fit(self.scaler.transform(features), np.asarray(labels, dtype="int64"))
        return self

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        return self.regression.predict_proba(self.scaler.transform(features))[:, 1]

    def predict_up(self, features: np.ndarray, threshold: float) -> np.ndarray:
        return self.predict_proba(features) >= threshold


Baseline = MajorityBaseline | PreviousBarBaseline | LogisticBaseline


def fit_baselines(features: np.ndarray, labels: np.ndarray) -> dict[str, Baseline]:
    """Every baseline fit on the same (training) rows, keyed by name."""
    return {
        "majority": MajorityBaseline().fit(features, labels),
        "previous_bar": PreviousBarBaseline().fit(features, labels),
        "logistic": LogisticBaseline().fit(features, labels),
    }


def score_baselines(
    baselines: Mapping[str, Baseline],
    features: np.ndarray,
    labels: np.ndarray,
    *,
    model_threshold: float = 0.5,
) -> dict[str, dict[str, float]]:
    """Metrics of each fitted baseline on test rows (accuracy of the baseline's own call)."""
    return {
        name: classification_metrics(
            labels,
            baseline.predict_proba(features),
            predicted_up=baseline.predict_up(features, model_threshold),
        )
        for name, baseline in baselines.items()
    }


def summarize_folds(fold_metrics: Sequence[Mapping[str, float]]) -> dict[str, dict[str, float]]:
    """Mean and (sample) standard deviation of each metric across folds."""
    out: dict[str, dict[str, float]] = {}
    for metric in METRIC_NAMES:
        values = np.array([m[metric] for m in fold_metrics], dtype="float64")
        std = float(values.std(ddof=1)) if len(values) > 1 else 0.0
        out[metric] = {"mean": float(values.mean()), "std": std}
    return out


def best_baseline(
    baseline_metrics: Mapping[str, Mapping[str, float]], metric: str
) -> tuple[str, float]:
    """The name and score of the baseline that does best on ``metric``."""
    pick = max if HIGHER_IS_BETTER[metric] else min
    name = pick(baseline_metrics, key=lambda n: baseline_metrics[n][metric])
    return name, float(baseline_metrics[name][metric])


def advantage(model_score: float, baseline_score: float, metric: str) -> float:
    """How much better the model is than a baseline on ``metric`` (positive = better)."""
    diff = model_score - baseline_score
    return diff if HIGHER_IS_BETTER[metric] else -diff
