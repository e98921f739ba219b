"""What a stored model version is made of: its name, stages, file names and metadata keys.

Declared here once. Training writes these files (:meth:`training.model.DirectionModel.save`,
:func:`artifact.save_model`); serving, the backtest and monitoring read them through
:mod:`artifact`. The metadata is the model's contract, checked on every load.
"""

from __future__ import annotations

MODEL_NAME = "btcusdt_mlp"
STAGES = ("candidate", "production", "archived")

WEIGHTS_FILE = "weights.pt"
"""The MLP's ``state_dict`` (``torch.save``; loaded with ``weights_only=True``)."""
CONFIG_FILE = "config.json"
"""The MLP's constructor arguments."""
SCALER_FILE = "scaler.json"
"""The StandardScaler as arrays: ``feature_names``, ``mean``, ``scale``, ``var``."""
ONNX_FILE = "model.onnx"
"""The MLP + sigmoid exported to ONNX: what serving runs."""
REFERENCE_FILE = "reference.json"
"""The drift reference: per-feature profile of the rows the final model was fit on."""
REPORT_DIR = "report"
"""Folder of the training report's files inside the model directory."""
MODEL_FILES = (WEIGHTS_FILE, CONFIG_FILE, SCALER_FILE, ONNX_FILE)
"""Files every version has (the reference and the report are optional)."""

ONNX_INPUT, ONNX_OUTPUT = "features", "probability_up"
"""Names of the ONNX graph's input (scaled float32 features) and output (P(up))."""

REQUIRED_METADATA = (
    "feature_names",
    "warmup_bars",
    "label_horizon",
    "threshold",
    "train_range",
    "holdout_range",
    "metrics",
    "data_sha256",
    "feature_set_version",
    "files_sha256",
)
"""Metadata keys every version carries; :func:`artifact.check_contract` refuses one without."""
