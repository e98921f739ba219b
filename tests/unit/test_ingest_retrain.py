"""``btcusdt retrain`` end to end against the fake Binance (tests/fake_binance.py): real
processes with their own BENTOML_HOME, a small but real training run, the real gate, a real
bento build. The gate decides: a passing candidate is built and promoted; a refused one leaves
production as it was; nothing new means nothing trained; a failing step changes nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.conftest import SMALL_TRAIN_CONFIG
from tests.fake_binance import HOUR_MS, FakeBinance, recorded_klines

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[2]
SINCE = "2021-06-01T00:00:00Z"
ROWS = 7000  # as tests/conftest.py's small_training_candles: 2 folds + a holdout


@pytest.fixture(scope="module")
def klines(btc_frame: pd.DataFrame) -> list[list]:
    start = btc_frame.index[btc_frame["timestamp"] == pd.Timestamp(SINCE)][0]
    return recorded_klines(btc_frame.iloc[start : start + ROWS + 24].reset_index(drop=True))


def small_options() -> list[str]:
    config = SMALL_TRAIN_CONFIG
    return [
        *("--max-epochs", str(config.max_epochs), "--patience", str(config.patience)),
        *("--n-folds", str(config.n_folds), "--seed", str(config.seed)),
    ]


def retrain(home: Path, out: Path, base_url: str, *extra: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "ingest.cli", "retrain", "--since", SINCE]
    command += ["--out", str(out), "--base-url", base_url, "--report-dir", str(home / "reports")]
    command += ["--no-progress", *small_options(), *extra]
    env = {**os.environ, "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "True"}
    return subprocess.run(
        command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900, check=False
    )


def stages(home: Path) -> dict[str, str]:
    """Version -> stage, read from the store's model.yaml files."""
    found = {}
    for path in sorted((home / "models" / "btcusdt_mlp").glob("*/model.yaml")):
        info = yaml.safe_load(path.read_text())
        found[f"btcusdt_mlp:{info['version']}"] = info["labels"]["stage"]
    return found


def bento_models(home: Path) -> list[list[str]]:
    """The model tags of each built bento."""
    out = []
    for path in sorted((home / "bentos" / "btcusdt_direction").glob("*/bento.yaml")):
        info = yaml.safe_load(path.read_text())
        out.append([f"{m['tag']}" for m in info.get("models", [])])
    return out


def bento_tag(home: Path) -> str:
    (path,) = (home / "bentos" / "btcusdt_direction").glob("*/bento.yaml")
    return f"btcusdt_direction:{yaml.safe_load(path.read_text())['version']}"


def test_retrain_cycle_gates_builds_promotes_and_refuses(tmp_path, klines):
    home, out = tmp_path / "bentoml", tmp_path / "live" / "BTCUSDT-1h.parquet"
    with FakeBinance(klines[:ROWS]).running() as fake:
        # A step that fails (the exchange refuses the symbol): nothing changes anywhere.
        failed = retrain(home, out, fake.url, "--symbol", "NOPE1")
        assert failed.returncode == 2 and "Invalid symbol" in failed.stderr
        assert not out.exists() and stages(home) == {}

        # A candidate the gate lets through (margin -1): built into a bento, then promoted.
        first = retrain(home, out, fake.url, "--margin", "-1")
        assert first.returncode == 0, first.stderr[-3000:]
        assert f"data: {ROWS} new candle(s)" in first.stdout
        assert "gate: passed" in first.stdout
        (tag,) = stages(home)
        assert stages(home) == {tag: "production"}
        assert f"promote: {tag} -> production" in first.stdout
        assert first.stdout.rstrip().endswith(f"served next: {tag} (ship bento {bento_tag(home)})")
        assert bento_models(home) == [[tag]]
        assert "expires 20" in first.stdout  # TrainConfig.lifetime_hours recorded

        # A day later: 24 new candles, a candidate the gate refuses (margin 1: AUC + 1 cannot be
        # reached): production stays, no bento is built.
        fake.klines = klines
        fake.now_ms = klines[-1][0] + HOUR_MS
        second = retrain(home, out, fake.url, "--margin", "1")
        assert second.returncode == 0, second.stderr[-3000:]
        assert "data: 24 new candle(s)" in second.stdout
        assert "gate: refused" in second.stdout
        assert f"production unchanged: {tag}" in second.stdout
        (refused,) = set(stages(home)) - {tag}
        assert stages(home) == {tag: "production", refused: "candidate"}
        assert bento_models(home) == [[tag]]

        # Nothing new since: nothing is trained again.
        third = retrain(home, out, fake.url, "--margin", "1")
    assert third.returncode == 0, third.stderr[-3000:]
    assert "data: 0 new candle(s)" in third.stdout
    assert f"train: skipped: {refused} (candidate) was trained on exactly this dataset" in (
        third.stdout
    )
    assert len(stages(home)) == 2


def test_retrain_refuses_bad_settings_before_fetching_or_training(tmp_path):
    from click.testing import CliRunner

    from ingest.cli import retrain as command

    out = tmp_path / "BTCUSDT-1h.parquet"
    for options, message in (
        (["--metric", "nope"], "error: metric must be one of"),
        (["--lifetime-hours", "-1"], "lifetime_hours must be >= 0"),
        (["--n-folds", "0"], "n_folds must be >= 1"),
    ):
        # an unreachable exchange: a refusal must come before any request
        args = ["--out", str(out), "--base-url", "http://127.0.0.1:9", *options]
        result = CliRunner().invoke(command, args)
        assert result.exit_code == 2, result.output
        assert result.stderr.startswith(message) or message in result.stderr
        assert result.stderr.count("\n") == 1
    assert not out.exists()


def test_a_failing_bento_build_leaves_the_store_and_production_as_they_were(
    tmp_path, klines, monkeypatch
):
    """The candidate passed the gate but its bento cannot be built: the candidate is removed
    again and nothing is promoted (in-process, this session's store)."""
    from click.testing import CliRunner

    import scripts.build_bento
    from artifact import list_models
    from ingest._retrain import production_tag
    from ingest.cli import retrain as command

    def refuse(tag: str, **_: object) -> None:
        raise scripts.build_bento.BentoCheckError(f"{tag}: simulated: the bento would need torch")

    monkeypatch.setattr(scripts.build_bento, "build_bento", refuse)
    before = sorted(str(m.tag) for m in list_models())
    production = production_tag()
    out = tmp_path / "BTCUSDT-1h.parquet"
    with FakeBinance(klines[:ROWS]).running() as fake:
        args = ["--since", SINCE, "--out", str(out), "--base-url", fake.url, "--no-progress"]
        args += ["--report-dir", str(tmp_path / "report"), "--margin", "-1"]
        args += ["--max-epochs", "2", "--patience", "1", "--n-folds", "2"]
        result = CliRunner().invoke(command, args)
    assert result.exit_code == 1, result.output
    assert "error: bento: btcusdt_mlp:" in result.stderr and "simulated" in result.stderr
    assert "the candidate was removed; production unchanged" in result.stderr
    assert "gate: passed" in result.stdout  # the steps before the failure were reported
    assert sorted(str(m.tag) for m in list_models()) == before
    assert production_tag() == production
