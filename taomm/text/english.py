"""The caption pipeline of the English path (``--lang en``): normalise, reject, split into
words, truncate.

The same :class:`~taomm.text.cleaned.CleanTitle` as the Chinese pipeline, with English rules:

- normalisation as for titles (HTML, NFKC, invisible characters, whitespace) without the
  traditional -> simplified step;
- ``empty``: nothing left; ``no_english``: no Latin letter at all (a caption of digits,
  symbols or another script);
- words are whitespace-separated, each word after the first keeping the space before it
  (``"a man riding"`` -> ``["a", " man", " riding"]``), so ``"".join(words) == title`` as for
  jieba words, and masked segment modeling masks whole words with all their WordPiece
  sub-tokens (DESIGN.md section 7: whitespace words for ``en``);
- truncation by whole words to at most ``MAX_CAPTION_WORDS`` words (Conceptual Captions
  has a long tail of run-on alt-texts).

No spam filter: the public English datasets are curated captions (the Chinese filter's
off-platform contact and ad rules target seller titles).
"""

from __future__ import annotations

import re

from taomm.text.cleaned import CleanTitle
from taomm.text.normalize import normalize_title

MAX_CAPTION_WORDS = 40
_LATIN = re.compile(r"[A-Za-z\u00c0-\u024f]")


def caption_words(text: str) -> list[str]:
    """Whitespace words of a normalised caption, each after the first with its leading space."""
    words = text.split(" ")
    return [words[0], *(" " + w for w in words[1:])] if text else []


class CaptionCleaner:
    """Cleans English captions one at a time (same interface as ``TitleCleaner``)."""

    def __init__(self, max_words: int = MAX_CAPTION_WORDS) -> None:
        self.max_words = max_words

    def __call__(self, raw: str) -> CleanTitle:
        text = normalize_title(raw, simplify=False)
        if not text:
            return CleanTitle(raw, "", (), False, "empty")
        words = caption_words(text)
        if not _LATIN.search(text):
            return CleanTitle(raw, text, tuple(words), False, "no_english")
        words = words[: self.max_words]
        return CleanTitle(raw, "".join(words), tuple(words), True, None)
