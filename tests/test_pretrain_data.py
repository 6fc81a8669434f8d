"""Pretraining examples: MSM word spans, MRM IoU groups, ITM hard negatives, determinism."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import build_photo_store, build_pretraining_store
from hypothesis import given, settings
from hypothesis import strategies as st

from taomm.datasets.pretraining import (
    IGNORE,
    MaskingOptions,
    PretrainingData,
    box_iou,
    collate_pretraining,
    masked_regions,
    masked_tokens,
    masked_words,
)
from taomm.datasets.store import FeatureStore, image_key
from taomm.errors import TaommError
from taomm.text.tokenizer import TitleTokenizer
from taomm.train.losses import contrastive_sums
from taomm.train.sampler import StepBatches


@pytest.fixture(scope="module")
def store_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_pretraining_store(tmp_path_factory.mktemp("pretrain") / "store", count=64)


@pytest.fixture(scope="module")
def store(store_path: Path):
    with FeatureStore(store_path) as fs:
        yield fs


@pytest.fixture(scope="module")
def tokenizer(store_path: Path) -> TitleTokenizer:
    return TitleTokenizer(store_path / "vocab.txt")


def make_data(store, tokenizer, seed: int = 0, **options) -> PretrainingData:
    return PretrainingData(store, tokenizer, store.split("train"), seed=seed, options=MaskingOptions(**options))


def within_binomial(hits: int, n: int, p: float, sigmas: float = 5.0) -> bool:
    return abs(hits - n * p) <= sigmas * math.sqrt(n * p * (1 - p)) + 1


# --- word spans -------------------------------------------------------------------------

def reference_masked_words(num_words: int, rng: np.random.Generator, p: float, max_extra: int) -> np.ndarray:
    """The rule written as loops, with the same draws."""
    anchors = rng.random(num_words) < p
    extra = rng.integers(0, max_extra + 1, num_words)
    fallback = int(rng.integers(0, max(num_words, 1)))
    if num_words and not anchors.any():
        anchors[fallback] = True
    out = np.zeros(num_words, dtype=bool)
    for a in np.flatnonzero(anchors):
        for j in range(a, min(num_words, a + extra[a] + 1)):
            out[j] = True
    return out


@given(st.integers(0, 60), st.integers(0, 2**32 - 1), st.sampled_from([0.0, 0.1, 0.5, 1.0]), st.integers(0, 3))
def test_masked_words_matches_the_rule(num_words: int, seed: int, p: float, max_extra: int) -> None:
    got = masked_words(num_words, np.random.default_rng(seed), p, max_extra)
    want = reference_masked_words(num_words, np.random.default_rng(seed), p, max_extra)
    assert np.array_equal(got, want)
    assert got.shape == (num_words,)
    if num_words:
        assert got.any()  # at least one word per caption


def test_masked_word_share_is_binomial() -> None:
    # Far from the caption's start, a word is masked unless none of itself and the two
    # words before it is an anchor reaching it: 1 - (1-p)(1-2p/3)(1-p/3) = 0.1880 at p=0.1.
    rng = np.random.default_rng(0)
    masks = np.stack([masked_words(60, rng) for _ in range(2000)])[:, 5:]
    p = 1 - 0.9 * (1 - 0.2 / 3) * (1 - 0.1 / 3)
    # neighbouring words are correlated (one anchor masks up to 3): count one word in 3
    sample = masks[:, ::3]
    assert within_binomial(int(sample.sum()), sample.size, p)


@given(st.integers(0, 80), st.integers(0, 2**32 - 1))
def test_masked_tokens_at_least_one(num_tokens: int, seed: int) -> None:
    got = masked_tokens(num_tokens, np.random.default_rng(seed), 0.15)
    assert got.shape == (num_tokens,) and (got.any() or num_tokens == 0)


# --- regions ----------------------------------------------------------------------------

def python_iou(a, b) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


boxes_strategy = st.lists(
    st.tuples(st.floats(0, 100), st.floats(0, 100), st.floats(1, 60), st.floats(1, 60)).map(
        lambda t: (t[0], t[1], t[0] + t[2], t[1] + t[3])),
    min_size=0, max_size=20)


@given(boxes_strategy, st.integers(0, 2**32 - 1), st.sampled_from([0.1, 0.3, 1.0]))
def test_region_groups_equal_brute_force(boxes, seed: int, p: float) -> None:
    arr = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    got = masked_regions(arr, np.random.default_rng(seed), p, 0.4, "iou")
    anchors = np.random.default_rng(seed).random(len(arr)) < p
    want = [bool(anchors[i]) or any(python_iou(arr[i], arr[j]) > 0.4 for j in np.flatnonzero(anchors))
            for i in range(len(arr))]
    assert got.tolist() == want
    single = masked_regions(arr, np.random.default_rng(seed), p, 0.4, "single")
    assert single.tolist() == anchors.tolist()
    for i in range(len(arr)):
        for j in range(len(arr)):
            assert box_iou(arr[i:i + 1], arr[j:j + 1])[0, 0] == pytest.approx(python_iou(arr[i], arr[j]), abs=1e-6)


# --- examples ---------------------------------------------------------------------------

@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.sampled_from(["segment", "token"]))
def test_example_labels(store, tokenizer, position: int, mode: str) -> None:
    data = make_data(store, tokenizer, mask_mode=mode)
    e = data[position]
    ids, labels = e["input_ids"], e["msm_labels"]
    caption = store[e["caption"]]
    encoded = tokenizer.encode_words(caption.words)
    original = np.asarray([tokenizer.cls_id, *encoded.ids[:38], tokenizer.sep_id])
    assert ids.shape == labels.shape == original.shape
    specials = np.isin(original, [tokenizer.cls_id, tokenizer.sep_id, tokenizer.pad_id])
    assert (labels[specials] == IGNORE).all() and not np.isin(ids[specials == 0], [tokenizer.cls_id,
                                                                                    tokenizer.sep_id]).any()
    masked = labels != IGNORE
    assert np.array_equal(labels[masked], original[masked])  # labels: the original token where masked
    item = store[e["ordinal"]]
    n = min(item.num_regions, 16)
    region_masked = e["mrm_labels"] != IGNORE
    if e["itm_label"] == 1:
        assert np.array_equal(ids[~masked], original[~masked])  # untouched elsewhere
        assert e["caption"] == e["ordinal"] and masked.any()
        if mode == "segment":  # all sub-tokens of a word share its fate
            word = encoded.word_index[:38]
            for w in np.unique(word):
                assert len(set(masked[1:-1][word == w].tolist())) == 1
        zeroed = ~np.asarray(e["region_features"], dtype=np.float32).any(axis=1)
        assert (zeroed[region_masked]).all()
        assert np.array_equal(e["mrm_labels"][region_masked], item.labels[:n][region_masked])
    else:
        assert not masked.any() and not region_masked.any()  # MSM/MRM only on matched pairs
        assert e["caption"] != e["ordinal"]
        kept = np.asarray(e["region_features"], dtype=np.float32).any(axis=1)  # masked alike, unlabelled
        np.testing.assert_array_equal(e["region_features"][kept], item.features[:n][kept])
    w, h = item.width, item.height
    np.testing.assert_allclose(e["region_boxes"][:, :4] * [w, h, w, h], item.boxes[:n], rtol=1e-5, atol=1e-3)


def test_shares_are_binomial(store, tokenizer) -> None:
    data = make_data(store, tokenizer)
    examples = [data[p] for p in range(3000)]
    matched = [e for e in examples if e["itm_label"] == 1]
    assert within_binomial(len(matched), len(examples), 0.5)
    train = set(store.split("train").tolist())
    with_negatives = [e for e in examples if e["itm_label"] == 0
                      and np.isin(store.negatives(e["ordinal"]), list(train)).any()]
    hard = [e for e in with_negatives if e["negative"] == "hard"]
    assert len(with_negatives) > 300
    assert within_binomial(len(hard), len(with_negatives), 0.2)
    for e in hard:
        assert e["caption"] in store.negatives(e["ordinal"]).tolist() and e["caption"] in train
    for e in examples:  # captions only ever come from the training pool
        assert e["caption"] in train
    # 80/10/10 over the masked tokens
    ids = np.concatenate([e["input_ids"] for e in matched])
    labels = np.concatenate([e["msm_labels"] for e in matched])
    masked = labels != IGNORE
    n = int(masked.sum())
    assert within_binomial(int((ids[masked] == tokenizer.mask_id).sum()), n, 0.8)
    kept = int((ids[masked] == labels[masked]).sum())
    assert within_binomial(kept, n, 0.1 + 0.1 / len(data.random_ids), sigmas=6)


def test_masking_says_nothing_about_matching(store, tokenizer) -> None:
    """Matched and unmatched pairs carry [MASK] tokens and zeroed regions at the same rate
    (otherwise ITM learns "has [MASK] -> matched")."""
    data = make_data(store, tokenizer)
    rates = {0: [0, 0, 0, 0], 1: [0, 0, 0, 0]}
    for p in range(2000):
        e = data[p]
        r = rates[e["itm_label"]]
        r[0] += int((e["input_ids"] == tokenizer.mask_id).sum())
        r[1] += len(e["input_ids"]) - 2
        r[2] += int((~np.asarray(e["region_features"], dtype=np.float32).any(axis=1)).sum())
        r[3] += len(e["region_boxes"])
    for i in (0, 2):
        a, b = rates[0][i] / rates[0][i + 1], rates[1][i] / rates[1][i + 1]
        assert abs(a - b) < 0.03, (i, a, b)


def test_no_hard_negatives_when_switched_off(store, tokenizer) -> None:
    data = make_data(store, tokenizer, hard_negative_p=0.0)
    assert all(data[p]["negative"] != "hard" for p in range(400))


def test_same_seed_same_batch(store, tokenizer) -> None:
    a, b, c = make_data(store, tokenizer, seed=1), make_data(store, tokenizer, seed=1), make_data(store, tokenizer, seed=2)
    positions = [5, 77, 300, 1000]
    batch_a = collate_pretraining([a[p] for p in positions])
    batch_b = collate_pretraining([b[p] for p in reversed(positions)][::-1])  # order of reading is irrelevant
    batch_c = collate_pretraining([c[p] for p in positions])
    for key in batch_a:
        assert np.array_equal(batch_a[key].numpy(), batch_b[key].numpy()), key
    assert any(not np.array_equal(batch_a[k].numpy(), batch_c[k].numpy()) for k in batch_a)


def test_epochs_cover_every_item_once(store, tokenizer) -> None:
    data = make_data(store, tokenizer)
    n = len(data)
    for epoch in range(3):
        seen = sorted(data.ordinal_at(epoch * n + i) for i in range(n))
        assert seen == sorted(store.split("train").tolist())
    assert [data.ordinal_at(i) for i in range(n)] != [data.ordinal_at(n + i) for i in range(n)]


def test_collate_pads(store, tokenizer) -> None:
    data = make_data(store, tokenizer)
    examples = [data[p] for p in range(6)]
    batch = collate_pretraining(examples, pad_id=tokenizer.pad_id)
    B, T = batch["input_ids"].shape
    R = batch["region_boxes"].shape[1]
    assert B == 6 and max(len(e["input_ids"]) for e in examples) == T and max(len(e["region_boxes"]) for e in examples) == R
    pad = ~batch["attention_mask"]
    assert (batch["input_ids"][pad] == tokenizer.pad_id).all() and (batch["msm_labels"][pad] == IGNORE).all()
    assert (batch["mrm_labels"][~batch["region_mask"]] == IGNORE).all()


@given(st.integers(1, 4), st.integers(1, 3), st.integers(1, 3), st.integers(0, 5))
def test_step_batches_cover_the_global_batch(micro: int, accum: int, world: int, start: int) -> None:
    per_rank = [list(StepBatches(micro, accum, r, world, start, start + 2)) for r in range(world)]
    G = micro * accum * world
    for step in range(2):
        got = sorted(p for rank in per_rank for batch in rank[step * accum:(step + 1) * accum] for p in batch)
        assert got == list(range((start + step) * G, (start + step + 1) * G))


def test_bad_options() -> None:
    with pytest.raises(TaommError, match="mask mode"):
        MaskingOptions(mask_mode="words")
    with pytest.raises(TaommError, match="region mask"):
        MaskingOptions(region_mask="all")
    with pytest.raises(TaommError, match="hard_negative_p"):
        MaskingOptions(hard_negative_p=1.5)


# --- negatives that would be right answers ------------------------------------------------

@pytest.fixture(scope="module")
def photo_store(tmp_path_factory: pytest.TempPathFactory):
    path = build_photo_store(tmp_path_factory.mktemp("photos") / "store")
    with FeatureStore(path) as fs:
        yield fs


def right_answers(store, ordinal: int) -> set[int]:
    """Items that are never ``ordinal``'s negative: another caption of its photo, its title."""
    item = store[ordinal]
    return {o for o in range(len(store)) if o != ordinal and (
        image_key(store[o].item_id) == image_key(item.item_id) or store[o].title == item.title)}


