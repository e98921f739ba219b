"""Build the bento from the model to serve, then check what went into it.

``make build`` runs this: the model is ``--model-tag`` if given, else the ``production`` version,
else the newest (:func:`artifact.resolve_tag`, the rule the service applies). The service
is imported by ``bentoml build`` with ``BTC_SERVE_MODEL_TAG`` set to that tag, so its model
runner, and therefore the bento, hold exactly that one version. The check refuses a bento that
would need torch or CUDA wheels, that lets BentoML re-resolve versions, or that carries tests,
data or training-only code.

    btcusdt build                       # production model (= python -m scripts.build_bento)
    btcusdt build --model-tag btcusdt_mlp:<version>
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import click

from cli import run
from scripts.lock_serving import FORBIDDEN, SERVING_TXT, read_requirements

REPO_ROOT = Path(__file__).resolve().parent.parent
BENTOFILE = REPO_ROOT / "bentofile.yaml"
BENTO_NAME = "btcusdt_direction"
NOT_IN_BENTO = (
    "tests/",
    "loadtests/",
    "data/",
    "backtest/",
    "benchmarks/",
    "cli/",
    "devtools/",
    "monitoring/drift.py",
    "monitoring/drift_report.py",
    "monitoring/outcomes.py",
    "monitoring/prediction_log.py",
    "scripts/",
    "training/",
)
"""Source paths that serving never imports (files, or folders ending in ``/``); any file of
them in ``src/`` is a packaging error. No ``training/`` code at all: serving reads the model
through ``artifact/``."""


class BentoCheckError(RuntimeError):
    """The built bento is not what serving should ship; the message lists every problem."""


@dataclass(frozen=True)
class BuiltBento:
    """A bento in the local store and the one model it serves."""

    tag: str
    model_tag: str
    path: Path
    requirements: list[str]


def bento_problems(path: Path, model_tags: list[str], expected_model_tag: str) -> list[str]:
    """Everything wrong with the bento at ``path`` (empty when it is fine)."""
    problems = []
    if model_tags != [expected_model_tag]:
        problems.append(f"bento holds models {model_tags}, expected [{expected_model_tag!r}]")
    python_env = path / "env" / "python"
    if (python_env / "requirements.lock.txt").exists():
        problems.append("BentoML locked the requirements itself (lock_packages must be false)")
    requirements = read_requirements(python_env / "requirements.txt")
    unpinned = [str(r) for r in requirements if not str(r.specifier).startswith("==")]
    if unpinned:
        problems.append(f"requirements not pinned: {unpinned}")
    forbidden = [str(r) for r in requirements if FORBIDDEN.match(r.name.lower())]
    if forbidden:
        problems.append(f"training-only/CUDA packages in the bento: {forbidden}")
    expected = {str(r) for r in read_requirements(SERVING_TXT)}
    missing = sorted(expected - {str(r) for r in requirements})
    if missing:
        problems.append(f"requirements missing from the bento: {missing}")
    source = path / "src"
    shipped = sorted(
        str(f.relative_to(source))
        for p in NOT_IN_BENTO
        for f in ([source / p] if not p.endswith("/") else (source / p).rglob("*"))
        if f.is_file()
    )
    if shipped:
        problems.append(f"non-serving code or data in the bento: {shipped}")
    if not (source / "service.py").is_file() or not (source / "configuration.yaml").is_file():
        problems.append("service.py or configuration.yaml is missing from the bento")
    return problems


def build_bento(model_tag: str | None = None, *, timeout_s: float = 600) -> BuiltBento:
    """``bentoml build`` with ``model_tag`` (resolved as the service does), then check it.

    Uses the caller's ``BENTOML_HOME`` (model store and bento store).

    Raises:
        artifact.ModelContractError: no such model / no model at all.
        BentoCheckError: the build failed or the bento is not what serving should ship.
    """
    import bentoml

    from artifact import resolve_tag

    resolved = resolve_tag(model_tag)
    env = {**os.environ, "BTC_SERVE_MODEL_TAG": resolved, "BENTOML_DO_NOT_TRACK": "True"}
    command = [
        sys.executable,
        "-m",
        "bentoml",
        "build",
        str(REPO_ROOT),
        "--bentofile",
        str(BENTOFILE),
        "--output",
        "tag",
    ]
    completed = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=timeout_s, check=False
    )
    match = re.search(r"__tag__:(\S+)", completed.stdout)
    if completed.returncode != 0 or match is None:
        output = (completed.stdout + completed.stderr)[-4000:]
        raise BentoCheckError(f"bentoml build failed ({completed.returncode}):\n{output}")
    bento = bentoml.get(match.group(1))
    path = Path(bento.path)
    model_tags = [str(m.tag) for m in bento.info.all_models]
    problems = bento_problems(path, model_tags, resolved)
    if problems:
        raise BentoCheckError(f"{bento.tag}: " + "; ".join(problems))
    requirements = [str(r) for r in read_requirements(path / "env/python/requirements.txt")]
    return BuiltBento(tag=str(bento.tag), model_tag=resolved, path=path, requirements=requirements)


@click.command("build")
@click.option(
    "--model-tag",
    default=None,
    help="btcusdt_mlp:<version> to pack (default: production, else the newest)",
)
def build_command(model_tag: str | None) -> int:
    """Build the bento of a model from the store, then check what went into it."""
    from artifact import ModelContractError

    try:
        built = build_bento(model_tag)
    except (ModelContractError, BentoCheckError) as exc:
        click.echo(f"error: {exc}", err=True)
        return 2 if isinstance(exc, ModelContractError) else 1
    summary = {**asdict(built), "path": str(built.path), "requirements": len(built.requirements)}
    print(json.dumps(summary, indent=2))
    bentoml_cli = Path(sys.executable).with_name("bentoml")
    print(
        f"serve it:  BTC_SERVE_MODEL_TAG={built.model_tag} {bentoml_cli} serve {built.tag}\n"
        f"image:     {bentoml_cli} containerize {built.tag}   (no Docker: make containerize)"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m scripts.build_bento``: the ``btcusdt build`` command."""
    return run(build_command, argv, prog_name="python -m scripts.build_bento")


if __name__ == "__main__":
    sys.exit(main())
