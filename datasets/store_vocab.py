"""A feature store's own WordPiece vocabulary: trained on its titles, recorded in its meta.

The store owns this step (not :mod:`taomm.text.tokenizer`) so that the text layer never
reads or writes a store: the tokenizer trains on any texts, this module feeds it a store's.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from taomm.datasets.store import FeatureStore, StoreWriter
from taomm.errors import TaommError
from taomm.text.tokenizer import TitleTokenizer, train_vocab


def build_store_vocab(store: str | os.PathLike[str], out: str | os.PathLike[str] | None = None,
                      vocab_size: int = 8000, min_frequency: int = 2,
                      extra_texts: Iterable[str] = ()) -> tuple[Path, dict, int]:
    """Train a vocabulary on the titles of the feature store at ``store`` (default output
    ``STORE/vocab.txt``), plus ``extra_texts`` (a query log's queries: words shoppers type
    that sellers do not), and record it in the store. Returns the file, its tokenizer info
    and the number of titles."""
    with FeatureStore(store) as fs:
        titles = [item.title for item in fs]
        meta = fs.meta
    if not titles:
        raise TaommError(f"{store} holds no items to learn a vocabulary from")
    vocab = train_vocab([*titles, *extra_texts], out or Path(store) / "vocab.txt", vocab_size=vocab_size, min_frequency=min_frequency)
    info = TitleTokenizer(vocab).info()
    with StoreWriter(store, language=meta.language, feature_dim=meta.feature_dim, taxonomy=meta.taxonomy,
                     classes=meta.classes) as writer:
        writer.set_tokenizer({**info, "vocab_file": str(vocab.resolve())})
    return vocab, info, len(titles)
