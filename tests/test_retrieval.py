"""Retrieval scoring and recall: hand-computed recall cases, pair scores against the model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import build_pretraining_store

from taomm.datasets.store import FeatureStore
from taomm.model import InterBertConfig, InterBertForPretraining
from taomm.retrieval import encode_items, exhaustive_scores, itm_scores, recall_at_k
from taomm.text.tokenizer import TitleTokenizer


def test_recall_hand_computed_with_ties() -> None:
    scores = np.array([[0.9, 0.1, 0.5],
                       [0.2, 0.3, 0.3],   # tie with a wrong image: counted as ranked below it
                       [0.1, 0.8, 0.7]])
    assert recall_at_k(scores, ks=(1, 2, 3)) == {"R@1": pytest.approx(1 / 3), "R@2": 1.0, "R@3": 1.0}


def test_recall_several_captions_per_image() -> None:
    scores = np.array([[0.1, 0.9],
                       [0.6, 0.4],
                       [0.5, 0.5],
                       [0.0, 1.0]])
    relevant = [[0], [0], [1], [0, 1]]  # captions 0, 1 describe image 0; 3 both images
    assert recall_at_k(scores, relevant, ks=(1, 2)) == {"R@1": 0.5, "R@2": 1.0}


def test_exhaustive_scores_match_single_pairs(tmp_path: Path) -> None:
    store_path = build_pretraining_store(tmp_path / "store", count=10)
    tok = TitleTokenizer(store_path / "vocab.txt")
    config = InterBertConfig.from_preset("tiny", vocab_size=len(tok), region_feature_dim=32)
    torch.manual_seed(0)
    model = InterBertForPretraining(config).eval()
    with FeatureStore(store_path) as store:
        enc = encode_items(store, range(6), tok)
        full = exhaustive_scores(model, enc, enc, batch_size=7, bf16=False)
        assert full.shape == (6, 6)
        for c in range(6):
            for i in range(6):
                one = encode_items(store, [c], tok)
                img = encode_items(store, [i], tok)
                with torch.no_grad():
                    out = model(one.input_ids, one.attention_mask, img.region_features.float(), img.region_boxes,
                                img.region_mask)
                assert full[c, i] == pytest.approx(float(out.itm_logits[0]), abs=1e-5)
        part = itm_scores(model, enc, enc, np.array([3, 1]), np.array([0, 5]), bf16=False)
        np.testing.assert_allclose(part, [full[3, 0], full[1, 5]], atol=1e-6)
