"""Train the direction MLP with honest walk-forward evaluation and save it to the model store.

Usage: ``btcusdt train [--data PATH] [options]`` (or ``python -m training.train``; ``--help``
lists every option).

Pipeline: candles -> ``training.prepare.build_dataset`` (features + label) -> the newest
``holdout_fraction`` of rows is set aside untouched -> expanding walk-forward folds over the rest
(a fresh scaler + MLP + baselines per fold, each fit on the fold's training rows only) -> the
final model is fit on every row before the holdout and scored once on it -> saved with
``artifact.save_model`` (stage ``candidate``) together with its report.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bentoml
import click
import numpy as np
import pandas as pd
import torch
from sklearn.preprocessing import StandardScaler
from tqdm.auto import tqdm

from artifact import (
    EXPIRES_AT,
    LIFETIME_HOURS,
    MODEL_NAME,
    REPORT_DIR,
    TRAINED_AT,
    expiry_after,
    save_model,
)
from cli import config_from, dataclass_options, existing_file, folder, run
from features import BAR_INTERVAL, FEATURE_NAMES, TIMESTAMP_COLUMN
from monitoring.drift_stats import reference_profile
from policy import DecisionPolicy
from training.config import TrainConfig
from training.data import Candles, load_bundled_eurusd
from training.evaluate import (
    BASELINE_NAMES,
    METRIC_NAMES,
    advantage,
    best_baseline,
    classification_metrics,
    fit_baselines,
    score_baselines,
    summarize_folds,
)
from training.model import DirectionMLP, DirectionModel, MLPConfig
from training.policy_search import PolicySearch, make_stretch, search_policy
from training.prepare import build_dataset, load_data
from training.splits import Split, tail_split, walk_forward_splits

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_REPORTS_DIR = REPO_ROOT / "reports"
GENERALISATION_MARKET = "EURUSD_1h"
FX_WEEKEND_BARS = 72
"""FX closes from Friday to Sunday evening (~48 missing hours): bridged, as FX charts do."""


@dataclass
class FitResult:
    """One scaler + MLP fit: the model, its loss curves and the rows each part used."""

    model: DirectionModel
    train_loss: list[float]
    validation_loss: list[float]
    best_epoch: int
    fit_rows: range
    validation_rows: range
    fit_range: tuple[str, str]
    validation_range: tuple[str, str]
    seconds: float


@dataclass
class TrainResult:
    """What :func:`train_and_save` produced."""

    tag: str
    report_dir: Path
    metrics: dict[str, Any]
    model: DirectionModel
    metadata: dict[str, Any] = field(repr=False)
    seconds: float = 0.0


@dataclass
class _TrainingData:
    """The candles a run trains on (after ``max_rows``) and the float32 training table."""

    candles: Candles
    features: pd.DataFrame
    labels: pd.Series

    def rows(self, part: range) -> tuple[pd.DataFrame, pd.Series]:
        return self.features.iloc[part.start : part.stop], self.labels.iloc[part.start : part.stop]


@dataclass
class _Folds:
    """The walk-forward folds' results: per-fold info, loss curves, out-of-fold P(up)."""

    infos: list[dict[str, Any]] = field(default_factory=list)
    curves: list[dict[str, Any]] = field(default_factory=list)
    out_of_fold: dict[str, pd.Series] = field(default_factory=dict)


def _time_range(index: pd.Index) -> tuple[str, str]:
    return (pd.Timestamp(index[0]).isoformat(), pd.Timestamp(index[-1]).isoformat())


def _as_matrix(features: pd.DataFrame) -> np.ndarray:
    missing = [c for c in FEATURE_NAMES if c not in features.columns]
    if missing:
        raise ValueError(f"features lack column(s) {missing}")
    return features[list(FEATURE_NAMES)].to_numpy(dtype="float32")


def _as_labels(labels: pd.Series) -> np.ndarray:
    y = labels.to_numpy(dtype="float32", copy=True)
    if not np.isin(y, (0.0, 1.0)).all():
        raise ValueError("labels must be 0 or 1 (drop rows without a label first)")
    return y


