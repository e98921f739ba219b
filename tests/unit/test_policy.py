"""The decision policy on hand-made sequences: hysteresis, minimum holding, shorts, metadata."""

from __future__ import annotations

import numpy as np
import pytest

from policy import (
    PLAIN_SOURCE,
    DecisionPolicy,
    PolicyError,
    next_bars_held,
    policy_from_metadata,
)


def stepwise(policy: DecisionPolicy, probabilities, start=0, bars_held=None) -> list[int]:
    """The policy applied one bar at a time, as a client of the service does."""
    position, held, out = start, bars_held, []
    for p in probabilities:
        target = policy.next_position(p, position, held)
        held = next_bars_held(position, held, target)
        position = target
        out.append(target)
    return out


def test_plain_threshold_is_long_at_or_above_it_and_flat_below():
    policy = DecisionPolicy.plain(0.5)
    assert policy.is_plain
    assert list(policy.positions([0.5, 0.49, 0.51, 0.4999, np.nan, 0.7])) == [1, 0, 1, 0, 0, 1]


def test_hysteresis_enters_above_entry_and_exits_only_below_exit():
    policy = DecisionPolicy(entry=0.55, exit=0.45)
    p = [0.54, 0.55, 0.50, 0.46, 0.45, 0.4499, 0.50, 0.54, 0.56, 0.40]
    assert list(policy.positions(p)) == [0, 1, 1, 1, 1, 0, 0, 0, 1, 0]
    # Inside the band the position depends on where it comes from.
    assert policy.next_position(0.5, "flat") == 0
    assert policy.next_position(0.5, "long") == 1


def test_minimum_holding_keeps_a_position_until_it_has_been_held_long_enough():
    policy = DecisionPolicy(entry=0.5, exit=0.5, min_hold_bars=3)
    p = [0.6, 0.1, 0.1, 0.1, 0.6, 0.1, 0.6, 0.6, 0.1, 0.1]
    # Enter at bar 0; held 1, 2 bars at bars 1, 2: kept; at bar 3 held 3 bars: exits.
    assert list(policy.positions(p)) == [1, 1, 1, 0, 1, 1, 1, 1, 0, 0]
    assert stepwise(policy, p) == list(policy.positions(p))
    assert policy.next_position(0.1, "long", bars_held=2) == 1
    assert policy.next_position(0.1, "long", bars_held=3) == 0
    assert policy.next_position(0.1, "long") == 0  # unknown holding time: long enough


def test_no_probability_goes_flat_even_inside_the_minimum_holding_time():
    policy = DecisionPolicy(entry=0.5, exit=0.4, min_hold_bars=10)
    assert list(policy.positions([0.6, np.nan, 0.45])) == [1, 0, 0]


def test_long_short_policy_reverses_and_covers():
    policy = DecisionPolicy(
        entry=0.6, exit=0.5, allow_short=True, short_entry=0.4, short_exit=0.45, min_hold_bars=2
    )
    p = [0.3, 0.7, 0.7, 0.42, 0.35, 0.44, 0.46, 0.3, 0.9]
    # short; kept (held 1 bar < 2) though 0.7; reversed to long; kept at 0.42 (held 1 bar);
    # reversed to short at 0.35; covered at 0.46; short again at 0.3, kept at 0.9 (held 1 bar).
    expected = [-1, -1, 1, 1, -1, -1, 0, -1, -1]
    assert list(policy.positions(p)) == expected
    assert stepwise(policy, p) == expected
    assert policy.next_position(0.9, "short", bars_held=2) == 1


@pytest.mark.parametrize(
    "policy",
    [
        DecisionPolicy.plain(0.5),
        DecisionPolicy(entry=0.53, exit=0.49),
        DecisionPolicy(entry=0.52, exit=0.5, min_hold_bars=6),
        DecisionPolicy.plain(0.52, allow_short=True),
        DecisionPolicy(
            entry=0.55,
            exit=0.5,
            min_hold_bars=4,
            allow_short=True,
            short_entry=0.45,
            short_exit=0.48,
        ),
    ],
    ids=["plain", "band", "band+hold", "plain-short", "all"],
)
@pytest.mark.parametrize("start", [0, 1])
def test_series_and_stepwise_give_identical_positions(policy, start):
    rng = np.random.default_rng(7)
    p = np.clip(rng.normal(0.5, 0.04, 3000), 0.01, 0.99)
    p[rng.choice(3000, 30, replace=False)] = np.nan
    assert list(policy.positions(p, start_position=start)) == stepwise(policy, p, start)


def test_a_band_and_a_minimum_hold_trade_far_less_than_the_plain_threshold():
    rng = np.random.default_rng(3)
    p = np.clip(rng.normal(0.5, 0.03, 5000), 0.01, 0.99)
    plain = DecisionPolicy.plain(0.5).positions(p)
    calm = DecisionPolicy(entry=0.53, exit=0.48, min_hold_bars=24).positions(p)
    assert np.abs(np.diff(calm)).sum() * 5 < np.abs(np.diff(plain)).sum()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"entry": 0.5, "exit": 0.6}, "exit"),
        ({"entry": 1.0, "exit": 0.5}, "entry must be in"),
        ({"entry": 0.5, "exit": 0.5, "min_hold_bars": 0}, "min_hold_bars"),
        ({"entry": 0.5, "exit": 0.5, "allow_short": True}, "short_entry and short_exit"),
        ({"entry": 0.5, "exit": 0.5, "short_entry": 0.4}, "allow_short is false"),
        (
            {
                "entry": 0.5,
                "exit": 0.45,
                "allow_short": True,
                "short_entry": 0.47,
                "short_exit": 0.48,
            },
            "short_entry",
        ),
    ],
)
def test_invalid_policies_are_refused_naming_the_field(kwargs, message):
    with pytest.raises(PolicyError, match=message):
        DecisionPolicy(**kwargs)


def test_short_position_is_refused_by_a_long_flat_policy():
    with pytest.raises(PolicyError, match="'short' is not allowed"):
        DecisionPolicy.plain(0.5).next_position(0.3, "short")
    with pytest.raises(PolicyError, match="position must be one of"):
        DecisionPolicy.plain(0.5).next_position(0.3, "sideways")


def test_metadata_without_a_policy_gives_the_plain_threshold_and_says_so():
    policy, source = policy_from_metadata({"threshold": 0.5})
    assert policy == DecisionPolicy.plain(0.5) and source == PLAIN_SOURCE


def test_stored_policy_round_trips_and_a_malformed_one_is_refused():
    policy = DecisionPolicy(entry=0.54, exit=0.5, min_hold_bars=12)
    stored = {"threshold": 0.5, "decision_policy": {"policy": policy.to_dict(), "source": "x"}}
    assert policy_from_metadata(stored) == (policy, "x")
    with pytest.raises(PolicyError, match="decision_policy.policy: exit"):
        policy_from_metadata({"decision_policy": {"policy": {"entry": 0.5, "exit": 0.7}}})
    with pytest.raises(PolicyError, match="unknown policy field"):
        policy_from_metadata({"decision_policy": {"policy": {"entry": 0.5, "exit": 0.5, "x": 1}}})
