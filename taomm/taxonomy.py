"""Region-class taxonomies: the detector's classes and the MRM targets.

A taxonomy is an ordered list of class names; a class label is its index. The ``zh`` path
uses the 33 Taobao product classes of the KDD Cup 2020 multimodal data (ids 0..32); the
``en`` path the 1,600 Visual Genome object classes of the bottom-up-attention detector
(peteanderson80/bottom-up-attention, MIT; ids 0..1599, its background class dropped), whose
lines list synonyms separated by commas ("stop sign,stopsign": the first is the name). Label
ids are the same everywhere: detector outputs, the feature store, COCO
``category_id`` in the demo catalog and MRM targets.
"""

from __future__ import annotations

import csv
import functools
import io
from dataclasses import dataclass
from importlib import resources

from taomm.errors import TaommError

# language -> default taxonomy name
DEFAULT_TAXONOMY = {"zh": "taobao33", "en": "vg1600"}


@dataclass(frozen=True, eq=False)
class Taxonomy:
    name: str
    classes: tuple[str, ...]
    synonyms: tuple[tuple[str, ...], ...] = ()  # per class, other names for it (vg1600)

    def __len__(self) -> int:
        return len(self.classes)

    def index(self, class_name: str) -> int:
        return self.classes.index(class_name)

    def lookup(self, name: str) -> int:
        """The class of ``name`` or one of its synonyms, case-insensitive; -1 when unknown."""
        return self._by_name.get(name.strip().lower(), -1)

    @functools.cached_property
    def _by_name(self) -> dict[str, int]:
        table: dict[str, int] = {}
        for i, name in enumerate(self.classes):
            for alias in (name, *(self.synonyms[i] if self.synonyms else ())):
                table.setdefault(alias.lower(), i)
        return table


@functools.lru_cache(maxsize=8)
def load_taxonomy(name: str) -> Taxonomy:
    """Load a taxonomy shipped as package data (``taobao33``)."""
    if name == "taobao33":
        text = resources.files("taomm.resources").joinpath("taobao33.tsv").read_text("utf-8")
        rows = list(csv.reader(io.StringIO(text), delimiter="\t"))
        header, body = rows[0], rows[1:]
        assert header == ["category_id", "category_name"], header
        ids = [int(r[0]) for r in body]
        assert ids == list(range(len(body))), "taobao33.tsv ids must be 0..N-1 in order"
        return Taxonomy(name, tuple(r[1] for r in body))
    if name == "vg1600":
        text = resources.files("taomm.resources").joinpath("vg1600_objects.txt").read_text("utf-8")
        rows = [[alias.strip() for alias in line.split(",")] for line in text.splitlines() if line.strip()]
        assert len(rows) == 1600, len(rows)
        return Taxonomy(name, tuple(r[0] for r in rows), tuple(tuple(r[1:]) for r in rows))
    raise TaommError(f"unknown taxonomy {name!r} (known: {', '.join(sorted(DEFAULT_TAXONOMY.values()))})")
