"""The direction model: a PyTorch MLP behind a scikit-learn StandardScaler. No BentoML here.

Persistence is weights, not pickles: the MLP as a ``state_dict`` plus its constructor config as
JSON, the scaler as plain arrays in JSON. :meth:`DirectionModel.save` / :meth:`DirectionModel.load`
read and write those files, named by :mod:`artifact`, in a directory (the BentoML model's
directory, see :func:`artifact.save_model`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from sklearn.preprocessing import StandardScaler
from torch import nn

from artifact import CONFIG_FILE, ONNX_FILE, ONNX_INPUT, ONNX_OUTPUT, SCALER_FILE, WEIGHTS_FILE

ONNX_OPSET = 17


@dataclass(frozen=True)
class MLPConfig:
    """Constructor arguments of :class:`DirectionMLP` (saved as JSON beside the weights)."""

    n_features: int
    hidden_sizes: tuple[int, ...] = (64, 32)
    dropout: float = 0.1

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> MLPConfig:
        raw = json.loads(text)
        return cls(
            n_features=int(raw["n_features"]),
            hidden_sizes=tuple(int(h) for h in raw["hidden_sizes"]),
            dropout=float(raw["dropout"]),
        )


class DirectionMLP(nn.Module):
    """Feed-forward net: ``n_features -> hidden... -> 1`` logit of P(close goes up)."""

    def __init__(self, config: MLPConfig):
        super().__init__()
        layers: list[nn.Module] = []
        width = config.n_features
        for hidden in config.hidden_sizes:
            layers += [nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(config.dropout)]
            width = hidden
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)
        self.config = config

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)


class _ProbabilityHead(nn.Module):
    """The MLP followed by a sigmoid: what the ONNX export computes."""

    def __init__(self, mlp: DirectionMLP):
        super().__init__()
        self.mlp = mlp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.mlp(x))


def export_onnx(mlp: DirectionMLP, path: Path) -> None:
    """Export the MLP (+ sigmoid) to ONNX with a dynamic batch axis: the serving runtime.

    Scaled float32 features ``(n, n_features)`` in, P(up) ``(n,)`` out. Uses the TorchScript-based
    exporter, which needs only the ``onnx`` package (no onnxscript).
    """
    was_training = mlp.training
    mlp.eval()
    example = torch.zeros(2, mlp.config.n_features)
    torch.onnx.export(
        _ProbabilityHead(mlp),
        (example,),
        str(path),
        input_names=[ONNX_INPUT],
        output_names=[ONNX_OUTPUT],
        dynamic_axes={ONNX_INPUT: {0: "batch"}, ONNX_OUTPUT: {0: "batch"}},
        opset_version=ONNX_OPSET,
        dynamo=False,
    )
    mlp.train(was_training)


def scaler_to_dict(scaler: StandardScaler, feature_names: list[str]) -> dict:
    """A fitted StandardScaler as plain arrays (JSON-safe)."""
    return {
        "feature_names": list(feature_names),
        "mean": scaler.mean_.tolist(),
        "scale": scaler.scale_.tolist(),
        "var": scaler.var_.tolist(),
        "n_samples_seen": int(np.asarray(scaler.n_samples_seen_).max()),
    }


def scaler_from_dict(raw: dict) -> StandardScaler:
    """Rebuild the StandardScaler from its arrays; ``transform`` is then sklearn's own."""
    scaler = StandardScaler()
    scaler.mean_ = np.asarray(raw["mean"], dtype="float64")
    scaler.scale_ = np.asarray(raw["scale"], dtype="float64")
    scaler.var_ = np.asarray(raw["var"], dtype="float64")
    scaler.n_samples_seen_ = int(raw["n_samples_seen"])
    scaler.n_features_in_ = len(scaler.mean_)
    return scaler


@dataclass
class DirectionModel:
    """Scaler + MLP + decision threshold: features in, probability of an up move out."""

    mlp: DirectionMLP
    scaler: StandardScaler
    feature_names: list[str]
    threshold: float = 0.5
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.mlp.eval()

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """P(up) for each row of ``features`` (``(n, len(feature_names))``, raw, unscaled)."""
        x = np.asarray(features, dtype="float64")
        if x.ndim != 2 or x.shape[1] != len(self.feature_names):
            raise ValueError(f"expected (n, {len(self.feature_names)}) features, got {x.shape}")
        scaled = self.scaler.transform(x).astype("float32")
        with torch.inference_mode():
            logits = self.mlp(torch.from_numpy(scaled))
        return torch.sigmoid(logits).double().numpy()

    def signal(self, probability_up: np.ndarray) -> np.ndarray:
        """``long`` where P(up) >= threshold, else ``flat``."""
        return np.where(np.asarray(probability_up) >= self.threshold, "long", "flat")

    def save(self, directory: Path) -> None:
        """Write weights (state_dict), config, scaler arrays and the ONNX export."""
        directory = Path(directory)
        torch.save(self.mlp.state_dict(), directory / WEIGHTS_FILE)
        export_onnx(self.mlp, directory / ONNX_FILE)
        (directory / CONFIG_FILE).write_text(self.mlp.config.to_json())
        (directory / SCALER_FILE).write_text(
            json.dumps(scaler_to_dict(self.scaler, self.feature_names), indent=2)
        )

    @classmethod
    def load(cls, directory: Path, *, threshold: float = 0.5) -> DirectionModel:
        """Rebuild from ``directory``. Weights load with ``weights_only=True``: no pickled code
        runs, and a file holding anything but tensors is refused."""
        directory = Path(directory)
        config = MLPConfig.from_json((directory / CONFIG_FILE).read_text())
        mlp = DirectionMLP(config)
        state = torch.load(directory / WEIGHTS_FILE, weights_only=True, map_location="cpu")
        mlp.load_state_dict(state)
        raw_scaler = json.loads((directory / SCALER_FILE).read_text())
        scaler = scaler_from_dict(raw_scaler)
        if scaler.n_features_in_ != config.n_features:
            raise ValueError(
                f"scaler has {scaler.n_features_in_} features, MLP expects {config.n_features}"
            )
        return cls(
            mlp=mlp,
            scaler=scaler,
            feature_names=list(raw_scaler["feature_names"]),
            threshold=threshold,
        )
