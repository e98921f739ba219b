"""Model runtime choice: PyTorch eager vs TorchScript vs ONNX Runtime, measured in one run.

Prints per-call latency (batch 1 and 64), parity with the eager model, cold-start (import +
load, in a fresh interpreter) and installed size of each runtime. Usage:
``.venv/bin/python -m benchmarks.bench_runtime``
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from features import FEATURE_NAMES
from training.model import DirectionMLP, MLPConfig, export_onnx


def _per_call_us(fn, x, repeats: int = 2000) -> float:
    for _ in range(50):
        fn(x)
    start = time.perf_counter()
    for _ in range(repeats):
        fn(x)
    return (time.perf_counter() - start) / repeats * 1e6


def _cold_start_s(code: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    return time.perf_counter() - start


def _site_size_mb(*packages: str) -> float:
    import importlib.util

    total = 0
    for name in packages:
        spec = importlib.util.find_spec(name)
        if spec and spec.submodule_search_locations:
            root = Path(next(iter(spec.submodule_search_locations)))
            total += sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    return total / 1e6


def main() -> None:
    import onnxruntime as ort

    torch.manual_seed(0)
    torch.set_num_threads(1)
    mlp = DirectionMLP(MLPConfig(len(FEATURE_NAMES), (64, 32), 0.1)).eval()
    scripted = torch.jit.script(mlp)
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = Path(tmp) / "model.onnx"
        export_onnx(mlp, onnx_path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        ts_path = Path(tmp) / "model.pt"
        scripted.save(str(ts_path))

        def eager(x):
            with torch.inference_mode():
                return torch.sigmoid(mlp(torch.from_numpy(x))).numpy()

        def torchscript(x):
            with torch.inference_mode():
                return torch.sigmoid(scripted(torch.from_numpy(x))).numpy()

        def onnx(x):
            return session.run(None, {"features": x})[0]

        rng = np.random.default_rng(0)
        print(f"{'runtime':<12}{'batch 1 us':>12}{'batch 64 us':>13}{'max |dp| vs eager':>20}")
        for name, fn in (("eager", eager), ("torchscript", torchscript), ("onnxruntime", onnx)):
            x64 = rng.normal(size=(64, len(FEATURE_NAMES))).astype("float32")
            diff = float(np.abs(fn(x64) - eager(x64)).max())
            print(
                f"{name:<12}{_per_call_us(fn, x64[:1]):>12.1f}{_per_call_us(fn, x64):>13.1f}"
                f"{diff:>20.2e}"
            )
        cold_torch = _cold_start_s(f"import torch; torch.jit.load({str(ts_path)!r})")
        cold_onnx = _cold_start_s(
            f"import onnxruntime as o; o.InferenceSession({str(onnx_path)!r}, "
            "providers=['CPUExecutionProvider'])"
        )
    print(f"cold start (import + load): torch {cold_torch:.2f} s, onnxruntime {cold_onnx:.2f} s")
    print(
        f"installed size: torch {_site_size_mb('torch'):.0f} MB (CPU build; a plain `torch` "
        f"requirement pulls CUDA, several GB), onnxruntime {_site_size_mb('onnxruntime'):.0f} MB"
    )


if __name__ == "__main__":
    main()
