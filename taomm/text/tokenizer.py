"""BERT WordPiece tokenisation of titles, with the word of every token (for MSM).

Token ids are exactly those of ``transformers.BertTokenizerFast`` on the title text (so a
``vocab.txt`` of bert-base-chinese gives bert-base-chinese's ids; the ``tokenizers`` library
it wraps does the work, tested against it); each token also carries
the index of the segmented word its first character belongs to, which is how masked
segment modeling masks all sub-tokens of a word together.
"""

from __future__ import annotations

import hashlib
import inspect
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from taomm.errors import TaommError

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


@dataclass(frozen=True)
class EncodedTitle:
    ids: np.ndarray  # (T,) int64 token ids, no [CLS]/[SEP]
    word_index: np.ndarray  # (T,) int64: the word each token starts in


def _wordpiece(vocab_file: Path, lowercase: bool):
    """The WordPiece tokenizer of ``tokenizers`` (the Rust library ``BertTokenizerFast`` wraps),
    set up as ``BertTokenizerFast`` sets it up: same ids and offsets, without importing
    transformers (seconds at the start of a ``taomm search``)."""
    from tokenizers import BertWordPieceTokenizer

    return BertWordPieceTokenizer(str(vocab_file), clean_text=True, handle_chinese_chars=True,
                                  strip_accents=None, lowercase=lowercase)


def _bert_tokenizer(vocab_file: Path, lowercase: bool):
    from transformers import BertTokenizerFast

    # transformers 4 takes `vocab_file=`, transformers 5 `vocab=` (and ignores an unknown
    # `vocab_file`, silently giving a 5-token vocabulary): pass what this version takes.
    params = inspect.signature(BertTokenizerFast.__init__).parameters
    key = "vocab_file" if "vocab_file" in params else "vocab"
    return BertTokenizerFast(**{key: str(vocab_file)}, do_lower_case=lowercase, tokenize_chinese_chars=True)


class TitleTokenizer:
    """WordPiece over a BERT ``vocab.txt`` (lower-cased, each CJK character its own token)."""

    def __init__(self, vocab_file: str | os.PathLike[str], lowercase: bool = True) -> None:
        path = Path(vocab_file)
        if path.is_dir():
            path = path / "vocab.txt"
        if not path.is_file():
            raise TaommError(f"no vocabulary at {path}")
        self.vocab_file = path
        with open(path, encoding="utf-8") as f:
            listed = {line.rstrip("\n") for line in f}
        missing = [t for t in SPECIAL_TOKENS if t not in listed]
        if missing:
            raise TaommError(f"{path} lacks the special tokens {', '.join(missing)}")
        self.lowercase = lowercase
        self._wordpiece = _wordpiece(path, lowercase)
        self.vocab: dict[str, int] = self._wordpiece.get_vocab()
        self._hf = None
        self.pad_id, self.unk_id, self.cls_id, self.sep_id, self.mask_id = (self.vocab[t] for t in SPECIAL_TOKENS)

    @property
    def hf(self):
        """``transformers.BertTokenizerFast`` on the same vocabulary, for sentence pairs and
        truncation (GLUE, VCR); built on first use."""
        if self._hf is None:
            self._hf = _bert_tokenizer(self.vocab_file, self.lowercase)
        return self._hf

    def __len__(self) -> int:
        return len(self.vocab)

    def encode(self, text: str) -> np.ndarray:
        """Token ids of ``text`` (no special tokens)."""
        return np.asarray(self._wordpiece.encode(text, add_special_tokens=False).ids, dtype=np.int64)

    def encode_words(self, words: Sequence[str]) -> EncodedTitle:
        """Tokens of ``"".join(words)`` and, per token, the index of its word."""
        return self.encode_batch([words])[0]

    def encode_batch(self, batch: Sequence[Sequence[str]]) -> list[EncodedTitle]:
        texts = ["".join(words) for words in batch]
        out = []
        for words, enc in zip(batch, self._wordpiece.encode_batch(texts, add_special_tokens=False), strict=True):
            ends = np.cumsum([len(w) for w in words])
            starts = np.asarray([start for start, _ in enc.offsets], dtype=np.int64)
            word_index = np.searchsorted(ends, starts, side="right")
            out.append(EncodedTitle(np.asarray(enc.ids, dtype=np.int64), word_index.astype(np.int64)))
        return out

    def info(self) -> dict:
        """What a store records about the tokenizer its titles are meant for."""
        digest = hashlib.sha256(self.vocab_file.read_bytes()).hexdigest()
        return {"kind": "bert-wordpiece", "vocab_file": self.vocab_file.name, "vocab_size": len(self),
                "vocab_sha256": digest, "lowercase": bool(self.lowercase)}


def train_vocab(texts: Iterable[str], out: str | os.PathLike[str], vocab_size: int = 8000,
                min_frequency: int = 2, lowercase: bool = True) -> Path:
    """Train a BERT-compatible WordPiece ``vocab.txt`` (each CJK character its own token).

    The special tokens come first: [PAD]=0, [UNK]=1, [CLS]=2, [SEP]=3, [MASK]=4.
    """
    from tokenizers import BertWordPieceTokenizer

    if vocab_size < len(SPECIAL_TOKENS) + 1:
        raise TaommError(f"vocab size must be more than {len(SPECIAL_TOKENS)}")
    trainer = BertWordPieceTokenizer(clean_text=True, handle_chinese_chars=True, strip_accents=None,
                                     lowercase=lowercase)
    trainer.train_from_iterator(texts, vocab_size=vocab_size, min_frequency=min_frequency,
                                special_tokens=list(SPECIAL_TOKENS), show_progress=False)
    # the trainer's order is not reproducible (ties come out in hash order, ##0 before ##2 in
    # one run, after it in the next): the specials first, then the rest sorted
    tokens = [*SPECIAL_TOKENS, *sorted(set(trainer.get_vocab()) - set(SPECIAL_TOKENS))]
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text("".join(t + "\n" for t in tokens), "utf-8")
    os.replace(tmp, out)
    return out

