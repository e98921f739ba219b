"""The training report: one JSON with every metric, and the plots a person looks at.

Files: ``report.json`` (tag, config, ranges, per-fold and holdout metrics for the model and the
baselines, the verdict), ``loss_curves.png`` (train/validation loss per epoch, per fold and the
final fit), ``holdout_roc.png``, ``holdout_calibration.png`` (reliability diagram with the share
of rows per bin) and ``fold_metrics.png`` (each metric per fold, model vs baselines). Plots are
drawn with matplotlib's object API (no pyplot global state), so this is safe in any process.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from training.evaluate import BASELINE_NAMES, METRIC_NAMES

REPORT_JSON = "report.json"
PLOT_FILES = ("loss_curves.png", "holdout_roc.png", "holdout_calibration.png", "fold_metrics.png")


def write_report(
    directory: Path,
    *,
    tag: str,
    metadata: Mapping[str, Any],
    loss_curves: Sequence[Mapping[str, Any]],
    holdout_labels: np.ndarray,
    holdout_probabilities: Mapping[str, np.ndarray],
    plots: bool = True,
) -> list[Path]:
    """Write ``report.json`` (and the PNG plots) into ``directory``; returns the files written.

    ``holdout_probabilities`` maps ``model`` and each baseline name to its P(up) on the holdout.
    """
    holdout_probability = holdout_probabilities["model"]
    directory.mkdir(parents=True, exist_ok=True)
    report = {"model_tag": tag, **metadata, "loss_curves": list(loss_curves)}
    json_path = directory / REPORT_JSON
    json_path.write_text(json.dumps(report, indent=2, default=str))
    written = [json_path]
    if plots:
        written += [
            _plot_loss_curves(directory / PLOT_FILES[0], loss_curves),
            _plot_roc(directory / PLOT_FILES[1], holdout_labels, holdout_probabilities, metadata),
            _plot_calibration(directory / PLOT_FILES[2], holdout_labels, holdout_probability),
            _plot_fold_metrics(directory / PLOT_FILES[3], metadata["metrics"]),
        ]
    return written


def _figure(width: float = 7.0, height: float = 4.5) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _plot_loss_curves(path: Path, curves: Sequence[Mapping[str, Any]]) -> Path:
    fig = _figure(8.0, 4.5)
    ax_train, ax_val = fig.subplots(1, 2, sharey=True)
    for curve in curves:
        epochs = np.arange(1, len(curve["train"]) + 1)
        ax_train.plot(epochs, curve["train"], label=curve["name"])
        ax_val.plot(epochs, curve["validation"], label=curve["name"])
        best = int(np.argmin(curve["validation"]))
        ax_val.scatter([best + 1], [curve["validation"][best]], s=18)
    for ax, title in ((ax_train, "training loss"), (ax_val, "validation loss (early stopping)")):
        ax.axhline(np.log(2), color="grey", lw=0.8, ls="--")
        ax.set_title(title)
        ax.set_xlabel("epoch")
    ax_train.set_ylabel("binary cross-entropy (dashed: ln 2 = coin flip)")
    ax_val.legend(fontsize=7)
    fig.savefig(path, dpi=110)
    return path


def _plot_roc(
    path: Path,
    labels: np.ndarray,
    probabilities: Mapping[str, np.ndarray],
    metadata: Mapping[str, Any],
) -> Path:
    from sklearn.metrics import roc_curve

    fig = _figure(5.0, 5.0)
    ax = fig.subplots()
    for name, probability in probabilities.items():
        if name == "majority":
            continue  # a constant: its curve is the no-skill diagonal
        false_pos, true_pos, _ = roc_curve(labels, probability)
        auc = metadata["metrics"]["holdout"][name]["roc_auc"]
        style = {"lw": 2.0} if name == "model" else {"lw": 1.0}
        ax.plot(false_pos, true_pos, label=f"{name} (AUC {auc:.4f})", **style)
    ax.plot([0, 1], [0, 1], color="grey", ls="--", label="no skill / majority (AUC 0.5)")
    start, stop = metadata["holdout_range"]
    ax.set_title(f"holdout ROC\n{start[:10]} .. {stop[:10]}")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.legend(loc="lower right")
    fig.savefig(path, dpi=110)
    return path


def _plot_calibration(path: Path, labels: np.ndarray, probability: np.ndarray) -> Path:
    fig = _figure(5.0, 6.0)
    ax, ax_hist = fig.subplots(2, 1, height_ratios=(3, 1), sharex=True)
    # Quantile bins: predictions of a weak model bunch near 0.5, equal-width bins would be empty.
    edges = np.unique(np.quantile(probability, np.linspace(0, 1, 11)))
    which = np.clip(np.searchsorted(edges, probability, side="right") - 1, 0, len(edges) - 2)
    mean_predicted = np.array([probability[which == b].mean() for b in range(len(edges) - 1)])
    observed = np.array([labels[which == b].mean() for b in range(len(edges) - 1)])
    ax.plot(mean_predicted, observed, marker="o", label="model (deciles of P(up))")
    low, high = float(probability.min()), float(probability.max())
    ax.plot([low, high], [low, high], color="grey", ls="--", label="perfectly calibrated")
    ax.axhline(float(np.mean(labels)), color="tab:orange", lw=0.8, label="holdout up-share")
    ax.set_ylabel("observed up-share")
    ax.set_title("holdout calibration")
    ax.legend(fontsize=8)
    ax_hist.hist(probability, bins=40)
    ax_hist.set_xlabel("predicted P(up)")
    ax_hist.set_ylabel("rows")
    fig.savefig(path, dpi=110)
    return path


def _plot_fold_metrics(path: Path, metrics: Mapping[str, Any]) -> Path:
    fig = _figure(9.0, 6.0)
    axes = fig.subplots(2, 2).ravel()
    folds = metrics["folds"]
    numbers = [f["fold"] for f in folds]
    for ax, metric in zip(axes, METRIC_NAMES, strict=True):
        for name in ("model", *BASELINE_NAMES):
            values = [f["metrics"][name][metric] for f in folds]
            style = {"lw": 2.2, "marker": "o"} if name == "model" else {"lw": 1, "marker": "."}
            ax.plot(numbers, values, label=name, **style)
        ax.set_title(metric + (" (lower is better)" if metric in ("log_loss", "brier") else ""))
        ax.set_xlabel("fold (test block, oldest first)")
        ax.set_xticks(numbers)
    axes[0].legend(fontsize=7)
    fig.savefig(path, dpi=110)
    return path
