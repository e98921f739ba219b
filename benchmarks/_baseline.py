"""The other side of a before/after service benchmark: a git ref of this repository, checked
out in a worktree with its own virtual environment and its own model, so that the comparison
can be repeated later on the same machine (``bench_service --baseline-ref ec0ad75``).

Everything lives under ``.work/bench-baseline/<commit>/`` and is reused by later runs: ``src``
(``git worktree add --detach``), ``venv`` (``python3.11 -m venv``, then ``pip install -c
requirements.lock -e .`` of that commit, so it has that commit's dependencies and nothing of
today's, e.g. no uvloop where it had none) and ``home`` (a BentoML home holding one model
trained by that commit's code, with the small settings below).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from devtools import REPO_ROOT

BASELINE_ROOT = REPO_ROOT / ".work" / "bench-baseline"
TRAIN_ARGS = ("--max-epochs", "8", "--patience", "3", "--n-folds", "2", "--no-plots", "--quiet")
"""A quick real training run: the benchmark measures serving, not the model."""


@dataclass(frozen=True)
class Side:
    """Where one side's code, interpreter and model store are."""

    name: str
    source_dir: Path
    python: Path
    bentoml_home: Path


def clean_env(**more: str) -> dict[str, str]:
    """This environment without what points at this checkout (venv, PYTHONPATH, BentoML's)."""
    dropped = ("PYTHONPATH", "VIRTUAL_ENV", "BENTOML_HOME", "BENTOML_CONFIG")
    env = {k: v for k, v in os.environ.items() if k not in dropped}
    return {**env, **more}


def _run(command: list[str | Path], **kwargs: object) -> None:
    print("  $", " ".join(map(str, command)), flush=True)
    subprocess.run(list(map(str, command)), check=True, **kwargs)  # type: ignore[call-overload]


def resolve(ref: str) -> str:
    """The full commit of ``ref`` (a hash, tag or branch of this repository)."""
    out = subprocess.run(
        ["git", "rev-parse", "--verify", f"{ref}^{{commit}}"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        raise SystemExit(f"--baseline-ref {ref}: not a commit of this repository")
    return out.stdout.strip()


def prepare(ref: str) -> Side:
    """Check out, install and train ``ref`` (each step only if not done before)."""
    commit = resolve(ref)
    root = BASELINE_ROOT / commit[:12]
    source, venv, home = root / "src", root / "venv", root / "home"
    print(f"baseline {ref} = {commit[:12]} in {root}")
    if not (source / ".git").exists():
        if source.exists():
            shutil.rmtree(source)
        subprocess.run(["git", "worktree", "prune"], cwd=REPO_ROOT, check=True)
        _run(["git", "worktree", "add", "--detach", "--force", source, commit], cwd=REPO_ROOT)
    python = venv / "bin" / "python"
    if not (venv / ".installed").exists():
        _run(["python3.11", "-m", "venv", venv])
        install = ["install", "--quiet", "-c", "requirements.lock", "-e", "."]
        _run([python, "-m", "pip", *install], cwd=source, env=clean_env())
        (venv / ".installed").touch()
    if not (home / "models" / "btcusdt_mlp").is_dir():
        env = clean_env(BENTOML_HOME=str(home), BENTOML_DO_NOT_TRACK="True")
        _run([python, "-m", "training.train", *TRAIN_ARGS], cwd=source, env=env)
    return Side(f"baseline {ref}", source, python, home)
