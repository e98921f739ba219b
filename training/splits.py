"""Chronological splits: walk-forward folds, a final holdout and the early-stopping slice.

All splits are contiguous ranges of row positions in a table sorted by time (oldest first).
Between the last training row and the first test row lie ``gap_bars`` dropped rows, at least
the label horizon: a training label at row ``i`` looks at the close of row ``i + horizon``, so
without the gap the last training labels would be computed from prices inside the test period.
Rows are never shuffled across time. Where the data has holes, consecutive rows are at least one
bar apart, so a gap of ``gap_bars`` rows is at least ``gap_bars`` bars of time.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Split:
    """Row positions ``train`` (fit on) and ``test`` (scored on); ``train`` ends before ``test``."""

    train: range
    test: range

    @property
    def gap(self) -> int:
        """Rows dropped between the last training row and the first test row."""
        return self.test.start - self.train.stop

    def __post_init__(self) -> None:
        if len(self.train) == 0 or len(self.test) == 0:
            raise ValueError(f"empty split: train {self.train}, test {self.test}")
        if self.train.step != 1 or self.test.step != 1:
            raise ValueError("splits are contiguous ranges")
        if self.train.stop > self.test.start:
            raise ValueError(f"train {self.train} overlaps or follows test {self.test}")


def tail_split(n_rows: int, *, test_fraction: float, gap_bars: int) -> Split:
    """Train on the head, test on the last ``test_fraction`` of ``n_rows``, ``gap_bars`` between.

    Used twice: for the final untouched holdout (the tail of the whole table) and for the
    early-stopping validation slice (the tail of a training window).

    Raises:
        ValueError: bad fraction or gap, or too few rows to leave both parts non-empty.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    if gap_bars < 0:
        raise ValueError(f"gap_bars must be >= 0, got {gap_bars}")
    n_test = max(1, round(n_rows * test_fraction))
    train_stop = n_rows - n_test - gap_bars
    if train_stop < 1:
        raise ValueError(
            f"{n_rows} rows are too few for a {test_fraction:.0%} test tail plus a gap of "
            f"{gap_bars} rows"
        )
    return Split(train=range(0, train_stop), test=range(n_rows - n_test, n_rows))


def walk_forward_splits(n_rows: int, *, n_folds: int, gap_bars: int) -> list[Split]:
    """Expanding-window folds over ``n_rows`` (the rows before the holdout).

    The rows are cut into ``n_folds + 1`` equal blocks; fold ``k`` (1-based) tests on block
    ``k`` and trains on every row before it, minus the ``gap_bars`` rows next to the test
    block. Fold 1 therefore trains on about ``1 / (n_folds + 1)`` of the rows, the last fold on
    about ``n_folds / (n_folds + 1)``. Test blocks do not overlap and are in time order.

    Raises:
        ValueError: ``n_folds < 1`` or too few rows for non-empty training windows.
    """
    if n_folds < 1:
        raise ValueError(f"n_folds must be >= 1, got {n_folds}")
    if gap_bars < 0:
        raise ValueError(f"gap_bars must be >= 0, got {gap_bars}")
    block = n_rows // (n_folds + 1)
    if block - gap_bars < 1:
        raise ValueError(
            f"{n_rows} rows are too few for {n_folds} folds with a gap of {gap_bars} rows"
        )
    splits = []
    for k in range(1, n_folds + 1):
        test_start = k * block
        test_stop = n_rows if k == n_folds else (k + 1) * block
        splits.append(
            Split(train=range(0, test_start - gap_bars), test=range(test_start, test_stop))
        )
    return splits
