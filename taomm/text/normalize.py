"""Title normalisation: the first step of the text pipeline (DESIGN.md section 4).

In order: HTML entities unescaped and tags stripped (repeated until nothing changes, so
double-escaped markup goes too), Unicode NFKC (full-width letters and digits become
half-width, ``\\u3000`` a space), text under a right-to-left override put in the order it
shows, control, format (zero-width, BOM, bidi) and surrogate code points dropped,
whitespace collapsed to single spaces, traditional Chinese converted to simplified with
OpenCC. Never raises; the result is a fixed point (normalising twice
changes nothing).
"""

from __future__ import annotations

import functools
import html
import re
import unicodedata

# An HTML/XML tag: "<b>", "</span>", '<a href="x">'. A bare "<" (尺码<36) is left alone.
_TAG = re.compile(r"<\s*/?\s*[A-Za-z][^<>]{0,200}>")
# Code points dropped: controls (Cc), format characters (Cf: zero-width space/joiner,
# BOM, soft hyphen ...), surrogates (Cs), private use (Co) and unassigned (Cn); whitespace
# controls (tab, newline) become spaces first.
_DROP_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn"})
_CJK = re.compile("[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002ebef]")


@functools.lru_cache(maxsize=1)
def _t2s():
    import opencc

    return opencc.OpenCC("t2s")


def _strip_markup(text: str) -> str:
    while True:
        stripped = _TAG.sub(" ", html.unescape(text)) if ("&" in text or "<" in text) else text
        if stripped == text:
            return text
        text = stripped


# A right-to-left override (U+202E) up to its pop (U+202C) or the end: the text between shows
# reversed, so it is stored as it shows ("\u202e功轮法\u202c" reads 法轮功).
_OVERRIDE = re.compile("\u202e([^\u202c\u202d\u202e]*)\u202c?")


def _drop_invisible(text: str) -> str:
    if text.isprintable():  # the common case, checked in C: nothing to drop
        return text
    if "\u202e" in text:
        text = _OVERRIDE.sub(lambda match: match[1][::-1], text)
    return "".join(c for c in text if c.isspace() or unicodedata.category(c) not in _DROP_CATEGORIES)


def has_chinese(text: str) -> bool:
    return _CJK.search(text) is not None


def normalize_title(text: str, simplify: bool = True) -> str:
    """The normalised form of a raw title (see the module docstring); ``simplify=False``
    skips the traditional -> simplified conversion (English captions)."""
    for _ in range(3):  # NFKC and t2s can each expose work for the other; stop at a fixed point
        out = _strip_markup(text)
        out = unicodedata.normalize("NFKC", out)
        out = _drop_invisible(out)
        out = " ".join(out.split())
        if simplify and not out.isascii():
            out = _t2s().convert(out)
        if out == text:
            break
        text = out
    return text
