"""Weights in and out: initialisation, save/load (config.json + model.safetensors), BERT init.

Every InterBERT model derives from :class:`InterBertPreTrainedModel`. Task models keep the
backbone in ``self.interbert``; a checkpoint of the backbone loads into a task model (its
keys get the ``interbert.`` prefix) and a task checkpoint loads into the backbone (the
prefix is stripped, the heads are reported as unexpected). Checkpoints of the earlier
layout load too (``upgrade_state_dict``).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_model
from torch import nn

from taomm.errors import TaommError
from taomm.model.config import CONFIG_NAME, VOCAB_NAME, WEIGHTS_NAME, InterBertConfig

log = logging.getLogger(__name__)
BACKBONE = "interbert"
CONTRASTIVE = "contrastive"  # the task models' InterBertContrastiveHead
# Before the contrastive head was a submodule, its tensors sat at the top of the task model's
# state dict: ``text_proj.*``, ``image_proj.*`` and ``logit_scale`` are now ``contrastive.*``.
LEGACY_CONTRASTIVE = ("text_proj", "image_proj", "logit_scale")


def upgrade_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A state dict with the keys of the earlier layout (``LEGACY_CONTRASTIVE``) renamed to
    today's; other keys as they are. No key of today's models starts with those names."""
    return {(f"{CONTRASTIVE}.{key}" if key.split(".")[0] in LEGACY_CONTRASTIVE else key): tensor
            for key, tensor in state.items()}


@dataclass
class LoadReport:
    """Keys the checkpoint lacked (left at their initial values) and keys it had in excess."""

    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)


