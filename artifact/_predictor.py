"""The serving runtime: scaler arrays + the ONNX export, run by ONNX Runtime. No torch here.

Chosen by measurement (``benchmarks/bench_runtime.py``, figures in docs/BENCHMARKS.md): ONNX
Runtime is as fast as or faster than PyTorch eager per call, starts faster, and keeps torch (a
CUDA build unless pinned to a local CPU wheel) out of the bento and the image. Parity with the
trained torch model is tested to 1e-6 (``tests/unit/test_predictor.py``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from artifact._layout import ONNX_FILE, ONNX_INPUT, SCALER_FILE


class OnnxPredictor:
    """Features in, probability of an up move out; same interface as the torch model."""

    def __init__(
        self,
        session,
        *,
        mean: np.ndarray,
        scale: np.ndarray,
        feature_names: list[str],
        threshold: float,
    ):
        self._session = session
        self._mean = np.asarray(mean, dtype="float64")
        self._scale = np.asarray(scale, dtype="float64")
        self.feature_names = list(feature_names)
        self.threshold = float(threshold)

    @classmethod
    def load(cls, directory: Path, *, threshold: float, intra_op_threads: int = 1) -> OnnxPredictor:
        """Open ``model.onnx`` and ``scaler.json`` from a model directory (no pickle anywhere)."""
        import onnxruntime as ort

        directory = Path(directory)
        scaler = json.loads((directory / SCALER_FILE).read_text())
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(
            str(directory / ONNX_FILE), options, providers=["CPUExecutionProvider"]
        )
        n_inputs = session.get_inputs()[0].shape[1]
        if n_inputs != len(scaler["mean"]):
            n_scaler = len(scaler["mean"])
            raise ValueError(f"ONNX model takes {n_inputs} features, scaler has {n_scaler}")
        return cls(
            session,
            mean=scaler["mean"],
            scale=scaler["scale"],
            feature_names=scaler["feature_names"],
            threshold=threshold,
        )

    def scale(self, features: np.ndarray) -> np.ndarray:
        """StandardScaler.transform, the same float64 operations sklearn performs."""
        return (np.asarray(features, dtype="float64") - self._mean) / self._scale

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """P(up) for each row of raw (unscaled) ``features`` ``(n, len(feature_names))``."""
        x = np.asarray(features, dtype="float64")
        if x.ndim != 2 or x.shape[1] != len(self.feature_names):
            raise ValueError(f"expected (n, {len(self.feature_names)}) features, got {x.shape}")
        scaled = self.scale(x).astype("float32")
        (probability,) = self._session.run(None, {ONNX_INPUT: scaled})
        return np.asarray(probability, dtype="float64").reshape(-1)

    def signal(self, probability_up: np.ndarray) -> np.ndarray:
        """``long`` where P(up) >= threshold, else ``flat``."""
        return np.where(np.asarray(probability_up) >= self.threshold, "long", "flat")
