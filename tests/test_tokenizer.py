"""The WordPiece tokenizer: parity with transformers on the real vocab, word alignment, training."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from taomm.errors import TaommError
from taomm.text.tokenizer import SPECIAL_TOKENS, TitleTokenizer, train_vocab

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
VOCAB = SHARED / "bert-base-chinese" / "vocab.txt"
TITLES = SHARED / "real-titles" / "product1m_dev.txt"


@pytest.fixture(scope="module")
def real() -> TitleTokenizer:
    if not VOCAB.is_file():
        pytest.skip("shared reference data is absent")
    return TitleTokenizer(VOCAB)


def real_titles() -> list[str]:
    if not TITLES.is_file():
        pytest.skip("shared reference data is absent")
    return [line.split("#####")[1] for line in TITLES.read_text("utf-8").splitlines() if "#####" in line]


def test_ids_equal_bert_tokenizer_fast_on_real_titles(real: TitleTokenizer) -> None:
    from transformers import BertTokenizerFast

    reference = BertTokenizerFast.from_pretrained(str(VOCAB.parent))
    assert len(reference) == len(real) == 21128
    assert (real.pad_id, real.unk_id, real.cls_id, real.sep_id, real.mask_id) == (0, 100, 101, 102, 103)
    titles = real_titles()
    for title in titles:
        assert real.encode(title).tolist() == reference(title, add_special_tokens=False)["input_ids"], title
    words = [[t[i:i + 3] for i in range(0, len(t), 3)] for t in titles[:300]]
    for ws, enc in zip(words, real.encode_batch(words), strict=True):
        assert enc.ids.tolist() == reference("".join(ws), add_special_tokens=False)["input_ids"]


def test_word_alignment(real: TitleTokenizer) -> None:
    words = ["韩国", "ahc", "黄金", "套盒", "iphone", "12", " ", "ProMax"]
    enc = real.encode_words(words)
    tokens = real.hf.convert_ids_to_tokens(enc.ids.tolist())
    assert tokens == ["韩", "国", "ah", "##c", "黄", "金", "套", "盒", "iphone", "##12", "pro", "##max"]
    assert enc.word_index.tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 5, 7, 7]
    assert enc.ids.dtype == np.int64 and enc.word_index.dtype == np.int64
    # Every CJK character is its own token and belongs to the word that contains it.
    enc = real.encode_words(["波点", "荷叶边", "半身裙"])
    assert enc.word_index.tolist() == [0, 0, 1, 1, 1, 2, 2, 2]
    assert real.encode_words([]).ids.size == 0


def test_train_vocab_is_bert_compatible(tmp_path: Path) -> None:
    texts = ["2020夏季新款波点荷叶边半身裙", "韩版显瘦连衣裙", "iPhone12手机壳", "红色格子衬衫"] * 20
    vocab = train_vocab(texts, tmp_path / "v" / "vocab.txt", vocab_size=200, min_frequency=2)
    lines = vocab.read_text("utf-8").splitlines()
    assert lines[: len(SPECIAL_TOKENS)] == list(SPECIAL_TOKENS)
    assert len(lines) == len(set(lines))
    cjk = [t for t in lines if any("\u4e00" <= c <= "\u9fff" for c in t)]
    assert cjk and all(len(t.removeprefix("##")) == 1 for t in cjk), "each CJK character is its own token"
    tok = TitleTokenizer(vocab)
    ids = tok.encode("波点荷叶边半身裙")
    assert ids.size == 8 and tok.unk_id not in ids.tolist()
    info = tok.info()
    assert info["vocab_size"] == len(lines) and len(info["vocab_sha256"]) == 64


def test_bad_vocab(tmp_path: Path) -> None:
    with pytest.raises(TaommError, match="no vocabulary"):
        TitleTokenizer(tmp_path / "missing.txt")
    (tmp_path / "vocab.txt").write_text("a\nb\n")
    with pytest.raises(TaommError, match="special tokens"):
        TitleTokenizer(tmp_path)


def test_train_vocab_is_reproducible(tmp_path: Path) -> None:
    """The same titles give the same vocab.txt, byte for byte, in every process (the WordPiece
    trainer emits tied tokens in hash order, seeded per process; the store's hash and every
    token id depend on this file)."""
    titles = ["2020春季新款chic连衣裙", "ins风2020夏季新款T恤", "韩版chic百搭2020背包", "ins chic 20 2020"] * 3
    code = "import sys; from taomm.text.tokenizer import train_vocab; train_vocab(sys.argv[2:], sys.argv[1])"
    for i in range(4):
        subprocess.run([sys.executable, "-c", code, str(tmp_path / f"vocab{i}.txt"), *titles], check=True)
    files = [(tmp_path / f"vocab{i}.txt").read_bytes() for i in range(4)]
    assert all(f == files[0] for f in files)
    tokens = files[0].decode("utf-8").split()
    assert tokens[:len(SPECIAL_TOKENS)] == list(SPECIAL_TOKENS) and len(set(tokens)) == len(tokens)
