"""The InterBERT backbone (Lin et al., KDD 2020, section 2.2), written for one device.

Image and text meet in one sequence ``[IMG_CLS, r_1..r_m, CLS, w_1..w_n, SEP]`` that goes
through the single-stream *interaction* layers (BERT layers, initialised from BERT), then
splits: the image part through the image *extractor*, the text part through the text
extractor (new layers each). Either modality may be absent: text alone or image alone is
a first-class path (GLUE, query vectors, image-only item vectors).

Shapes: B batch, T text tokens (with CLS and SEP), R regions (without the image CLS),
H hidden size, nh heads, hs head size.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from taomm.model.config import InterBertConfig
from taomm.model.pretrained import InterBertPreTrainedModel

IMAGE_SEGMENT = 1  # token type of the image part; the text part is 0, as in BERT
_LANES = 1 << 16  # a CPU dropout mask element is one 16-bit random integer


class Dropout(nn.Dropout):
    """``nn.Dropout`` with a cheaper mask on the CPU.

    torch's CPU dropout draws one random number per element (``bernoulli_``), and the draws
    were 14% of a demo finetuning step (``mini`` preset, 2 cores). Here one 64-bit draw
    gives four 16-bit integers; an element is dropped when its integer falls in the lowest
    ``round(p * 65536)`` values, and kept elements are scaled by the inverse of the exact keep
    probability, so the output is unbiased as nn.Dropout's. Draws come from the same global
    generator (``torch.manual_seed``, checkpoint recomputation and resume behave as before).
    Elsewhere (CUDA, evaluation, p 0 or 1) it is ``nn.Dropout``. ``benchmarks/cpu_dropout.py``
    measures a finetuning step with each."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or x.device.type != "cpu" or not 0 < self.p < 1 or self.inplace:
            return super().forward(x)
        dropped = round(self.p * _LANES)
        n = x.numel()
        lanes = torch.empty((n + 3) // 4, dtype=torch.int64).random_(-(1 << 63), None).view(torch.int16)[:n]
        keep = (lanes >= dropped - _LANES // 2).view(x.shape).to(x.dtype)
        return x * keep.mul_(_LANES / (_LANES - dropped))


class InterBertEmbeddings(nn.Module):
    """Text embeddings, as BERT's: word + position + segment, LayerNorm, dropout."""

    def __init__(self, config: InterBertConfig) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        # input_ids (B, T) -> (B, T, H); positions count from 0 at the text's CLS
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        x = self.word_embeddings(input_ids) + self.position_embeddings(positions) + self.token_type_embeddings(token_type_ids)
        return self.dropout(self.norm(x))


class InterBertRegionEmbeddings(nn.Module):
    """Region embeddings: LayerNorm(Linear(feature)) + LayerNorm(Linear(box)) + segment."""

    def __init__(self, config: InterBertConfig) -> None:
        super().__init__()
        self.feature = nn.Linear(config.region_feature_dim, config.hidden_size)
        self.feature_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.box = nn.Linear(config.box_dim, config.hidden_size)
        self.box_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = Dropout(config.hidden_dropout_prob)

    def forward(self, features: torch.Tensor, boxes: torch.Tensor, segment: torch.Tensor) -> torch.Tensor:
        # features (B, R, D), boxes (B, R, 5), segment (H,) -> (B, R, H)
        features = features.to(self.feature.weight.dtype)
        boxes = boxes.to(self.box.weight.dtype)
        x = self.feature_norm(self.feature(features)) + self.box_norm(self.box(boxes)) + segment
        return self.dropout(x)


def with_image_cls(features: torch.Tensor, boxes: torch.Tensor, mask: torch.Tensor):
    """Prepend the image [CLS] region: the mean of the valid regions' features, with the
    whole-image box (0, 0, 1, 1, area 1). Returns (B, R+1, D), (B, R+1, 5), (B, R+1)."""
    weights = mask.to(features.dtype).unsqueeze(-1)  # (B, R, 1)
    mean = (features * weights).sum(1, keepdim=True) / weights.sum(1, keepdim=True).clamp(min=1)
    whole = boxes.new_tensor([0.0, 0.0, 1.0, 1.0, 1.0]).expand(boxes.shape[0], 1, 5)
    cls_mask = mask.new_ones(mask.shape[0], 1)
    return torch.cat([mean, features], 1), torch.cat([whole, boxes], 1), torch.cat([cls_mask, mask], 1)


class InterBertAttention(nn.Module):
    """Multi-head self-attention (scaled_dot_product_attention) with BERT's residual LayerNorm."""

    def __init__(self, config: InterBertConfig) -> None:
        super().__init__()
        h = config.hidden_size
        self.n_head = config.num_attention_heads
        self.query, self.key, self.value = nn.Linear(h, h), nn.Linear(h, h), nn.Linear(h, h)
        self.out = nn.Linear(h, h)
        self.norm = nn.LayerNorm(h, eps=config.layer_norm_eps)
        self.attn_dropout = config.attention_probs_dropout_prob
        self.probs_dropout = Dropout(config.attention_probs_dropout_prob)
        self.dropout = Dropout(config.hidden_dropout_prob)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # x (B, T, H); mask (B, 1, 1, T) bool, True where a key may be attended to
        B, T, H = x.shape
        q = self.query(x).view(B, T, self.n_head, H // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        k = self.key(x).view(B, T, self.n_head, H // self.n_head).transpose(1, 2)
        v = self.value(x).view(B, T, self.n_head, H // self.n_head).transpose(1, 2)
        if self.training and self.attn_dropout and x.device.type == "cpu":  # SDPA's CPU dropout: bernoulli_
            y = self.probs_dropout((q @ k.transpose(-2, -1) * q.shape[-1] ** -0.5).masked_fill(~mask, float("-inf"))
                                   .softmax(-1)).to(v.dtype) @ v
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                               dropout_p=self.attn_dropout if self.training else 0.0)
        y = y.transpose(1, 2).reshape(B, T, H)  # (B, T, H)
        return self.norm(x + self.dropout(self.out(y)))


class InterBertLayer(nn.Module):
    """One BERT layer (post-LayerNorm): attention, then a GELU feed-forward block."""

    def __init__(self, config: InterBertConfig) -> None:
        super().__init__()
        self.attention = InterBertAttention(config)
        self.ffn_in = nn.Linear(config.hidden_size, config.intermediate_size)
        self.ffn_out = nn.Linear(config.intermediate_size, config.hidden_size)
        self.ffn_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = Dropout(config.hidden_dropout_prob)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.attention(x, mask)
        return self.ffn_norm(x + self.dropout(self.ffn_out(F.gelu(self.ffn_in(x)))))


class InterBertEncoder(nn.Module):
    """A stack of layers; with gradient checkpointing, activations are recomputed in backward."""

    def __init__(self, config: InterBertConfig, num_layers: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(InterBertLayer(config) for _ in range(num_layers))
        self.gradient_checkpointing = False

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            if self.gradient_checkpointing and self.training:
                x = checkpoint(layer, x, mask, use_reentrant=False)
            else:
                x = layer(x, mask)
        return x


def _key_mask(mask: torch.Tensor) -> torch.Tensor:
    return mask.bool()[:, None, None, :]  # (B, T) -> (B, 1, 1, T)


@dataclass
class InterBertOutput:
    """Hidden states of the backbone; fields of an absent modality are None.

    image_hidden      (B, R+1, H) image extractor output, position 0 = image [CLS]
    text_hidden       (B, T, H)   text extractor output, position 0 = [CLS]
    image_cls         (B, H)      image_hidden[:, 0]
    text_cls          (B, H)      text_hidden[:, 0]
    interaction_image (B, R+1, H) image part of the interaction output
    interaction_text  (B, T, H)   text part of the interaction output
    image_mask        (B, R+1)    bool, valid image positions (with the image [CLS])
    """

    image_hidden: torch.Tensor | None
    text_hidden: torch.Tensor | None
    image_cls: torch.Tensor | None
    text_cls: torch.Tensor | None
    interaction_image: torch.Tensor | None
    interaction_text: torch.Tensor | None
    image_mask: torch.Tensor | None


class InterBertModel(InterBertPreTrainedModel):
    """The backbone: embeddings, interaction module and the two extractors."""

    def __init__(self, config: InterBertConfig) -> None:
        super().__init__(config)
        self.embeddings = InterBertEmbeddings(config)
        self.region_embeddings = InterBertRegionEmbeddings(config)
        self.interaction = InterBertEncoder(config, config.num_interaction_layers)
        self.image_extractor = InterBertEncoder(config, config.num_extractor_layers)
        self.text_extractor = InterBertEncoder(config, config.num_extractor_layers)
        self.init_weights()

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        region_features: torch.Tensor | None = None,
        region_boxes: torch.Tensor | None = None,
        region_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
    ) -> InterBertOutput:
        """input_ids (B, T) with CLS and SEP, attention_mask (B, T); region_features (B, R, D),
        region_boxes (B, R, 5) x1/W, y1/H, x2/W, y2/H, area (``taomm.datasets.pretraining.normalized_boxes``),
        region_mask (B, R)."""
        has_text, has_image = input_ids is not None, region_features is not None
        if not (has_text or has_image):
            raise ValueError("give input_ids, region_features or both")
        parts, masks = [], []
        if has_image:
            if region_boxes is None:
                raise ValueError("region_features need region_boxes")
            if region_mask is None:
                region_mask = torch.ones(region_features.shape[:2], dtype=torch.bool, device=region_features.device)
            # The store keeps float16 features: compute in the weights' dtype (autocast goes on from there).
            dtype = self.region_embeddings.feature.weight.dtype
            region_features, region_boxes = region_features.to(dtype), region_boxes.to(dtype)
            feats, boxes, image_mask = with_image_cls(region_features, region_boxes, region_mask.bool())
            segment = self.embeddings.token_type_embeddings.weight[IMAGE_SEGMENT]
            parts.append(self.region_embeddings(feats, boxes, segment))
            masks.append(image_mask)
        if has_text:
            if attention_mask is None:
                attention_mask = torch.ones_like(input_ids, dtype=torch.bool)
            parts.append(self.embeddings(input_ids, token_type_ids))
            masks.append(attention_mask.bool())
        if len(parts) == 2 and parts[0].dtype != parts[1].dtype:
            parts[0] = parts[0].to(parts[1].dtype)
        x = self.interaction(torch.cat(parts, 1), _key_mask(torch.cat(masks, 1)))  # (B, R+1+T, H)
        n_image = parts[0].shape[1] if has_image else 0
        inter_image = x[:, :n_image] if has_image else None
        inter_text = x[:, n_image:] if has_text else None
        image_hidden = self.image_extractor(inter_image, _key_mask(masks[0])) if has_image else None
        text_hidden = self.text_extractor(inter_text, _key_mask(masks[-1])) if has_text else None
        return InterBertOutput(
            image_hidden=image_hidden,
            text_hidden=text_hidden,
            image_cls=image_hidden[:, 0] if has_image else None,
            text_cls=text_hidden[:, 0] if has_text else None,
            interaction_image=inter_image,
            interaction_text=inter_text,
            image_mask=masks[0] if has_image else None,
        )
