"""Promotion: the holdout gate, one production version at a time, stages visible to BentoML."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import bentoml
import pytest
import yaml

from artifact import list_models, load_model, resolve_tag, save_model, set_stage
from training.promote import (
    DEFAULT_MARGIN,
    DEFAULT_METRIC,
    PromotionRefused,
    check_cost_gate,
    check_gate,
    list_versions,
    main,
    promote,
)
from training.train import TrainResult

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def copies(trained_model: TrainResult):
    """Make fresh store copies of the session's trained model; all are deleted afterwards.

    Promotion tests work on copies, and every version present before gets its stage back, so
    the shared ``trained_model_tag`` and the store are left as they were found.
    """
    stages_before = {str(m.tag): m.info.labels.get("stage", "candidate") for m in list_models()}
    original = bentoml.models.get(trained_model.tag)
    report = {f"report/{p.name}": p for p in (Path(original.path) / "report").iterdir()}
    made: list[str] = []

    def make(n: int) -> list[str]:
        for _ in range(n):
            made.append(
                save_model(
                    trained_model.model,
                    metadata=dict(original.info.metadata),
                    extra_files=report,
                )
            )
        return made[-n:]

    yield make
    for tag in made:
        bentoml.models.delete(tag)
    for tag, stage in stages_before.items():
        if _stage(tag) != stage:
            set_stage(tag, stage)


def _stage(tag: str) -> str:
    return bentoml.models.get(tag).info.labels["stage"]


def _productions() -> list[str]:
    return [str(m.tag) for m in list_models() if m.info.labels.get("stage") == "production"]


def _advantage(trained_model: TrainResult) -> float:
    return check_gate(trained_model.metrics, margin=0.0).advantage


# --- the gate -----------------------------------------------------------------------------------


def test_gate_is_stated_as_holdout_roc_auc_over_best_baseline(trained_model: TrainResult):
    assert (DEFAULT_METRIC, DEFAULT_MARGIN) == ("roc_auc", 0.005)
    gate = check_gate(trained_model.metrics)
    holdout = trained_model.metrics["holdout"]
    best = max(holdout[b]["roc_auc"] for b in ("majority", "previous_bar", "logistic"))
    assert gate.baseline_score == best
    assert gate.advantage == pytest.approx(holdout["model"]["roc_auc"] - best)
    assert gate.passed == (gate.advantage >= DEFAULT_MARGIN)


def test_gate_accepts_above_and_refuses_below_the_margin(trained_model: TrainResult):
    gain = _advantage(trained_model)
    assert check_gate(trained_model.metrics, margin=gain - 1e-4).passed
    refused = check_gate(trained_model.metrics, margin=gain + 1e-4)
    assert not refused.passed
    assert "does not beat the best baseline" in refused.reason
    # Lower-is-better metrics are oriented so that a positive advantage still means better.
    loss_gate = check_gate(trained_model.metrics, metric="log_loss", margin=0.0)
    holdout = trained_model.metrics["holdout"]
    best_loss = min(holdout[b]["log_loss"] for b in ("majority", "previous_bar", "logistic"))
    assert loss_gate.advantage == pytest.approx(best_loss - holdout["model"]["log_loss"])


def test_gate_rejects_unknown_metric_and_missing_scores(trained_model: TrainResult):
    with pytest.raises(ValueError, match="metric must be one of"):
        check_gate(trained_model.metrics, metric="sharpe")
    with pytest.raises(ValueError, match="lack holdout scores"):
        check_gate({"holdout": {"model": {"roc_auc": 0.6}}})


# --- promotion ----------------------------------------------------------------------------------


def test_refused_promotion_changes_nothing(copies, trained_model: TrainResult):
    (tag,) = copies(1)
    margin = _advantage(trained_model) + 0.01
    before = bentoml.models.get(tag).info.labels
    with pytest.raises(PromotionRefused, match=r"refused: .*does not beat the best baseline"):
        promote(tag, margin=margin)
    assert bentoml.models.get(tag).info.labels == before
    assert tag not in _productions()


def test_exactly_one_production_and_the_previous_is_archived(copies, trained_model):
    first, second = copies(2)
    margin = _advantage(trained_model) - 1e-4  # what this real model passes
    done = promote(first, margin=margin)
    assert done.tag == first and _stage(first) == "production"
    assert _productions() == [first]
    assert resolve_tag() == first  # what the service serves

    done = promote(second, margin=margin)
    assert done.archived == (first,)
    assert (_stage(first), _stage(second)) == ("archived", "production")
    assert _productions() == [second]
    assert bentoml.models.get(second).info.labels["promoted_at"]

    rollback = promote(first, margin=margin)  # promoting an archived version rolls back
    assert rollback.archived == (second,)
    assert _productions() == [first]
    again = promote(first, margin=margin)
    assert again.already_production and again.archived == ()
    assert load_model(first).stage == "production"  # checksums still hold after relabelling


def test_promotion_refuses_a_contract_mismatch(copies, trained_model, capsys):
    (tag,) = copies(1)
    path = Path(bentoml.models.get(tag).path) / "model.yaml"
    raw = yaml.safe_load(path.read_text())
    raw["metadata"]["warmup_bars"] = 10
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    margin = _advantage(trained_model) - 1e-4
    assert main([tag, "--margin", str(margin)]) == 1
    assert "warm-up mismatch" in capsys.readouterr().err
    assert _stage(tag) == "candidate"


def test_cli_exit_codes_and_messages(copies, trained_model, capsys):
    (tag,) = copies(1)
    gain = _advantage(trained_model)
    assert main([tag, "--margin", str(gain + 0.01)]) == 1
    assert "does not beat the best baseline" in capsys.readouterr().err
    assert main([tag, "--margin", str(gain - 1e-4)]) == 0
    out = capsys.readouterr().out
    assert f"promoted {tag} -> production" in out and "gate passed" in out
    assert main(["btcusdt_mlp:doesnotexist"]) == 2
    assert "not in the BentoML model store" in capsys.readouterr().err


def test_list_shows_every_version_with_stage_and_metrics(copies, trained_model, capsys):
    (tag,) = copies(1)
    promote(tag, margin=_advantage(trained_model) - 1e-4)
    table = list_versions()
    for model in list_models():
        assert str(model.tag) in table
    row = next(line for line in table.splitlines() if line.startswith(tag))
    auc = trained_model.metrics["holdout"]["model"]["roc_auc"]
    assert "production" in row and f"{auc:.4f}" in row and row.rstrip().endswith("*")
    assert main(["--list"]) == 0
    assert tag in capsys.readouterr().out


def test_bentoml_cli_shows_the_same_versions_and_stages(copies, trained_model):
    (tag,) = copies(1)
    promote(tag, margin=_advantage(trained_model) - 1e-4)
    env = {**os.environ, "BENTOML_DO_NOT_TRACK": "True"}
    bentoml_cli = [sys.executable, "-m", "bentoml"]
    listed = subprocess.run(
        [*bentoml_cli, "models", "list", "btcusdt_mlp", "-o", "json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=True,
        cwd=REPO_ROOT,
    ).stdout
    assert {m["tag"] for m in json.loads(listed)} == {str(m.tag) for m in list_models()}
    got = subprocess.run(
        [*bentoml_cli, "models", "get", tag, "-o", "json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=True,
        cwd=REPO_ROOT,
    ).stdout
    assert json.loads(got)["labels"]["stage"] == "production"


# --- set_stage ----------------------------------------------------------------------------------


def test_set_stage_changes_only_the_labels(copies):
    (tag,) = copies(1)
    before = bentoml.models.get(tag).info.to_dict()
    set_stage(tag, "archived", extra_labels={"note": "rollback target"})
    after = bentoml.models.get(tag).info.to_dict()
    assert after["labels"] == {**before["labels"], "stage": "archived", "note": "rollback target"}
    assert {k: v for k, v in after.items() if k != "labels"} == {
        k: v for k, v in before.items() if k != "labels"
    }
    assert not list(Path(bentoml.models.get(tag).path).glob(".*tmp"))
    with pytest.raises(ValueError, match="stage must be one of"):
        set_stage(tag, "staging")


def test_readers_never_see_a_half_written_model_yaml(copies):
    (tag,) = copies(1)
    failures: list[BaseException] = []
    stop = threading.Event()

    def read_forever() -> None:
        while not stop.is_set():
            try:
                assert bentoml.models.get(tag).info.labels["stage"] in ("candidate", "archived")
                time.sleep(0.0005)
            except BaseException as exc:  # noqa: BLE001 - any failure counts
                failures.append(exc)
                return

    reader = threading.Thread(target=read_forever)
    reader.start()
    try:
        for i in range(20):
            set_stage(tag, "archived" if i % 2 else "candidate")
    finally:
        stop.set()
        reader.join(timeout=30)
    assert failures == []


# --- the after-cost check -----------------------------------------------------------------------


def _set_validation_return(tag: str, total_return: float | None) -> None:
    """Rewrite the stored policy's after-cost validation return (None: drop the policy, as a
    model saved before decision policies)."""
    path = Path(bentoml.models.get(tag).path) / "model.yaml"
    raw = yaml.safe_load(path.read_text())
    if total_return is None:
        raw["metadata"].pop("decision_policy")
    else:
        raw["metadata"]["decision_policy"]["validation"]["policy"]["total_return"] = total_return
    path.write_text(yaml.safe_dump(raw, sort_keys=False))


def test_after_cost_check_is_reported_always_and_enforced_only_with_the_flag(
    copies, trained_model, capsys
):
    losing, winning, old = copies(3)
    _set_validation_return(losing, -0.25)
    _set_validation_return(winning, 0.10)
    _set_validation_return(old, None)
    margin = str(_advantage(trained_model) - 1e-4)  # the ROC-AUC gate passes
    assert check_cost_gate(load_model(losing).metadata).passed is False
    assert main([losing, "--margin", margin]) == 0  # reported, not enforced
    out = capsys.readouterr().out
    assert "after-cost check: FAIL (not enforced)" in out and "-25.00% < cash" in out
    assert main([losing, "--margin", margin, "--require-after-costs"]) == 1
    assert "after costs: validation folds" in capsys.readouterr().err
    assert main([winning, "--margin", margin, "--require-after-costs"]) == 0
    assert "after-cost check: pass" in capsys.readouterr().out
    assert _stage(winning) == "production"
    assert main([old, "--margin", margin, "--require-after-costs"]) == 1
    assert "no after-cost validation figures" in capsys.readouterr().err
    assert _stage(old) == "candidate"
    row = next(line for line in list_versions().splitlines() if line.startswith(winning))
    assert "+10.0% pass" in row