class InterBertPreTrainedModel(nn.Module):
    tied_keys: tuple[str, ...] = ()  # state-dict keys that share their tensor with another one

    def __init__(self, config: InterBertConfig) -> None:
        super().__init__()
        self.config = config
        self.load_report = LoadReport()

    def init_weights(self) -> None:
        """BERT's initialisation: normal(0, initializer_range), zero biases, unit LayerNorms."""
        std = self.config.initializer_range
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, mean=0.0, std=std)
                if isinstance(module, nn.Linear) and module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        self.tie_weights()

    def tie_weights(self) -> None:
        """Task models with tied parameters (the MSM decoder) re-tie them here."""

    @property
    def backbone(self):
        return getattr(self, BACKBONE, self)

    def set_gradient_checkpointing(self, enabled: bool = True) -> None:
        """Recompute activations in backward, in every layer stack that can (``InterBertEncoder``)."""
        for module in self.modules():
            if hasattr(module, "gradient_checkpointing"):
                module.gradient_checkpointing = enabled

    # --- save / load -------------------------------------------------------------------

    def save_pretrained(self, directory: str | os.PathLike[str], vocab_file: str | os.PathLike[str] | None = None) -> Path:
        """Write ``config.json`` + ``model.safetensors`` (+ ``vocab.txt``) into ``directory``."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        self.config.to_json_file(out / CONFIG_NAME)
        tmp = out / (WEIGHTS_NAME + ".tmp")
        save_model(self, str(tmp))  # shared (tied) tensors are stored once
        os.replace(tmp, out / WEIGHTS_NAME)
        if vocab_file is not None and Path(vocab_file).resolve() != (out / VOCAB_NAME).resolve():
            shutil.copyfile(vocab_file, out / VOCAB_NAME)
        return out

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike[str], **config_overrides: Any):
        """Load a folder written by ``save_pretrained``; ``model.load_report`` lists missing and
        unexpected keys (also logged)."""
        config, state = read_checkpoint(directory, **config_overrides)
        model = cls(config)
        model.load_state(state)
        return model

    def load_state(self, state: dict[str, torch.Tensor]) -> LoadReport:
        """Load weights saved by this or another InterBERT model class (see module docstring)."""
        own = self.state_dict()
        has_backbone = self.backbone is not self
        adapted: dict[str, torch.Tensor] = {}
        for key, tensor in upgrade_state_dict(state).items():
            if has_backbone and key not in own and f"{BACKBONE}.{key}" in own:
                key = f"{BACKBONE}.{key}"
            elif not has_backbone and key.startswith(BACKBONE + "."):
                key = key[len(BACKBONE) + 1:]
            if key in own and own[key].shape != tensor.shape:
                raise TaommError(f"checkpoint tensor {key} has shape {tuple(tensor.shape)}, "
                                 f"the model expects {tuple(own[key].shape)}")
            adapted[key] = tensor
        result = self.load_state_dict(adapted, strict=False)
        self.tie_weights()
        self.load_report = LoadReport([k for k in result.missing_keys if k not in self.tied_keys],
                                      list(result.unexpected_keys))
        if self.load_report.missing or self.load_report.unexpected:
            log.warning("loaded with %d missing keys (%s) and %d unexpected keys (%s)",
                        len(self.load_report.missing), ", ".join(self.load_report.missing[:5]),
                        len(self.load_report.unexpected), ", ".join(self.load_report.unexpected[:5]))
        return self.load_report

    # --- BERT initialisation -----------------------------------------------------------

    @classmethod
    def from_bert(cls, name_or_path: str | os.PathLike[str], config: InterBertConfig | None = None,
                  **overrides: Any):
        """A model whose text embeddings and interaction layers come from a BERT checkpoint
        (a local folder, or a hub name when there is network). The sizes come from the
        BERT config; ``config`` (default: the base preset sizes) gives everything else and
        ``overrides`` win over both. Shapes are checked key by key."""
        bc, state = _read_bert(name_or_path)
        if bc.get("hidden_act", "gelu") != "gelu":
            raise TaommError(f"{name_or_path}: hidden_act {bc['hidden_act']!r} is not supported (InterBERT uses exact GELU)")
        if bc.get("position_embedding_type", "absolute") != "absolute":
            raise TaommError(f"{name_or_path}: only absolute position embeddings are supported")
        sizes = {
            "hidden_size": bc["hidden_size"], "num_attention_heads": bc["num_attention_heads"],
            "intermediate_size": bc["intermediate_size"], "num_interaction_layers": bc["num_hidden_layers"],
            "vocab_size": bc["vocab_size"], "max_position_embeddings": bc["max_position_embeddings"],
            "type_vocab_size": bc.get("type_vocab_size", 2), "layer_norm_eps": bc.get("layer_norm_eps", 1e-12),
        }
        base = (config or InterBertConfig()).to_dict()
        model = cls(InterBertConfig.from_dict({**base, **sizes, **overrides}))
        model.backbone.copy_bert_weights(state, source=str(name_or_path))
        return model

    def copy_bert_weights(self, bert_state: dict[str, torch.Tensor], source: str = "BERT") -> None:
        own = self.state_dict()
        layers = {int(m.group(1)) for k in bert_state if (m := re.match(r"encoder\.layer\.(\d+)\.", k))}
        if self.config.num_interaction_layers > len(layers):
            raise TaommError(f"{source} has {len(layers)} layers, the config asks for "
                             f"{self.config.num_interaction_layers} interaction layers")
        with torch.no_grad():
            for src, dst in bert_key_map(self.config.num_interaction_layers):
                if src not in bert_state:
                    raise TaommError(f"{source} lacks {src}")
                if bert_state[src].shape != own[dst].shape:
                    raise TaommError(f"{source}: {src} has shape {tuple(bert_state[src].shape)}, "
                                     f"{dst} expects {tuple(own[dst].shape)}")
                own[dst].copy_(bert_state[src])


def read_checkpoint(directory: str | os.PathLike[str], **config_overrides: Any
                    ) -> tuple[InterBertConfig, dict[str, torch.Tensor]]:
    """The config (with overrides) and the weights of a folder written by ``save_pretrained``."""
    folder = Path(directory)
    for name in (CONFIG_NAME, WEIGHTS_NAME):
        if not (folder / name).is_file():
            raise TaommError(f"{folder} is not an InterBERT checkpoint (no {name})")
    config = InterBertConfig.from_json_file(folder / CONFIG_NAME)
    for key, value in config_overrides.items():
        setattr(config, key, value)
    return config, load_file(str(folder / WEIGHTS_NAME))


def bert_key_map(num_layers: int) -> list[tuple[str, str]]:
    """(BERT state-dict key, InterBERT backbone key) for the embeddings and the first
    ``num_layers`` encoder layers."""
    pairs = [
        ("embeddings.word_embeddings.weight", "embeddings.word_embeddings.weight"),
        ("embeddings.position_embeddings.weight", "embeddings.position_embeddings.weight"),
        ("embeddings.token_type_embeddings.weight", "embeddings.token_type_embeddings.weight"),
        ("embeddings.LayerNorm.weight", "embeddings.norm.weight"),
        ("embeddings.LayerNorm.bias", "embeddings.norm.bias"),
    ]
    per_layer = [
        ("attention.self.query", "attention.query"), ("attention.self.key", "attention.key"),
        ("attention.self.value", "attention.value"), ("attention.output.dense", "attention.out"),
        ("attention.output.LayerNorm", "attention.norm"), ("intermediate.dense", "ffn_in"),
        ("output.dense", "ffn_out"), ("output.LayerNorm", "ffn_norm"),
    ]
    for i in range(num_layers):
        for src, dst in per_layer:
            for param in ("weight", "bias"):
                pairs.append((f"encoder.layer.{i}.{src}.{param}", f"interaction.layers.{i}.{dst}.{param}"))
    return pairs


def _read_bert(name_or_path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """A BERT checkpoint's config and weights, keys as BertModel's (a ``bert.`` prefix of
    BertForPreTraining-style checkpoints removed, task heads ignored by the key map).

    A local folder is read as it is on disk (``config.json`` + ``model.safetensors``, or a
    ``pytorch_model.bin`` loaded with ``weights_only=True``), so a missing or misshapen
    tensor is an error naming it; a hub name goes through transformers (needs network)."""
    folder = Path(name_or_path)
    if folder.is_dir():
        if not (folder / CONFIG_NAME).is_file():
            raise TaommError(f"{folder} has no {CONFIG_NAME}: not a BERT checkpoint")
        config = json.loads((folder / CONFIG_NAME).read_text("utf-8"))
        if (folder / WEIGHTS_NAME).is_file():
            state = load_file(str(folder / WEIGHTS_NAME))
        elif (folder / "pytorch_model.bin").is_file():
            state = torch.load(folder / "pytorch_model.bin", map_location="cpu", weights_only=True)
        else:
            raise TaommError(f"{folder} has neither {WEIGHTS_NAME} nor pytorch_model.bin")
        return config, {k.removeprefix("bert."): v for k, v in state.items()}
    from transformers import BertModel

    try:
        bert, info = BertModel.from_pretrained(str(name_or_path), output_loading_info=True)
    except OSError as exc:
        raise TaommError(f"cannot load a BERT checkpoint from {name_or_path}: {exc}".splitlines()[0]) from None
    missing = [k for k in info["missing_keys"] if not k.startswith(("pooler.", "embeddings.position_ids"))]
    if missing or info.get("mismatched_keys"):
        raise TaommError(f"{name_or_path}: missing {missing} / mismatched {info.get('mismatched_keys')} tensors")
    return bert.config.to_dict(), bert.state_dict()
