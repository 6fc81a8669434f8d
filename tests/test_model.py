"""The InterBERT model on a tiny config: shapes, masks, single-modal paths, checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from taomm.cli.app import app
from taomm.datasets.pretraining import normalized_boxes
from taomm.errors import TaommError
from taomm.model import (
    InterBertConfig,
    InterBertForPretraining,
    InterBertForRetrieval,
    InterBertModel,
    count_parameters,
)

V, B, T, R = 50, 3, 9, 5


def tiny(**overrides) -> InterBertConfig:
    return InterBertConfig.from_preset("tiny", "zh", vocab_size=V, region_feature_dim=24, **overrides)


def batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, V, (B, T), generator=g)
    mask = torch.ones(B, T, dtype=torch.bool)
    mask[0, 6:] = False
    feats = torch.randn(B, R, 24, generator=g)
    xy = torch.rand(B, R, 2, generator=g) * 0.5
    boxes = torch.cat([xy, xy + 0.4, torch.full((B, R, 1), 0.16)], -1)
    rmask = torch.ones(B, R, dtype=torch.bool)
    rmask[1, 3:] = False
    return ids, mask, feats, boxes, rmask


@pytest.fixture(scope="module")
def pretraining() -> InterBertForPretraining:
    torch.manual_seed(0)
    return InterBertForPretraining(tiny()).eval()


def test_presets_and_config_round_trip(tmp_path: Path) -> None:
    base = InterBertConfig.from_preset("base", "zh")
    assert (base.hidden_size, base.num_attention_heads, base.intermediate_size) == (768, 12, 3072)
    assert (base.num_interaction_layers, base.num_extractor_layers, base.layer_norm_eps) == (12, 6, 1e-12)
    assert (base.vocab_size, base.num_region_classes, base.max_regions) == (21128, 33, 16)
    en = InterBertConfig.from_preset("small", "en")
    assert (en.vocab_size, en.num_region_classes) == (30522, 1600)
    base.to_json_file(tmp_path / "config.json")
    assert InterBertConfig.from_json_file(tmp_path / "config.json") == base
    with pytest.raises(TaommError, match="unknown InterBERT config keys: colour"):
        InterBertConfig.from_dict({"colour": 1})
    with pytest.raises(TaommError, match="multiple of num_attention_heads"):
        tiny(hidden_size=30)
    with pytest.raises(TaommError, match="unknown model preset"):
        InterBertConfig.from_preset("huge")


def test_text_length_is_saved_and_old_configs_keep_theirs(tmp_path: Path) -> None:
    """max_text_tokens round-trips through config.json; a config.json written before it was
    saved gets min(40, max_position_embeddings), the length the code used then."""
    assert tiny().max_text_tokens == 40 and tiny(max_text_tokens=24).max_text_tokens == 24
    tiny(max_text_tokens=24).to_json_file(tmp_path / "config.json")
    assert InterBertConfig.from_json_file(tmp_path / "config.json").max_text_tokens == 24
    for positions, expected in ((512, 40), (32, 32)):
        old = tiny(max_position_embeddings=positions).to_dict()
        del old["max_text_tokens"]
        (tmp_path / "old.json").write_text(json.dumps(old))
        assert InterBertConfig.from_json_file(tmp_path / "old.json").max_text_tokens == expected
    assert tiny(max_position_embeddings=16, max_text_tokens=40).max_text_tokens == 16


def test_pretraining_heads_and_losses(pretraining: InterBertForPretraining) -> None:
    ids, mask, feats, boxes, rmask = batch()
    out = pretraining(ids, mask, feats, boxes, rmask)
    assert out.loss is None and out.msm_loss is None
    assert out.msm_logits.shape == (B, T, V)
    assert out.mrm_logits.shape == (B, R, 33)
    assert out.itm_logits.shape == (B,)
    assert out.backbone.image_hidden.shape == (B, R + 1, 32) and out.backbone.text_hidden.shape == (B, T, 32)
    msm = torch.full((B, T), -100)
    msm[:, 2] = 7
    mrm = torch.full((B, R), -100)
    mrm[0, 1] = 3
    itm = torch.tensor([1, 0, 1])
    out = pretraining(ids, mask, feats, boxes, rmask, msm_labels=msm, mrm_labels=mrm, itm_labels=itm)
    assert out.msm_logits.shape == (B, V) and out.mrm_logits.shape == (1, 33)
    want = torch.nn.functional.cross_entropy(out.msm_logits, torch.full((B,), 7))
    torch.testing.assert_close(out.msm_loss, want)
    torch.testing.assert_close(out.loss, out.msm_loss + out.mrm_loss + out.itm_loss)
    only_itm = pretraining(ids, mask, feats, boxes, rmask, itm_labels=itm)
    torch.testing.assert_close(only_itm.loss, only_itm.itm_loss)
    none = pretraining(ids, mask, feats, boxes, rmask, msm_labels=torch.full((B, T), -100))
    assert none.msm_loss.item() == 0.0  # no masked token in the batch: zero, not NaN


def test_itm_head_scores_the_product_of_the_two_cls_vectors(pretraining: InterBertForPretraining) -> None:
    """Paper section 3: ITM reads h_img[CLS] * h_txt[CLS] (element-wise, H wide), not the two
    vectors side by side (2H)."""
    head = pretraining.itm_head
    assert head.dense.in_features == pretraining.config.hidden_size == 32
    ids, mask, feats, boxes, rmask = batch()
    out = pretraining(ids, mask, feats, boxes, rmask)
    image_cls, text_cls = out.backbone.image_cls, out.backbone.text_cls
    product = image_cls * text_cls  # (B, H)
    by_hand = product @ head.dense.weight.T + head.dense.bias
    by_hand = torch.nn.functional.gelu(by_hand) @ head.out.weight.T + head.out.bias  # (B, 1)
    torch.testing.assert_close(out.itm_logits, by_hand.squeeze(-1))
    # only the product matters: swapping the roles, or moving a factor between the two, changes nothing
    torch.testing.assert_close(head(text_cls, image_cls), out.itm_logits)
    torch.testing.assert_close(head(2 * image_cls, text_cls / 2), out.itm_logits)
    zero = head(torch.zeros_like(image_cls), text_cls)  # a zero vector zeroes the head's input
    torch.testing.assert_close(zero, head(image_cls, torch.zeros_like(text_cls)))
    torch.testing.assert_close(zero, head.out(torch.nn.functional.gelu(head.dense.bias)).squeeze(-1).expand(B))


def test_msm_decoder_is_tied(pretraining: InterBertForPretraining) -> None:
    assert pretraining.msm_head.decoder.weight is pretraining.interbert.embeddings.word_embeddings.weight


def test_single_modal_paths(pretraining: InterBertForPretraining) -> None:
    ids, mask, feats, boxes, rmask = batch()
    text = pretraining.interbert(ids, mask)
    assert text.image_hidden is None and text.image_cls is None and text.text_cls.shape == (B, 32)
    image = pretraining.interbert(region_features=feats, region_boxes=boxes, region_mask=rmask)
    assert image.text_hidden is None and image.image_cls.shape == (B, 32)
    both = pretraining.interbert(ids, mask, feats, boxes, rmask)
    assert not torch.allclose(both.text_cls, text.text_cls)  # the image changes the text's view
    with pytest.raises(ValueError, match="give input_ids"):
        pretraining.interbert()


def test_padding_and_masked_content_change_nothing(pretraining: InterBertForPretraining) -> None:
    ids, mask, feats, boxes, rmask = batch()
    ref = pretraining.interbert(ids, mask, feats, boxes, rmask)
    # More padding on both parts, and garbage in every masked position.
    ids2 = torch.cat([ids, torch.randint(0, V, (B, 4))], 1)
    ids2[~torch.cat([mask, torch.zeros(B, 4, dtype=torch.bool)], 1)] = 3
    mask2 = torch.cat([mask, torch.zeros(B, 4, dtype=torch.bool)], 1)
    feats2 = torch.cat([feats, torch.randn(B, 3, 24) * 50], 1)
    feats2[~torch.cat([rmask, torch.zeros(B, 3, dtype=torch.bool)], 1)] = 99.0
    boxes2 = torch.cat([boxes, torch.rand(B, 3, 5)], 1)
    rmask2 = torch.cat([rmask, torch.zeros(B, 3, dtype=torch.bool)], 1)
    out = pretraining.interbert(ids2, mask2, feats2, boxes2, rmask2)
    for b in range(B):
        t, r = int(mask[b].sum()), int(rmask[b].sum()) + 1
        torch.testing.assert_close(out.text_hidden[b, :t], ref.text_hidden[b, :t], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(out.image_hidden[b, :r], ref.image_hidden[b, :r], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.image_cls, ref.image_cls, atol=1e-5, rtol=1e-5)


def test_image_cls_is_the_mean_region_with_the_whole_box() -> None:
    from taomm.model.modeling import with_image_cls

    feats = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    boxes = torch.zeros(1, 3, 5)
    mask = torch.tensor([[True, True, False]])
    f, b, m = with_image_cls(feats, boxes, mask)
    assert f[0, 0].tolist() == [2.0, 3.0] and b[0, 0].tolist() == [0, 0, 1, 1, 1] and m[0].tolist() == [1, 1, 1, 0]


def test_normalized_boxes() -> None:
    boxes = np.array([[10.0, 20.0, 110.0, 70.0], [0.0, 0.0, 200.0, 100.0]])  # (R=2, 4) pixels
    out = normalized_boxes(boxes, 200, 100)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [[0.05, 0.2, 0.55, 0.7, 0.25], [0.0, 0.0, 1.0, 1.0, 1.0]], rtol=1e-6)


def test_retrieval_vectors() -> None:
    torch.manual_seed(0)
    model = InterBertForRetrieval(tiny()).eval()
    ids, mask, feats, boxes, rmask = batch()
    text = model.encode_text(ids, mask)
    image = model.encode_image(feats, boxes, rmask)
    item = model.encode_item(ids, mask, feats, boxes, rmask)
    assert text.shape == image.shape == (B, 16) and item.shape == (B, 16)
    for v in (text, image, item):
        torch.testing.assert_close(v.norm(dim=-1), torch.ones(B))
    assert model(ids, mask, feats, boxes, rmask).itm_logits.shape == (B,)
    logits = model.contrastive_logits(text, image)
    torch.testing.assert_close(logits, (text @ image.T) / 0.07)


def test_gradient_checkpointing_gives_the_same_gradients() -> None:
    ids, mask, feats, boxes, rmask = batch()
    labels = {"msm_labels": torch.where(mask, ids, -100), "itm_labels": torch.tensor([1, 0, 1])}
    grads = []
    for enabled in (False, True):
        torch.manual_seed(0)
        model = InterBertForPretraining(tiny(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)).train()
        model.set_gradient_checkpointing(enabled)
        model(ids, mask, feats, boxes, rmask, **labels).loss.backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], atol=1e-6, rtol=1e-5, msg=name)


def test_bf16_autocast_on_cpu(pretraining: InterBertForPretraining) -> None:
    ids, mask, feats, boxes, rmask = batch()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = pretraining(ids, mask, feats.half(), boxes, rmask, itm_labels=torch.tensor([1, 0, 1]))
    assert torch.isfinite(out.loss)
    ref = pretraining(ids, mask, feats, boxes, rmask, itm_labels=torch.tensor([1, 0, 1]))
    torch.testing.assert_close(out.itm_logits.float(), ref.itm_logits, atol=0.1, rtol=0.1)


def test_save_load_round_trip_is_bitwise(pretraining: InterBertForPretraining, tmp_path: Path) -> None:
    vocab = tmp_path / "v.txt"
    vocab.write_text("[PAD]\n[UNK]\n")
    pretraining.save_pretrained(tmp_path / "ckpt", vocab_file=vocab)
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["config.json", "model.safetensors", "vocab.txt"]
    loaded = InterBertForPretraining.from_pretrained(tmp_path / "ckpt").eval()
    assert loaded.load_report.missing == [] and loaded.load_report.unexpected == []
    want, got = pretraining.state_dict(), loaded.state_dict()
    assert want.keys() == got.keys()
    for key in want:
        assert torch.equal(want[key], got[key]), key
    assert loaded.msm_head.decoder.weight is loaded.interbert.embeddings.word_embeddings.weight
    ids, mask, feats, boxes, rmask = batch()
    assert torch.equal(loaded(ids, mask, feats, boxes, rmask).itm_logits,
                       pretraining(ids, mask, feats, boxes, rmask).itm_logits)
    assert all(not k.startswith("__") for k in load_file(str(tmp_path / "ckpt" / "model.safetensors")))


def test_loading_across_model_classes(pretraining: InterBertForPretraining, tmp_path: Path) -> None:
    pretraining.save_pretrained(tmp_path / "pre")
    backbone = InterBertModel.from_pretrained(tmp_path / "pre")
    assert backbone.load_report.missing == []
    assert {k.split(".")[0] for k in backbone.load_report.unexpected} == {"msm_head", "mrm_head", "itm_head",
                                                                           "contrastive"}
    backbone.save_pretrained(tmp_path / "backbone")
    retrieval = InterBertForRetrieval.from_pretrained(tmp_path / "backbone")
    assert retrieval.load_report.unexpected == []
    assert {k.split(".")[0] for k in retrieval.load_report.missing} == {"itm_head", "contrastive", "item_head"}
    torch.testing.assert_close(retrieval.interbert.embeddings.word_embeddings.weight,
                               pretraining.interbert.embeddings.word_embeddings.weight)
    config = json.loads((tmp_path / "pre" / "config.json").read_text())
    config["hidden_size"] = 64
    config["num_attention_heads"] = 4
    (tmp_path / "pre" / "config.json").write_text(json.dumps(config))
    with pytest.raises(TaommError, match=r"checkpoint tensor \S+ has shape \(.*\), the model expects"):
        InterBertForPretraining.from_pretrained(tmp_path / "pre")
    with pytest.raises(TaommError, match="not an InterBERT checkpoint"):
        InterBertModel.from_pretrained(tmp_path / "missing")


def legacy_layout(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A state dict as the code before InterBertContrastiveHead wrote it: its tensors at the top."""
    return {k.removeprefix("contrastive."): v.clone() for k, v in state.items()}


