"""The decision policy: P(up) and the current position in, the target position out.

One implementation, used by the service's ``signal``, the backtest (both modes), the search in
training and outcome monitoring. Pure Python + NumPy (it ships in the bento).

Public API:
    DecisionPolicy: entry/exit thresholds (a no-trade band between them), a minimum holding
        time, long/flat or long/flat/short; ``next_position`` (one step) and ``positions``
        (a whole series), which give identical results.
    policy_from_metadata(metadata): the policy stored with a model and where it came from
        (models saved before policies: the plain threshold, and they say so).
    POSITIONS: position names and their values (``flat`` 0, ``long`` +1, ``short`` -1).
"""

from policy._decision import (
    METADATA_KEY,
    PLAIN_SOURCE,
    POSITION_NAMES,
    POSITIONS,
    DecisionPolicy,
    PolicyError,
    next_bars_held,
    policy_from_metadata,
)

__all__ = [
    "METADATA_KEY",
    "PLAIN_SOURCE",
    "POSITIONS",
    "POSITION_NAMES",
    "DecisionPolicy",
    "PolicyError",
    "next_bars_held",
    "policy_from_metadata",
]
