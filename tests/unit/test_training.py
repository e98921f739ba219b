"""The training pipeline on real bundled candles: splits, scaler, determinism, saving, report."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import bentoml
import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from artifact import REQUIRED_METADATA, ModelContractError, load_model, save_model
from features import FEATURE_NAMES, FEATURE_SET_VERSION, LABEL_NAME, WARMUP_BARS
from training.data import Candles
from training.evaluate import (
    BASELINE_NAMES,
    METRIC_NAMES,
    classification_metrics,
    fit_baselines,
    score_baselines,
)
from training.prepare import build_dataset
from training.report import PLOT_FILES, REPORT_JSON
from training.splits import tail_split, walk_forward_splits
from training.train import TrainConfig, TrainResult, fit_direction_model, train_and_save

REPO_ROOT = Path(__file__).resolve().parents[2]
FAST = TrainConfig(max_epochs=3, patience=2, n_folds=2)


@pytest.fixture(scope="module")
def slice_table(btc_slice: pd.DataFrame, btc: Candles) -> pd.DataFrame:
    """Features + label of the 3,000-candle real slice (2,760 rows after warm-up)."""
    return build_dataset(Candles(btc_slice, btc.report)).table


@pytest.fixture(scope="module")
def small_dataset(small_training_candles: Candles) -> pd.DataFrame:
    """The training table of the candles the session's small model was trained on."""
    return build_dataset(small_training_candles).table


def _ts(text: str) -> pd.Timestamp:
    return pd.Timestamp(text)


# --- splits -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n_rows", "n_folds", "gap_bars"), [(100, 1, 1), (1000, 3, 24), (5001, 5, 7), (39915, 5, 24)]
)
def test_walk_forward_never_tests_before_training_and_keeps_the_gap(n_rows, n_folds, gap_bars):
    splits = walk_forward_splits(n_rows, n_folds=n_folds, gap_bars=gap_bars)
    assert len(splits) == n_folds
    previous_test_stop = None
    for split in splits:
        assert split.train.start == 0  # expanding window
        assert max(split.train) + gap_bars < min(split.test)
        assert split.test.start - split.train.stop == gap_bars == split.gap
        if previous_test_stop is not None:
            assert split.test.start == previous_test_stop  # test blocks tile, in time order
            assert len(split.train) > 0
        previous_test_stop = split.test.stop
    assert splits[-1].test.stop == n_rows


def test_tail_split_keeps_gap_and_refuses_too_few_rows():
    split = tail_split(1000, test_fraction=0.15, gap_bars=24)
    assert (split.train, split.test) == (range(0, 826), range(850, 1000))
    with pytest.raises(ValueError, match="too few"):
        tail_split(28, test_fraction=0.15, gap_bars=24)
    with pytest.raises(ValueError, match="too few"):
        walk_forward_splits(50, n_folds=5, gap_bars=24)


def test_config_rejects_gap_shorter_than_label_horizon():
    with pytest.raises(ValueError, match=r"gap_bars \(2\) must be >= label_horizon \(3\)"):
        TrainConfig(label_horizon=3, gap_bars=2)
    with pytest.raises(ValueError, match="validation_fraction"):
        TrainConfig(validation_fraction=1.0)


def test_saved_folds_and_holdout_are_in_time_order_with_the_gap(trained_model: TrainResult):
    meta = trained_model.metadata
    gap = pd.Timedelta(hours=meta["gap_bars"])
    folds = meta["metrics"]["folds"]
    assert len(folds) == 2
    for fold in folds:
        assert _ts(fold["train_range"][1]) + gap < _ts(fold["test_range"][0])
        assert fold["train_rows"] > 0 and fold["test_rows"] > 0
    assert _ts(folds[0]["test_range"][1]) < _ts(folds[1]["test_range"][0])
    assert _ts(folds[-1]["test_range"][1]) + gap < _ts(meta["holdout_range"][0])
    # The saved model never saw the holdout: its fit and early-stopping rows end before it.
    assert _ts(meta["train_range"][1]) + gap < _ts(meta["holdout_range"][0])
    assert _ts(meta["fit_range"][1]) + gap < _ts(meta["validation_range"][0])
    assert _ts(meta["validation_range"][1]) == _ts(meta["train_range"][1])


