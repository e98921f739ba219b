"""The one command line: ``btcusdt`` lists every stage, each stage has typed options and
``--help``, a missing input file is one line and exit code 2, and the old module entry points
run the same commands."""

from __future__ import annotations

import importlib
import subprocess
import sys
import tomllib

import click
import pytest
from click.testing import CliRunner

from cli import app, config_from, dataclass_options, run
from cli._app import STAGES
from devtools import REPO_ROOT
from training.config import TrainConfig

LIFECYCLE = [
    "data",
    "prepare",
    "train",
    "promote",
    "models",
    "backtest",
    "drift",
    "outcomes",
    "load-candles",
    "loadtest",
    "bench",
    "build",
    "retrain",
    "containerize-check",
]
ALIASES = {
    "training.prepare": "prepare",
    "training.train": "train",
    "training.promote": "promote",
    "backtest.run": "backtest",
    "monitoring.drift": "drift",
    "monitoring.outcomes": "outcomes",
    "loadtests.run": "loadtest",
    "benchmarks.run": "bench",
    "scripts.build_bento": "build",
    "scripts.containerize_check": "containerize-check",
}
"""``python -m <module>`` (the names the docs used) -> the ``btcusdt`` command it runs."""


def test_the_btcusdt_script_is_declared_in_pyproject():
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    assert pyproject["project"]["scripts"] == {"btcusdt": "cli:main"}
    packaged = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    for target, _ in STAGES.values():  # the script must import every command's module
        assert f"{target.split('.')[0]}*" in packaged, target
    top_level = {p.name for p in REPO_ROOT.iterdir() if (p / "__init__.py").is_file()}
    assert {f"{name}*" for name in top_level - {"tests"}} <= set(packaged)  # and what they import


def test_help_lists_every_stage_in_lifecycle_order():
    result = CliRunner().invoke(app, ["--help"], prog_name="btcusdt")
    assert result.exit_code == 0, result.output
    listed = [
        line.split()[0]
        for line in result.output.split("Commands:")[1].splitlines()
        if line.startswith("  ")
    ]
    assert listed == LIFECYCLE


@pytest.mark.parametrize("name", LIFECYCLE)
def test_every_stage_has_help(name):
    result = CliRunner().invoke(app, [name, "--help"], prog_name="btcusdt")
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"Usage: btcusdt {name} ")
    assert "Options:" in result.output


@pytest.mark.parametrize(
    "args",
    [
        ["prepare", "--data", "my_candles.parquet"],
        ["train", "--data", "my_candles.parquet"],
        ["backtest", "--data", "my.csv"],
        ["outcomes", "--data", "my.csv"],
        ["drift", "--reference", "my_reference.json"],
    ],
)
def test_a_missing_input_file_is_one_line_naming_it_and_exit_code_2(args, capsys):
    with pytest.raises(SystemExit) as exited:
        run(app, args, prog_name="btcusdt")
    assert exited.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: ") and args[-1] in lines[0] and "does not exist" in lines[0]


def test_the_command_line_runs_as_python_dash_m_cli():
    completed = subprocess.run(
        [sys.executable, "-m", "cli", "train", "--data", "my_candles.parquet"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 2
    assert completed.stderr == (
        "error: Invalid value for '--data': File 'my_candles.parquet' does not exist.\n"
    )


@pytest.mark.parametrize("module", sorted(ALIASES))
def test_old_module_entry_points_run_the_same_command(module, capsys):
    entry = importlib.import_module(module)
    with pytest.raises(SystemExit) as exited:
        entry.main(["--no-such-option"])
    assert exited.value.code == 2
    assert "No such option '--no-such-option'" in capsys.readouterr().err
    assert entry.main(["--help"]) == 0
    target, _ = STAGES[ALIASES[module]]
    command = getattr(importlib.import_module(target.split(":")[0]), target.split(":")[1])
    options = {o for p in command.params for o in p.opts}
    usage = capsys.readouterr().out
    assert usage.startswith("Usage: python -m ")
    assert all(option in usage for option in options if option.startswith("--"))


def test_python_dash_m_alias_runs_as_a_script():
    completed = subprocess.run(
        [sys.executable, "-m", "monitoring.drift", "--help"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert completed.stdout.startswith("Usage: python -m monitoring.drift [OPTIONS]")


def test_training_options_are_derived_from_the_dataclass():
    @click.command()
    @dataclass_options(TrainConfig, only=("hidden_sizes", "max_rows"), defaults={"seed": 3})
    def show(**values):
        click.echo(repr(config_from(TrainConfig, values)))

    names = {p.name for p in show.params}
    assert names == {"hidden_sizes", "max_rows"}
    result = CliRunner().invoke(show, ["--hidden-sizes", "16,8", "--max-rows", "500"])
    assert result.exit_code == 0, result.output
    assert "hidden_sizes=(16, 8)" in result.output and "max_rows=500" in result.output
    help_text = CliRunner().invoke(show, ["--help"]).output
    assert "widths of the MLP's hidden layers" in help_text  # from TrainConfig's docstring
    refused = CliRunner().invoke(show, ["--hidden-sizes", "16,x"])
    assert refused.exit_code == 2 and "comma-separated list of integers" in refused.output


def test_backtest_walk_forward_takes_its_training_options_from_train_config():
    from backtest.run import WALK_FORWARD_TRAINING, backtest_command
    from training.train import train_command

    train_options = {p.name: p for p in train_command.params}
    backtest_options = {p.name: p for p in backtest_command.params}
    for name in WALK_FORWARD_TRAINING:
        assert backtest_options[name].help == train_options[name].help
        assert backtest_options[name].type.name == train_options[name].type.name
    assert backtest_options["max_epochs"].default == 20  # shorter fits, one per test window
    assert train_options["max_epochs"].default == TrainConfig().max_epochs
