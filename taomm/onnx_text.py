"""The retrieval model's text tower as an ONNX graph, run by onnxruntime on CPU.

A search encodes one short query at a time, where torch's per-operator overhead outweighs
the arithmetic; onnxruntime runs the same graph with fused kernels (benchmarks/onnx_encoder.py).

The graph is exactly ``InterBertForRetrieval.encode_text``, in fp32:

    input_ids       (B, T) int64  [CLS] tokens [SEP], padded
    attention_mask  (B, T) bool   True on real tokens
    text_vectors    (B, E) float32 unit vectors

with B and T dynamic. It is exported by ``torch.onnx.export(dynamo=True)`` (the torch.export
based exporter, torch's default since 2.9; it needs ``onnxscript``), then checked against
torch on a padded batch before it is kept. onnx, onnxscript and onnxruntime are the ``onnx``
extra (``pip install 'taomm[onnx]'``) and are imported only inside the functions here.
"""

from __future__ import annotations

import copy
import hashlib
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from taomm.errors import IndexIntegrityError, TaommError

ONNX_NAME = "text_encoder.onnx"  # its file name in an index version folder
# ONNX's own Gelu op is opset 20; onnxruntime runs opset 20 from 1.17 on (the extra's floor).
OPSET = 20
INPUT_NAMES = ("input_ids", "attention_mask")
OUTPUT_NAME = "text_vectors"
PARITY_MIN_COSINE = 0.999  # the least cosine to torch that an exported graph must reach
EXTRA_HINT = "pip install 'taomm[onnx]'"


def _require(*modules: str, purpose: str) -> None:
    """Import ``modules`` or raise one TaommError naming the first that is missing."""
    import importlib

    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:
            raise TaommError(f"{purpose} needs the onnx extra: {EXTRA_HINT} ({name} is missing)") from None


def require_exporter() -> None:
    """Raise a TaommError unless the ONNX export (and its parity check) can run here."""
    _require("onnx", "onnxscript", "onnxruntime", purpose="exporting the text encoder to ONNX")


def onnxruntime_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def export_text_encoder(model: Any, path: str | os.PathLike[str], opset: int = OPSET) -> Path:
    """Write ``model.encode_text`` (an ``InterBertForRetrieval``) to ``path`` as ONNX, with
    dynamic batch and sequence axes, after checking it against torch on a padded batch."""
    import torch

    class TextTower(torch.nn.Module):
        """``model.encode_text`` as a forward, for the exporter."""

        def __init__(self, model: Any) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            return self.model.encode_text(input_ids, attention_mask)

    require_exporter()
    path = Path(path)
    # Export an fp32 copy on the CPU: the graph must not depend on where the model was
    # trained or what it runs on, and the caller's model keeps its device and mode.
    tower = TextTower(copy.deepcopy(model)).float().cpu().eval()
    # Batch 2, 8 tokens: neither 0 nor 1, so torch.export does not specialise the axes.
    example = (torch.ones(2, 8, dtype=torch.long), torch.ones(2, 8, dtype=torch.bool))
    axes = {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"}}
    with warnings.catch_warnings():
        # Both inputs share the two axis names on purpose; the exporter warns about it.
        warnings.filterwarnings("ignore", message=".*will not be used, since it shares the same shape")
        torch.onnx.export(tower, example, str(path), input_names=list(INPUT_NAMES), output_names=[OUTPUT_NAME],
                          opset_version=opset, dynamo=True, dynamic_shapes=axes, external_data=False,
                          verbose=False)
    _check_parity(tower, path)
    return path


def _check_parity(tower: Any, path: Path) -> None:
    """Raise when the ONNX graph at ``path`` and ``tower`` disagree on a padded batch."""
    import torch

    cfg = tower.model.config
    T = min(11, cfg.max_position_embeddings)
    input_ids = np.random.default_rng(0).integers(0, cfg.vocab_size, (3, T)).astype(np.int64)
    mask = np.arange(T)[None, :] < np.array([[T], [T // 2], [2]])  # (3, T): full, half, CLS + SEP
    input_ids[~mask] = 0
    with torch.no_grad():
        expected = tower(torch.from_numpy(input_ids), torch.from_numpy(mask)).numpy()
    got = OnnxTextEncoder(path)(input_ids, mask)
    cosine = float((expected * got).sum(1).min())
    if got.shape != expected.shape or not cosine >= PARITY_MIN_COSINE:
        raise TaommError(f"the ONNX text encoder {path} disagrees with torch (cosine {cosine:.6f}, "
                         f"shapes {got.shape} and {expected.shape})")


class OnnxTextEncoder:
    """The text tower in onnxruntime on CPU: token ids and mask (B, T) -> unit vectors (B, E),
    as ``taomm.query_encoder.TorchTextEncoder``. With ``sha256``, the bytes loaded are checked
    against it (the ones read, not the file as it was checked before)."""

    backend = "onnx"

    def __init__(self, path: str | os.PathLike[str], sha256: str | None = None, threads: int = 0) -> None:
        _require("onnxruntime", purpose="the ONNX text encoder")
        import onnxruntime as ort

        self.path = Path(path)
        data = self.path.read_bytes()
        if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
            raise IndexIntegrityError(f"{self.path} does not match its sha256 in the manifest (changed or "
                                      "truncated): export the index again with its ONNX encoder")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads  # 0: onnxruntime's default, one per physical core
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Idle threads sleep instead of spinning: they would take the cores from torch (ITM
        # rerank, the server) between queries; measured, this costs the encoder itself nothing.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise TaommError(f"onnxruntime cannot load {self.path}: {exc}") from None

    def __call__(self, input_ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        feeds = {"input_ids": np.ascontiguousarray(input_ids, dtype=np.int64),
                 "attention_mask": np.ascontiguousarray(mask, dtype=bool)}
        (vectors,) = self.session.run([OUTPUT_NAME], feeds)
        return vectors.astype(np.float32, copy=False)