# --- fit: scaler, early stopping, determinism ---------------------------------------------------


def test_scaler_is_fit_on_the_training_rows_only(slice_table: pd.DataFrame):
    features, labels = slice_table[list(FEATURE_NAMES)], slice_table[LABEL_NAME]
    fit = fit_direction_model(features, labels, FAST)
    fit_rows = features.iloc[fit.fit_rows.start : fit.fit_rows.stop].to_numpy(dtype="float32")
    np.testing.assert_allclose(fit.model.scaler.mean_, fit_rows.mean(axis=0), rtol=1e-5)
    assert fit.model.scaler.n_samples_seen_ == len(fit.fit_rows) < len(features)
    assert not np.allclose(fit.model.scaler.mean_, features.to_numpy().mean(axis=0), rtol=1e-3)

    # Blow up every row after the fit part (gap + validation): the scaler must not move.
    poisoned = features.copy()
    poisoned.iloc[fit.fit_rows.stop :] *= 1000.0
    refit = fit_direction_model(poisoned, labels, FAST)
    np.testing.assert_array_equal(refit.model.scaler.mean_, fit.model.scaler.mean_)
    np.testing.assert_array_equal(refit.model.scaler.scale_, fit.model.scaler.scale_)


def test_saved_scaler_matches_the_final_fit_rows(trained_model: TrainResult, small_dataset):
    meta = trained_model.metadata
    start, stop = _ts(meta["fit_range"][0]), _ts(meta["fit_range"][1])
    rows = small_dataset.loc[start:stop, list(FEATURE_NAMES)].to_numpy(dtype="float32")
    scaler = load_model(trained_model.tag, runtime="torch").model.scaler
    assert scaler.n_samples_seen_ == len(rows)
    np.testing.assert_allclose(scaler.mean_, rows.mean(axis=0), rtol=1e-5)
    holdout = small_dataset.loc[_ts(meta["holdout_range"][0]) :, list(FEATURE_NAMES)]
    assert len(holdout) == meta["holdout_rows"]


def test_early_stopping_keeps_the_best_validation_epoch(slice_table: pd.DataFrame):
    config = replace(FAST, max_epochs=6, patience=2)
    fit = fit_direction_model(slice_table[list(FEATURE_NAMES)], slice_table[LABEL_NAME], config)
    assert fit.best_epoch == int(np.argmin(fit.validation_loss)) + 1
    assert len(fit.train_loss) == len(fit.validation_loss) <= 6
    assert len(fit.train_loss) == 6 or len(fit.train_loss) - fit.best_epoch == 2


def test_same_seed_same_model_other_seed_other_model(slice_table: pd.DataFrame):
    features, labels = slice_table[list(FEATURE_NAMES)], slice_table[LABEL_NAME]
    first = fit_direction_model(features, labels, FAST)
    second = fit_direction_model(features, labels, FAST)
    other = fit_direction_model(features, labels, replace(FAST, seed=1))
    assert first.validation_loss == second.validation_loss
    x = features.to_numpy()
    np.testing.assert_array_equal(first.model.predict_proba(x), second.model.predict_proba(x))
    assert first.validation_loss != other.validation_loss


@pytest.mark.slow
def test_train_and_save_is_deterministic(
    trained_model: TrainResult, small_training_candles: Candles, tmp_path: Path
):
    from tests.conftest import SMALL_TRAIN_CONFIG

    again = train_and_save(
        SMALL_TRAIN_CONFIG, small_training_candles, report_dir=tmp_path, plots=False
    )
    assert again.tag != trained_model.tag
    assert again.metrics == trained_model.metrics


