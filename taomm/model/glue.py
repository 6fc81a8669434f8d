"""Sentence (pair) classification and regression on text alone: the paper's GLUE setting.

Text goes through the interaction module and the text extractor with no image (the
single-modal path of :class:`InterBertModel`); a dropout + linear head reads the text
[CLS] after the extractor. A sentence pair is one sequence ``[CLS] a [SEP] b [SEP]`` with
token type 0 throughout: InterBERT's segment 1 is the image, so BERT's second-sentence
segment is not available and the [SEP] alone marks the boundary.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from taomm.model.config import InterBertConfig
from taomm.model.modeling import InterBertModel, InterBertOutput
from taomm.model.pretrained import InterBertPreTrainedModel, read_checkpoint

HEAD_KEY = "classifier.weight"


@dataclass
class InterBertSequenceClassifierOutput:
    """loss () with labels (mean or sum, see ``reduction``), else None;
    logits (B, num_labels): class scores, or (B, 1) the predicted value for regression."""

    loss: torch.Tensor | None
    logits: torch.Tensor
    backbone: InterBertOutput


class InterBertForSequenceClassification(InterBertPreTrainedModel):
    """Backbone + dropout + linear head on the text [CLS]; ``num_labels == 1`` is regression (MSE)."""

    def __init__(self, config: InterBertConfig, num_labels: int = 2) -> None:
        super().__init__(config)
        if num_labels < 1:
            raise ValueError(f"num_labels must be at least 1, not {num_labels}")
        self.num_labels = num_labels
        self.interbert = InterBertModel(config)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.classifier = nn.Linear(config.hidden_size, num_labels)
        self.init_weights()

    @property
    def is_regression(self) -> bool:
        return self.num_labels == 1

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike[str], num_labels: int | None = None,
                        **config_overrides: Any) -> InterBertForSequenceClassification:
        """Load a saved InterBERT (any task model: its backbone is kept). The head is new and
        reported missing unless the folder holds one; ``num_labels`` defaults to the saved
        head's size, else 2."""
        config, state = read_checkpoint(directory, **config_overrides)
        if num_labels is None:
            num_labels = state[HEAD_KEY].shape[0] if HEAD_KEY in state else 2
        model = cls(config, num_labels)
        model.load_state(state)
        return model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, reduction: str = "mean") -> InterBertSequenceClassifierOutput:
        """input_ids (B, T) ``[CLS] a [SEP] (b [SEP])``; labels (B,) class ids, or float
        targets for regression."""
        # no token_type_ids: all 0 (segment 1 is the image's, see the module docstring)
        out = self.interbert(input_ids, attention_mask)
        logits = self.classifier(self.dropout(out.text_cls))  # (B, H) -> (B, num_labels)
        loss = None
        if labels is not None:
            if self.is_regression:
                loss = F.mse_loss(logits.squeeze(-1).float(), labels.float(), reduction=reduction)
            else:
                loss = F.cross_entropy(logits.float(), labels.long(), reduction=reduction)
        return InterBertSequenceClassifierOutput(loss, logits, out)
