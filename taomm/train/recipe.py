"""Training defaults by where a model starts: from a BERT checkpoint or from scratch.

The paper's settings (pretraining at lr 1e-4 with MSM + MRM + ITM; retrieval finetuning at
lr 4e-5 with 4-way ITM) assume interaction layers initialised from BERT. From scratch they
do not learn: on the demo catalog (``mini`` preset) the paper's three tasks leave ITM at
chance and the image [CLS] collapsed, and a demo workspace taken through the stage
commands with the paper's settings reached text -> image R@10 0.21-0.60, against 0.89 for
the from-scratch recipe below (the demo's, measured; README "What the demo shows").

One owner of these numbers: ``taomm pretrain`` and ``taomm finetune-retrieval`` take their
defaults from here, by whether the model starts from BERT, and so does ``taomm demo``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

from taomm.train.pretrain import MODEL_DIR, RUN_OPTIONS


@dataclass(frozen=True)
class PretrainRecipe:
    lr: float  # peak AdamW learning rate
    itc: float  # weight of the image-text contrastive task (0: the paper's three tasks only)

    def describe(self) -> str:
        return f"lr {self.lr:g}, itc {self.itc:g}"


@dataclass(frozen=True)
class FinetuneRecipe:
    lr: float  # peak AdamW learning rate
    negatives: int  # negative images per caption: ITM chooses among 1 + negatives
    log_share: float  # share of a logged item's queries taken from the query log
    item_loss: float = 1.0  # weight of the item-vector loss (taomm.train.finetune)
    dropout: float | None = None  # hidden and attention dropout; None: the model's own (its config's)

    def describe(self) -> str:
        dropout = "" if self.dropout is None else f", dropout {self.dropout:g}"
        return (f"lr {self.lr:g}, {self.negatives + 1}-way ITM, log share {self.log_share:g}, "
                f"item loss {self.item_loss:g}{dropout}")


# The paper's, for interaction layers initialised from BERT (--init-from).
BERT_PRETRAIN = PretrainRecipe(lr=1e-4, itc=0.0)
BERT_FINETUNE = FinetuneRecipe(lr=4e-5, negatives=3, log_share=0.5)
# From scratch, each setting measured on the demo catalog (README):
# - itc 1: without the contrastive task ITM stays at chance (loss 0.692 after 1,500 steps)
#   and the image [CLS] collapses (spread over items 8.8 -> 0.24);
# - pretraining lr 3e-4: at 1e-3 the image [CLS] collapses within 150 steps (0.52 -> 0.017);
# - finetuning lr 1e-3 for a small model from scratch;
# - 2-way ITM: twice the steps in the same time (search precision@5 0.470 -> 0.550);
# - log share 0.8: precision@5 0.550 -> 0.590 against 0.5;
# - the model's own dropout (0.1): dropout 0 read precision@5 0.799 -> 0.850 on the demo's
#   seed-0 catalog but 0.730 -> 0.698 on seed 1 (600 steps), within the finetuning spread;
# - item loss 3 (800 steps; two catalogs x two finetuning seeds, each against item loss 1 with
#   the same seed): style queries precision@5 +0.09 to +0.23 in all four, the flagship query's
#   top 5 all polka-dot ruffled in all four (item loss 1: two of four), every held-out query
#   together +0.008 on average (-0.030 to +0.040), queries rephrased with seller synonyms
#   +0.012 (-0.016 to +0.036). Item loss 2 read -0.006 and -0.004 on the same runs.
SCRATCH_PRETRAIN = PretrainRecipe(lr=3e-4, itc=1.0)
SCRATCH_FINETUNE = FinetuneRecipe(lr=1e-3, negatives=1, log_share=0.8, item_loss=3.0)

PAPER_SETTINGS_FROM_SCRATCH = ("the paper's settings assume a BERT initialisation of the interaction layers; from scratch "
                               "they stay near chance (demo catalog: ITM at chance, stage commands R@10 0.21-0.60 "
                               "against 0.89 with the from-scratch defaults, {defaults})")


def pretrain_defaults(from_scratch: bool) -> PretrainRecipe:
    return SCRATCH_PRETRAIN if from_scratch else BERT_PRETRAIN


def finetune_defaults(from_scratch: bool) -> FinetuneRecipe:
    return SCRATCH_FINETUNE if from_scratch else BERT_FINETUNE


def resolve_pretrain(from_scratch: bool, lr: float | None = None,
                     itc: float | None = None) -> tuple[PretrainRecipe, str | None]:
    """The defaults for the model's start, with the values given (not None) in their place;
    and a warning when a model from scratch is given the paper's BERT settings."""
    defaults = pretrain_defaults(from_scratch)
    recipe = _given(defaults, lr=lr, itc=itc)
    paper = [f"itc {recipe.itc:g}"] if recipe.itc == 0 else []
    paper += [f"lr {recipe.lr:g}"] if recipe.lr <= BERT_PRETRAIN.lr else []
    return recipe, _warning(from_scratch, paper, defaults.describe())


def resolve_finetune(from_scratch: bool, lr: float | None = None, negatives: int | None = None,
                     log_share: float | None = None, dropout: float | None = None,
                     item_loss: float | None = None) -> tuple[FinetuneRecipe, str | None]:
    """As :func:`resolve_pretrain`, for retrieval finetuning."""
    defaults = finetune_defaults(from_scratch)
    recipe = _given(defaults, lr=lr, negatives=negatives, log_share=log_share, item_loss=item_loss, dropout=dropout)
    paper = [f"lr {recipe.lr:g}"] if recipe.lr <= BERT_FINETUNE.lr else []
    return recipe, _warning(from_scratch, paper, defaults.describe())


RecipeT = TypeVar("RecipeT", "PretrainRecipe", "FinetuneRecipe")


def _given(defaults: RecipeT, **values: Any) -> RecipeT:
    """``defaults`` with each value given (not None) in its place: 0 is a value, not "unset"."""
    return replace(defaults, **{name: value for name, value in values.items() if value is not None})


def _warning(from_scratch: bool, paper: list[str], defaults: str) -> str | None:
    if not from_scratch or not paper:
        return None
    return f"{', '.join(paper)} on a model from scratch: {PAPER_SETTINGS_FROM_SCRATCH.format(defaults=defaults)}"


def initialised_from(path: str | os.PathLike[str]) -> str | None:
    """The BERT checkpoint a model started from, as its training run recorded it (``init_from``
    in the ``run.json`` of the run folder ``path``, or of the run holding the model folder
    ``path``); None for a model from scratch, and for a model without that record."""
    folder = Path(path)
    runs = [folder] + ([folder.parent] if folder.name == MODEL_DIR else [])
    for run in runs:
        if (run / RUN_OPTIONS).is_file():
            try:
                return json.loads((run / RUN_OPTIONS).read_text("utf-8")).get("init_from")
            except (ValueError, AttributeError):  # not JSON, or not an object: no record
                return None
    return None
