"""VCR's annotation files (Zellers et al., CVPR 2019), read and rendered as text.

Annotations: ``train.jsonl``, ``val.jsonl`` and ``test.jsonl`` (no labels), one question a
line with ``annot_id``, ``img_fn`` and ``metadata_fn`` (relative to ``vcr1images/``; the
metadata JSON holds ``boxes`` [[x1, y1, x2, y2, score], ...], ``names``, ``width``,
``height``), ``objects`` (the class of each box), ``question``, 4 ``answer_choices``, 4
``rationale_choices``, ``answer_label`` and ``rationale_label``.

A text is a list of tokens, each a word or a *tag*: a list of indices into ``objects``.
Tags become words as in VL-BERT: a person is a gender-neutral name (the k-th person of the
image takes the k-th of R2C's names, "person k" past the list), any other object its class
name, several indices joined with "and". A rendered text keeps the box indices it mentions.

A line that cannot be used is skipped with a reason (``bad_line``, ``path_outside_root``),
never fatal: paths must stay inside ``vcr1images/``.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath, PureWindowsPath
from typing import Any

from taomm.datasets.store_records import MAX_ID_BYTES  # img_fn is the store item id of the image
from taomm.errors import TaommError

IMAGES_DIR, STORE_DIR = "vcr1images", "vcr"
NUM_CHOICES = 4
# R2C's gender-neutral names (VCR's baseline code; VL-BERT uses them too), its repeated
# "Peyton" dropped so that two people never share a name.
PERSON_NAMES = ("Casey", "Riley", "Jessie", "Jackie", "Avery", "Jaime", "Peyton", "Kerry", "Jody", "Kendall",
                "Skyler", "Frankie", "Pat", "Quinn")
MAX_LINE_CHARS = 1 << 20


@dataclass(frozen=True)
class Text:
    """A rendered text and the indices of the boxes its tags mention (in order, once each)."""

    text: str
    boxes: tuple[int, ...] = ()

    def __add__(self, other: Text) -> Text:
        return Text(f"{self.text} {other.text}", tuple(dict.fromkeys(self.boxes + other.boxes)))


def object_words(objects: Sequence[str]) -> list[str]:
    """The word each box's tag renders as: people get names, other objects their class."""
    words, people = [], 0
    for name in objects:
        if name == "person":
            words.append(PERSON_NAMES[people] if people < len(PERSON_NAMES) else f"person {people + 1}")
            people += 1
        else:
            words.append(name)
    return words


def render(tokens: Sequence[str | list[int]], words: Sequence[str]) -> Text:
    """Tokens (words and tags) -> one text; ``words`` from :func:`object_words`."""
    out, boxes = [], []
    for token in tokens:
        if isinstance(token, str):
            out.append(token)
        else:
            out.append(" and ".join(words[i] for i in token))
            boxes.extend(token)
    return Text(" ".join(out), tuple(dict.fromkeys(boxes)))


@dataclass(frozen=True)
class VcrQuestion:
    annot_id: str
    img_fn: str  # relative to vcr1images/; the store item id of the image
    metadata_fn: str
    objects: tuple[str, ...]
    question: Text
    answers: tuple[Text, ...]
    rationales: tuple[Text, ...]
    answer_label: int | None  # None in test.jsonl
    rationale_label: int | None

    @property
    def labelled(self) -> bool:
        return self.answer_label is not None and self.rationale_label is not None

    def qa_examples(self) -> list[tuple[Text, Text]]:
        """Q->A: (question, answer) for each answer."""
        return [(self.question, a) for a in self.answers]

    def qar_examples(self) -> list[tuple[Text, Text]]:
        """QA->R: (question + right answer, rationale) for each rationale."""
        if self.answer_label is None:
            raise TaommError(f"question {self.annot_id}: QA->R needs the right answer (answer_label)")
        context = self.question + self.answers[self.answer_label]
        return [(context, r) for r in self.rationales]


@dataclass(frozen=True)
class Rejected:
    line: int
    annot_id: str | None
    reason: str  # bad_line | path_outside_root
    detail: str


@dataclass
class VcrAnnotations:
    questions: list[VcrQuestion] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)

    @property
    def reasons(self) -> dict[str, int]:
        return dict(Counter(r.reason for r in self.rejected))


