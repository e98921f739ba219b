"""The tests' server defaults on top of :mod:`devtools` (the one launcher): one worker per
runner, and the prediction log in the server's own home."""

from __future__ import annotations

import json
from pathlib import Path

import devtools

TEST_CONFIG_OVERRIDES = {
    # One worker per runner and one API worker: fewer processes on small CI machines. The
    # batching settings are the shipped configuration.yaml's.
    "runners": {"features": {"resources": {"cpu": 1}}, "direction": {"resources": {"cpu": 1}}},
}


def server_env(bentoml_home: str, model_tag: str, overrides: dict | None = None) -> dict[str, str]:
    """Environment of a test server: the test store, the model, the shipped configuration with
    :data:`TEST_CONFIG_OVERRIDES` (and ``overrides``, merged per top-level key)."""
    merged = json.loads(json.dumps(TEST_CONFIG_OVERRIDES))
    # The prediction log (bentoml.monitor) goes to the server's home, not the working directory.
    merged["monitoring"] = {"options": {"log_path": str(Path(bentoml_home) / "prediction_logs")}}
    for key, value in (overrides or {}).items():
        merged[key] = {**merged.get(key, {}), **value}
    return devtools.server_env(bentoml_home, model_tag, config_overrides=merged)
