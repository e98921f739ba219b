"""The bento as shipped: its pinned, torch-free requirements, what ``bentoml build`` packs, that
its code imports with torch made unimportable, and that the built bento (not the source tree)
serves ``predict`` over HTTP and gRPC."""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from packaging.utils import canonicalize_name

from artifact import load_model
from client import GrpcClient, HttpClient
from devtools import REPO_ROOT, free_port, running_server
from features import compute_features
from scripts.build_bento import bento_problems
from scripts.lock_serving import (
    FORBIDDEN,
    PROJECT_LOCK,
    SERVING_TXT,
    LockError,
    pinned_serving_requirements,
    read_lock,
    read_requirements,
    render,
)
from tests.servers import server_env

N_BARS = 300

IMPORT_PROBE = """
import importlib.abc, importlib.machinery, json, sys
from importlib import metadata
from pathlib import Path
from packaging.utils import canonicalize_name
shipped = set(json.loads(sys.argv[1]))
in_bento = {p.stem for p in Path.cwd().iterdir()}
project = {
    "service", "serving", "features", "artifact", "training", "monitoring", "backtest", "client",
    "stores",
}
allowed = set()
for top, dists in metadata.packages_distributions().items():
    if any(canonicalize_name(d) in shipped for d in dists):
        allowed.add(top)
class OnlyTheBento(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        top = name.split(".")[0]
        if top in project:
            refuse = top not in in_bento
        elif "." in name or top in allowed:
            refuse = False
        else:  # stdlib (incl. private modules) is allowed; other site-packages are not
            spec = importlib.machinery.PathFinder.find_spec(name, path)
            where = spec and (spec.origin or next(iter(spec.submodule_search_locations or []), ""))
            refuse = bool(where) and "site-packages" in where
        if refuse:
            raise ModuleNotFoundError(f"No module named {name!r} (not in the bento)", name=name)
        return None
sys.meta_path.insert(0, OnlyTheBento())
import service
print(json.dumps({n: getattr(m, "__file__", None) for n, m in list(sys.modules.items())}))
"""
"""Imports ``service`` allowing only the stdlib, the bento's ``src/`` and the distributions of
the bento's requirements: anything else (torch first) is "not installed", as in the image."""


# ------------------------------------------------------------------ requirements (fast)


def test_serving_requirements_file_is_the_lock_pinned_closure_of_the_in_file():
    assert SERVING_TXT.read_text() == render(pinned_serving_requirements()), (
        "requirements-serving.txt is stale: run python -m scripts.lock_serving"
    )
    lock = read_lock(PROJECT_LOCK)
    for requirement in read_requirements(SERVING_TXT):
        name, version = canonicalize_name(requirement.name), str(requirement.specifier)[2:]
        assert lock[name].split("==")[1] == version, requirement


def test_serving_requirements_hold_the_onnx_runtime_and_no_torch_or_cuda():
    names = {canonicalize_name(r.name) for r in read_requirements(SERVING_TXT)}
    assert {"bentoml", "onnxruntime", "numpy", "pandas", "ta", "grpcio"} <= names
    assert not [n for n in names if FORBIDDEN.match(n)]


def test_lock_refuses_a_serving_list_that_pulls_in_torch(tmp_path):
    serving_in = tmp_path / "requirements-serving.in"
    serving_in.write_text("onnxruntime\ntorch\n")
    with pytest.raises(LockError, match="torch"):
        pinned_serving_requirements(serving_in, PROJECT_LOCK)


def test_lock_refuses_a_package_without_a_pin(tmp_path):
    lock = tmp_path / "requirements.lock"
    pins = [line for line in PROJECT_LOCK.read_text().splitlines() if not line.startswith("ta==")]
    lock.write_text("\n".join(pins) + "\n")
    serving_in = tmp_path / "requirements-serving.in"
    serving_in.write_text("ta\n")
    with pytest.raises(LockError, match=r"no pin .* for \['ta'\]"):
        pinned_serving_requirements(serving_in, lock)


# ------------------------------------------------------------------ the built bento


def _bentofile() -> dict:
    return yaml.safe_load((REPO_ROOT / "bentofile.yaml").read_text())


def _files(root: Path) -> set[str]:
    return {
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }


@pytest.mark.integration
def test_built_bento_holds_its_model_the_pinned_requirements_and_only_serving_code(
    built_bento, trained_model_tag
):
    assert built_bento.model_tag == trained_model_tag
    assert bento_problems(built_bento.path, [trained_model_tag], trained_model_tag) == []
    shipped = set(built_bento.requirements)
    expected = {str(r) for r in read_requirements(SERVING_TXT)} | {"bentoml==1.4.39"}
    assert shipped == expected
    includes = _bentofile()["include"]
    wanted = {f for f in _files(REPO_ROOT) if any(fnmatch.fnmatch(f, p) for p in includes)}
    assert _files(built_bento.path / "src") == wanted | {"bentofile.yaml"}
    assert not [f for f in wanted if f.startswith("training/")]  # the model comes via artifact/
    assert {"artifact/__init__.py", "artifact/_store.py", "artifact/_predictor.py"} <= wanted
    info = yaml.safe_load((built_bento.path / "bento.yaml").read_text())
    assert [m["tag"] for m in info["models"]] == [trained_model_tag]
    assert info["labels"]["runtime"] == "onnxruntime"
    assert info["docker"]["base_image"] == "python:3.11-slim"


