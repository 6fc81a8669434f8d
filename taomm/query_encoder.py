"""The query encoder in torch: the retrieval model's text tower, token ids and mask (B, T) ->
unit vectors (B, E). Its ONNX twin is ``taomm.onnx_text.OnnxTextEncoder``; a search picks one
(``SearchEngine.choose_text_encoder``). torch is imported on the first call, not with this module.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class TorchTextEncoder:
    """The retrieval model's text tower in torch: token ids and mask (B, T) -> unit vectors (B, E)."""

    backend = "torch"

    def __init__(self, model: Any, device: Any, bf16: bool) -> None:
        self.model, self.device, self.bf16 = model, device, bf16

    def __call__(self, input_ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        import torch

        from taomm.device import autocast

        with torch.no_grad():
            ids = torch.from_numpy(input_ids).to(self.device)
            with autocast(self.device, self.bf16):
                vectors = self.model.encode_text(ids, torch.from_numpy(mask).to(self.device))
            return vectors.float().cpu().numpy()