def test_itm_negatives_are_never_the_same_photo_or_title(photo_store) -> None:
    store = photo_store
    assert all(right_answers(store, o) for o in range(len(store)))  # every item has some to avoid
    data = PretrainingData(store, TitleTokenizer(store.path / "vocab.txt"), np.arange(len(store)), seed=3,
                           options=MaskingOptions(hard_negative_p=0.5))
    kinds = []
    for p in range(1500):
        e = data[p]
        if e["itm_label"] == 0:
            assert e["caption"] not in right_answers(store, e["ordinal"]) | {e["ordinal"]}, e
            kinds.append(e["negative"])
    assert kinds.count("random") > 200 and kinds.count("hard") > 100  # both kinds were drawn


def test_random_negatives_are_uniform_over_the_allowed_items(photo_store) -> None:
    """Draw k of the allowed count maps onto the allowed items one to one: exact, no redraws."""
    store = photo_store
    data = PretrainingData(store, TitleTokenizer(store.path / "vocab.txt"), np.arange(len(store)))
    for ordinal in range(len(store)):
        allowed = set(range(len(store))) - right_answers(store, ordinal) - {ordinal}
        assert sorted(data.random_other(ordinal, k) for k in range(len(allowed))) == sorted(allowed)
        assert data.random_other(ordinal, len(allowed) + 2) == data.random_other(ordinal, 2)
        chosen = sorted(allowed)[:3]
        rest = sorted(data.random_other(ordinal, k, chosen) for k in range(len(allowed) - 3))
        assert rest == sorted(allowed - set(chosen))


