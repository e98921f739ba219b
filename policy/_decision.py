""":class:`DecisionPolicy`: thresholds with a no-trade band, a minimum holding time, and shorts.

The rule, at the close of a bar, for the position to hold over the next bar:

- **flat**: go long when ``P(up) >= entry``; go short (only with ``allow_short``) when
  ``P(up) < short_entry``; else stay flat.
- **long**: stay long while ``P(up) >= exit`` (``exit <= entry``: between the two lies the
  no-trade band, hysteresis); below it, go flat, or short when ``P(up) < short_entry``.
- **short**: stay short while ``P(up) < short_exit``; at or above it, go flat, or long when
  ``P(up) >= entry``.
- A long or short held for fewer than ``min_hold_bars`` bars is kept whatever P(up) says.
- No probability (NaN: no features for the bar) asks to be flat, as it always has.

``bars_held`` counts the bars the current position has been held, the bar just closed
included; unknown (``None``) counts as held long enough. The plain threshold rule ("long when
P(up) >= 0.5") is the policy with ``entry == exit`` and ``min_hold_bars == 1``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

POSITIONS = {"flat": 0, "long": 1, "short": -1}
"""Position names (as in requests and answers) and their values (fraction of equity)."""
POSITION_NAMES = {value: name for name, value in POSITIONS.items()}
METADATA_KEY = "decision_policy"
PLAIN_SOURCE = "plain threshold (model saved before policies)"
"""What a model without a stored policy reports: it uses its stored ``threshold``."""


class PolicyError(ValueError):
    """An invalid policy, position or stored policy (the message names the field and rule)."""


def _probability(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PolicyError(f"{name} must be a number in (0, 1), got {value!r}")
    value = float(value)
    if not (math.isfinite(value) and 0.0 < value < 1.0):
        raise PolicyError(f"{name} must be in (0, 1), got {value}")
    return value


@dataclass(frozen=True)
class DecisionPolicy:
    """P(up) + current position -> target position (see the module docstring for the rule).

    Attributes:
        entry: go long when P(up) >= entry.
        exit: a long is closed when P(up) < exit; ``exit <= entry``.
        min_hold_bars: a long or short is kept at least this many bars (1 = no minimum).
        allow_short: whether the policy may go short.
        short_entry: with ``allow_short``: go short when P(up) < short_entry (``<= exit``).
        short_exit: with ``allow_short``: a short is closed when P(up) >= short_exit
            (``short_entry <= short_exit <= entry``).
    """

    entry: float
    exit: float
    min_hold_bars: int = 1
    allow_short: bool = False
    short_entry: float | None = None
    short_exit: float | None = None

    def __post_init__(self) -> None:
        entry, exit_ = _probability("entry", self.entry), _probability("exit", self.exit)
        if exit_ > entry:
            raise PolicyError(f"exit ({exit_}) must be <= entry ({entry})")
        hold = self.min_hold_bars
        if isinstance(hold, bool) or not isinstance(hold, int) or hold < 1:
            raise PolicyError(f"min_hold_bars must be an integer >= 1, got {hold!r}")
        if not isinstance(self.allow_short, bool):
            raise PolicyError(f"allow_short must be true or false, got {self.allow_short!r}")
        if self.allow_short:
            if self.short_entry is None or self.short_exit is None:
                raise PolicyError("allow_short needs short_entry and short_exit")
            short_entry = _probability("short_entry", self.short_entry)
            short_exit = _probability("short_exit", self.short_exit)
            if not short_entry <= short_exit <= entry:
                raise PolicyError(
                    f"need short_entry ({short_entry}) <= short_exit ({short_exit}) <= "
                    f"entry ({entry})"
                )
            if short_entry > exit_:
                raise PolicyError(f"short_entry ({short_entry}) must be <= exit ({exit_})")
        elif self.short_entry is not None or self.short_exit is not None:
            raise PolicyError("short_entry/short_exit are given but allow_short is false")

    @classmethod
    def plain(
        cls,
        threshold: float = 0.5,
        *,
        allow_short: bool = False,
        short_threshold: float | None = None,
    ) -> DecisionPolicy:
        """Long when P(up) >= threshold, else flat (or short below ``short_threshold``,
        default ``1 - threshold``): no band, no minimum holding time."""
        if not allow_short:
            if short_threshold is not None:
                raise PolicyError("short_threshold is given but allow_short is false")
            return cls(entry=threshold, exit=threshold)
        short = 1.0 - threshold if short_threshold is None else short_threshold
        return cls(
            entry=threshold, exit=threshold, allow_short=True, short_entry=short, short_exit=short
        )

    @property
    def is_plain(self) -> bool:
        """A single threshold (per side), no band and no minimum holding time."""
        same_short = not self.allow_short or self.short_entry == self.short_exit
        return self.entry == self.exit and self.min_hold_bars == 1 and same_short

    def positions_allowed(self) -> tuple[str, ...]:
        return ("flat", "long", "short") if self.allow_short else ("flat", "long")

    def position_value(self, position: str | int) -> int:
        """``"flat"``/``"long"``/``"short"`` (or 0/1/-1) as 0/1/-1; a short needs allow_short.

        Raises:
            PolicyError: an unknown position, or ``short`` for a long/flat policy.
        """
        value = POSITIONS.get(position) if isinstance(position, str) else position
        if isinstance(value, bool) or value not in POSITION_NAMES:
            raise PolicyError(
                f"position must be one of {list(self.positions_allowed())}, got {position!r}"
            )
        if value == -1 and not self.allow_short:
            raise PolicyError(
                "position 'short' is not allowed: this model's decision policy is long/flat "
                f"(one of {list(self.positions_allowed())})"
            )
        return int(value)

    def next_position(
        self, probability_up: float, position: str | int = 0, bars_held: int | None = None
    ) -> int:
        """The target position (0, 1 or -1) after a bar with ``probability_up``, holding
        ``position`` for ``bars_held`` bars (``None``: long enough for ``min_hold_bars``)."""
        current = self.position_value(position)
        if bars_held is not None and (isinstance(bars_held, bool) or bars_held < 0):
            raise PolicyError(f"bars_held must be an integer >= 0, got {bars_held!r}")
        held_enough = bars_held is None or bars_held >= self.min_hold_bars
        return self._step(float(probability_up), current, held_enough)

    def _step(self, p: float, position: int, held_enough: bool) -> int:
        if p != p:  # NaN: no signal for this bar
            return 0
        if position == 1:
            if p >= self.exit or not held_enough:
                return 1
            return -1 if self.allow_short and p < self.short_entry else 0  # type: ignore[operator]
        if position == -1:
            if p < self.short_exit or not held_enough:  # type: ignore[operator]
                return -1
            return 1 if p >= self.entry else 0
        if p >= self.entry:
            return 1
        return -1 if self.allow_short and p < self.short_entry else 0  # type: ignore[operator]

    def positions(
        self,
        probability_up: np.ndarray | list[float],
        *,
        start_position: str | int = 0,
        start_bars_held: int | None = None,
    ) -> np.ndarray:
        """Target positions after each bar of a P(up) series (int64, 0/1/-1), starting from
        ``start_position`` held ``start_bars_held`` bars; the same as :meth:`next_position`
        applied bar by bar (tested)."""
        p = np.asarray(probability_up, dtype="float64")
        start = self.position_value(start_position)
        if p.ndim != 1:
            raise PolicyError(f"probability_up must be 1-d, got shape {p.shape}")
        if not self.allow_short and self.min_hold_bars == 1:
            return _band_positions(p, self.entry, self.exit, start)
        held = self.min_hold_bars if start_bars_held is None else int(start_bars_held)
        out = np.empty(len(p), dtype="int64")
        position, step, hold = start, self._step, self.min_hold_bars
        for i, value in enumerate(p.tolist()):
            target = step(value, position, held >= hold)
            held = held + 1 if target == position else 1
            position = out[i] = target
        return out

    def describe(self) -> str:
        """One sentence stating the rule with its numbers."""
        text = f"long when P(up) >= {self.entry:g}"
        text += (
            f", flat when P(up) < {self.exit:g}"
            if self.exit == self.entry
            else f", back to flat only when P(up) < {self.exit:g}"
        )
        if self.allow_short:
            text += f"; short when P(up) < {self.short_entry:g}"
            if self.short_exit != self.short_entry:
                text += f", covered when P(up) >= {self.short_exit:g}"
        if self.min_hold_bars > 1:
            text += f"; every position held at least {self.min_hold_bars} bars"
        return text

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe fields (short thresholds only where shorts are allowed)."""
        raw = asdict(self)
        if not self.allow_short:
            raw.pop("short_entry")
            raw.pop("short_exit")
        return raw

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> DecisionPolicy:
        """Rebuild from :meth:`to_dict`'s output; unknown or missing fields are an error.

        Raises:
            PolicyError: naming the field.
        """
        if not isinstance(raw, Mapping):
            raise PolicyError(f"a policy must be an object, got {type(raw).__name__}")
        known = {"entry", "exit", "min_hold_bars", "allow_short", "short_entry", "short_exit"}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise PolicyError(f"unknown policy field(s) {unknown}")
        missing = [k for k in ("entry", "exit") if k not in raw]
        if missing:
            raise PolicyError(f"policy lacks {missing}")
        return cls(**dict(raw))