@pytest.mark.integration
def test_bento_check_names_torch_and_training_code_when_they_slip_in(built_bento, tmp_path):
    copy = tmp_path / "bento"
    shutil.copytree(built_bento.path, copy)
    with (copy / "env/python/requirements.txt").open("a") as requirements:
        requirements.write("torch==2.13.0\n")
    assert not (copy / "src/training").exists()
    (copy / "src/training").mkdir()
    (copy / "src/training/train.py").write_text("")
    problems = " ".join(bento_problems(copy, [built_bento.model_tag], built_bento.model_tag))
    assert "torch==2.13.0" in problems
    assert "training/train.py" in problems


@pytest.mark.integration
def test_bento_code_imports_with_only_the_bentos_packages_and_no_torch(built_bento):
    source = built_bento.path / "src"
    shipped = sorted({canonicalize_name(re.split(r"[=[]", r)[0]) for r in built_bento.requirements})
    assert "torch" not in shipped
    env = {**os.environ, "BTC_SERVE_MODEL_TAG": built_bento.model_tag}
    env.pop("PYTHONPATH", None)
    probe = subprocess.run(
        [sys.executable, "-c", IMPORT_PROBE, json.dumps(shipped)],
        cwd=source,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert probe.returncode == 0, probe.stderr[-3000:]
    loaded: dict[str, str | None] = json.loads(probe.stdout.strip().splitlines()[-1])
    assert "torch" not in loaded
    for name, file in loaded.items():
        if (
            name.split(".")[0]
            in {"service", "serving", "features", "artifact", "monitoring", "stores"}
            and file
        ):
            assert Path(file).is_relative_to(source), f"{name} came from {file}, not the bento"
    assert "training.model" not in loaded
    assert not [name for name in loaded if name.split(".")[0] == "training"]
    assert "artifact._predictor" in loaded


@pytest.fixture(scope="module")
def host_probability(trained_model_tag, window) -> float:
    model = load_model(trained_model_tag).model
    return float(model.predict_proba(compute_features(window).to_numpy()[-1:])[0])


def _bento_server_env(built_bento, overrides: dict | None = None) -> dict[str, str]:
    env = server_env(os.environ["BENTOML_HOME"], built_bento.model_tag, overrides)
    env["BENTOML_CONFIG"] = str(built_bento.path / "src" / "configuration.yaml")
    return env


@pytest.mark.integration
def test_built_bento_serves_predict_over_http(built_bento, window, host_probability, tmp_path):
    port = free_port()
    args = ["serve", built_bento.tag, "--host", "127.0.0.1", "--port", str(port)]
    args += ["--api-workers", "1"]
    with (
        HttpClient(f"http://127.0.0.1:{port}") as service,
        running_server(
            args, _bento_server_env(built_bento), tmp_path / "http.log", service.is_ready
        ),
    ):
        answer = service.predict(window)
    assert answer["model_tag"] == built_bento.model_tag
    assert answer["probability_up"] == pytest.approx(host_probability, abs=1e-6)


@pytest.mark.integration
def test_built_bento_serves_predict_over_grpc(built_bento, window, host_probability, tmp_path):
    port, metrics_port = free_port(), free_port()
    metrics = {"api_server": {"grpc": {"metrics": {"port": metrics_port}}}}
    args = ["serve-grpc", built_bento.tag, "--host", "127.0.0.1", "--port", str(port)]
    args += ["--api-workers", "1"]
    env = _bento_server_env(built_bento, metrics)
    with (
        GrpcClient(f"127.0.0.1:{port}") as service,
        running_server(args, env, tmp_path / "grpc.log", service.is_ready),
    ):
        answer = service.predict(window)
    assert answer["model_tag"] == built_bento.model_tag
    assert answer["probability_up"] == pytest.approx(host_probability, abs=1e-6)


def test_uvicorn_runs_with_its_c_parts_in_the_bento():
    """uvloop and httptools are pinned for the bento, and uvicorn's "auto" choices (which
    BentoML's API and runner servers use) pick them, not asyncio's loop and h11."""
    from uvicorn.loops.auto import auto_loop_factory
    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    served = (REPO_ROOT / "requirements-serving.txt").read_text().splitlines()
    assert any(line.startswith("uvloop==") for line in served)
    assert any(line.startswith("httptools==") for line in served)
    assert AutoHTTPProtocol.__name__ == "HttpToolsProtocol"
    assert auto_loop_factory(use_subprocess=False).__module__.startswith("uvloop")
