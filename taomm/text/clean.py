"""The title pipeline: normalise, reject, segment, spam-filter, truncate (DESIGN.md section 4).

Reason codes (``CleanTitle.reason``), in the order they are checked:

- ``empty``: nothing left after normalisation;
- ``no_chinese``: no Chinese character;
- ``spam:<category>``: the spam filter's verdict (see :mod:`taomm.text.spam`).

A kept title is truncated by whole words to at most ``MAX_TITLE_CHARS`` characters (the
paper's 36) and its words are the segmentation of the final text, so cleaning a cleaned
title gives it back unchanged. Rejected titles keep their full normalised text for review.
"""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Iterable, Iterator, Sequence

from taomm.text import MAX_TITLE_CHARS
from taomm.text.cleaned import CleanTitle
from taomm.text.english import CaptionCleaner
from taomm.text.normalize import has_chinese, normalize_title
from taomm.text.segment import get_segmenter
from taomm.text.spam import SpamFilter

REASONS = ("empty", "no_chinese")  # plus "spam:<category>"


def truncate_words(words: Sequence[str], max_chars: int = MAX_TITLE_CHARS) -> list[str]:
    """The longest prefix of whole words within ``max_chars`` (no trailing space).

    A first word longer than the limit (a long run of letters) is cut inside: the title
    must fit either way.
    """
    out: list[str] = []
    total = 0
    for word in words:
        if total + len(word) > max_chars:
            break
        out.append(word)
        total += len(word)
    if not out and words:
        out = [words[0][:max_chars]]
    while out and out[-1].isspace():
        out.pop()
    return out


class TitleCleaner:
    """Cleans titles one at a time; build once (it loads the dictionaries) and reuse."""

    def __init__(self, max_chars: int = MAX_TITLE_CHARS, segmenter_backend: str = "auto") -> None:
        self.max_chars = max_chars
        self.segmenter = get_segmenter(segmenter_backend)
        self.spam = SpamFilter.default()

    def __call__(self, raw: str) -> CleanTitle:
        text = normalize_title(raw)
        if not text:
            return CleanTitle(raw, "", (), False, "empty")
        words = self.segmenter.cut(text)
        if not has_chinese(text):
            return CleanTitle(raw, text, tuple(words), False, "no_chinese")
        category = self.spam.check(text, words)
        if category is not None:
            return CleanTitle(raw, text, tuple(words), False, f"spam:{category}")
        if len(text) > self.max_chars:
            text = "".join(truncate_words(words, self.max_chars))
            words = self.segmenter.cut(text)  # segmentation depends on context: redo it
            if not has_chinese(text):  # "aaaa…a裙": the Chinese was cut off
                return CleanTitle(raw, text, tuple(words), False, "no_chinese")
        return CleanTitle(raw, text, tuple(words), True, None)


def make_cleaner(language: str = "zh"):
    """The title pipeline of a language: ``TitleCleaner`` (zh) or ``CaptionCleaner`` (en)."""
    if language == "en":
        return CaptionCleaner()
    return TitleCleaner()


_worker_cleaner: TitleCleaner | None = None


def _init_worker(max_chars: int, backend: str) -> None:
    global _worker_cleaner
    _worker_cleaner = TitleCleaner(max_chars, backend)


_SEP_WORD, _SEP_TITLE = "\x1f", "\x1e"  # cannot occur in a cleaned title (control characters)


def _clean_chunk(chunk: list[str]) -> str:
    # One string per chunk crosses the process boundary: unpickling it costs next to
    # nothing, where a list of dataclasses or tuples costs more than the cleaning saved.
    assert _worker_cleaner is not None
    parts = []
    for raw in chunk:
        r = _worker_cleaner(raw)
        parts.append(f"{r.reason or ''}{_SEP_WORD}{_SEP_WORD.join(r.words)}")
    return _SEP_TITLE.join(parts)


def _decode_chunk(raws: list[str], packed: str) -> Iterator[CleanTitle]:
    for raw, part in zip(raws, packed.split(_SEP_TITLE), strict=True):
        reason, *words = part.split(_SEP_WORD)
        if words == [""]:
            words = []
        yield CleanTitle(raw, "".join(words), tuple(words), not reason, reason or None)


def _chunks(items: Iterable[str], size: int) -> Iterator[list[str]]:
    chunk: list[str] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def clean_titles(titles: Iterable[str], workers: int = 1, chunk_size: int = 1024,
                 max_chars: int = MAX_TITLE_CHARS, segmenter_backend: str = "auto") -> Iterator[CleanTitle]:
    """Clean ``titles`` in order, streaming; ``workers > 1`` spreads chunks over processes."""
    if workers <= 1:
        cleaner = TitleCleaner(max_chars, segmenter_backend)
        for title in titles:
            yield cleaner(title)
        return
    # Build the dictionaries once here: forked workers inherit them instead of reloading.
    _init_worker(max_chars, segmenter_backend)
    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    with mp.get_context(method).Pool(workers, initializer=_init_worker,
                                     initargs=(max_chars, segmenter_backend)) as pool:
        chunks = _chunks(titles, chunk_size)
        # imap consumes the input lazily; keep each chunk's inputs to rebuild the results.
        pending: list[list[str]] = []

        def feed() -> Iterator[list[str]]:
            for chunk in chunks:
                pending.append(chunk)
                yield chunk

        for packed in pool.imap(_clean_chunk, feed()):
            yield from _decode_chunk(pending.pop(0), packed)
