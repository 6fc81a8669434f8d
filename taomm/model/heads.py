"""Heads and task models: pretraining (MSM, MRM, ITM) and retrieval (ITM + contrastive vectors).

Each loss is computed only when its labels are given; labels of -100 are ignored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from taomm.model.config import InterBertConfig
from taomm.model.modeling import InterBertModel, InterBertOutput
from taomm.model.pretrained import InterBertPreTrainedModel

IGNORE = -100


class InterBertPredictionTransform(nn.Module):
    """dense + GELU + LayerNorm, as BERT's prediction-head transform."""

    def __init__(self, config: InterBertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(F.gelu(self.dense(x)))


class InterBertMSMHead(nn.Module):
    """Masked segment modeling: token logits; the decoder is tied to the word embeddings."""

    def __init__(self, config: InterBertConfig) -> None:
        super().__init__()
        self.transform = InterBertPredictionTransform(config)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.transform(hidden))  # (..., H) -> (..., V)


class InterBertMRMHead(nn.Module):
    """Masked region modeling: the masked region's detector class."""

    def __init__(self, config: InterBertConfig) -> None:
        super().__init__()
        self.transform = InterBertPredictionTransform(config)
        self.classifier = nn.Linear(config.hidden_size, config.num_region_classes)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.transform(hidden))  # (..., H) -> (..., C)


