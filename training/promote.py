"""Promote a trained version to ``production`` behind a validation gate; list versions.

Usage::

    btcusdt promote TAG       # gate, then TAG -> production, old -> archived
    btcusdt models            # every version: stage and headline metrics

(``python -m training.promote TAG`` and ``python -m training.promote --list``: the same.)

The gate, on the untouched holdout stored with the model: its ROC-AUC must exceed the best
baseline's (majority, previous-bar, logistic regression) by at least ``DEFAULT_MARGIN`` (0.005),
and the model must load under this code's contract (feature names, warm-up, feature-set version,
file checksums). The after-cost check is reported always and enforced with
``--require-after-costs``: on the validation folds (out of fold, at the fee + slippage it was
searched at) the model's decision policy must not do worse than cash. A refused promotion
changes nothing and exits with status 1 and the reason.
Exactly one version is ``production`` afterwards; the one before becomes ``archived`` (kept, so
promoting it again is the rollback). Stages are BentoML labels, so ``bentoml models list`` and
``bentoml models get`` show them too.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import bentoml
import click
import pandas as pd
from bentoml.exceptions import BentoMLException, NotFound

from artifact import (
    MODEL_NAME,
    ModelContractError,
    list_models,
    load_model,
    resolve_tag,
    set_stage,
    stage_lock,
)
from cli import run
from training.evaluate import BASELINE_NAMES, HIGHER_IS_BETTER, advantage, best_baseline

DEFAULT_METRIC = "roc_auc"
DEFAULT_MARGIN = 0.005
"""ROC-AUC points above the best baseline. About the spread of the model's AUC across folds on
the bundled data: smaller wins are not distinguishable from noise."""


class PromotionRefused(RuntimeError):
    """The version does not pass the gate (the message says why); nothing was changed."""


@dataclass(frozen=True)
class GateResult:
    """The gate's decision and the numbers behind it."""

    passed: bool
    metric: str
    margin: float
    model_score: float
    baseline: str
    baseline_score: float
    advantage: float

    @property
    def reason(self) -> str:
        better = "higher" if HIGHER_IS_BETTER[self.metric] else "lower"
        verb = "beats" if self.passed else "does not beat"
        return (
            f"holdout {self.metric} {self.model_score:.4f} {verb} the best baseline "
            f"({self.baseline}: {self.baseline_score:.4f}) by the required margin "
            f"{self.margin:+.4f} ({better} is better; advantage {self.advantage:+.4f})"
        )


def check_gate(
    metrics: Mapping[str, Any], *, metric: str = DEFAULT_METRIC, margin: float = DEFAULT_MARGIN
) -> GateResult:
    """Compare the model's holdout ``metric`` with the best baseline's, requiring ``margin``.

    Args:
        metrics: the model's ``metrics`` metadata (``metrics["holdout"][name][metric]``).
        metric: one of ``accuracy``, ``roc_auc``, ``log_loss``, ``brier``.
        margin: how much better than the best baseline the model must be (in the metric's
            units, oriented so that positive means better).

    Raises:
        ValueError: unknown metric, or metrics without holdout scores for model and baselines.
    """
    if metric not in HIGHER_IS_BETTER:
        raise ValueError(f"metric must be one of {sorted(HIGHER_IS_BETTER)}, got {metric!r}")
    holdout = metrics.get("holdout") if isinstance(metrics, Mapping) else None
    needed = ("model", *BASELINE_NAMES)
    if not holdout or any(name not in holdout for name in needed):
        raise ValueError(f"metrics lack holdout scores for {needed}")
    name, baseline_score = best_baseline({b: holdout[b] for b in BASELINE_NAMES}, metric)
    model_score = float(holdout["model"][metric])
    gain = advantage(model_score, baseline_score, metric)
    return GateResult(
        passed=gain >= margin,
        metric=metric,
        margin=margin,
        model_score=model_score,
        baseline=name,
        baseline_score=baseline_score,
        advantage=gain,
    )


@dataclass(frozen=True)
class CostGateResult:
    """The after-cost check: on the validation folds (out of fold, at the cost assumption the
    policy was searched at), the model's decision policy must not do worse than cash."""

    checked: bool
    passed: bool
    policy_return: float | None
    reason: str


