"""The InterBERT model: config, backbone, heads, checkpoints (DESIGN.md section 6).

The names below load on first use (PEP 562), so that ``taomm.model.config`` -- the config
and the checkpoint's file names -- can be read without importing torch (a quick ``taomm search``
with the ONNX query encoder never needs it).
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "InterBertConfig": "config",
    "InterBertForSequenceClassification": "glue",
    "InterBertContrastiveHead": "heads",
    "InterBertForPretraining": "heads",
    "InterBertForRetrieval": "heads",
    "InterBertPretrainingOutput": "heads",
    "InterBertModel": "modeling",
    "InterBertOutput": "modeling",
    "InterBertPreTrainedModel": "pretrained",
    "LoadReport": "pretrained",
    "bert_key_map": "pretrained",
    "count_parameters": "summary",
    "InterBertForMultipleChoice": "vcr",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