@pytest.mark.parametrize("cls", [InterBertForRetrieval, InterBertForPretraining])
def test_checkpoints_of_the_old_layout_load(cls, tmp_path: Path) -> None:
    """Before the contrastive head was a submodule, checkpoints held ``text_proj.*``,
    ``image_proj.*`` and ``logit_scale`` at the top: they load into ``contrastive.*``."""
    torch.manual_seed(1)
    model = cls(tiny()).eval()
    with torch.no_grad():
        model.contrastive.logit_scale.fill_(3.5)  # not its initial value: it must come from the file
    state = model.state_dict()
    old = legacy_layout(state)
    assert {"text_proj.weight", "image_proj.bias", "logit_scale"} <= old.keys()
    (tmp_path / "old").mkdir()
    tiny().to_json_file(tmp_path / "old" / "config.json")
    save_file({k: v for k, v in old.items() if k != "msm_head.decoder.weight"},  # tied: stored once
              str(tmp_path / "old" / "model.safetensors"))
    torch.manual_seed(2)
    loaded = cls.from_pretrained(tmp_path / "old").eval()
    assert loaded.load_report.missing == [] and loaded.load_report.unexpected == []
    assert all(torch.equal(state[k], v) for k, v in loaded.state_dict().items())
    ids, mask, feats, boxes, rmask = batch()
    assert torch.equal(loaded.encode_text(ids, mask), model.encode_text(ids, mask))
    assert torch.equal(loaded.encode_image(feats, boxes, rmask), model.encode_image(feats, boxes, rmask))


def test_parameter_counts() -> None:
    counts = count_parameters(InterBertForPretraining(tiny()))
    parts = {k: v for k, v in counts.items() if k != "total"}
    assert sum(parts.values()) == counts["total"]
    assert counts["total"] == sum(p.numel() for p in InterBertForPretraining(tiny()).parameters())
    assert counts["image extractor"] == counts["text extractor"]


def test_model_info_cli() -> None:
    result = CliRunner().invoke(app, ["model-info", "--preset", "base", "--lang", "zh", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    counts = doc["parameters"]
    assert counts["interaction layers"] == 12 * (4 * (768 * 768 + 768) + 2 * 768 * 3072 + 3072 + 768 + 4 * 768)
    assert counts["image extractor"] == counts["text extractor"] == counts["interaction layers"] // 2
    assert 185e6 < counts["total"] < 195e6
    text = CliRunner().invoke(app, ["model-info", "--preset", "tiny"])
    assert text.exit_code == 0 and "interaction layers" in text.stdout and "total" in text.stdout
    bad = CliRunner().invoke(app, ["model-info", "--preset", "huge"])
    assert bad.exit_code == 1 and bad.stderr.startswith("taomm: error: unknown model preset")
