"""``python -m cli``: the same as the ``btcusdt`` console script."""

from cli import main

main()