def check_cost_gate(metadata: Mapping[str, Any]) -> CostGateResult:
    """Compare the stored policy's after-cost validation return with cash (0).

    A model saved before policies has no such figures: not checked, and not passed (it cannot
    be shown to beat cash), which matters only where the check is enforced.
    """
    decision = metadata.get("decision_policy") if isinstance(metadata, Mapping) else None
    try:
        figures = decision["validation"]["policy"]  # type: ignore[index]
        total = float(figures["total_return"])
        fee, slippage = float(decision["fee_bps"]), float(decision["slippage_bps"])  # type: ignore[index]
    except (TypeError, KeyError, ValueError):
        return CostGateResult(
            checked=False,
            passed=False,
            policy_return=None,
            reason="no after-cost validation figures (model saved before decision policies)",
        )
    passed = total >= 0.0
    return CostGateResult(
        checked=True,
        passed=passed,
        policy_return=total,
        reason=(
            f"validation folds after {fee:g} + {slippage:g} bps: policy {total:+.2%} "
            f"{'>=' if passed else '<'} cash +0.00% ({decision.get('rule', '')})"  # type: ignore[union-attr]
        ),
    )


@dataclass(frozen=True)
class Promotion:
    """What :func:`promote` did."""

    tag: str
    gate: GateResult
    archived: tuple[str, ...]
    already_production: bool = False
    cost_gate: CostGateResult | None = None


def promote(
    tag: str,
    *,
    metric: str = DEFAULT_METRIC,
    margin: float = DEFAULT_MARGIN,
    require_after_costs: bool = False,
) -> Promotion:
    """Gate ``tag`` and make it the one ``production`` version; the previous one is archived.

    The new version is labelled ``production`` before the old one is archived, so a reader in
    between sees two vetted versions, never none (which would fall back to an unvetted newest
    candidate). Concurrent promotions are serialised with a file lock.

    Raises:
        PromotionRefused: the tag is missing, breaks the contract, or fails the gate.
    """
    try:
        loaded = load_model(tag)
    except ModelContractError as exc:
        raise PromotionRefused(f"refused: {exc}") from exc
    try:
        gate = check_gate(loaded.metadata["metrics"], metric=metric, margin=margin)
    except ValueError as exc:
        raise PromotionRefused(f"refused: {loaded.tag}: {exc}") from exc
    if not gate.passed:
        raise PromotionRefused(f"refused: {loaded.tag}: {gate.reason}")
    cost_gate = check_cost_gate(loaded.metadata)
    if require_after_costs and not cost_gate.passed:
        raise PromotionRefused(f"refused: {loaded.tag}: after costs: {cost_gate.reason}")
    name = loaded.tag.split(":", 1)[0]
    with stage_lock(name):
        current = [
            str(m.tag)
            for m in list_models(name)
            if m.info.labels.get("stage") == "production" and str(m.tag) != loaded.tag
        ]
        was_production = not current and loaded.stage == "production"
        now = pd.Timestamp.now(tz="UTC").isoformat()
        set_stage(
            loaded.tag,
            "production",
            extra_labels={"promoted_at": now, "gate": f"{metric}+{margin:g}"},
        )
        for old in current:
            set_stage(old, "archived", extra_labels={"archived_at": now})
    return Promotion(
        tag=loaded.tag,
        gate=gate,
        archived=tuple(current),
        already_production=was_production,
        cost_gate=cost_gate,
    )


def _headline(model: bentoml.Model) -> dict[str, str]:
    metrics: Any = dict(model.info.metadata).get("metrics", {})
    row = {
        "tag": str(model.tag),
        "stage": model.info.labels.get("stage", "?"),
        "created": model.info.creation_time.strftime("%Y-%m-%d %H:%M"),
    }
    try:
        gate = check_gate(metrics)
        holdout = metrics["holdout"]["model"]
        row |= {
            "auc": f"{holdout['roc_auc']:.4f}",
            "logloss": f"{holdout['log_loss']:.4f}",
            "acc": f"{holdout['accuracy']:.4f}",
            "best_baseline_auc": f"{gate.baseline_score:.4f} ({gate.baseline})",
            "gate": "pass" if gate.passed else "fail",
        }
    except (ValueError, KeyError, TypeError):
        row |= {"auc": "-", "logloss": "-", "acc": "-", "best_baseline_auc": "-", "gate": "-"}
    cost = check_cost_gate(dict(model.info.metadata))
    row["after_costs"] = (
        f"{cost.policy_return:+.1%} {'pass' if cost.passed else 'fail'}" if cost.checked else "-"
    )
    return row