class BadLine(Exception):
    """An annotation line that cannot be used: ``reason`` is its quarantine code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason, self.detail = reason, detail


def check_relative(path: Any, name: str) -> str:
    """A path from the annotations, refused when absolute or with ``..`` (it must stay in vcr1images/)."""
    if not isinstance(path, str) or not path or "\0" in path:
        raise BadLine("bad_line", f"{name} must be a non-empty string")
    posix, windows = PurePosixPath(path), PureWindowsPath(path)
    if posix.is_absolute() or windows.anchor or ".." in posix.parts or ".." in windows.parts:
        raise BadLine("path_outside_root", f"{name} {path!r} leaves {IMAGES_DIR}/")
    return path


def _tokens(value: Any, num_objects: int, name: str) -> list[str | list[int]]:
    if not isinstance(value, list) or not value:
        raise BadLine("bad_line", f"{name} must be a non-empty list of tokens")
    for token in value:
        if isinstance(token, list):
            if not token or not all(type(i) is int and 0 <= i < num_objects for i in token):
                raise BadLine("bad_line", f"{name}: tag {token!r} is not a list of box indices < {num_objects}")
        elif not isinstance(token, str):
            raise BadLine("bad_line", f"{name}: token {token!r} is neither a word nor a tag")
    return value


def _label(row: dict, name: str) -> int | None:
    value = row.get(name)
    if value is None:
        return None
    if type(value) is not int or not 0 <= value < NUM_CHOICES:
        raise BadLine("bad_line", f"{name} must be an integer in 0..{NUM_CHOICES - 1}")
    return value


def parse_question(row: Any) -> VcrQuestion:
    """One annotation object -> a question (raises BadLine)."""
    if not isinstance(row, dict):
        raise BadLine("bad_line", "not a JSON object")
    img_fn = check_relative(row.get("img_fn"), "img_fn")
    metadata_fn = check_relative(row.get("metadata_fn"), "metadata_fn")
    if len(img_fn.encode("utf-8", "surrogatepass")) > MAX_ID_BYTES:
        raise BadLine("bad_line", f"img_fn longer than {MAX_ID_BYTES} bytes")
    objects = row.get("objects")
    if not isinstance(objects, list) or not all(isinstance(o, str) for o in objects):
        raise BadLine("bad_line", "objects must be a list of class names")
    words = object_words(objects)
    texts = {}
    for key in ("answer_choices", "rationale_choices"):
        choices = row.get(key)
        if not isinstance(choices, list) or len(choices) != NUM_CHOICES:
            raise BadLine("bad_line", f"{key} must hold {NUM_CHOICES} choices")
        texts[key] = tuple(render(_tokens(c, len(objects), key), words) for c in choices)
    question = render(_tokens(row.get("question"), len(objects), "question"), words)
    return VcrQuestion(str(row.get("annot_id", "")), img_fn, metadata_fn, tuple(objects), question,
                       texts["answer_choices"], texts["rationale_choices"], _label(row, "answer_label"),
                       _label(row, "rationale_label"))


def read_vcr(path: str | os.PathLike[str]) -> VcrAnnotations:
    """The questions of a VCR ``.jsonl`` file; unusable lines are counted in ``rejected``."""
    out = VcrAnnotations()
    with open(path, encoding="utf-8", errors="replace") as f:
        line = 0
        while text := f.readline(MAX_LINE_CHARS):
            line += 1
            if len(text) == MAX_LINE_CHARS and not text.endswith("\n"):
                while (rest := f.readline(MAX_LINE_CHARS)) and not rest.endswith("\n"):
                    pass
                out.rejected.append(Rejected(line, None, "bad_line", f"longer than {MAX_LINE_CHARS} characters"))
                continue
            if not text.strip():
                continue
            row = None
            try:
                row = json.loads(text)
                out.questions.append(parse_question(row))
            except (ValueError, RecursionError) as exc:
                out.rejected.append(Rejected(line, None, "bad_line", f"not JSON: {str(exc)[:80]}"))
            except BadLine as exc:
                annot_id = str(row["annot_id"])[:80] if isinstance(row, dict) and "annot_id" in row else None
                out.rejected.append(Rejected(line, annot_id, exc.reason, exc.detail[:200]))
    return out