def test_fit_rejects_misaligned_or_unlabelled_rows(slice_table: pd.DataFrame):
    features, labels = slice_table[list(FEATURE_NAMES)], slice_table[LABEL_NAME]
    with pytest.raises(ValueError, match="same index"):
        fit_direction_model(features, labels.iloc[1:], FAST)
    with pytest.raises(ValueError, match="0 or 1"):
        fit_direction_model(features, labels.where(labels.index != labels.index[5]), FAST)


# --- baselines and metrics ----------------------------------------------------------------------


def test_baselines_on_real_rows(slice_table: pd.DataFrame):
    x = slice_table[list(FEATURE_NAMES)].to_numpy()
    y = slice_table[LABEL_NAME].to_numpy()
    baselines = fit_baselines(x[:2000], y[:2000])
    scores = score_baselines(baselines, x[2024:], y[2024:])
    test_y = y[2024:]
    up_share = y[:2000].mean()
    assert scores["majority"]["roc_auc"] == 0.5
    expected_loss = -np.mean(test_y * np.log(up_share) + (1 - test_y) * np.log(1 - up_share))
    assert scores["majority"]["log_loss"] == pytest.approx(expected_loss)
    assert scores["majority"]["accuracy"] == pytest.approx(np.mean(test_y == (up_share >= 0.5)))
    last_bar_up = x[2024:, FEATURE_NAMES.index("ret_1")] > 0
    train_up = x[:2000, FEATURE_NAMES.index("ret_1")] > 0
    up_after_up, up_after_down = y[:2000][train_up].mean(), y[:2000][~train_up].mean()
    # The call follows the fitted probability: the direction favoured after such a bar.
    calls = np.where(last_bar_up, up_after_up >= 0.5, up_after_down >= 0.5)
    assert scores["previous_bar"]["accuracy"] == pytest.approx(np.mean(calls == test_y))
    assert (scores["previous_bar"]["accuracy"] > 0.5) == (scores["previous_bar"]["roc_auc"] > 0.5)
    assert set(scores) == set(BASELINE_NAMES)
    for name in BASELINE_NAMES:
        assert set(scores[name]) == set(METRIC_NAMES)


def test_metrics_reject_bad_labels():
    with pytest.raises(ValueError, match="0 or 1"):
        classification_metrics(np.array([0.0, 2.0]), np.array([0.1, 0.9]))
    perfect = classification_metrics(np.array([0.0, 1.0, 1.0]), np.array([0.2, 0.7, 0.9]))
    assert perfect["accuracy"] == perfect["roc_auc"] == 1.0
    assert perfect["brier"] == pytest.approx((0.04 + 0.09 + 0.01) / 3)


def test_verdict_states_what_the_numbers_say(trained_model: TrainResult):
    metrics = trained_model.metrics
    verdict = metrics["verdict"]
    for metric in METRIC_NAMES:
        model = metrics["holdout"]["model"][metric]
        best = verdict["holdout"][metric]["best_baseline_score"]
        higher = metric in ("accuracy", "roc_auc")
        beats = model > best if higher else model < best
        assert (metric in verdict["beats_baselines_on_holdout"]) == beats
        assert best == (max if higher else min)(
            metrics["holdout"][b][metric] for b in BASELINE_NAMES
        )
    if not verdict["beats_baselines_on_holdout"]:
        assert "does NOT beat" in verdict["summary"]


# --- the saved model ----------------------------------------------------------------------------


def test_saved_model_gives_identical_probabilities(trained_model: TrainResult, small_dataset):
    x = small_dataset[list(FEATURE_NAMES)].to_numpy()
    expected = trained_model.model.predict_proba(x)
    reloaded = load_model(trained_model.tag, runtime="torch")
    np.testing.assert_array_equal(reloaded.model.predict_proba(x), expected)
    served = load_model(trained_model.tag, runtime="onnx")
    np.testing.assert_allclose(served.model.predict_proba(x), expected, rtol=0, atol=1e-6)
    assert reloaded.model.threshold == trained_model.model.threshold == 0.5