class InterBertITMHead(nn.Module):
    """Image-text matching: an MLP over h_img[CLS] * h_txt[CLS] -> one match logit."""

    def __init__(self, config: InterBertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.out = nn.Linear(config.hidden_size, 1)

    def forward(self, image_cls: torch.Tensor, text_cls: torch.Tensor) -> torch.Tensor:
        return self.out(F.gelu(self.dense(image_cls * text_cls))).squeeze(-1)  # (B, H) -> (B,)


class InterBertItemHead(nn.Module):
    """The cross-modal item representation: an FFN over [h_img[CLS]; h_txt[CLS]], normalised."""

    def __init__(self, config: InterBertConfig) -> None:
        super().__init__()
        h = config.hidden_size
        self.ffn = nn.Sequential(nn.Linear(2 * h, h), nn.GELU(), nn.LayerNorm(h, eps=config.layer_norm_eps),
                                 nn.Linear(h, config.item_embedding_size))

    def forward(self, image_cls: torch.Tensor, text_cls: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.ffn(torch.cat([image_cls, text_cls], -1)), dim=-1)  # (B, item_embedding_size)


@dataclass
class InterBertPretrainingOutput:
    """Losses (None without their labels) and logits.

    loss        ()       weighted sum of the losses present
    msm_logits  (B, T, V) without msm_labels; (M, V) for the M labelled tokens with them
    mrm_logits  (B, R, C) without mrm_labels; (M, C) for the M labelled regions with them
    itm_logits  (B,)
    text_vectors, image_vectors (B, E), logit_scale (): with itc_input_ids only
    """

    loss: torch.Tensor | None
    msm_loss: torch.Tensor | None
    mrm_loss: torch.Tensor | None
    itm_loss: torch.Tensor | None
    msm_logits: torch.Tensor | None
    mrm_logits: torch.Tensor | None
    itm_logits: torch.Tensor | None
    backbone: InterBertOutput
    text_vectors: torch.Tensor | None = None
    image_vectors: torch.Tensor | None = None
    logit_scale: torch.Tensor | None = None


class InterBertContrastiveHead(nn.Module):
    """Single-modal vectors (search recall): the backbone's output for text alone or image
    alone, its [CLS] projected to E = retrieval_embedding_size and normalised, and a learnable
    temperature for their similarity logits. A task model holds it as ``contrastive``."""

    def __init__(self, config: InterBertConfig) -> None:
        super().__init__()
        self.text_proj = nn.Linear(config.hidden_size, config.retrieval_embedding_size)
        self.image_proj = nn.Linear(config.hidden_size, config.retrieval_embedding_size)
        # CLIP's initial temperature 0.07, learned in log space; init_weights leaves a bare
        # Parameter as it is, so it keeps this value
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def encode_text(self, out: InterBertOutput) -> torch.Tensor:
        """The backbone's output for text alone -> (B, E) unit vector."""
        return F.normalize(self.text_proj(out.text_cls), dim=-1)  # (B, H) -> (B, E)

    def encode_image(self, out: InterBertOutput) -> torch.Tensor:
        """The backbone's output for an image alone -> (B, E) unit vector."""
        return F.normalize(self.image_proj(out.image_cls), dim=-1)  # (B, H) -> (B, E)

    def logits(self, text: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """(B_text, B_image) similarity logits of unit vectors, scaled by the temperature."""
        return self.logit_scale.clamp(max=math.log(100.0)).exp() * text @ image.T


class InterBertForPretraining(InterBertPreTrainedModel):
    """Backbone + MSM, MRM and ITM heads; L = w_msm MSM + w_mrm MRM + w_itm ITM.

    Beyond the paper, it also carries the contrastive head of the retrieval model (text-alone
    and image-alone vectors): pretraining can align them (``itc_input_ids``, ALBEF's
    "align before fuse"), and retrieval finetuning starts from them."""

    tied_keys = ("msm_head.decoder.weight",)

    def __init__(self, config: InterBertConfig, loss_weights: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> None:
        super().__init__(config)
        self.interbert = InterBertModel(config)
        self.msm_head = InterBertMSMHead(config)
        self.mrm_head = InterBertMRMHead(config)
        self.itm_head = InterBertITMHead(config)
        self.contrastive = InterBertContrastiveHead(config)
        self.loss_weights = loss_weights
        self.init_weights()

    def tie_weights(self) -> None:
        self.msm_head.decoder.weight = self.interbert.embeddings.word_embeddings.weight

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Text alone -> (B, E) unit vector."""
        return self.contrastive.encode_text(self.interbert(input_ids, attention_mask))

    def encode_image(self, region_features, region_boxes, region_mask=None) -> torch.Tensor:
        """Image alone -> (B, E) unit vector."""
        return self.contrastive.encode_image(self.interbert(region_features=region_features,
                                                            region_boxes=region_boxes, region_mask=region_mask))

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        region_features: torch.Tensor,
        region_boxes: torch.Tensor,
        region_mask: torch.Tensor | None = None,
        msm_labels: torch.Tensor | None = None,
        mrm_labels: torch.Tensor | None = None,
        itm_labels: torch.Tensor | None = None,
        reduction: str = "mean",
        itc_input_ids: torch.Tensor | None = None,
        itc_attention_mask: torch.Tensor | None = None,
    ) -> InterBertPretrainingOutput:
        """msm_labels (B, T) token ids or -100; mrm_labels (B, R) classes or -100;
        itm_labels (B,) 1 for a matched pair, 0 otherwise. ``reduction="sum"`` gives each
        loss summed over its labelled positions (the trainer divides by counts gathered
        over every micro-batch and rank, so the loss of a step does not depend on how the
        batch is split). With ``itc_input_ids`` (each image's own caption), the output also
        holds the text-alone and image-alone vectors for an image-text contrastive loss."""
        if reduction not in ("mean", "sum"):
            raise ValueError(f"reduction must be 'mean' or 'sum', not {reduction!r}")
        out = self.interbert(input_ids, attention_mask, region_features, region_boxes, region_mask)
        losses: dict[str, torch.Tensor] = {}
        text, regions = out.text_hidden, out.image_hidden[:, 1:]  # regions without the image [CLS]
        if msm_labels is None:
            msm_logits = self.msm_head(text)
        else:
            picked = msm_labels != IGNORE  # score only the masked tokens: V is large
            msm_logits = self.msm_head(text[picked])
            losses["msm"] = _cross_entropy(msm_logits, msm_labels[picked], reduction)
        if mrm_labels is None:
            mrm_logits = self.mrm_head(regions)
        else:
            picked = mrm_labels != IGNORE
            mrm_logits = self.mrm_head(regions[picked])
            losses["mrm"] = _cross_entropy(mrm_logits, mrm_labels[picked], reduction)
        itm_logits = self.itm_head(out.image_cls, out.text_cls)
        if itm_labels is not None:
            losses["itm"] = F.binary_cross_entropy_with_logits(itm_logits.float(), itm_labels.float(),
                                                                reduction=reduction)
        weights = dict(zip(("msm", "mrm", "itm"), self.loss_weights, strict=True))
        loss = sum(weights[k] * v for k, v in losses.items()) if losses else None
        result = InterBertPretrainingOutput(loss, losses.get("msm"), losses.get("mrm"), losses.get("itm"),
                                            msm_logits, mrm_logits, itm_logits, out)
        if itc_input_ids is not None:
            result.text_vectors = self.encode_text(itc_input_ids, itc_attention_mask)
            result.image_vectors = self.encode_image(region_features, region_boxes, region_mask)
            result.logit_scale = self.contrastive.logit_scale
        return result


def _cross_entropy(logits: torch.Tensor, labels: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    # No labelled position in the batch: a zero that still joins the graph.
    if labels.numel() == 0:
        return logits.sum() * 0.0
    return F.cross_entropy(logits.float(), labels, reduction=reduction)


@dataclass
class InterBertRetrievalOutput:
    """itm_logits (B,) match score of each (image, text) pair."""

    itm_logits: torch.Tensor
    backbone: InterBertOutput


class InterBertForRetrieval(InterBertPreTrainedModel):
    """Backbone + ITM head for pair scores, single-modal contrastive vectors (text alone,
    image alone; normalised, learnable temperature) and the cross-modal item vector."""

    def __init__(self, config: InterBertConfig) -> None:
        super().__init__(config)
        self.interbert = InterBertModel(config)
        self.itm_head = InterBertITMHead(config)
        self.contrastive = InterBertContrastiveHead(config)
        self.item_head = InterBertItemHead(config)
        self.init_weights()

    def forward(self, input_ids, attention_mask, region_features, region_boxes, region_mask=None) -> InterBertRetrievalOutput:
        out = self.interbert(input_ids, attention_mask, region_features, region_boxes, region_mask)
        return InterBertRetrievalOutput(self.itm_head(out.image_cls, out.text_cls), out)

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Text alone -> (B, E) unit vector (the query vector of search)."""
        return self.contrastive.encode_text(self.interbert(input_ids, attention_mask))

    def encode_image(self, region_features, region_boxes, region_mask=None) -> torch.Tensor:
        """Image alone -> (B, E) unit vector."""
        return self.contrastive.encode_image(self.interbert(region_features=region_features,
                                                            region_boxes=region_boxes, region_mask=region_mask))

    def encode_item(self, input_ids, attention_mask, region_features, region_boxes, region_mask=None) -> torch.Tensor:
        """Image and title together -> (B, item_embedding_size) unit vector (recommendation)."""
        out = self.interbert(input_ids, attention_mask, region_features, region_boxes, region_mask)
        return self.item_head(out.image_cls, out.text_cls)

    def contrastive_logits(self, text: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """(B_text, B_image) similarity logits of unit vectors, scaled by the temperature."""
        return self.contrastive.logits(text, image)
