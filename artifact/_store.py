"""The hand-off between training and serving: the BentoML model store.

A model version is a BentoML model (``btcusdt_mlp:<version>``) whose directory holds the files
named in :mod:`artifact._layout` (written by :meth:`training.model.DirectionModel.save`, plus the
drift reference and the report), and whose metadata carries the model's contract.
:func:`load_model` checks the contract and every file's checksum, and fails loudly with the
reason; nothing half-loaded is returned.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

import bentoml
import pandas as pd
from bentoml.exceptions import NotFound

from artifact._expiry import expires_at, model_age, trained_at
from artifact._layout import MODEL_FILES, MODEL_NAME, REFERENCE_FILE, REQUIRED_METADATA, STAGES
from artifact._predictor import OnnxPredictor
from features import FEATURE_NAMES, FEATURE_SET_VERSION, WARMUP_BARS
from policy import DecisionPolicy, PolicyError, policy_from_metadata

if TYPE_CHECKING:
    from training.model import DirectionModel

Runtime = Literal["onnx", "torch"]


class ModelContractError(RuntimeError):
    """The stored model cannot be served by this code: missing, corrupted or mismatched."""


@dataclass
class LoadedModel:
    """A model rebuilt from the store, with the tag and metadata it came from."""

    tag: str
    model: OnnxPredictor | DirectionModel  # both: predict_proba, signal, threshold, feature_names
    metadata: dict[str, Any]
    labels: dict[str, str]

    @property
    def stage(self) -> str:
        return self.labels.get("stage", "candidate")

    @property
    def label_horizon(self) -> int:
        return int(self.metadata["label_horizon"])

    @property
    def warmup_bars(self) -> int:
        return int(self.metadata["warmup_bars"])

    @functools.cached_property
    def policy(self) -> DecisionPolicy:
        """The decision policy stored with the model (models saved before policies: the plain
        threshold rule at their stored ``threshold``)."""
        return policy_from_metadata(self.metadata)[0]

    @functools.cached_property
    def policy_source(self) -> str:
        """Where :attr:`policy` came from (for old models: ``policy.PLAIN_SOURCE``)."""
        return policy_from_metadata(self.metadata)[1]

    @property
    def trained_at(self) -> pd.Timestamp | None:
        return trained_at(self.metadata)

    @property
    def expires_at(self) -> pd.Timestamp | None:
        """When the model expires (None: no expiry recorded, or a lifetime of 0)."""
        return expires_at(self.metadata)

    @property
    def bar_interval(self) -> pd.Timedelta:
        """The bar interval the model was trained on (models saved without it are hourly)."""
        return pd.Timedelta(seconds=int(self.metadata.get("bar_interval_s", 3600)))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def save_model(
    model: DirectionModel,
    *,
    metadata: Mapping[str, Any],
    labels: Mapping[str, str] | None = None,
    reference: Mapping[str, Any] | None = None,
    extra_files: Mapping[str, Path] | None = None,
    name: str = MODEL_NAME,
) -> str:
    """Create a new version in the BentoML store; returns its tag ``name:version``.

    ``metadata`` must hold the training facts (label_horizon, train_range, holdout_range,
    metrics, data_sha256...); the feature contract, threshold and file checksums are added
    here. ``reference`` is the drift reference profile
    (``monitoring.drift_stats.reference_profile``), stored as ``reference.json``.
    ``extra_files`` (name -> path) are copied in, e.g. the training report and plots.

    Creation is atomic, even against ``kill -9``: BentoML 1.4.39 makes the version's folder in
    the store and then copies the files into it, so a crash mid-copy would leave a partial
    version (listed and resolved as the newest, or, without ``model.yaml``, breaking every
    listing). Here BentoML writes into a staging store on the same filesystem and the finished
    folder is renamed into the store in one step (tested in
    tests/integration/test_reliability_training.py).
    """
    full_meta: dict[str, Any] = dict(metadata)
    full_meta.update(
        feature_names=list(model.feature_names),
        warmup_bars=WARMUP_BARS,
        feature_set_version=FEATURE_SET_VERSION,
        threshold=float(model.threshold),
    )
    interval = str(metadata.get("bar_interval", "1h"))
    all_labels = {"stage": "candidate", "market": "BTCUSDT", "interval": interval, **(labels or {})}
    signatures: dict[str, Any] = {"predict_proba": {"batchable": True, "batch_dim": 0}}
    from bentoml._internal.configuration.containers import BentoMLContainer
    from bentoml._internal.models.model import ModelStore

    store = Path(os.path.realpath(BentoMLContainer.model_store_dir.get()))
    store.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".model-staging-", dir=store.parent))
    try:
        contents = (reference, extra_files or {})
        tag = _create_model(
            model, name, all_labels, full_meta, signatures, contents, ModelStore(staging)
        )
        _publish(staging, store, bentoml.Tag.from_taglike(tag))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return tag


def _publish(staging: Path, store: Path, tag: bentoml.Tag) -> None:
    """Move a finished version from the staging store into the store (one ``rename``), then
    point BentoML's ``<name>/latest`` file at it (written aside and renamed over)."""
    assert tag.version is not None
    target = store / tag.name / tag.version
    target.parent.mkdir(parents=True, exist_ok=True)
    (staging / tag.name / tag.version).rename(target)
    latest = store / tag.name / "latest"
    scratch = latest.with_name(f".latest.{os.getpid()}.tmp")
    scratch.write_text(tag.version)
    scratch.replace(latest)


