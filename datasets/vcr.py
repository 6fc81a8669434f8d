"""VCR (Zellers et al., CVPR 2019) as distributed, for InterBERT finetuning (paper section 3.4).

Annotations: ``train.jsonl``, ``val.jsonl`` and ``test.jsonl`` (no labels), one question a
line with ``annot_id``, ``img_fn`` and ``metadata_fn`` (relative to ``vcr1images/``; the
metadata JSON holds ``boxes`` [[x1, y1, x2, y2, score], ...], ``names``, ``width``,
``height``), ``objects`` (the class of each box), ``question``, 4 ``answer_choices``, 4
``rationale_choices``, ``answer_label`` and ``rationale_label``.

A text is a list of tokens, each a word or a *tag*: a list of indices into ``objects``.
Tags become words as in VL-BERT: a person is a gender-neutral name (the k-th person of the
image takes the k-th of R2C's names, "person k" past the list), any other object its class
name, several indices joined with "and". A rendered text keeps the box indices it mentions.

Examples: Q->A pairs the question with each answer; QA->R pairs the question and the right
answer with each rationale. A line that cannot be used is skipped with a reason
(``bad_line``, ``path_outside_root``), never fatal: paths must stay inside ``vcr1images/``.

Regions (:func:`prepare_vcr`): one store item per image, item id = ``img_fn``, empty title;
its regions are the metadata boxes (what the tags point at; the first ``max_regions``) with
the detector's box-head features at those boxes; label = the object name's Visual Genome
class (``vg1600``) or -1; score = the box's annotated score. The annotation files are
copied to ``STORE/vcr/<split>.jsonl``, so finetuning needs the store alone. A store built
another way (pre-extracted features) serves as well when its item ids are the ``img_fn``.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from taomm.datasets.images import ImageError, load_image, resolve_image_path
from taomm.datasets.prepare import PrepareReport, _Quarantine, _stored_ids
from taomm.datasets.pretraining import normalized_boxes
from taomm.datasets.store import Item, StoreWriter
from taomm.device import autocast
from taomm.errors import TaommError
from taomm.text.tokenizer import TitleTokenizer

SPLITS = ("train", "val", "test")
SUBTASKS = ("qa", "qar")  # Q->A and QA->R
IMAGES_DIR, STORE_DIR = "vcr1images", "vcr"
NUM_CHOICES = 4
TAXONOMY = "vg1600"
# R2C's gender-neutral names (VCR's baseline code; VL-BERT uses them too), its repeated
# "Peyton" dropped so that two people never share a name.
PERSON_NAMES = ("Casey", "Riley", "Jessie", "Jackie", "Avery", "Jaime", "Peyton", "Kerry", "Jody", "Kendall",
                "Skyler", "Frankie", "Pat", "Quinn")
MAX_LINE_CHARS = 1 << 20
MAX_METADATA_BYTES = 64 << 20
MAX_ID_BYTES = 256  # the store's limit on item ids (= img_fn)


# --- annotations -------------------------------------------------------------------------

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


class _BadLine(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason, self.detail = reason, detail


def check_relative(path: Any, name: str) -> str:
    """A path from the annotations, refused when absolute or with ``..`` (it must stay in vcr1images/)."""
    if not isinstance(path, str) or not path or "\0" in path:
        raise _BadLine("bad_line", f"{name} must be a non-empty string")
    posix, windows = PurePosixPath(path), PureWindowsPath(path)
    if posix.is_absolute() or windows.anchor or ".." in posix.parts or ".." in windows.parts:
        raise _BadLine("path_outside_root", f"{name} {path!r} leaves {IMAGES_DIR}/")
    return path


def _tokens(value: Any, num_objects: int, name: str) -> list[str | list[int]]:
    if not isinstance(value, list) or not value:
        raise _BadLine("bad_line", f"{name} must be a non-empty list of tokens")
    for token in value:
        if isinstance(token, list):
            if not token or not all(type(i) is int and 0 <= i < num_objects for i in token):
                raise _BadLine("bad_line", f"{name}: tag {token!r} is not a list of box indices < {num_objects}")
        elif not isinstance(token, str):
            raise _BadLine("bad_line", f"{name}: token {token!r} is neither a word nor a tag")
    return value


def _label(row: dict, name: str) -> int | None:
    value = row.get(name)
    if value is None:
        return None
    if type(value) is not int or not 0 <= value < NUM_CHOICES:
        raise _BadLine("bad_line", f"{name} must be an integer in 0..{NUM_CHOICES - 1}")
    return value


def parse_question(row: Any) -> VcrQuestion:
    """One annotation object -> a question (raises _BadLine)."""
    if not isinstance(row, dict):
        raise _BadLine("bad_line", "not a JSON object")
    img_fn = check_relative(row.get("img_fn"), "img_fn")
    metadata_fn = check_relative(row.get("metadata_fn"), "metadata_fn")
    if len(img_fn.encode("utf-8", "surrogatepass")) > MAX_ID_BYTES:
        raise _BadLine("bad_line", f"img_fn longer than {MAX_ID_BYTES} bytes")
    objects = row.get("objects")
    if not isinstance(objects, list) or not all(isinstance(o, str) for o in objects):
        raise _BadLine("bad_line", "objects must be a list of class names")
    words = object_words(objects)
    texts = {}
    for key in ("answer_choices", "rationale_choices"):
        choices = row.get(key)
        if not isinstance(choices, list) or len(choices) != NUM_CHOICES:
            raise _BadLine("bad_line", f"{key} must hold {NUM_CHOICES} choices")
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
            except _BadLine as exc:
                annot_id = str(row["annot_id"])[:80] if isinstance(row, dict) and "annot_id" in row else None
                out.rejected.append(Rejected(line, annot_id, exc.reason, exc.detail[:200]))
    return out


def annotations_file(store: str | os.PathLike[str], split: str,
                     annotations: str | os.PathLike[str] | None = None) -> Path:
    """``<annotations>/<split>.jsonl``, by default the copy :func:`prepare_vcr` keeps in the store."""
    path = (Path(annotations) if annotations else Path(store) / STORE_DIR) / f"{split}.jsonl"
    if not path.is_file():
        where = "--annotations" if annotations else "the store (taomm prepare --lang en --format vcr copies them there)"
        raise TaommError(f"no VCR annotations {path}: pass the folder of VCR's jsonl files as {where}")
    return path


@dataclass
class VcrSplit:
    """The usable questions of a split (labelled, image in the store) and why others were left out."""

    questions: list[VcrQuestion]
    skipped: dict[str, int]


def load_split(store: Any, path: str | os.PathLike[str], labelled: bool = True) -> VcrSplit:
    """Questions of ``path`` whose image is in ``store`` (and, with ``labelled``, that have labels)."""
    annotations = read_vcr(path)
    skipped = Counter(annotations.reasons)
    kept = []
    for q in annotations.questions:
        if labelled and not q.labelled:
            skipped["unlabelled"] += 1
        elif q.img_fn not in store:
            skipped["image_not_in_store"] += 1
        else:
            kept.append(q)
    return VcrSplit(kept, dict(skipped))


# --- examples and batches ----------------------------------------------------------------

def encode_pair(tokenizer: TitleTokenizer, context: list[int], choice: list[int], max_tokens: int) -> np.ndarray:
    """[CLS] context [SEP] choice [SEP], the longer part cut first (BERT's pair truncation)."""
    context, choice = list(context), list(choice)
    while len(context) + len(choice) > max_tokens - 3:
        (context if len(context) > len(choice) else choice).pop()
    return np.asarray([tokenizer.cls_id, *context, tokenizer.sep_id, *choice, tokenizer.sep_id], dtype=np.int64)


class VcrExamples(Dataset):
    """Questions with both subtasks' choices and the image's regions, by global position.

    Position ``p`` is question ``order_e[p % N]`` of epoch ``e = p // N`` (a permutation
    drawn from ``(seed, e)``; the identity with ``shuffle=False``), so a resumed run reads
    the same batches."""

    def __init__(self, questions: Sequence[VcrQuestion], store: Any, tokenizer: TitleTokenizer,
                 subtasks: Sequence[str] = SUBTASKS, seed: int = 0, shuffle: bool = True,
                 max_text_tokens: int = 128, max_regions: int = 100) -> None:
        if not questions:
            raise TaommError("no VCR question to use (see the skipped counts)")
        if unknown := set(subtasks) - set(SUBTASKS):
            raise TaommError(f"unknown VCR subtask {sorted(unknown)} (choose from {', '.join(SUBTASKS)})")
        if any(not q.labelled for q in questions):
            raise TaommError("VCR training and evaluation need labelled questions")
        self.questions, self.store, self.tokenizer = list(questions), store, tokenizer
        self.subtasks = tuple(s for s in SUBTASKS if s in subtasks)
        self.seed, self.shuffle = seed, shuffle
        self.max_text_tokens, self.max_regions = max_text_tokens, max_regions
        self._order: tuple[int, np.ndarray] | None = None
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    def __len__(self) -> int:
        return len(self.questions)

    def index_at(self, position: int) -> int:
        epoch, index = divmod(position, len(self.questions))
        if not self.shuffle:
            return index
        if self._order is None or self._order[0] != epoch:
            self._order = (epoch, np.random.default_rng((self.seed, epoch)).permutation(len(self.questions)))
        return int(self._order[1][index])

    def __getitem__(self, position: int) -> dict[str, Any]:
        index = self.index_at(position)
        q = self.questions[index]
        item = self.store.get(q.img_fn)
        n = min(item.num_regions, self.max_regions)
        out: dict[str, Any] = {"index": index, "region_features": np.array(item.features[:n]),
                               "region_boxes": normalized_boxes(item.boxes[:n], item.width, item.height)}
        for name in self.subtasks:
            pairs = q.qa_examples() if name == "qa" else q.qar_examples()
            texts = [pairs[0][0].text, *(choice.text for _, choice in pairs)]
            context, *choices = self.tokenizer.hf(texts, add_special_tokens=False)["input_ids"]
            out[f"{name}_input_ids"] = [encode_pair(self.tokenizer, context, c, self.max_text_tokens) for c in choices]
            out[f"{name}_label"] = q.answer_label if name == "qa" else q.rationale_label
        return out


def collate_vcr(examples: Sequence[dict[str, Any]], pad_id: int = 0) -> dict[str, torch.Tensor]:
    """Regions (B, R, ...) once per question; per subtask its choices (B, C, T) and labels (B,)."""
    B = len(examples)
    R = max(1, max(len(e["region_boxes"]) for e in examples))
    D = examples[0]["region_features"].shape[1]
    features = np.zeros((B, R, D), dtype=np.float16)
    boxes = np.zeros((B, R, 5), dtype=np.float32)
    region_mask = np.zeros((B, R), dtype=bool)
    batch: dict[str, torch.Tensor] = {}
    for i, e in enumerate(examples):
        r = len(e["region_boxes"])
        features[i, :r], boxes[i, :r], region_mask[i, :r] = e["region_features"], e["region_boxes"], True
    for name in SUBTASKS:
        if f"{name}_input_ids" not in examples[0]:
            continue
        C = len(examples[0][f"{name}_input_ids"])
        T = max(len(ids) for e in examples for ids in e[f"{name}_input_ids"])
        input_ids = np.full((B, C, T), pad_id, dtype=np.int64)
        for i, e in enumerate(examples):
            for j, ids in enumerate(e[f"{name}_input_ids"]):
                input_ids[i, j, : len(ids)] = ids
        batch[f"{name}_input_ids"] = torch.from_numpy(input_ids)
        batch[f"{name}_attention_mask"] = torch.from_numpy(input_ids != pad_id)
        batch[f"{name}_labels"] = torch.tensor([e[f"{name}_label"] for e in examples], dtype=torch.long)
    return {**batch, "region_features": torch.from_numpy(features), "region_boxes": torch.from_numpy(boxes),
            "region_mask": torch.from_numpy(region_mask),
            "index": torch.tensor([e["index"] for e in examples], dtype=torch.long)}


# --- regions: the store ------------------------------------------------------------------

# (3, H, W) uint8 image, (N, 4) float32 pixel boxes -> (N, D) features
BoxFeatures = Callable[[torch.Tensor, np.ndarray], np.ndarray]


def box_feature_extractor(detector: Any, device: str = "cpu", bf16: bool = False) -> BoxFeatures:
    """Features at given boxes from a :class:`~taomm.detectors.detector.ProductDetector`."""
    detector = detector.to(device).eval()

    def extract(image: torch.Tensor, boxes: np.ndarray) -> np.ndarray:
        with autocast(device, bf16):
            (features,) = detector.features_at([image.to(device).float().div(255)],
                                               [torch.as_tensor(boxes, dtype=torch.float32, device=device)])
        return features.float().cpu().numpy()

    return extract


@dataclass(frozen=True)
class _Image:
    img_fn: str
    metadata_fn: str
    objects: tuple[str, ...]


def image_regions(metadata: Any, objects: Sequence[str], width: int, height: int,
                  max_regions: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Boxes (N, 4) in pixels of the decoded image, scores (N,) and names of a metadata
    object, at most ``max_regions``; the whole image when it has no box."""
    if not isinstance(metadata, dict) or not isinstance(metadata.get("boxes", []), list):
        raise ValueError("metadata must be a JSON object with a list of boxes")
    rows = metadata.get("boxes", [])[:max_regions]
    if not all(isinstance(b, list) and 4 <= len(b) <= 5 and all(type(v) in (int, float) for v in b) for b in rows):
        raise ValueError("each box must be [x1, y1, x2, y2, score] numbers")
    if not rows:
        return np.asarray([[0, 0, width, height]], np.float32), np.ones(1, np.float32), [""]
    boxes = np.asarray([b[:4] for b in rows], dtype=np.float64)
    scores = np.asarray([b[4] if len(b) == 5 else 1.0 for b in rows], dtype=np.float64)
    if not (np.isfinite(boxes).all() and np.isfinite(scores).all()):
        raise ValueError("boxes and scores must be finite")
    meta_w, meta_h = metadata.get("width"), metadata.get("height")
    if type(meta_w) in (int, float) and type(meta_h) in (int, float) and meta_w > 0 and meta_h > 0:
        boxes *= [width / meta_w, height / meta_h] * 2  # boxes are in the metadata's image size
    boxes[:, 0::2] = boxes[:, 0::2].clip(0, width)
    boxes[:, 1::2] = boxes[:, 1::2].clip(0, height)
    for lo, hi, size in ((0, 2, width), (1, 3, height)):  # at least one pixel, inside the image
        boxes[:, hi] = np.maximum(boxes[:, hi], np.minimum(boxes[:, lo] + 1, size))
        boxes[:, lo] = np.minimum(boxes[:, lo], boxes[:, hi] - 1)
    names = metadata.get("names")
    if not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
        names = list(objects)
    names = [names[i] if i < len(names) else "" for i in range(len(rows))]
    return boxes.astype(np.float32), scores.clip(0, 1).astype(np.float32), names


class _VcrImages(Dataset):
    """Decodes an image and reads its metadata (in DataLoader workers)."""

    def __init__(self, root: Path, images: list[_Image], max_regions: int) -> None:
        self.root, self.images, self.max_regions = root, images, max_regions

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        entry = self.images[index]
        try:
            array = np.asarray(load_image(resolve_image_path(self.root, entry.img_fn)), dtype=np.uint8)
        except ImageError as exc:
            return index, None, None, exc.reason, exc.detail
        height, width = array.shape[:2]
        try:
            path = resolve_image_path(self.root, entry.metadata_fn)
            if path.stat().st_size > MAX_METADATA_BYTES:
                raise ValueError(f"larger than {MAX_METADATA_BYTES} bytes")
            metadata = json.loads(path.read_text("utf-8", errors="replace"))
            regions = image_regions(metadata, entry.objects, width, height, self.max_regions)
        except ImageError as exc:
            reason = exc.reason if exc.reason == "path_outside_root" else "bad_metadata"
            return index, None, None, reason, exc.detail
        except (ValueError, RecursionError, OSError) as exc:
            return index, None, None, "bad_metadata", f"{entry.metadata_fn}: {str(exc)[:120]}"
        return index, torch.from_numpy(array.copy()).permute(2, 0, 1), regions, None, None


def _as_is(sample):
    return sample


def prepare_vcr(root: str | os.PathLike[str], store: str | os.PathLike[str], extract: Any,
                splits: Sequence[str] | None = None, feature_dim: int | None = None, max_regions: int = 100,
                workers: int = 2, batch_size: int = 256,
                on_progress: Callable[[int], None] | None = None) -> PrepareReport:
    """VCR images -> a store of their annotated regions (see the module docstring).

    ``root`` holds ``<split>.jsonl`` and ``vcr1images/``; ``splits`` default to those of
    train, val and test present. ``extract`` is a ProductDetector or a :data:`BoxFeatures`
    function (then give ``feature_dim``). Resumable as ``taomm prepare``: images in the store
    are skipped; bad lines and images end in STORE/quarantine.jsonl with a reason."""
    from taomm.detectors.detector import ProductDetector
    from taomm.taxonomy import load_taxonomy

    root, store = Path(root), Path(store)
    if isinstance(extract, ProductDetector):
        feature_dim = extract.config.representation_size
        extract = box_feature_extractor(extract)
    if feature_dim is None:
        raise TaommError("prepare_vcr needs feature_dim with an extract function")
    if splits is None:
        splits = [s for s in SPLITS if (root / f"{s}.jsonl").is_file()]
    if not splits:
        raise TaommError(f"{root} holds none of {', '.join(s + '.jsonl' for s in SPLITS)}: not a VCR folder")
    taxonomy = load_taxonomy(TAXONOMY)
    report, reject = PrepareReport(), _Quarantine()
    start = time.perf_counter()
    images: dict[str, _Image] = {}
    split_ids: dict[str, list[str]] = {}
    for split in splits:
        path = root / f"{split}.jsonl"
        if not path.is_file():
            raise TaommError(f"no {path}: the VCR folder must hold {split}.jsonl and {IMAGES_DIR}/")
        annotations = read_vcr(path)
        for r in annotations.rejected:
            reject(r.line, r.annot_id, r.reason, f"{split}.jsonl: {r.detail}")
        for q in annotations.questions:
            images.setdefault(q.img_fn, _Image(q.img_fn, q.metadata_fn, q.objects))
        split_ids[split] = list(dict.fromkeys(q.img_fn for q in annotations.questions))
        (store / STORE_DIR).mkdir(parents=True, exist_ok=True)
        tmp = store / STORE_DIR / f".{split}.jsonl.tmp"
        shutil.copyfile(path, tmp)
        os.replace(tmp, store / STORE_DIR / f"{split}.jsonl")
    report.inputs = len(images) + len(reject.rows)
    report.seconds["annotations"] = round(time.perf_counter() - start, 3)
    start = time.perf_counter()
    done = _stored_ids(store)
    pending = [image for img_fn, image in images.items() if img_fn not in done]
    kept = set(images) & done
    if on_progress is not None:
        on_progress(len(kept))
    loader = DataLoader(_VcrImages(root / IMAGES_DIR, pending, max_regions), batch_size=None, num_workers=workers,
                        collate_fn=_as_is)
    with StoreWriter(store, language="en", feature_dim=feature_dim, taxonomy=TAXONOMY, classes=taxonomy.classes,
                     batch_size=batch_size) as writer:
        for i, image, regions, reason, detail in loader:
            entry = pending[i]
            if image is None:
                reject(0, entry.img_fn, reason, detail)
            else:
                boxes, scores, names = regions
                labels = np.asarray([taxonomy.lookup(n) for n in names], dtype=np.int32)
                writer.add(Item(entry.img_fn, "", np.zeros(0, np.int32), int(image.shape[2]), int(image.shape[1]),
                                boxes, extract(image, boxes), labels, scores))
                kept.add(entry.img_fn)
            if on_progress is not None:
                on_progress(1)
        writer.flush()
        report.written = writer.added
        report.seconds["images_and_regions"] = round(time.perf_counter() - start, 3)
        for split, ids in split_ids.items():
            writer.set_split(split, [i for i in ids if i in kept])
    return reject.finish(store, report, len(kept))
