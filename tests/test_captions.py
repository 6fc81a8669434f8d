"""English caption-dataset readers (taomm.datasets.captions).

The text fixtures in ``tests/fixtures/captions/`` are excerpts in each dataset's format as
distributed, with malformed entries added: COCO (an image without id, an image listed twice,
an escaping file_name, an annotation for an unknown image, a null caption, a reused
annotation id, a non-object); Karpathy flickr30k (a bad split, a sentence without ``raw``,
an entry without filename, an image listed twice); CC (a row without url, a row with three
fields); SBU (a photo listed twice, a url that names no Flickr photo). Image files are made
here, 32x32, in the layout each reader expects.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable
from pathlib import Path

import pytest
from PIL import Image

from taomm.datasets import captions_text
from taomm.datasets.captions import (
    CaptionRecord,
    caption_entries,
    captions_by_image,
    karpathy_splits,
    read_caption_manifest,
    read_captions,
    read_coco_captions,
    read_conceptual_captions,
    read_img2dataset,
    read_karpathy,
    read_sbu,
)
from taomm.datasets.manifest import REASONS, ManifestEntry, Rejected
from taomm.errors import TaommError

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "captions"
CC_TSV = "Validation_GCC-1.1.0-Validation.tsv"
SBU_CAPTIONS = "SBU_captioned_photo_dataset_captions.txt"
SBU_URLS = "SBU_captioned_photo_dataset_urls.txt"
_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".webp": "WEBP"}


def make_images(folder: Path, names: Iterable[str]) -> None:
    """Tiny real images, their format from the extension."""
    for name in names:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (32, 32), (200, 30, 30)).save(path, _FORMATS[path.suffix.lower()])


def copy_fixtures(dest: Path, *names: str) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copy(FIXTURES / name, dest / name)
    return dest


def check(records: Iterable) -> list:
    """The records as a list, checking what holds for every reader: known reasons, and the
    captions of an image (the item id before its last '#') never interrupted by another image."""
    out = list(records)
    finished: set[str] = set()
    current = None
    for r in out:
        if isinstance(r, Rejected):
            assert r.reason in REASONS and r.detail, r
        if r.item_id is None:
            continue
        image = r.item_id.rsplit("#", 1)[0]
        if isinstance(r, CaptionRecord):
            assert r.item_id.startswith(r.image_id + "#")
        if image != current:
            # A reject may repeat an accepted id (duplicate_id); the images of ok items may not.
            assert image not in finished or (isinstance(r, Rejected) and r.reason == "duplicate_id"), r
            if current is not None:
                finished.add(current)
            current = image
    return out


def ok(records: list) -> list:
    return [r for r in records if not isinstance(r, Rejected)]


def rejected(records: list) -> dict[tuple[int, str | None], str]:
    return {(r.line, r.item_id): r.reason for r in records if isinstance(r, Rejected)}


# --- COCO -------------------------------------------------------------------------------


@pytest.fixture
def coco(tmp_path: Path) -> Path:
    """coco/annotations/captions_val2014.json with val2014/ images of 42 and 73 (74 is absent)."""
    root = tmp_path / "coco"
    copy_fixtures(root / "annotations", "captions_val2014.json")
    make_images(root / "val2014", ["COCO_val2014_000000000042.jpg", "COCO_val2014_000000000073.jpg"])
    make_images(tmp_path / "outside", ["COCO_val2014_000000000133.jpg"])
    return root


def test_coco_groups_captions_by_image_in_annotation_id_order(coco: Path) -> None:
    records = check(read_coco_captions(coco / "annotations" / "captions_val2014.json"))
    good = ok(records)
    assert [r.item_id for r in good] == ["42#0", "42#1", "42#2", "42#3", "73#0", "73#1",
                                         "74#0", "74#1", "133#0", "133#1"]
    # 42's annotations are ids 641, 1085, 1088, 370 in the file: sorted, 370 comes first
    assert [r.caption for r in good[:2]] == ["A small dog is curled up on top of the shoes",
                                             "This wire metal rack holds several pairs of shoes and sandals"]
    assert good[0].line == 6 and good[0].image == "val2014/COCO_val2014_000000000042.jpg"
    assert {r.split for r in good} == {None}
    assert rejected(records) == {
        (5, None): "bad_manifest_line",  # images[4] has no id
        (6, None): "duplicate_id",  # images[5] lists 42 again
        (11, None): "bad_manifest_line",  # image_id 999 is not in images
        (13, None): "duplicate_id",  # annotation id 1085 again
        (14, None): "bad_manifest_line",  # not an object
        (12, "73#2"): "missing_title",  # caption null
    }
    assert len(records) == 16


def test_coco_manifest_resolves_images_inside_the_root(coco: Path) -> None:
    out = check(read_caption_manifest("coco", coco / "annotations" / "captions_val2014.json", split="val"))
    entries = [e for e in out if isinstance(e, ManifestEntry)]
    assert [e.item_id for e in entries] == ["42#0", "42#1", "42#2", "42#3", "73#0", "73#1"]
    assert entries[0].image == (coco / "val2014" / "COCO_val2014_000000000042.jpg").resolve()
    assert entries[0].title == "A small dog is curled up on top of the shoes"
    assert {e.split for e in entries} == {"val"}
    reasons = {r.item_id: r.reason for r in out if isinstance(r, Rejected) and r.item_id}
    assert reasons == {"73#2": "missing_title", "74#0": "image_missing", "74#1": "image_missing",
                       "133#0": "path_outside_root", "133#1": "path_outside_root"}


def test_coco_takes_karpathy_splits_by_cocoid(coco: Path) -> None:
    karpathy = copy_fixtures(coco, "dataset_coco.json") / "dataset_coco.json"
    assert karpathy_splits(karpathy) == {"42": "test", "73": "train", "74": "val"}  # restval -> train
    good = ok(check(read_coco_captions(coco / "annotations" / "captions_val2014.json", split="val",
                                       karpathy=karpathy)))
    assert {r.image_id: r.split for r in good} == {"42": "test", "73": "train", "74": "val", "133": "val"}


# --- Karpathy ---------------------------------------------------------------------------


@pytest.fixture
def flickr(tmp_path: Path) -> Path:
    """flickr30k/dataset_flickr30k.json with flickr30k-images/ (1000268201.jpg absent)."""
    root = copy_fixtures(tmp_path / "flickr30k", "dataset_flickr30k.json")
    make_images(root / "flickr30k-images", ["1000092795.jpg", "10002456.jpg", "1000344755.jpg",
                                            "1000366164.jpg", "1001465944.jpg"])
    return root


def test_karpathy_flickr30k_ids_splits_and_rejects(flickr: Path) -> None:
    records = check(read_karpathy(flickr / "dataset_flickr30k.json"))
    good = ok(records)
    assert [r.item_id for r in good] == ["1000092795#0", "1000092795#1", "10002456#0", "10002456#1",
                                         "10002456#2", "1000268201#0", "1000268201#1", "1000344755#0",
                                         "1000344755#1", "1001465944#0"]
    assert {r.image_id: r.split for r in good} == {"1000092795": "train", "10002456": "val",
                                                   "1000268201": "test", "1000344755": "train",
                                                   "1001465944": "train"}
    assert good[0].image == "flickr30k-images/1000092795.jpg" and good[2].line == 2
    assert good[0].caption.startswith("Two young guys")
    assert rejected(records) == {
        (5, "1000366164#0"): "bad_manifest_line",  # split "holdout", one reject per sentence
        (5, "1000366164#1"): "bad_manifest_line",
        (6, "1001465944#1"): "missing_title",  # a sentence with tokens but no raw
        (7, None): "bad_manifest_line",  # no filename
        (8, "1000092795#0"): "duplicate_id",  # 1000092795.jpg listed again
    }


def test_karpathy_manifest_rejects_missing_images(flickr: Path) -> None:
    out = check(read_caption_manifest("karpathy", flickr / "dataset_flickr30k.json"))
    entries = [e for e in out if isinstance(e, ManifestEntry)]
    assert len(entries) == 8
    assert entries[0].image == (flickr / "flickr30k-images" / "1000092795.jpg").resolve()
    missing = [r.item_id for r in out if isinstance(r, Rejected) and r.reason == "image_missing"]
    assert missing == ["1000268201#0", "1000268201#1"]


def test_karpathy_coco_uses_filepath_and_cocoid(tmp_path: Path) -> None:
    path = copy_fixtures(tmp_path, "dataset_coco.json") / "dataset_coco.json"
    good = ok(check(read_karpathy(path)))
    assert [(r.item_id, r.image, r.split) for r in good] == [
        ("42#0", "val2014/COCO_val2014_000000000042.jpg", "test"),
        ("73#0", "val2014/COCO_val2014_000000000073.jpg", "train"),
        ("74#0", "val2014/COCO_val2014_000000000074.jpg", "val"),
    ]


# --- Conceptual Captions ----------------------------------------------------------------


@pytest.fixture
def cc(tmp_path: Path) -> Path:
    """cc3m/<tsv> with images/ named by row index; rows 3 and 7 have no image."""
    root = copy_fixtures(tmp_path / "cc3m", CC_TSV)
    make_images(root / "images", ["0.jpg", "1.jpeg", "4.png", "5.webp"])
    return root


def test_cc_rows_by_index_with_any_extension(cc: Path) -> None:
    records = check(read_conceptual_captions(cc / CC_TSV, images=cc / "images"))
    good = ok(records)
    assert [(r.item_id, r.image) for r in good] == [("0#0", "0.jpg"), ("1#0", "1.jpeg"), ("3#0", "3.jpg"),
                                                    ("4#0", "4.png"), ("5#0", "5.webp"), ("7#0", "7.jpg")]
    assert good[0].caption == "a very typical bus station" and good[0].line == 1
    assert {r.split for r in good} == {"val"}  # from the file name
    assert rejected(records) == {(3, "2#0"): "bad_manifest_line", (7, "6#0"): "bad_manifest_line"}

    entries = check(caption_entries(records, cc / "images", id_prefix="cc:"))
    assert [e.item_id for e in entries if isinstance(e, ManifestEntry)] == ["cc:0#0", "cc:1#0", "cc:4#0",
                                                                           "cc:5#0"]
    assert {r.item_id: r.reason for r in entries if isinstance(r, Rejected)} == {
        "cc:2#0": "bad_manifest_line", "cc:3#0": "image_missing", "cc:6#0": "bad_manifest_line",
        "cc:7#0": "image_missing"}


def test_cc_symlink_leaving_the_root_is_rejected(cc: Path, tmp_path: Path) -> None:
    make_images(tmp_path, ["secret.jpg"])
    (cc / "images" / "3.jpg").symlink_to(tmp_path / "secret.jpg")
    out = check(read_caption_manifest("cc", cc / CC_TSV, split="train"))
    reasons = {r.item_id: r.reason for r in out if isinstance(r, Rejected)}
    assert reasons["3#0"] == "path_outside_root"
    assert {e.split for e in out if isinstance(e, ManifestEntry)} == {"train"}


def test_cc_without_images_gives_records_without_paths(cc: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(captions_text, "MAX_LINE_CHARS", 150)  # only row 1 (0-based) is longer
    records = check(read_captions("cc", cc / CC_TSV))
    assert [r.image for r in ok(records)] == [None] * 5
    assert rejected(records)[(2, None)] == "bad_manifest_line"
    assert {r.reason for r in caption_entries(ok(records), cc / "images")} == {"image_missing"}


# --- img2dataset ------------------------------------------------------------------------


def test_img2dataset_folder(tmp_path: Path) -> None:
    root = tmp_path / "cc3m-img2dataset"
    make_images(root, ["00000/000000000.jpg", "00000/000000001.jpg", "00000/000000002.jpg",
                       "00001/000010000.png"])
    (root / "00000" / "000000000.json").write_text(json.dumps(
        {"url": "http://x.invalid/a.jpg", "caption": "a very typical bus station", "key": "000000000",
         "status": "success"}))
    (root / "00000" / "000000001.txt").write_text("a caption in a text file\n")
    (root / "00001" / "000010000.json").write_text(json.dumps({"caption": "young confused girl"}))
    (root / "00000" / "000000003.json").write_text("{}")  # a failed download: sidecar, no image
    (root / "00000.parquet").write_bytes(b"PAR1")
    (root / "00000_stats.json").write_text("{}")
    make_images(tmp_path, ["elsewhere.jpg"])
    (root / "00001" / "000010001.jpg").symlink_to(tmp_path / "elsewhere.jpg")
    (root / "00001" / "000010001.txt").write_text("escaping")

    records = check(read_img2dataset(root, split="train"))
    assert [(r.item_id, r.caption, r.image) for r in ok(records)] == [
        ("000000000#0", "a very typical bus station", "00000/000000000.jpg"),
        ("000000001#0", "a caption in a text file", "00000/000000001.jpg"),
        ("000010000#0", "young confused girl", "00001/000010000.png"),
        ("000010001#0", "escaping", "00001/000010001.jpg"),
    ]
    assert rejected(records) == {(3, "000000002#0"): "missing_title"}
    out = check(read_caption_manifest("img2dataset", root))
    assert [e.item_id for e in out if isinstance(e, ManifestEntry)] == ["000000000#0", "000000001#0",
                                                                       "000010000#0"]
    assert {r.item_id: r.reason for r in out if isinstance(r, Rejected)}["000010001#0"] == "path_outside_root"


# --- SBU --------------------------------------------------------------------------------


@pytest.fixture
def sbu(tmp_path: Path) -> Path:
    return copy_fixtures(tmp_path / "sbu", SBU_CAPTIONS, SBU_URLS)


def test_sbu_by_line_index(sbu: Path) -> None:
    make_images(sbu / "images", ["0.jpg", "1.png", "2.jpg", "4.jpg"])
    out = check(read_caption_manifest("sbu", sbu / SBU_CAPTIONS))
    entries = [e for e in out if isinstance(e, ManifestEntry)]
    assert [(e.item_id, e.image.name, e.split) for e in entries] == [
        ("0#0", "0.jpg", "train"), ("1#0", "1.png", "train"), ("2#0", "2.jpg", "train"), ("4#0", "4.jpg", "train")]
    # captions keep their words, not their trailing space
    assert entries[1].title == "Interior design of modern white and brown living room with fireplace"
    assert {r.item_id: r.reason for r in out if isinstance(r, Rejected)} == {"3#0": "image_missing",
                                                                             "5#0": "image_missing"}


def test_sbu_by_flickr_name_is_detected_from_the_folder(sbu: Path) -> None:
    make_images(sbu / "images", ["4385058960_b0f291553e.jpg", "2812012566_3a6b8c0d3d.jpg"])
    out = check(read_caption_manifest("sbu", sbu / SBU_CAPTIONS))
    assert [(e.item_id, e.image.name) for e in out if isinstance(e, ManifestEntry)] == [
        ("4385058960_b0f291553e#0", "4385058960_b0f291553e.jpg"),
        ("2812012566_3a6b8c0d3d#0", "2812012566_3a6b8c0d3d.jpg")]
    assert rejected(out) == {(3, "2940409765_1f8a0e4a43#0"): "image_missing",
                             (4, "1319346484_74b8bbd1a4#0"): "image_missing",
                             (5, "2812012566_3a6b8c0d3d#0"): "duplicate_id",
                             (6, None): "bad_manifest_line"}


def test_sbu_files_of_different_lengths(tmp_path: Path) -> None:
    (tmp_path / "c.txt").write_text("one\ntwo\nthree\n")
    (tmp_path / "u.txt").write_text("http://static.flickr.com/1/1_ab.jpg\n")
    records = check(read_sbu(tmp_path / "c.txt", tmp_path / "u.txt", naming="index"))
    assert [r.item_id for r in ok(records)] == ["0#0"]
    assert rejected(records) == {(2, "1#0"): "bad_manifest_line", (3, "2#0"): "bad_manifest_line"}
    records = check(read_sbu(tmp_path / "u.txt", tmp_path / "c.txt", naming="flickr"))  # swapped
    assert rejected(records) == {(1, None): "bad_manifest_line", (2, None): "missing_title",
                                 (3, None): "missing_title"}


# --- features matching ------------------------------------------------------------------


def test_captions_by_image_for_pre_extracted_features(flickr: Path, coco: Path) -> None:
    dropped: list[Rejected] = []
    groups = captions_by_image(read_karpathy(flickr / "dataset_flickr30k.json"), on_reject=dropped.append)
    assert list(groups) == ["1000092795", "10002456", "1000268201", "1000344755", "1001465944"]
    assert groups["10002456"] == [
        ("10002456#0", "Several men in hard hats are operating a giant pulley system.", "val"),
        ("10002456#1", "Workers look down from up above on a piece of equipment.", "val"),
        ("10002456#2", "Two men working on a machine wearing hard hats.", "val")]
    assert sum(map(len, groups.values())) == 10 and len(dropped) == 5

    by_stem = captions_by_image(read_coco_captions(coco / "annotations" / "captions_val2014.json"),
                                key="stem", id_prefix="coco:")
    assert by_stem["COCO_val2014_000000000073"][0][0] == "coco:73#0"
    assert set(by_stem) == {"COCO_val2014_000000000042", "COCO_val2014_000000000073",
                            "COCO_val2014_000000000074", "COCO_val2014_000000000133"}


# --- whole-file errors ------------------------------------------------------------------


@pytest.mark.parametrize(("name", "content", "message"), [
    ("captions_train2014.json", "{not json", "not valid JSON"),
    ("captions_train2014.json", "[]", "expected a JSON object"),
    ("captions_train2014.json", '{"images": []}', "'annotations'"),
    ("dataset_flickr30k.json", '{"images": {}}', "'images'"),
])
def test_a_bad_json_file_raises_one_clear_error(tmp_path: Path, name: str, content: str, message: str) -> None:
    (tmp_path / name).write_text(content)
    fmt = "coco" if name.startswith("captions") else "karpathy"
    with pytest.raises(TaommError, match=message):
        list(read_captions(fmt, tmp_path / name))


def test_bad_files_and_options_raise(tmp_path: Path) -> None:
    (tmp_path / "utf16.tsv").write_bytes("caption\turl\n".encode("utf-16"))
    with pytest.raises(TaommError, match="UTF-16"):
        list(read_conceptual_captions(tmp_path / "utf16.tsv"))
    with pytest.raises(TaommError, match="cannot read"):
        list(read_conceptual_captions(tmp_path / "absent.tsv"))
    with pytest.raises(TaommError, match="not a folder"):
        list(read_img2dataset(tmp_path / "absent"))
    with pytest.raises(TaommError, match="unknown caption format"):
        read_captions("vqa", tmp_path / "x")
    with pytest.raises(TaommError, match="split must be"):
        list(read_karpathy(FIXTURES / "dataset_flickr30k.json", split="restval"))
    with pytest.raises(TaommError, match="naming"):
        list(read_sbu(FIXTURES / SBU_CAPTIONS, FIXTURES / SBU_URLS, naming="url"))