def _create_model(
    model: DirectionModel,
    name: str,
    labels: dict[str, str],
    metadata: dict[str, Any],
    signatures: dict[str, Any],
    contents: tuple[Mapping[str, Any] | None, Mapping[str, Path]],
    model_store: Any,
) -> str:
    """Write the version into ``model_store`` (BentoML: temp folder, then copy): the model's
    files, then ``contents`` (the drift reference or None, and the extra files)."""
    reference, extra_files = contents
    with bentoml.models.create(
        name,
        labels=labels,
        metadata=metadata,
        module="artifact",
        signatures=signatures,
        _model_store=model_store,
    ) as bento_model:
        directory = Path(bento_model.path)
        model.save(directory)
        if reference is not None:
            (directory / REFERENCE_FILE).write_text(json.dumps(reference))
        for file_name, source in extra_files.items():
            target = directory / file_name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(Path(source).read_bytes())
        checksums = {
            str(p.relative_to(directory)): _sha256(p)
            for p in sorted(directory.rglob("*"))
            if p.is_file() and p.name != "model.yaml"
        }
        bento_model.info.metadata["files_sha256"] = cast(Any, checksums)
        missing = [k for k in REQUIRED_METADATA if k not in bento_model.info.metadata]
        if missing:
            raise ValueError(f"metadata is missing {missing}")
        tag = str(bento_model.tag)
    return tag


def list_models(name: str = MODEL_NAME) -> list[bentoml.Model]:
    """Every stored version of ``name``, newest first."""
    try:
        models = bentoml.models.list(name)
    except NotFound:
        return []
    return sorted(models, key=lambda m: m.info.creation_time, reverse=True)