def _band_positions(p: np.ndarray, entry: float, exit_: float, start: int) -> np.ndarray:
    """Long/flat with a band and no minimum holding time, without a Python loop: a bar at or
    above ``entry`` sets long, below ``exit`` (or NaN) sets flat, in between keeps the last."""
    with np.errstate(invalid="ignore"):
        decided = (p >= entry) | (p < exit_) | np.isnan(p)
    state = (p >= entry).astype("int64")
    last = np.maximum.accumulate(np.where(decided, np.arange(len(p)), -1))
    return np.where(last >= 0, state[np.maximum(last, 0)], start).astype("int64")


def next_bars_held(position: str | int, bars_held: int | None, target: str | int) -> int | None:
    """``bars_held`` for the next decision: one more if the target keeps the position (still
    unknown if it was unknown), else 1 (the new position will have been held one bar)."""
    value = POSITIONS.get(position, position) if isinstance(position, str) else position
    aim = POSITIONS.get(target, target) if isinstance(target, str) else target
    if value != aim:
        return 1
    return None if bars_held is None else bars_held + 1


def policy_from_metadata(metadata: Mapping[str, Any]) -> tuple[DecisionPolicy, str]:
    """The decision policy stored with a model, and a sentence saying where it came from.

    Models saved before policies have none: they get the plain rule at their stored
    ``threshold``, and :data:`PLAIN_SOURCE` says so.

    Raises:
        PolicyError: a stored policy that is malformed or invalid (the reason named).
    """
    stored = metadata.get(METADATA_KEY)
    if stored is None:
        return DecisionPolicy.plain(float(metadata["threshold"])), PLAIN_SOURCE
    if not isinstance(stored, Mapping) or "policy" not in stored:
        raise PolicyError(f"{METADATA_KEY} must be an object with a 'policy' field")
    try:
        policy = DecisionPolicy.from_dict(stored["policy"])
    except TypeError as exc:
        raise PolicyError(f"{METADATA_KEY}.policy: {exc}") from None
    except PolicyError as exc:
        raise PolicyError(f"{METADATA_KEY}.policy: {exc}") from None
    return policy, str(stored.get("source", "stored with the model"))
