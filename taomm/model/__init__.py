"""The InterBERT model: config, backbone, heads, checkpoints (DESIGN.md section 6)."""

from taomm.model.config import InterBertConfig
from taomm.model.glue import InterBertForSequenceClassification
from taomm.model.heads import (
    InterBertForPretraining,
    InterBertForRetrieval,
    InterBertPretrainingOutput,
)
from taomm.model.modeling import InterBertModel, InterBertOutput, normalize_boxes
from taomm.model.pretrained import InterBertPreTrainedModel, LoadReport, bert_key_map
from taomm.model.summary import count_parameters
from taomm.model.vcr import InterBertForMultipleChoice

__all__ = [
    "InterBertConfig",
    "InterBertForMultipleChoice",
    "InterBertForPretraining",
    "InterBertForRetrieval",
    "InterBertForSequenceClassification",
    "InterBertModel",
    "InterBertOutput",
    "InterBertPreTrainedModel",
    "InterBertPretrainingOutput",
    "LoadReport",
    "bert_key_map",
    "count_parameters",
    "normalize_boxes",
]
