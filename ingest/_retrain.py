"""One retrain cycle: update the data, train, gate, build the bento, promote.

Each step refuses loudly and leaves the model store and the production version as they were:

1. **data:** :func:`ingest.update_dataset` (atomic; a failure leaves the previous dataset);
2. **skip:** when a stored version was trained on exactly this dataset (same sha256) with the
   same settings, training again would give the same model: nothing is trained (``force``
   trains anyway);
3. **train:** ``training.train.train_and_save`` saves a ``candidate`` (with ``expires_at``);
4. **gate:** ``training.promote.check_gate`` on the untouched holdout. A refused candidate
   stays a candidate (listed by ``btcusdt models``); production is unchanged;
5. **bento:** ``scripts.build_bento.build_bento`` packs the candidate and checks the bento. If
   that fails, the candidate is deleted again, so the store is as before;
6. **promote:** ``training.promote.promote`` (gate re-checked, the old production archived).

Redeploying the new bento (containerize, roll out) is the deployment's job (docs/data.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ingest._update import UpdateRequest, UpdateResult, update_dataset

if TYPE_CHECKING:
    from training.train import TrainConfig


@dataclass
class RetrainResult:
    """What the cycle did, step by step (``steps``: the lines ``btcusdt retrain`` prints)."""

    update: UpdateResult
    candidate: str | None = None
    gate_passed: bool | None = None
    gate_reason: str = ""
    bento: str | None = None
    promoted: bool = False
    archived: tuple[str, ...] = ()
    production_before: str | None = None
    production_after: str | None = None
    steps: list[str] = field(default_factory=list)
    on_step: Callable[[str], None] | None = field(default=None, repr=False)

    def step(self, line: str) -> None:
        """Record a step (and report it at once, so a later failure does not hide it)."""
        self.steps.append(line)
        if self.on_step is not None:
            self.on_step(line)


def production_tag() -> str | None:
    """The version labelled ``production`` (None if there is none)."""
    from artifact import list_models

    tags = [str(m.tag) for m in list_models() if m.info.labels.get("stage") == "production"]
    return tags[0] if tags else None


def already_trained(data_sha256: str, config: TrainConfig) -> tuple[str, str] | None:
    """(tag, stage) of the newest version trained on this data with these settings, if any."""
    import json

    from artifact import list_models

    wanted = json.dumps(
        {k: v for k, v in config.to_dict().items() if v is not None}, sort_keys=True
    )
    for model in list_models():
        metadata = dict(model.info.metadata)
        settings = json.dumps(metadata.get("train_config"), sort_keys=True)
        if metadata.get("data_sha256") == data_sha256 and settings == wanted:
            return str(model.tag), model.info.labels.get("stage", "candidate")
    return None


def retrain(
    update: UpdateRequest,
    config: TrainConfig,
    *,
    margin: float | None = None,
    metric: str | None = None,
    report_dir: Path | None = None,
    force: bool = False,
    progress: bool = False,
    on_step: Callable[[str], None] | None = None,
) -> RetrainResult:
    """Run the cycle (see the module docstring); returns what happened and why.

    Raises:
        ValueError (incl. CandleValidationError): bad data or settings; nothing changed.
        ingest.ExchangeError / ExchangeUnavailable: the data could not be fetched.
        scripts.build_bento.BentoCheckError: the bento failed; the candidate was removed.
    """
    import bentoml

    from training.data import load_candles
    from training.evaluate import HIGHER_IS_BETTER
    from training.promote import DEFAULT_MARGIN, DEFAULT_METRIC, check_gate, promote
    from training.train import train_and_save

    metric = metric or DEFAULT_METRIC
    margin = DEFAULT_MARGIN if margin is None else margin
    if metric not in HIGHER_IS_BETTER:  # refused before anything is fetched or trained
        raise ValueError(f"metric must be one of {sorted(HIGHER_IS_BETTER)}, got {metric!r}")
    updated = update_dataset(update, progress=progress)
    result = RetrainResult(update=updated, production_before=production_tag(), on_step=on_step)
    result.production_after = result.production_before
    result.step(
        f"data: {updated.rows_added} new candle(s), {updated.rows_total} stored "
        f"({_iso(updated.first_candle)} .. {_iso(updated.last_candle)}) in {updated.path}"
    )
    candles = load_candles(update.out)
    previous = None if force else already_trained(candles.sha256, config)
    if previous is not None:
        result.step(
            f"train: skipped: {previous[0]} ({previous[1]}) was trained on exactly this dataset "
            "with these settings (--force trains anyway)"
        )
        result.step(f"production unchanged: {result.production_before or 'none'}")
        return result

    trained = train_and_save(config, candles, report_dir=report_dir, progress=progress)
    result.candidate = trained.tag
    expiry = trained.metadata.get("expires_at") or "never (lifetime 0)"
    result.step(
        f"train: {trained.tag} (candidate) on {len(candles.frame)} candles in "
        f"{trained.seconds:.0f} s; expires {expiry}; report {trained.report_dir}"
    )
    gate = check_gate(trained.metrics, metric=metric, margin=margin)
    result.gate_passed, result.gate_reason = gate.passed, gate.reason
    if not gate.passed:
        result.step(f"gate: refused: {gate.reason}")
        result.step(
            f"production unchanged: {result.production_before or 'none'}; "
            f"{trained.tag} stays a candidate"
        )
        return result
    result.step(f"gate: passed: {gate.reason}")

    from scripts.build_bento import build_bento

    try:
        built = build_bento(trained.tag)
    except Exception:
        bentoml.models.delete(trained.tag)  # the store as it was before this cycle
        raise
    result.bento = built.tag
    result.step(f"bento: {built.tag} (checked: one model, pinned requirements)")
    done = promote(trained.tag, metric=metric, margin=margin)
    result.promoted, result.archived = True, done.archived
    result.production_after = done.tag
    archived = f"; archived {', '.join(done.archived)}" if done.archived else ""
    result.step(f"promote: {done.tag} -> production{archived}")
    return result


def _iso(moment: Any) -> str:
    return "-" if moment is None else moment.strftime("%Y-%m-%dT%H:%M:%SZ")
