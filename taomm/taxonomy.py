"""Region-class taxonomies: the detector's classes and the MRM targets.

A taxonomy is an ordered list of class names; a class label is its index. The ``zh`` path
uses the 33 Taobao product classes of the KDD Cup 2020 multimodal data (ids 0..32);
label ids are the same everywhere: detector outputs, the feature store, COCO
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
DEFAULT_TAXONOMY = {"zh": "taobao33"}


@dataclass(frozen=True)
class Taxonomy:
    name: str
    classes: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.classes)

    def index(self, class_name: str) -> int:
        return self.classes.index(class_name)


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
    raise TaommError(f"unknown taxonomy {name!r} (known: {', '.join(sorted(DEFAULT_TAXONOMY.values()))})")
