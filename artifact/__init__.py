"""The model artifact: one owner for a stored model version, its files and its contract.

Training writes versions through :func:`save_model`; serving, the backtest and monitoring read
them through :func:`load_model` (contract and checksums verified) and :func:`read_reference`.
No torch here: serving runs the ONNX export with :class:`OnnxPredictor`, and the bento ships
this package whole.

Modules (private; everything public is re-exported here):
    _layout: the model name, stages, file names and required metadata keys.
    _store: the BentoML model store: save (atomic), list, resolve, load, stages, drift reference.
    _predictor: the ONNX Runtime predictor (scaler arrays + ``model.onnx``).
    _expiry: a model's age and expiry (``trained_at``, ``expires_at`` in the metadata).
"""

from artifact._expiry import (
    EXPIRES_AT,
    LIFETIME_HOURS,
    NO_EXPIRY,
    TRAINED_AT,
    expiry_after,
    model_age,
)
from artifact._layout import (
    CONFIG_FILE,
    MODEL_FILES,
    MODEL_NAME,
    ONNX_FILE,
    ONNX_INPUT,
    ONNX_OUTPUT,
    REFERENCE_FILE,
    REPORT_DIR,
    REQUIRED_METADATA,
    SCALER_FILE,
    STAGES,
    WEIGHTS_FILE,
)
from artifact._predictor import OnnxPredictor
from artifact._store import (
    LoadedModel,
    ModelContractError,
    Runtime,
    check_contract,
    list_models,
    load_model,
    model_summary,
    read_reference,
    resolve_tag,
    save_model,
    set_stage,
    stage_lock,
)

__all__ = [
    "EXPIRES_AT",
    "LIFETIME_HOURS",
    "NO_EXPIRY",
    "TRAINED_AT",
    "expiry_after",
    "model_age",
    "CONFIG_FILE",
    "MODEL_FILES",
    "MODEL_NAME",
    "ONNX_FILE",
    "ONNX_INPUT",
    "ONNX_OUTPUT",
    "REFERENCE_FILE",
    "REPORT_DIR",
    "REQUIRED_METADATA",
    "SCALER_FILE",
    "STAGES",
    "WEIGHTS_FILE",
    "LoadedModel",
    "ModelContractError",
    "OnnxPredictor",
    "Runtime",
    "check_contract",
    "list_models",
    "load_model",
    "model_summary",
    "read_reference",
    "resolve_tag",
    "save_model",
    "set_stage",
    "stage_lock",
]
