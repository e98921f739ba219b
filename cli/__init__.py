"""``btcusdt``: one command line for every stage (``btcusdt --help`` lists them).

Each stage's command is a click command in the module that does the work (``training.train``,
``backtest.run``, ...), so ``python -m training.train`` and ``btcusdt train`` are the same
command. Public API:
    app: the click group (mount another command with ``app.add_command``).
    main: the ``btcusdt`` console script.
    run: run a click command in-process and return its exit code (the modules' ``main``).
    dataclass_options, config_from: options derived from a dataclass's fields, and back.
    existing_file, folder: path option types (an existing input file; an output folder).
"""

from cli._app import app, main
from cli._options import config_from, dataclass_options, existing_file, folder, run

__all__ = ["app", "config_from", "dataclass_options", "existing_file", "folder", "main", "run"]
