"""The serving runtime (ONNX) against the trained torch model, and safe loading."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.preprocessing import StandardScaler

from artifact import ModelContractError, OnnxPredictor, load_model, save_model
from features import FEATURE_NAMES, compute_features
from training.model import DirectionMLP, DirectionModel, MLPConfig


@pytest.fixture(scope="module")
def real_features(btc_slice) -> np.ndarray:
    return compute_features(btc_slice).to_numpy()


@pytest.fixture(scope="module")
def torch_model(real_features) -> DirectionModel:
    torch.manual_seed(7)
    mlp = DirectionMLP(MLPConfig(len(FEATURE_NAMES), (32, 16), 0.1))
    scaler = StandardScaler().fit(real_features[:1500])
    return DirectionModel(mlp, scaler, list(FEATURE_NAMES), threshold=0.52)


def _metadata() -> dict:
    return {
        "label_horizon": 1,
        "train_range": ["2021-10-11T00:00:00+00:00", "2021-12-12T00:00:00+00:00"],
        "holdout_range": ["2021-12-13T00:00:00+00:00", "2022-01-01T00:00:00+00:00"],
        "metrics": {"holdout": {"model": {"roc_auc": 0.5}}},
        "data_sha256": "0" * 64,
    }


def test_onnx_runtime_matches_torch_model_to_1e6(tmp_path, torch_model, real_features):
    torch_model.save(tmp_path)
    onnx = OnnxPredictor.load(tmp_path, threshold=torch_model.threshold)
    expected = torch_model.predict_proba(real_features)
    got = onnx.predict_proba(real_features)
    assert got.shape == expected.shape == (len(real_features),)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    assert (onnx.signal(got) == torch_model.signal(expected)).mean() > 0.999


def test_onnx_scaling_is_bitwise_sklearn_transform(tmp_path, torch_model, real_features):
    torch_model.save(tmp_path)
    onnx = OnnxPredictor.load(tmp_path, threshold=0.5)
    expected = torch_model.scaler.transform(real_features)
    np.testing.assert_array_equal(onnx.scale(real_features), expected)


def test_store_round_trip_both_runtimes(torch_model, real_features):
    tag = save_model(torch_model, metadata=_metadata())
    for runtime in ("onnx", "torch"):
        loaded = load_model(tag, runtime=runtime)
        assert loaded.tag == tag
        assert loaded.model.threshold == pytest.approx(0.52)
        np.testing.assert_allclose(
            loaded.model.predict_proba(real_features[:50]),
            torch_model.predict_proba(real_features[:50]),
            atol=1e-6,
        )


class _Exploit:
    def __reduce__(self):
        return (Path.touch, (Path("/tmp/pwned-by-pickle"),))


def test_crafted_pickle_in_weights_is_refused(torch_model):
    import bentoml

    tag = save_model(torch_model, metadata=_metadata())
    weights = Path(bentoml.models.get(tag).path) / "weights.pt"
    weights.write_bytes(pickle.dumps({"net.0.weight": _Exploit()}))
    marker = Path("/tmp/pwned-by-pickle")
    marker.unlink(missing_ok=True)
    with pytest.raises(ModelContractError, match="corrupted"):
        load_model(tag, runtime="torch")
    # Even with a matching checksum, weights_only refuses to run the pickle's code.
    with pytest.raises(pickle.UnpicklingError):
        torch.load(weights, weights_only=True)
    assert not marker.exists()


def test_corrupted_onnx_file_is_refused(torch_model):
    import bentoml

    tag = save_model(torch_model, metadata=_metadata())
    onnx_file = Path(bentoml.models.get(tag).path) / "model.onnx"
    onnx_file.write_bytes(onnx_file.read_bytes()[:-10])
    with pytest.raises(ModelContractError, match="model.onnx is corrupted"):
        load_model(tag)


def test_drift_reference_is_stored_checksummed_and_read_back(torch_model, real_features):
    import bentoml

    from artifact import REFERENCE_FILE, read_reference
    from monitoring.drift_stats import reference_profile

    profile = reference_profile(real_features[:1000], FEATURE_NAMES)
    tag = save_model(torch_model, metadata=_metadata(), reference=profile)
    assert read_reference(tag) == profile
    stored = bentoml.models.get(tag)
    assert REFERENCE_FILE in stored.info.metadata["files_sha256"]
    (Path(stored.path) / REFERENCE_FILE).write_text("{}")
    with pytest.raises(ModelContractError, match="reference.json is corrupted"):
        read_reference(tag)
    (Path(stored.path) / REFERENCE_FILE).unlink()
    with pytest.raises(ModelContractError, match="reference.json is missing"):
        read_reference(tag)


def test_a_model_saved_without_reference_reads_as_none(torch_model):
    from artifact import read_reference

    assert read_reference(save_model(torch_model, metadata=_metadata())) is None
    with pytest.raises(ModelContractError, match="not in the BentoML model store"):
        read_reference("btcusdt_mlp:doesnotexist")
