"""InterBertConfig: the sizes of the model, as a dataclass that round-trips through config.json.

Named presets are small JSON files in ``taomm/resources/presets/`` (``base`` is the
paper's: H=768, 12 heads, FFN 3072, 12 interaction layers, 6 + 6 extractor layers); the
language fills in what the tokenizer and the detector decide (vocabulary size, region
classes, regions per image).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from importlib import resources
from pathlib import Path
from typing import Any

from taomm.errors import OptionError, TaommError

# A checkpoint folder's files (``InterBertPreTrainedModel.save_pretrained``).
CONFIG_NAME, WEIGHTS_NAME, VOCAB_NAME = "config.json", "model.safetensors", "vocab.txt"

# What the language decides: the tokenizer's vocabulary (bert-base-chinese / -uncased) and
# the detector's taxonomy (taobao33 / Visual Genome 1600) with its regions per image.
LANGUAGE_DEFAULTS = {
    "zh": {"vocab_size": 21128, "num_region_classes": 33, "max_regions": 16},
    "en": {"vocab_size": 30522, "num_region_classes": 1600, "max_regions": 100},
}
# Regions per image ``taomm prepare`` keeps at least (at most: max_regions above), the best
# below the detector's confidence threshold filling up: 1 for zh; bottom-up attention's 10 for en.
MIN_REGIONS = {"zh": 1, "en": 10}
PRESETS = ("base", "small", "mini", "tiny")
# The longest title the model reads, in tokens with [CLS] and [SEP] (InterBertConfig.max_text_tokens):
# what training truncates to is what search truncates queries to.
MAX_TEXT_TOKENS = 40


@dataclass
class InterBertConfig:
    hidden_size: int = 768  # H: width of every layer
    num_attention_heads: int = 12  # H must divide by it
    intermediate_size: int = 3072  # FFN inner width
    num_interaction_layers: int = 12  # single-stream layers over [IMG_CLS, regions, CLS, tokens, SEP] (from BERT)
    num_extractor_layers: int = 6  # layers of each two-stream extractor (image, text), new weights
    vocab_size: int = 21128  # the tokenizer's vocabulary (bert-base-chinese)
    max_position_embeddings: int = 512  # longest text, in tokens
    # Titles and queries: [CLS] + tokens + [SEP], truncated to this at training and search; lowered to
    # max_position_embeddings (a config.json without it, written before it was saved, gets
    # min(40, max_position_embeddings): what the code then used).
    max_text_tokens: int = MAX_TEXT_TOKENS
    type_vocab_size: int = 2  # segments: 0 text, 1 image
    region_feature_dim: int = 2048  # detector RoI feature size
    box_dim: int = 5  # x1, y1, x2, y2, area, normalised by the image size
    num_region_classes: int = 33  # MRM targets: the detector's taxonomy
    max_regions: int = 16  # regions per image (paper: at most 16 for zh)
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    layer_norm_eps: float = 1e-12
    initializer_range: float = 0.02  # std of the normal init of new weights
    item_embedding_size: int = 256  # cross-modal item vector (recommendation)
    retrieval_embedding_size: int = 256  # single-modal contrastive vectors (search recall)

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_attention_heads:
            raise TaommError(f"hidden_size {self.hidden_size} is not a multiple of "
                             f"num_attention_heads {self.num_attention_heads}")
        for f in fields(self):
            value = getattr(self, f.name)
            if f.type == "int" and (not isinstance(value, int) or value < 0):
                raise TaommError(f"config: {f.name} must be a non-negative integer, not {value!r}")
        self.max_text_tokens = min(self.max_text_tokens, self.max_position_embeddings)

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> InterBertConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise TaommError(f"unknown InterBERT config keys: {', '.join(unknown)}")
        return cls(**data)

    @classmethod
    def from_preset(cls, name: str, lang: str = "zh", **overrides: Any) -> InterBertConfig:
        """A named preset (base, small, mini, tiny) for a language (zh, en), with overrides."""
        if name not in PRESETS:
            raise TaommError(f"unknown model preset {name!r} (choose from {', '.join(PRESETS)})")
        if lang not in LANGUAGE_DEFAULTS:
            raise TaommError(f"unknown language {lang!r} (choose from {', '.join(LANGUAGE_DEFAULTS)})")
        text = resources.files("taomm.resources").joinpath(f"presets/{name}.json").read_text("utf-8")
        return cls.from_dict({**LANGUAGE_DEFAULTS[lang], **json.loads(text), **overrides})

    @classmethod
    def from_spec(cls, spec: str, lang: str = "zh", default_preset: str = "base") -> InterBertConfig:
        """``spec`` is a preset name, or a JSON file of config keys (any subset; an optional
        ``"preset"`` key names the preset it starts from, else ``default_preset``)."""
        if spec in PRESETS:
            return cls.from_preset(spec, lang)
        path = Path(spec)
        if not path.is_file():
            raise OptionError(f"{{spec}} {spec!r} is neither a preset ({', '.join(PRESETS)}) nor a JSON file", "spec")
        try:
            data = json.loads(path.read_text("utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise TaommError(f"{path}: not valid JSON ({exc})") from None
        if not isinstance(data, dict):
            raise TaommError(f"{path}: expected a JSON object of config keys")
        data.pop("model_type", None)
        return cls.from_preset(str(data.pop("preset", default_preset)), lang, **data)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json_file(self, path: str | os.PathLike[str]) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n", "utf-8")

    @classmethod
    def from_json_file(cls, path: str | os.PathLike[str]) -> InterBertConfig:
        try:
            data = json.loads(Path(path).read_text("utf-8"))
        except json.JSONDecodeError as exc:
            raise TaommError(f"{path}: not valid JSON ({exc})") from None
        data.pop("model_type", None)
        return cls.from_dict(data)