def _mean_loss(mlp: DirectionMLP, x: torch.Tensor, y: torch.Tensor, batch: int = 8192) -> float:
    loss_fn = torch.nn.BCEWithLogitsLoss(reduction="sum")
    mlp.eval()
    total = 0.0
    with torch.inference_mode():
        for start in range(0, len(x), batch):
            total += float(loss_fn(mlp(x[start : start + batch]), y[start : start + batch]))
    return total / len(x)


@contextlib.contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run the block with ``count`` torch intra-op threads, then restore the previous count."""
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def fit_direction_model(
    features: pd.DataFrame,
    labels: pd.Series,
    config: TrainConfig,
    *,
    progress: bool = False,
    description: str = "fit",
) -> FitResult:
    """Fit scaler + MLP on these rows (oldest first), early-stopping on their last slice.

    The rows split into a fit part and, after ``config.gap_bars`` dropped rows, the last
    ``config.validation_fraction`` as the validation slice. The StandardScaler is fit on the fit
    part only; the MLP trains on it with AdamW + binary cross-entropy and keeps the weights of
    the epoch with the lowest validation loss (stopping after ``config.patience`` epochs
    without improvement). Deterministic for ``config.seed`` on the same machine and threads.

    Args:
        features: the :data:`features.FEATURE_NAMES` columns, indexed by candle open time.
        labels: 0/1, same index.
        config: hyper-parameters; ``threshold`` is stored in the returned model.
        progress: show a tqdm bar over epochs.
        description: label of the progress bar.

    Raises:
        ValueError: misaligned inputs, non-0/1 labels, or too few rows for the split.
    """
    if len(features) != len(labels) or not features.index.equals(labels.index):
        raise ValueError("features and labels must have the same index")
    with torch_threads(config.threads):
        return _fit(features, labels, config, progress=progress, description=description)


def _fit(
    features: pd.DataFrame,
    labels: pd.Series,
    config: TrainConfig,
    *,
    progress: bool,
    description: str,
) -> FitResult:
    x_all = _as_matrix(features)
    y_all = _as_labels(labels)
    split = tail_split(
        len(x_all), test_fraction=config.validation_fraction, gap_bars=config.gap_bars
    )
    started = time.perf_counter()

    scaler = StandardScaler().fit(x_all[split.train.start : split.train.stop])
    x_fit = torch.from_numpy(scaler.transform(x_all[split.train.start : split.train.stop]))
    y_fit = torch.from_numpy(y_all[split.train.start : split.train.stop])
    x_val = torch.from_numpy(scaler.transform(x_all[split.test.start : split.test.stop]))
    y_val = torch.from_numpy(y_all[split.test.start : split.test.stop])
    del x_all  # only the scaled float32 copies are needed from here on

    torch.manual_seed(config.seed)
    mlp = DirectionMLP(
        MLPConfig(
            n_features=x_fit.shape[1],
            hidden_sizes=tuple(config.hidden_sizes),
            dropout=config.dropout,
        )
    )
    optimizer = torch.optim.AdamW(
        mlp.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    loss_fn = torch.nn.BCEWithLogitsLoss()
    batch_order = torch.Generator().manual_seed(config.seed)

    train_curve: list[float] = []
    val_curve: list[float] = []
    best_loss, best_epoch, best_state = float("inf"), 0, copy.deepcopy(mlp.state_dict())
    epochs = tqdm(
        range(1, config.max_epochs + 1), desc=description, leave=False, disable=not progress
    )
    for epoch in epochs:
        mlp.train()
        order = torch.randperm(len(x_fit), generator=batch_order)
        total = 0.0
        for start in range(0, len(order), config.batch_size):
            rows = order[start : start + config.batch_size]
            optimizer.zero_grad()
            loss = loss_fn(mlp(x_fit[rows]), y_fit[rows])
            loss.backward()
            optimizer.step()
            total += loss.item() * len(rows)
        train_curve.append(total / len(x_fit))
        val_curve.append(_mean_loss(mlp, x_val, y_val))
        epochs.set_postfix(train=f"{train_curve[-1]:.4f}", val=f"{val_curve[-1]:.4f}")
        if val_curve[-1] < best_loss:
            best_loss, best_epoch = val_curve[-1], epoch
            best_state = copy.deepcopy(mlp.state_dict())
        elif epoch - best_epoch >= config.patience:
            break
    epochs.close()
    mlp.load_state_dict(best_state)

    model = DirectionModel(
        mlp=mlp, scaler=scaler, feature_names=list(FEATURE_NAMES), threshold=config.threshold
    )
    index = features.index
    return FitResult(
        model=model,
        train_loss=train_curve,
        validation_loss=val_curve,
        best_epoch=best_epoch,
        fit_rows=split.train,
        validation_rows=split.test,
        fit_range=_time_range(index[split.train.start : split.train.stop]),
        validation_range=_time_range(index[split.test.start : split.test.stop]),
        seconds=time.perf_counter() - started,
    )


def _evaluate_split(
    data: _TrainingData,
    split: Split,
    config: TrainConfig,
    *,
    progress: bool,
    description: str,
) -> tuple[FitResult, dict[str, Any], dict[str, np.ndarray]]:
    """Fit model + baselines on ``split.train``, score all of them on ``split.test``.

    Returns the model fit, the fold's ranges and metrics, and each one's P(up) on the test rows.
    """
    train_x, train_y = data.rows(split.train)
    test_x = data.features.iloc[split.test.start : split.test.stop]
    test_y = data.labels.to_numpy(dtype="float64")[split.test.start : split.test.stop]
    fit = fit_direction_model(train_x, train_y, config, progress=progress, description=description)
    probability_up = fit.model.predict_proba(test_x.to_numpy())
    baselines = fit_baselines(_as_matrix(train_x), _as_labels(train_y))
    test_matrix = _as_matrix(test_x)
    scores = {
        "model": classification_metrics(test_y, probability_up, threshold=config.threshold),
        **score_baselines(baselines, test_matrix, test_y, model_threshold=config.threshold),
    }
    probabilities = {"model": probability_up}
    probabilities |= {name: b.predict_proba(test_matrix) for name, b in baselines.items()}
    info = {
        "train_range": _time_range(train_x.index),
        "test_range": _time_range(test_x.index),
        "train_rows": len(split.train),
        "test_rows": len(split.test),
        "gap_rows": split.gap,
        "test_up_share": float(test_y.mean()),
        "best_epoch": fit.best_epoch,
        "epochs_run": len(fit.train_loss),
        "metrics": scores,
    }
    return fit, info, probabilities


def verdict(holdout: dict[str, dict[str, float]], folds_summary: dict[str, Any]) -> dict[str, Any]:
    """Plain statement of whether the model beats every baseline, per metric, on the holdout
    and on the fold means (a tie or a loss is reported as such)."""
    out: dict[str, Any] = {}
    for where, table in (
        ("holdout", holdout),
        (
            "folds_mean",
            {k: {m: v[m]["mean"] for m in METRIC_NAMES} for k, v in folds_summary.items()},
        ),
    ):
        per_metric = {}
        for metric in METRIC_NAMES:
            baseline_scores = {b: table[b] for b in BASELINE_NAMES}
            name, score = best_baseline(baseline_scores, metric)
            per_metric[metric] = {
                "model": table["model"][metric],
                "best_baseline": name,
                "best_baseline_score": score,
                "advantage": advantage(table["model"][metric], score, metric),
            }
        out[where] = per_metric
    beats = [m for m in METRIC_NAMES if out["holdout"][m]["advantage"] > 0]
    if len(beats) == len(METRIC_NAMES):
        sentence = "The model beats every baseline on every holdout metric."
    elif beats:
        lost = [m for m in METRIC_NAMES if m not in beats]
        sentence = (
            f"The model beats the best baseline on the holdout in {', '.join(beats)} but not in "
            f"{', '.join(lost)}."
        )
    else:
        sentence = "The model does NOT beat the best baseline on any holdout metric."
    fold_beats = [m for m in METRIC_NAMES if out["folds_mean"][m]["advantage"] > 0]
    sentence += (
        f" Across folds (mean) it beats the best baseline in {len(fold_beats)} of "
        f"{len(METRIC_NAMES)} metrics" + (f" ({', '.join(fold_beats)})." if fold_beats else ".")
    )
    out["beats_baselines_on_holdout"] = beats
    out["beats_baselines_on_fold_means"] = fold_beats
    out["summary"] = sentence
    return out


def _score_other_market(
    model: DirectionModel, train_x: pd.DataFrame, train_y: pd.Series, config: TrainConfig
) -> dict[str, Any]:
    """Model and baselines (fit on the same BTCUSDT rows) on the held-out EUR/USD 1h market.

    Never trained on: a check of how much of what the model learned is BTCUSDT-specific.
    """
    other = build_dataset(
        load_bundled_eurusd(), label_horizon=config.label_horizon, max_gap_bars=FX_WEEKEND_BARS
    )
    x = _as_matrix(other.features)
    y = other.labels.to_numpy(dtype="float64")
    baselines = fit_baselines(_as_matrix(train_x), _as_labels(train_y))
    return {
        "rows": len(y),
        "range": list(_time_range(other.features.index)),
        "up_share": float(y.mean()),
        "metrics": {
            "model": classification_metrics(y, model.predict_proba(x), threshold=config.threshold),
            **score_baselines(baselines, x, y, model_threshold=config.threshold),
        },
    }


def choose_policy(
    candles: pd.DataFrame,
    out_of_fold: dict[str, pd.Series],
    config: TrainConfig,
    *,
    last_price_time: pd.Timestamp,
) -> PolicySearch:
    """The decision policy, searched on the folds' out-of-fold P(up) and on prices up to
    ``last_price_time`` (the last row before the holdout) only."""
    stretches = [
        make_stretch(name, candles, probability, last_price_time=last_price_time)
        for name, probability in out_of_fold.items()
    ]
    return search_policy(
        stretches,
        fee_bps=config.fee_bps,
        slippage_bps=config.slippage_bps,
        plain=DecisionPolicy.plain(config.threshold),
        allow_short=config.allow_short,
    )


def _git_revision() -> dict[str, Any]:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()

    try:
        return {
            "code_revision": git("rev-parse", "HEAD"),
            "code_dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
        }
    except (OSError, subprocess.SubprocessError):
        return {"code_revision": "unknown", "code_dirty": None}


def library_versions() -> dict[str, str]:
    import sklearn
    import ta

    return {
        "python": platform.python_version(),
        "torch": str(torch.__version__),
        "scikit-learn": sklearn.__version__,
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "ta": getattr(ta, "__version__", "0.11.0"),
        "bentoml": bentoml.__version__,
    }


def _plain(value: Any) -> Any:
    """JSON types only, for BentoML metadata (which takes no ``None``: such entries are dropped,
    absent means unknown; str subclasses like torch's version become str)."""

    def drop_none(item: Any) -> Any:
        if isinstance(item, dict):
            return {k: drop_none(v) for k, v in item.items() if v is not None}
        if isinstance(item, list):
            return [drop_none(v) for v in item]
        return item

    return drop_none(json.loads(json.dumps(value, default=str)))


def _rows_sha256(frame: pd.DataFrame) -> str:
    """sha256 of the candles actually used (timestamps + OHLCV), independent of the file."""
    digest = hashlib.sha256()
    digest.update(frame[TIMESTAMP_COLUMN].astype("int64").to_numpy().tobytes())
    for column in ("open", "high", "low", "close", "volume"):
        digest.update(frame[column].to_numpy(dtype="float64").tobytes())
    return digest.hexdigest()


def _expiry(config: TrainConfig) -> dict[str, Any]:
    """``trained_at`` (now) and, unless the lifetime is 0, ``expires_at`` (artifact._expiry)."""
    trained = pd.Timestamp.now(tz="UTC")
    expires = expiry_after(trained, config.lifetime_hours)
    times = {TRAINED_AT: trained.isoformat(), LIFETIME_HOURS: config.lifetime_hours}
    return times if expires is None else {**times, EXPIRES_AT: expires.isoformat()}


def train_and_save(
    config: TrainConfig,
    candles: Candles | None = None,
    *,
    report_dir: Path | None = None,
    progress: bool = False,
    plots: bool = True,
    generalisation: bool = True,
) -> TrainResult:
    """The whole pipeline: dataset, walk-forward folds, holdout, final fit, report, save.

    Args:
        config: the run's settings.
        candles: training candles (default: the bundled BTCUSDT data).
        report_dir: where the report goes (default ``reports/<model version>/``).
        progress: tqdm bars over folds and epochs.
        plots: write the PNG plots (the JSON report is always written).
        generalisation: also score the final model on the bundled EUR/USD 1h market.

    Returns:
        The saved tag (stage ``candidate``), the report directory and all metrics.
    """
    started = time.perf_counter()
    data = _training_data(config, candles)
    holdout = tail_split(
        len(data.features), test_fraction=config.holdout_fraction, gap_bars=config.gap_bars
    )
    folds = _walk_forward(data, len(holdout.train), config, progress=progress)
    final, holdout_info, holdout_probabilities = _evaluate_split(
        data, holdout, config, progress=progress, description="final model epochs"
    )
    folds.curves.append(
        {"name": "final", "train": final.train_loss, "validation": final.validation_loss}
    )
    metrics = _metrics(data, holdout.train, folds, holdout_info, final, config, generalisation)
    version_tag = bentoml.Tag(MODEL_NAME, None).make_new_version()
    metadata = _metadata(data, holdout, folds, final, metrics, config)
    saved_tag, target = _save(
        final.model,
        str(version_tag),
        metadata,
        data,
        holdout,
        folds.curves,
        holdout_probabilities,
        plots=plots,
        report_dir=report_dir or DEFAULT_REPORTS_DIR / str(version_tag.version),
    )
    return TrainResult(
        tag=saved_tag,
        report_dir=target,
        metrics=metrics,
        model=final.model,
        metadata=metadata,
        seconds=time.perf_counter() - started,
    )


def _training_data(config: TrainConfig, candles: Candles | None) -> _TrainingData:
    """Step 1, data: the candles (the newest ``max_rows``) and their features and labels."""
    candles = load_data() if candles is None else candles
    frame = candles.frame
    if config.max_rows is not None and len(frame) > config.max_rows:
        frame = frame.iloc[-config.max_rows :].reset_index(drop=True)
        candles = Candles(frame, candles.report)
    dataset = build_dataset(candles, label_horizon=config.label_horizon)
    return _TrainingData(
        candles, dataset.features.astype("float32"), dataset.labels.astype("float32")
    )


def _walk_forward(
    data: _TrainingData, pre_holdout_rows: int, config: TrainConfig, *, progress: bool
) -> _Folds:
    """Step 2, folds: expanding walk-forward folds over the rows before the holdout."""
    splits = walk_forward_splits(pre_holdout_rows, n_folds=config.n_folds, gap_bars=config.gap_bars)
    folds = _Folds()
    fold_bar = tqdm(splits, desc="walk-forward folds", unit="fold", disable=not progress)
    for number, split in enumerate(fold_bar, start=1):
        fit, info, fold_probabilities = _evaluate_split(
            data, split, config, progress=progress, description=f"fold {number} epochs"
        )
        test_index = data.features.index[split.test.start : split.test.stop]
        folds.out_of_fold[f"fold {number}"] = pd.Series(fold_probabilities["model"], test_index)
        folds.infos.append({"fold": number, **info})
        folds.curves.append(
            {"name": f"fold {number}", "train": fit.train_loss, "validation": fit.validation_loss}
        )
        fold_bar.set_postfix(auc=f"{info['metrics']['model']['roc_auc']:.3f}")
    fold_bar.close()
    return folds


def _metrics(
    data: _TrainingData,
    pre_holdout: range,
    folds: _Folds,
    holdout_info: dict[str, Any],
    final: FitResult,
    config: TrainConfig,
    generalisation: bool,
) -> dict[str, Any]:
    """Step 3, holdout and folds scored: metrics, the verdict against the baselines, and the
    other market (hourly data only)."""
    folds_summary = {
        name: summarize_folds([f["metrics"][name] for f in folds.infos])
        for name in ("model", *BASELINE_NAMES)
    }
    metrics: dict[str, Any] = {
        "holdout": holdout_info["metrics"],
        "folds": folds.infos,
        "folds_summary": folds_summary,
    }
    metrics["verdict"] = verdict(metrics["holdout"], folds_summary)
    if generalisation and data.candles.interval == BAR_INTERVAL:  # the other market is hourly
        pre_x, pre_y = data.rows(pre_holdout)
        metrics["generalisation"] = {
            GENERALISATION_MARKET: _score_other_market(final.model, pre_x, pre_y, config)
        }
    return metrics


def _metadata(
    data: _TrainingData,
    holdout: Split,
    folds: _Folds,
    final: FitResult,
    metrics: dict[str, Any],
    config: TrainConfig,
) -> dict[str, Any]:
    """Step 4, metadata: everything the model carries (ranges, data, metrics, decision policy
    chosen out of fold, config, versions, expiry)."""
    candles, frame, index = data.candles, data.candles.frame, data.features.index
    pre_holdout = holdout.train
    train_index = index[pre_holdout.start : pre_holdout.stop]
    decision_policy = choose_policy(
        frame, folds.out_of_fold, config, last_price_time=train_index[-1]
    )
    holdout_index = index[holdout.test.start : holdout.test.stop]
    return {
        "label_horizon": config.label_horizon,
        "train_range": list(_time_range(train_index)),
        "fit_range": list(final.fit_range),
        "validation_range": list(final.validation_range),
        "holdout_range": list(_time_range(holdout_index)),
        "train_rows": len(pre_holdout),
        "holdout_rows": len(holdout.test),
        "gap_bars": config.gap_bars,
        "data_source": candles.report.source,
        "bar_interval": candles.interval_text,
        "bar_interval_s": int(candles.interval.total_seconds()),
        "data_sha256": candles.sha256,
        "data_rows_sha256": _rows_sha256(frame),
        "data_range": [
            pd.Timestamp(frame[TIMESTAMP_COLUMN].iloc[0]).isoformat(),
            pd.Timestamp(frame[TIMESTAMP_COLUMN].iloc[-1]).isoformat(),
        ],
        "metrics": metrics,
        "decision_policy": decision_policy.metadata(),
        "train_config": config.to_dict(),
        "best_epoch": final.best_epoch,
        "library_versions": library_versions(),
        **_git_revision(),
        **_expiry(config),
    }


def _save(
    model: DirectionModel,
    tag: str,
    metadata: dict[str, Any],
    data: _TrainingData,
    holdout: Split,
    loss_curves: list[dict[str, Any]],
    holdout_probabilities: dict[str, np.ndarray],
    *,
    plots: bool,
    report_dir: Path,
) -> tuple[str, Path]:
    """Steps 5-7, report, reference and store: write the report, save the model with its drift
    reference (the final fit's rows) and the report into the store, copy the report to
    ``report_dir``. Returns the saved tag and the report folder."""
    from training.report import write_report

    with tempfile.TemporaryDirectory(prefix="btcusdt-report-") as scratch:
        files = write_report(
            Path(scratch),
            tag=tag,
            metadata=metadata,
            loss_curves=loss_curves,
            holdout_labels=data.labels.to_numpy()[holdout.test.start : holdout.test.stop],
            holdout_probabilities=holdout_probabilities,
            plots=plots,
        )
        train_rows, _ = data.rows(holdout.train)  # the final fit's rows
        saved_tag = save_model(
            model,
            metadata=_plain(metadata),
            reference=reference_profile(train_rows.to_numpy(), list(train_rows.columns)),
            extra_files={f"{REPORT_DIR}/{p.name}": p for p in files},
            name=tag,
        )
        report_dir.mkdir(parents=True, exist_ok=True)
        for path in files:
            (report_dir / path.name).write_bytes(path.read_bytes())
    return saved_tag, report_dir


def _summary(result: TrainResult) -> str:
    from training.promote import check_cost_gate, check_gate

    gate = check_gate(result.metrics)
    cost_gate = check_cost_gate(result.metadata)
    holdout = result.metrics["holdout"]
    first, last = result.metadata["holdout_range"]
    lines = [f"{'':14s}" + "".join(f"{m:>10s}" for m in METRIC_NAMES)]
    for name in ("model", *BASELINE_NAMES):
        lines.append(f"{name:14s}" + "".join(f"{holdout[name][m]:10.4f}" for m in METRIC_NAMES))
    folds = result.metrics["folds_summary"]["model"]
    fold_line = ", ".join(f"{m} {folds[m]['mean']:.4f}±{folds[m]['std']:.4f}" for m in METRIC_NAMES)
    for market, other in result.metrics.get("generalisation", {}).items():
        scores = other["metrics"]
        fold_line += f"\n{market} (never trained on, {other['rows']} rows): " + ", ".join(
            f"{name} AUC {scores[name]['roc_auc']:.4f}" for name in ("model", *BASELINE_NAMES)
        )
    return "\n".join(
        [
            f"holdout {first} .. {last} ({result.metadata['holdout_rows']} rows):",
            *lines,
            f"model across {len(result.metrics['folds'])} folds: {fold_line}",
            f"verdict: {result.metrics['verdict']['summary']}",
            _policy_line(result.metadata["decision_policy"]),
            f"promotion gate ({gate.metric} >= best baseline + {gate.margin}): "
            f"{'pass' if gate.passed else 'FAIL'}: {gate.reason}",
            f"after-cost check (policy not worse than cash on the validation folds; enforced by "
            f"promote --require-after-costs): {'pass' if cost_gate.passed else 'FAIL'}: "
            f"{cost_gate.reason}",
            f"trained in {result.seconds:.1f} s",
            f"saved model: {result.tag} (stage candidate)",
            f"report: {result.report_dir}",
        ]
    )


def _policy_line(decision: dict[str, Any]) -> str:
    figures = decision["validation"]

    def line(name: str) -> str:
        item = figures[name]
        return f"{item['total_return']:+.1%} ({item['turnover_per_year']:.0f}x/yr)"

    return (
        f"decision policy: {decision['rule']} (best of {decision['candidates']} candidates on the "
        f"validation folds after {decision['fee_bps']:g} + {decision['slippage_bps']:g} bps: "
        f"policy {line('policy')}, plain threshold {line('plain_threshold')}, buy-and-hold "
        f"{line('buy_and_hold')}, cash +0.0%)"
    )


@click.command(
    "train",
    help=__doc__.split("\n\n")[0],
    epilog=f"The model is saved to the BentoML store ($BENTOML_HOME, default ~/bentoml) as "
    f"{MODEL_NAME}:<version> with stage 'candidate'; list versions with `btcusdt models`, "
    "promote with `btcusdt promote TAG`.",
)
@click.option(
    "--data",
    type=existing_file,
    default=None,
    help="CSV/Parquet of candles (timestamp, open, high, low, close, volume) at any regular "
    "interval (inferred; stored with the model); default: the bundled Binance BTCUSDT 1h data",
)
@dataclass_options(TrainConfig)
@click.option(
    "--report-dir",
    type=folder,
    help="where to write the report (default: reports/<model version>/)",
)
@click.option("--no-plots", is_flag=True, help="skip the PNG plots")
@click.option("--quiet", is_flag=True, help="no progress bars")
def train_command(
    data: Path | None, report_dir: Path | None, no_plots: bool, quiet: bool, **settings: Any
) -> int:
    """``btcusdt train`` / ``python -m training.train``."""
    try:
        config = config_from(TrainConfig, settings)
    except ValueError as exc:
        click.echo(f"error: {exc}", err=True)
        return 2
    candles = load_data(data)
    print(candles.report.summary().splitlines()[0])
    result = train_and_save(
        config, candles, report_dir=report_dir, progress=not quiet, plots=not no_plots
    )
    print(_summary(result))
    print(json.dumps({"model_tag": result.tag, "report_dir": str(result.report_dir)}))
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m training.train``: the ``btcusdt train`` command."""
    return run(train_command, argv, prog_name="python -m training.train")


if __name__ == "__main__":
    sys.exit(main())