def test_a_pool_without_allowed_negatives_is_refused(photo_store) -> None:
    store = photo_store
    tok = TitleTokenizer(store.path / "vocab.txt")
    one_photo = [store.ordinal(f"ph0#{k}") for k in range(3)]
    with pytest.raises(TaommError, match="share its photo or title"):
        PretrainingData(store, tok, one_photo)
    PretrainingData(store, tok, one_photo, options=MaskingOptions(match_p=1.0))  # no negatives needed


def test_examples_carry_photo_and_title_groups(photo_store) -> None:
    store = photo_store
    data = PretrainingData(store, TitleTokenizer(store.path / "vocab.txt"), np.arange(len(store)))
    batch = collate_pretraining([data[p] for p in range(len(store))])
    groups, ordinals = batch["groups"].numpy(), batch["ordinals"].numpy()
    for a in range(len(ordinals)):
        for b in range(len(ordinals)):
            x, y = store[int(ordinals[a])], store[int(ordinals[b])]
            assert (groups[a, 0] == groups[b, 0]) == (image_key(x.item_id) == image_key(y.item_id))
            assert (groups[a, 1] == groups[b, 1]) == (x.title == y.title)


def test_contrastive_negatives_skip_rows_of_the_same_group() -> None:
    g = torch.Generator().manual_seed(0)
    text = torch.nn.functional.normalize(torch.randn(4, 8, generator=g), dim=-1)
    image = torch.nn.functional.normalize(torch.randn(4, 8, generator=g), dim=-1)
    scale = torch.tensor(5.0)
    # rows 0 and 1: one photo; rows 2 and 3: one title; no two rows share both
    groups = torch.tensor([[0, 10], [0, 11], [1, 12], [2, 12]])
    loss, _, _, rows = contrastive_sums(text, image, scale, groups)
    negatives = [[2, 3], [2, 3], [0, 1], [0, 1]]  # per row: the columns that may be its negatives
    want = 0.0
    for r, cols in enumerate(negatives):
        for a, b in ((text, image), (image, text)):
            logits = scale * a[r] @ b[[r, *cols]].T
            want += 0.5 * float(torch.logsumexp(logits, 0) - logits[0])
    assert float(loss) == pytest.approx(want, rel=1e-5) and rows.tolist() == [0, 1, 2, 3]
    plain = contrastive_sums(text, image, scale)[0]  # without groups: every other row a negative
    assert float(plain) > float(loss)
