"""What a text pipeline returns for one title or caption, Chinese (:mod:`taomm.text.clean`)
or English (:mod:`taomm.text.english`): both pipelines import it from here, so neither
needs the other."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CleanTitle:
    input: str
    title: str  # the cleaned text
    words: tuple[str, ...]  # its words: "".join(words) == title
    kept: bool
    reason: str | None  # None when kept

    def to_json(self) -> dict:
        return {"input": self.input, "title": self.title, "words": list(self.words),
                "kept": self.kept, "reason": self.reason}