def test_metadata_holds_the_contract(trained_model_tag: str, small_training_candles: Candles):
    stored = bentoml.models.get(trained_model_tag)
    meta, labels = stored.info.metadata, stored.info.labels
    for key in (*REQUIRED_METADATA, "library_versions", "code_revision", "train_config"):
        assert key in meta, key
    assert meta["feature_names"] == list(FEATURE_NAMES)
    assert meta["warmup_bars"] == WARMUP_BARS
    assert meta["feature_set_version"] == FEATURE_SET_VERSION
    assert meta["label_horizon"] == 1 and meta["threshold"] == 0.5
    assert meta["data_sha256"] == small_training_candles.sha256
    frame = small_training_candles.frame
    assert meta["data_range"] == [
        frame["timestamp"].iloc[0].isoformat(),
        frame["timestamp"].iloc[-1].isoformat(),
    ]
    assert len(meta["code_revision"]) == 40 or meta["code_revision"] == "unknown"
    assert meta["library_versions"]["torch"] == str(torch.__version__)
    metrics = meta["metrics"]
    for name in ("model", *BASELINE_NAMES):
        assert set(metrics["holdout"][name]) == set(METRIC_NAMES)
        assert set(metrics["folds_summary"][name]["roc_auc"]) == {"mean", "std"}
        for fold in metrics["folds"]:
            assert 0.0 <= fold["metrics"][name]["accuracy"] <= 1.0
    assert labels["stage"] == "candidate"


def test_report_is_written_and_attached_to_the_model(trained_model: TrainResult):
    model_dir = Path(bentoml.models.get(trained_model.tag).path)
    report = json.loads((trained_model.report_dir / REPORT_JSON).read_text())
    assert report["model_tag"] == trained_model.tag
    assert report["metrics"]["holdout"] == trained_model.metrics["holdout"]
    assert len(report["loss_curves"]) == 3  # 2 folds + the final fit
    for name in (REPORT_JSON, *PLOT_FILES):
        local = trained_model.report_dir / name
        attached = model_dir / "report" / name
        assert local.read_bytes() == attached.read_bytes()
        if name.endswith(".png"):
            assert local.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            assert local.stat().st_size > 10_000
    stored_sums = bentoml.models.get(trained_model.tag).info.metadata["files_sha256"]
    assert f"report/{REPORT_JSON}" in stored_sums


# --- refusing broken or mismatched models -------------------------------------------------------


@pytest.fixture
def scratch_copy(trained_model: TrainResult):
    """A fresh copy of the session model in the store, deleted afterwards (safe to damage)."""
    original = bentoml.models.get(trained_model.tag)
    report = {f"report/{p.name}": p for p in (Path(original.path) / "report").iterdir()}
    tag = save_model(trained_model.model, metadata=dict(original.info.metadata), extra_files=report)
    yield tag
    bentoml.models.delete(tag)


def _rewrite_model_yaml(tag: str, edit) -> None:
    path = Path(bentoml.models.get(tag).path) / "model.yaml"
    raw = yaml.safe_load(path.read_text())
    edit(raw)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        ("feature_names", list(reversed(FEATURE_NAMES)), "feature contract mismatch"),
        ("warmup_bars", WARMUP_BARS - 1, "warm-up mismatch"),
        ("feature_set_version", "0", "feature set version"),
    ],
)
def test_load_refuses_a_contract_mismatch(scratch_copy, key, value, reason):
    _rewrite_model_yaml(scratch_copy, lambda raw: raw["metadata"].__setitem__(key, value))
    with pytest.raises(ModelContractError, match=reason):
        load_model(scratch_copy)


