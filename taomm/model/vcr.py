"""Multiple choice over (image, text) pairs: VCR's Q->A and QA->R (paper section 3.4).

Each choice is scored as a pair by the ITM head (an MLP over h_img[CLS] * h_txt[CLS]); a
softmax over the choices of a question and cross-entropy with the right one. The head
keeps the name ``itm_head``, so a pretrained model's ITM head is where it starts.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from taomm.model.config import InterBertConfig
from taomm.model.heads import InterBertITMHead
from taomm.model.modeling import InterBertModel
from taomm.model.pretrained import InterBertPreTrainedModel


@dataclass
class InterBertMultipleChoiceOutput:
    """logits (B, C) one score per choice; loss () only with labels."""

    logits: torch.Tensor
    loss: torch.Tensor | None = None


class InterBertForMultipleChoice(InterBertPreTrainedModel):
    """Backbone + ITM head, scoring the C texts of a question against its image."""

    def __init__(self, config: InterBertConfig) -> None:
        super().__init__(config)
        self.interbert = InterBertModel(config)
        self.itm_head = InterBertITMHead(config)
        self.init_weights()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, region_features: torch.Tensor,
                region_boxes: torch.Tensor, region_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, reduction: str = "mean") -> InterBertMultipleChoiceOutput:
        """input_ids, attention_mask (B, C, T): the choices, each ``[CLS] context [SEP] choice
        [SEP]``; region_features (B, R, D), region_boxes (B, R, 5), region_mask (B, R): the
        image, shared by its choices; labels (B,) the right choice."""
        B, C, T = input_ids.shape
        R = region_features.shape[1]
        if region_mask is None:
            region_mask = torch.ones(B, R, dtype=torch.bool, device=region_features.device)

        def per_choice(x: torch.Tensor) -> torch.Tensor:  # (B, ...) -> (B*C, ...)
            return x.unsqueeze(1).expand(B, C, *x.shape[1:]).flatten(0, 1)

        out = self.interbert(input_ids.view(B * C, T), attention_mask.view(B * C, T), per_choice(region_features),
                             per_choice(region_boxes), per_choice(region_mask))
        logits = self.itm_head(out.image_cls, out.text_cls).view(B, C)
        loss = None if labels is None else F.cross_entropy(logits.float(), labels, reduction=reduction)
        return InterBertMultipleChoiceOutput(logits, loss)
