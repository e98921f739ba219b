"""The settings of a training run, as one typed dataclass (no torch here: the CLIs derive their
options from it, ``btcusdt train`` and ``btcusdt backtest --walk-forward`` alike)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from features import DEFAULT_LABEL_HORIZON


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run (saved with the model).

    Attributes:
        label_horizon: bars ahead whose close the label compares with (1 = next bar).
        hidden_sizes: widths of the MLP's hidden layers.
        dropout: dropout after each hidden layer.
        weight_decay: AdamW weight decay (L2-type regularisation).
        learning_rate: AdamW learning rate.
        batch_size: rows per optimisation step (rows are shuffled only inside the fit window).
        max_epochs: upper bound on passes over the fit rows.
        patience: stop after this many epochs without a lower validation loss; the weights of
            the best epoch are kept.
        validation_fraction: the LAST part of each training window, after a gap of
            ``gap_bars``, used only for early stopping (never to fit weights or the scaler).
        n_folds: expanding walk-forward folds over the rows before the holdout.
        holdout_fraction: the newest rows, after a gap, never used for any fit or choice; the
            saved model is scored on them once.
        gap_bars: rows dropped between every train part and the part after it; at least
            ``label_horizon`` so no training label sees a price inside the next part.
        seed: seeds weight init and batch order; same data + config gives the same metrics.
        threshold: the plain decision threshold stored with the model (``long`` if P(up) >=
            threshold). Fixed in advance, not tuned: 0.5 means "long when an up move is more
            likely than not". It is the baseline the searched decision policy is compared with.
        fee_bps: fee per position change (bps) the decision policy is searched at (the
            backtest's default).
        slippage_bps: slippage per position change (bps) the decision policy is searched at.
        allow_short: search long/flat/short decision policies instead of long/flat.
        max_rows: train on the newest ``max_rows`` candles only (None = all).
        threads: torch intra-op threads while fitting (restored afterwards). 1 by default: this
            MLP is too small to gain from more, and on a busy 2-core machine 2 threads were
            measured 3.4x slower than 1 (identical results).
        lifetime_hours: hours after training when the model expires (``expires_at`` in its
            metadata; 0 = never), like FreqAI's expiration_hours. An expired model still
            answers; model_info, a gauge and an alert say it is time to retrain.
    """

    label_horizon: int = DEFAULT_LABEL_HORIZON
    hidden_sizes: tuple[int, ...] = (64, 32)
    dropout: float = 0.1
    weight_decay: float = 1e-4
    learning_rate: float = 1e-3
    batch_size: int = 256
    max_epochs: int = 50
    patience: int = 5
    validation_fraction: float = 0.15
    n_folds: int = 5
    holdout_fraction: float = 0.15
    gap_bars: int = 24
    seed: int = 0
    threshold: float = 0.5
    fee_bps: float = 10.0
    slippage_bps: float = 2.0
    allow_short: bool = False
    max_rows: int | None = None
    threads: int = 1
    lifetime_hours: float = 168.0

    def __post_init__(self) -> None:
        checks = [
            (self.label_horizon >= 1, "label_horizon must be >= 1"),
            (len(self.hidden_sizes) >= 1, "hidden_sizes needs at least one layer"),
            (all(h >= 1 for h in self.hidden_sizes), "hidden_sizes must be >= 1"),
            (0.0 <= self.dropout < 1.0, "dropout must be in [0, 1)"),
            (self.weight_decay >= 0.0, "weight_decay must be >= 0"),
            (self.learning_rate > 0.0, "learning_rate must be > 0"),
            (self.batch_size >= 1, "batch_size must be >= 1"),
            (self.max_epochs >= 1, "max_epochs must be >= 1"),
            (self.patience >= 1, "patience must be >= 1"),
            (0.0 < self.validation_fraction < 1.0, "validation_fraction must be in (0, 1)"),
            (self.n_folds >= 1, "n_folds must be >= 1"),
            (0.0 < self.holdout_fraction < 1.0, "holdout_fraction must be in (0, 1)"),
            (
                self.gap_bars >= self.label_horizon,
                f"gap_bars ({self.gap_bars}) must be >= label_horizon ({self.label_horizon})",
            ),
            (0.0 < self.threshold < 1.0, "threshold must be in (0, 1)"),
            (math.isfinite(self.fee_bps) and self.fee_bps >= 0, "fee_bps must be >= 0"),
            (
                math.isfinite(self.slippage_bps) and self.slippage_bps >= 0,
                "slippage_bps must be >= 0",
            ),
            (self.max_rows is None or self.max_rows >= 1, "max_rows must be >= 1"),
            (self.threads >= 1, "threads must be >= 1"),
            (self.lifetime_hours >= 0.0, "lifetime_hours must be >= 0 (0 = never expires)"),
        ]
        errors = [message for ok, message in checks if not ok]
        if errors:
            raise ValueError("invalid TrainConfig: " + "; ".join(errors))

    def to_dict(self) -> dict[str, Any]:
        raw = asdict(self)
        raw["hidden_sizes"] = list(self.hidden_sizes)
        return raw