@pytest.mark.parametrize("file_name", ["scaler.json", "weights.pt", "report/report.json"])
def test_load_refuses_a_corrupted_or_missing_file(scratch_copy, file_name):
    path = Path(bentoml.models.get(scratch_copy).path) / file_name
    original = path.read_bytes()
    path.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
    with pytest.raises(ModelContractError, match=f"{file_name} is corrupted"):
        load_model(scratch_copy, runtime="torch")
    path.unlink()
    with pytest.raises(ModelContractError, match=f"{file_name} is missing"):
        load_model(scratch_copy, runtime="torch")


class _PickleExploit:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_crafted_pickle_is_refused_even_with_a_matching_checksum(scratch_copy, tmp_path):
    """An attacker who rewrites weights.pt AND its checksum still gets no code run."""
    import hashlib

    marker = tmp_path / "pickle-ran"
    weights = Path(bentoml.models.get(scratch_copy).path) / "weights.pt"
    weights.write_bytes(pickle.dumps({"net.0.weight": _PickleExploit(marker)}))
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    _rewrite_model_yaml(
        scratch_copy, lambda raw: raw["metadata"]["files_sha256"].__setitem__("weights.pt", digest)
    )
    with pytest.raises(ModelContractError, match="cannot load model files"):
        load_model(scratch_copy, runtime="torch")
    assert not marker.exists()


# --- the CLI ------------------------------------------------------------------------------------


def test_cli_help_explains_every_option():
    out = subprocess.run(
        [sys.executable, "-m", "training.train", "--help"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    for flag in (
        "--data",
        "--report-dir",
        "--label-horizon",
        "--hidden-sizes",
        "--gap-bars",
        "--n-folds",
        "--holdout-fraction",
        "--validation-fraction",
        "--patience",
        "--threshold",
        "--max-rows",
        "--seed",
    ):
        assert flag in out, flag


def test_cli_refuses_an_invalid_config(capsys):
    from training.train import main

    assert main(["--label-horizon", "4", "--gap-bars", "2"]) == 2
    assert "gap_bars (2) must be >= label_horizon (4)" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_trains_on_a_user_csv(btc_frame: pd.DataFrame, tmp_path: Path, capsys):
    """``--data`` goes through training.data.load_candles (ISO timestamps with offset)."""
    from training.train import main

    csv = tmp_path / "candles.csv"
    frame = btc_frame.iloc[-5000:].copy()
    frame["timestamp"] = frame["timestamp"].map(lambda t: t.isoformat())
    frame.to_csv(csv, index=False)
    code = main(
        [
            "--data",
            str(csv),
            "--max-epochs",
            "2",
            "--n-folds",
            "2",
            "--quiet",
            "--no-plots",
            "--report-dir",
            str(tmp_path / "report"),
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    summary = json.loads(printed.strip().splitlines()[-1])
    stored = bentoml.models.get(summary["model_tag"])
    assert stored.info.metadata["data_source"] == str(csv)
    assert stored.info.metadata["data_range"][1] == btc_frame["timestamp"].iloc[-1].isoformat()
    assert (tmp_path / "report" / REPORT_JSON).is_file()
    assert "verdict:" in printed and "saved model: " in printed
    bentoml.models.delete(summary["model_tag"])


def test_model_is_scored_on_the_held_out_eurusd_market(trained_model: TrainResult):
    other = trained_model.metrics["generalisation"]["EURUSD_1h"]
    # EUR/USD 2017 hourly, weekends bridged: ~5.9k labelled rows, never seen in training.
    assert 5000 < other["rows"] < 6225
    assert other["range"][0].startswith("2017-01")
    for name in ("model", "majority", "previous_bar", "logistic"):
        scores = other["metrics"][name]
        assert 0.0 <= scores["accuracy"] <= 1.0
        assert 0.3 < scores["roc_auc"] < 0.7
    assert other["metrics"]["majority"]["roc_auc"] == 0.5
    saved = bentoml.models.get(trained_model.tag).info.metadata["metrics"]
    assert saved["generalisation"]["EURUSD_1h"]["rows"] == other["rows"]