def list_versions(name: str = MODEL_NAME) -> str:
    """A table of every version (newest first): stage, holdout metrics, gate, which is served."""
    models = list_models(name)
    if not models:
        return f"no {name!r} models in the BentoML model store"
    served = resolve_tag(None, name)
    rows = [_headline(m) | {"served": "*" if str(m.tag) == served else ""} for m in models]
    columns = list(rows[0])
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in columns}
    lines = ["  ".join(c.ljust(widths[c]) for c in columns)]
    lines += ["  ".join(r[c].ljust(widths[c]) for c in columns) for r in rows]
    lines.append(
        f"holdout metrics; gate: roc_auc >= best baseline + {DEFAULT_MARGIN}; after_costs: the "
        "decision policy's validation-fold return after costs (pass: not worse than cash); "
        "* = what the service resolves (production, else the newest)"
    )
    return "\n".join(lines)


def _metadata(tag: str) -> dict[str, Any]:
    try:
        return dict(bentoml.models.get(tag).info.metadata)
    except (NotFound, BentoMLException, ValueError):
        return {}


@click.command("promote")
@click.argument("tag")
@click.option(
    "--metric",
    type=click.Choice(sorted(HIGHER_IS_BETTER)),
    default=DEFAULT_METRIC,
    show_default=True,
    help="holdout metric the gate compares",
)
@click.option(
    "--margin",
    type=float,
    default=DEFAULT_MARGIN,
    show_default=True,
    help="required advantage over the best baseline on --metric",
)
@click.option(
    "--require-after-costs",
    is_flag=True,
    help="also refuse unless the decision policy did not do worse than cash after costs on "
    "the validation folds (always reported)",
)
def promote_command(tag: str, metric: str, margin: float, require_after_costs: bool) -> int:
    """Promote TAG (btcusdt_mlp:<version>) to production behind the validation gate.

    Refused (exit 1, nothing changed) unless its holdout METRIC beats the best baseline by
    MARGIN and it loads under this code's contract. The version before becomes archived
    (promote it again to roll back). The after-cost check (the decision policy not worse
    than cash on the validation folds) is reported always, enforced with --require-after-costs.
    """
    try:
        bentoml.models.get(tag)
    except (NotFound, BentoMLException, ValueError):
        click.echo(f"error: model {tag!r} is not in the BentoML model store", err=True)
        return 2
    try:
        done = promote(tag, metric=metric, margin=margin, require_after_costs=require_after_costs)
    except PromotionRefused as exc:
        click.echo(str(exc), err=True)
        click.echo(f"after-cost check: {check_cost_gate(_metadata(tag)).reason}", err=True)
        return 1
    print(f"gate passed: {done.gate.reason}")
    if done.cost_gate is not None:
        verdict = "pass" if done.cost_gate.passed else "FAIL (not enforced)"
        print(f"after-cost check: {verdict}: {done.cost_gate.reason}")
    if done.already_production:
        print(f"{done.tag} was already production; nothing else changed")
    else:
        print(f"promoted {done.tag} -> production")
    for old in done.archived:
        print(f"archived {old} (promote it again to roll back)")
    return 0


@click.command("models")
def models_command() -> int:
    """Every model version: stage, holdout metrics, and which one the service resolves."""
    print(list_versions())
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m training.promote TAG`` / ``--list``: ``btcusdt promote`` / ``btcusdt models``."""
    args = list(sys.argv[1:] if argv is None else argv)
    prog = "python -m training.promote"
    if "--list" in args:
        args.remove("--list")
        return run(models_command, args, prog_name=f"{prog} --list")
    return run(promote_command, args, prog_name=prog)


if __name__ == "__main__":
    sys.exit(main())