def set_stage(tag: str, stage: str, *, extra_labels: Mapping[str, str] | None = None) -> None:
    """Set a stored version's ``stage`` label (and ``extra_labels``), atomically.

    Labels live in the version's ``model.yaml``. It is rewritten from BentoML's own
    ``ModelInfo.to_dict()`` (what ``Model.flush`` dumps), checked to parse back with
    ``ModelInfo.from_yaml_file``, and swapped in with an atomic rename: a concurrent reader sees
    the old file or the new one, never a half-written one. ``files_sha256`` does not cover
    ``model.yaml``, so the weights' checksums stay valid. Callers that change several versions
    (promotion) serialise themselves with :func:`stage_lock`.

    Raises:
        ValueError: unknown stage. ModelContractError: the tag is not in the store.
    """
    import io
    import os

    import yaml
    from bentoml._internal.models.model import MODEL_YAML_FILENAME, ModelInfo

    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
    try:
        bento_model = bentoml.models.get(tag)
    except NotFound as exc:
        raise ModelContractError(f"model {tag!r} is not in the BentoML model store") from exc
    raw = bento_model.info.to_dict()
    raw["labels"] = {**raw.get("labels", {}), **(extra_labels or {}), "stage": stage}
    text = yaml.safe_dump(raw, sort_keys=False)
    ModelInfo.from_yaml_file(io.StringIO(text))  # BentoML can read what we are about to write
    target = Path(bento_model.path) / MODEL_YAML_FILENAME
    scratch = target.with_name(f".{MODEL_YAML_FILENAME}.{os.getpid()}.tmp")
    with scratch.open("w", encoding="utf8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    scratch.replace(target)


def stage_lock(name: str = MODEL_NAME) -> Any:
    """An exclusive inter-process lock (``fcntl.flock``) for changing stages of ``name``."""
    import contextlib
    import fcntl

    models = list_models(name)
    if not models:
        raise ModelContractError(f"no {name!r} model in the BentoML model store")
    # The store's per-name folder; BentoML lists only sub-folders there, so a file is harmless.
    lock_path = Path(models[0].path).parent / ".stage.lock"

    @contextlib.contextmanager
    def locked() -> Any:
        with lock_path.open("a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    return locked()


def resolve_tag(tag: str | None = None, name: str = MODEL_NAME) -> str:
    """The tag to serve: ``tag`` if given, else the ``production`` version, else the newest.

    Raises:
        ModelContractError: nothing in the store (or the given tag does not exist).
    """
    if tag:
        try:
            return str(bentoml.models.get(tag).tag)
        except NotFound as exc:
            raise ModelContractError(f"model {tag!r} is not in the BentoML model store") from exc
    models = list_models(name)
    if not models:
        raise ModelContractError(
            f"no {name!r} model in the BentoML model store: train one with "
            "`python -m training.train`"
        )
    production = [m for m in models if m.info.labels.get("stage") == "production"]
    return str((production or models)[0].tag)


def check_contract(metadata: Mapping[str, Any], tag: str) -> None:
    """Refuse a model whose feature contract differs from this code's ``features/``, or whose
    stored decision policy is invalid (models without one use the plain threshold)."""
    missing = [k for k in REQUIRED_METADATA if k not in metadata]
    if missing:
        raise ModelContractError(f"{tag}: metadata lacks {missing}")
    if list(metadata["feature_names"]) != list(FEATURE_NAMES):
        raise ModelContractError(
            f"{tag}: feature contract mismatch: model was trained on "
            f"{list(metadata['feature_names'])}, this code computes {list(FEATURE_NAMES)}"
        )
    if int(metadata["warmup_bars"]) != WARMUP_BARS:
        raise ModelContractError(
            f"{tag}: warm-up mismatch: model expects {metadata['warmup_bars']} bars, "
            f"features/ declares {WARMUP_BARS}"
        )
    if str(metadata["feature_set_version"]) != FEATURE_SET_VERSION:
        raise ModelContractError(
            f"{tag}: feature set version {metadata['feature_set_version']} != {FEATURE_SET_VERSION}"
        )
    try:
        policy_from_metadata(metadata)
    except PolicyError as exc:
        raise ModelContractError(f"{tag}: invalid decision policy: {exc}") from None


def load_model(
    tag: str | None = None, name: str = MODEL_NAME, *, runtime: Runtime = "onnx"
) -> LoadedModel:
    """Resolve, verify (contract + file checksums) and rebuild a stored model.

    ``runtime="onnx"`` (serving, backtest) runs the ONNX export with ONNX Runtime and needs no
    torch; ``runtime="torch"`` rebuilds the trained ``DirectionMLP`` from its state_dict.

    Raises:
        ModelContractError: with the tag and the reason (missing model, missing or corrupted
            file, contract mismatch, unloadable weights).
    """
    resolved = resolve_tag(tag, name)
    bento_model = bentoml.models.get(resolved)
    metadata: dict[str, Any] = dict(bento_model.info.metadata)
    check_contract(metadata, resolved)
    directory = Path(bento_model.path)
    for file_name in MODEL_FILES:
        if not (directory / file_name).is_file():
            raise ModelContractError(f"{resolved}: file {file_name} is missing")
    for file_name, expected in dict(metadata["files_sha256"]).items():
        path = directory / file_name
        if not path.is_file():
            raise ModelContractError(f"{resolved}: file {file_name} is missing")
        if _sha256(path) != expected:
            raise ModelContractError(f"{resolved}: file {file_name} is corrupted (sha256 mismatch)")
    threshold = float(metadata["threshold"])
    model: OnnxPredictor | DirectionModel
    try:
        if runtime == "onnx":
            model = OnnxPredictor.load(directory, threshold=threshold)
        else:
            from training.model import DirectionModel

            model = DirectionModel.load(directory, threshold=threshold)
    except Exception as exc:  # weights_only refusal, shape mismatch, bad JSON
        raise ModelContractError(f"{resolved}: cannot load model files: {exc}") from exc
    if model.feature_names != list(FEATURE_NAMES):
        raise ModelContractError(f"{resolved}: scaler feature names differ from the contract")
    return LoadedModel(
        tag=resolved, model=model, metadata=metadata, labels=dict(bento_model.info.labels)
    )


def read_reference(tag: str) -> dict[str, Any] | None:
    """The drift reference profile (``reference.json``) of a stored version.

    One policy for every reader: None when the version was saved without one (before drift
    monitoring existed); an error when it should have one and cannot give it.

    Raises:
        ModelContractError: the tag is not in the store, or its reference is missing although
            its checksums list one, corrupted (sha256 mismatch) or not JSON.
    """
    try:
        bento_model = bentoml.models.get(tag)
    except NotFound as exc:
        raise ModelContractError(f"model {tag!r} is not in the BentoML model store") from exc
    path = Path(bento_model.path) / REFERENCE_FILE
    checksums: dict[str, str] = cast(Any, bento_model.info.metadata.get("files_sha256", {}))
    expected = checksums.get(REFERENCE_FILE)
    if expected is None and not path.is_file():
        return None
    if not path.is_file():
        raise ModelContractError(f"{tag}: file {REFERENCE_FILE} is missing")
    if expected is not None and _sha256(path) != expected:
        raise ModelContractError(f"{tag}: file {REFERENCE_FILE} is corrupted (sha256 mismatch)")
    try:
        return json.loads(path.read_text())
    except ValueError as exc:
        raise ModelContractError(f"{tag}: file {REFERENCE_FILE} is not JSON: {exc}") from exc


def model_summary(loaded: LoadedModel) -> dict[str, Any]:
    """JSON-safe description of a loaded model (for the model-info API and CLIs)."""
    meta = loaded.metadata
    policy, source = policy_from_metadata(meta)
    return json.loads(
        json.dumps(
            {
                "model_tag": loaded.tag,
                "stage": loaded.stage,
                "labels": loaded.labels,
                "feature_names": meta["feature_names"],
                "warmup_bars": meta["warmup_bars"],
                "label_horizon": meta["label_horizon"],
                "threshold": meta["threshold"],
                "policy": {
                    **policy.to_dict(),
                    "rule": policy.describe(),
                    "source": source,
                    "positions": list(policy.positions_allowed()),
                },
                "train_range": meta["train_range"],
                "holdout_range": meta["holdout_range"],
                "data_sha256": meta["data_sha256"],
                "metrics": meta["metrics"],
                "expiry": model_age(meta),
            },
            default=str,
        )
    )
