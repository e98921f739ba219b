"""Training killed at any moment leaves the model store as it was: no partial version, and the
store still lists and serves what it held before."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from devtools import REPO_ROOT

pytestmark = pytest.mark.slow

TRAIN_ARGS = ["--max-rows", "4000", "--n-folds", "2", "--quiet", "--no-plots"]


def store_listing(home: Path) -> subprocess.CompletedProcess:
    """``bentoml models list`` in ``home``, as an operator would run it."""
    return subprocess.run(
        [sys.executable, "-m", "bentoml", "models", "list", "-o", "json"],
        env={**os.environ, "BENTOML_HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=120,
    )


def version_dirs(home: Path) -> list[Path]:
    models = home / "models"
    return sorted(p for p in models.glob("*/*") if p.is_dir()) if models.is_dir() else []


def test_training_killed_midway_leaves_no_model_in_the_store(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    training = subprocess.Popen(
        [sys.executable, "-m", "training.train", "--max-rows", "20000", "--n-folds", "2"]
        + ["--max-epochs", "200", "--patience", "200", "--no-plots"]
        + ["--report-dir", str(tmp_path / "report")],
        cwd=REPO_ROOT,
        env={**os.environ, "BENTOML_HOME": str(home)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    progress = b""
    deadline = time.monotonic() + 120
    while b"fold 1 epochs" not in progress:  # tqdm's bar: it is fitting the first fold
        assert training.poll() is None and time.monotonic() < deadline, progress[-2000:]
        progress += training.stderr.read1(4096)
    time.sleep(2)
    assert training.poll() is None
    training.send_signal(signal.SIGKILL)
    assert training.wait(timeout=30) == -signal.SIGKILL
    training.stderr.close()
    assert version_dirs(home) == []
    listing = store_listing(home)
    assert listing.returncode == 0, listing.stderr
    assert "btcusdt_mlp" not in listing.stdout
    assert not (tmp_path / "report").exists()


CRASH_WHILE_SAVING = textwrap.dedent(
    """
    import os, shutil, signal, sys
    from pathlib import Path

    store = Path(os.environ["BENTOML_HOME"]).resolve()
    real_copytree = shutil.copytree

    def copy_half_then_die(src, dst, *args, **kwargs):
        if not Path(dst).resolve().is_relative_to(store):
            return real_copytree(src, dst, *args, **kwargs)
        files = sorted(p for p in Path(src).rglob("*") if p.is_file())
        for file in files[: len(files) // 2]:  # model.yaml, weights... but not all of them
            target = Path(dst) / file.relative_to(src)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(file, target)
        print("copied", len(files) // 2, "of", len(files), flush=True)
        os.kill(os.getpid(), signal.SIGKILL)  # as kill -9 (or a power cut) would, mid-copy

    shutil.copytree = copy_half_then_die
    from training.train import main
    main(sys.argv[1:])
    """
)


def test_a_crash_while_the_model_is_written_leaves_no_partial_version(tmp_path):
    """The one moment training touches the store: BentoML copies the model's files into it.
    A crash half-way through that copy must not leave a version behind (it would be listed,
    and served as the newest model, or break ``bentoml models list`` altogether)."""
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "BENTOML_HOME": str(home)}
    args = [*TRAIN_ARGS, "--max-epochs", "2", "--report-dir", str(tmp_path / "report")]
    crashed = subprocess.run(
        [sys.executable, "-c", CRASH_WHILE_SAVING, *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr[-2000:]
    assert "copied" in crashed.stdout  # it did die inside the copy
    assert version_dirs(home) == []
    listing = store_listing(home)
    assert listing.returncode == 0, listing.stderr
    assert "btcusdt_mlp" not in listing.stdout

    # The store is intact: the next run saves and lists normally.
    trained = subprocess.run(
        [sys.executable, "-m", "training.train", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert trained.returncode == 0, trained.stderr[-2000:]
    [version] = version_dirs(home)
    assert (version / "model.yaml").is_file() and (version / "model.onnx").is_file()
    assert version.name in store_listing(home).stdout
