"""The input manifest of `taomm prepare` (taomm.datasets.manifest)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from taomm.datasets import manifest
from taomm.datasets.manifest import REASONS, ManifestEntry, Rejected, read_manifest
from taomm.errors import TaommError

HEADER = "item_id,title,image,split\n"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A manifest folder with images/a.jpg, images/b.jpg, images/c.jpg (content is not read)."""
    (tmp_path / "images").mkdir()
    for name in "abc":
        (tmp_path / "images" / f"{name}.jpg").write_bytes(b"jpeg")
    return tmp_path


def write(folder: Path, name: str, content: str | bytes) -> Path:
    path = folder / name
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


def jsonl(*records: dict | str) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in records)


def read(path: Path, **kwargs) -> list[ManifestEntry | Rejected]:
    out = list(read_manifest(path, **kwargs))
    for e in out:
        if isinstance(e, Rejected):
            assert e.reason in REASONS and e.detail, e
    return out


def only(path: Path) -> ManifestEntry | Rejected:
    out = read(path)
    assert len(out) == 1, out
    return out[0]


def reason_of(path: Path) -> str:
    entry = only(path)
    assert isinstance(entry, Rejected), entry
    return entry.reason


def item(item_id="1", title="红色波点连衣裙", image="images/a.jpg", **extra) -> dict:
    return {"item_id": item_id, "title": title, "image": image, **extra}


# --- good input ---------------------------------------------------------------------------


def test_jsonl_entry(root):
    entry = only(write(root, "m.jsonl", jsonl(item(split="train", attributes={"colour": "红"}))))
    assert entry == ManifestEntry(1, "1", "红色波点连衣裙", (root / "images/a.jpg").resolve(), "train")


def test_csv_entry(root):
    entry = only(write(root, "m.csv", HEADER + "7,红色波点连衣裙,images/b.jpg,val\n"))
    assert entry == ManifestEntry(2, "7", "红色波点连衣裙", (root / "images/b.jpg").resolve(), "val")


def test_integer_ids_become_strings(root):
    out = read(write(root, "m.jsonl", jsonl(item(item_id=12), item(item_id=0, image=3))))
    assert [e.item_id for e in out] == ["12", "0"]
    assert isinstance(out[1], Rejected) and out[1].reason == "image_missing"  # "3" does not exist


def test_empty_title_is_kept_for_the_text_pipeline(root):
    assert only(write(root, "m.jsonl", jsonl(item(title="")))).title == ""
    assert only(write(root, "m.csv", HEADER + "1,,images/a.jpg,\n")).title == ""


def test_split_is_optional_and_empty_means_none(root):
    out = read(write(root, "m.jsonl", jsonl(item("1"), item("2", split=None), item("3", split=""),
                                            item("4", split=" Test "))))
    assert [e.split for e in out] == [None, None, None, "test"]
    out = read(write(root, "m.csv", "item_id,image,title\n1,images/a.jpg,裙\n"))
    assert out[0].split is None


def test_csv_quoted_commas_and_newlines_keep_physical_line_numbers(root):
    text = (HEADER
            + '1,"裙子, 红色",images/a.jpg,train\n'
            + '2,"第一行\n第二行\r\n第三行",images/b.jpg,\n'
            + "\n"
            + '3,"引号""内",images/c.jpg,test\n')
    out = read(write(root, "m.csv", text))
    assert [(e.line, e.item_id, e.title) for e in out] == [
        (2, "1", "裙子, 红色"), (3, "2", "第一行\n第二行\r\n第三行"), (7, "3", '引号"内')]


def test_tsv(root):
    out = read(write(root, "m.tsv", "item_id\ttitle\timage\n1\t裙子, 红色\timages/a.jpg\n2\tb\t\n"))
    assert isinstance(out[0], ManifestEntry) and out[0].title == "裙子, 红色"
    assert out[1].reason == "bad_manifest_line"  # empty image path


def test_tab_separated_csv_is_detected_from_the_header(root):
    assert only(write(root, "m.csv", "item_id\ttitle\timage\n1\t裙子\timages/a.jpg\n")).title == "裙子"


@pytest.mark.parametrize("name", ["m.jsonl", "m.csv"])
def test_bom_is_tolerated(root, name):
    text = jsonl(item()) if name.endswith("jsonl") else HEADER + "1,裙子,images/a.jpg,\n"
    entry = only(write(root, name, b"\xef\xbb\xbf" + text.encode()))
    assert isinstance(entry, ManifestEntry) and entry.item_id == "1"


def test_format_by_content_for_other_names(root):
    assert isinstance(only(write(root, "items.txt", "\n  " + jsonl(item()))), ManifestEntry)
    assert isinstance(only(write(root, "items.dat", HEADER + "1,裙,images/a.jpg,\n")), ManifestEntry)


def test_blank_lines_are_skipped_and_not_counted(root):
    out = read(write(root, "m.jsonl", "\n" + jsonl(item("1")) + "   \n\r\n" + jsonl(item("2"))))
    assert [(e.line, e.item_id) for e in out] == [(2, "1"), (5, "2")]
    out = read(write(root, "m.csv", "\n" + HEADER + "\n1,a,images/a.jpg,\n  \n2,b,images/b.jpg,\n"))
    assert [(e.line, e.item_id) for e in out] == [(4, "1"), (6, "2")]


def test_crlf_line_endings(root):
    out = read(write(root, "m.csv", HEADER.replace("\n", "\r\n") + "1,a,images/a.jpg,train\r\n"))
    assert out == [ManifestEntry(2, "1", "a", (root / "images/a.jpg").resolve(), "train")]
    assert isinstance(only(write(root, "m.jsonl", jsonl(item()).replace("\n", "\r\n"))), ManifestEntry)


def test_invalid_utf8_is_replaced_not_fatal(root):
    good = jsonl(item("2")).encode()
    bad = b'{"item_id": "1", "title": "\xff\xfe\xb2", "image": "images/a.jpg"}\n'
    out = read(write(root, "m.jsonl", bad + good))
    assert out[0].title == "\ufffd" * 3 and out[1].item_id == "2"


def test_root_can_be_given(root, tmp_path_factory):
    elsewhere = tmp_path_factory.mktemp("manifests")
    path = write(elsewhere, "m.jsonl", jsonl(item()))
    assert only(path).reason == "image_missing"  # default root: the manifest's folder
    assert list(read_manifest(path, root=root))[0].image == (root / "images/a.jpg").resolve()


def test_demo_catalog_reads_fully(tmp_path):
    from taomm.datasets.demo_catalog import generate_catalog

    generate_catalog(tmp_path, items=50, seed=0)
    records = [json.loads(line) for line in (tmp_path / "items.jsonl").read_text("utf-8").splitlines()]
    out = read(tmp_path / "items.jsonl")
    assert all(isinstance(e, ManifestEntry) for e in out), [e for e in out if isinstance(e, Rejected)]
    assert len(out) == len(records) == 50
    for entry, record in zip(out, records, strict=True):
        assert (entry.item_id, entry.title, entry.split) == (record["item_id"], record["title"], record["split"])
        assert entry.image == (tmp_path / record["image"]).resolve() and entry.image.is_file()


def test_reading_is_lazy(root):
    path = write(root, "m.jsonl", jsonl(item("1")) + "not json\n")
    entries = read_manifest(path)
    assert isinstance(next(entries), ManifestEntry)
    assert next(entries).line == 2


# --- bad lines: one Rejected each, and the run goes on ----------------------------------------


@pytest.mark.parametrize("line", [
    "{not json", "[1, 2]", '"text"', "null", "1e999999x",
    json.dumps({"title": "t", "image": "images/a.jpg"}),  # no item_id
    json.dumps({"item_id": "1", "title": "t"}),  # no image
    json.dumps(item(item_id=1.5)), json.dumps(item(item_id=True)), json.dumps(item(item_id=None)),
    json.dumps(item(item_id=["1"])), json.dumps(item(image=None)), json.dumps(item(image={"p": 1})),
    json.dumps(item(item_id="")), json.dumps(item(item_id="   ")), json.dumps(item(item_id="a\nb")),
    json.dumps(item(item_id="x" * 257)), json.dumps(item(item_id="裙" * 86)),  # 258 bytes
    json.dumps(item(image="")), json.dumps(item(split="dev")), json.dumps(item(split=1)),
    json.dumps(item(item_id="\ud800")), json.dumps(item(image="\ud800.jpg")),
    "[" * 100_000 + "]" * 100_000, "1" * 5000,
])
def test_jsonl_bad_manifest_line(root, line):
    out = read(write(root, "m.jsonl", line + "\n" + jsonl(item("ok"))))
    assert [(type(e), e.line) for e in out] == [(Rejected, 1), (ManifestEntry, 2)]
    assert out[0].reason == "bad_manifest_line"


def test_longest_allowed_id(root):
    assert only(write(root, "m.jsonl", jsonl(item(item_id="裙" * 85 + "x")))).item_id == "裙" * 85 + "x"


@pytest.mark.parametrize("row", [
    "1,a,images/a.jpg",  # too few fields
    "1,a,images/a.jpg,train,extra",  # too many
    ",a,images/a.jpg,train",  # empty id
    "x" * 257 + ",a,images/a.jpg,",
    "1,a,,train",  # empty image
    "1,a,images/a.jpg,holdout",
    '1,"a"b,images/a.jpg,',  # text after a closing quote
])
def test_csv_bad_manifest_line(root, row):
    out = read(write(root, "m.csv", HEADER + row + "\n2,b,images/b.jpg,\n"))
    assert [(type(e), e.line) for e in out] == [(Rejected, 2), (ManifestEntry, 3)]
    assert out[0].reason == "bad_manifest_line"


@pytest.mark.parametrize("title", ["__absent__", None, 3, ["红裙"], {"zh": "红裙"}])
def test_jsonl_missing_title(root, title):
    record = item("9")
    if title == "__absent__":
        del record["title"]
    else:
        record["title"] = title
    entry = only(write(root, "m.jsonl", jsonl(record)))
    assert (entry.reason, entry.item_id, entry.line) == ("missing_title", "9", 1)


def test_csv_missing_title_column(root):
    out = read(write(root, "m.csv", "item_id,image\n1,images/a.jpg\n2,images/b.jpg\n"))
    assert [(e.reason, e.item_id) for e in out] == [("missing_title", "1"), ("missing_title", "2")]


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_duplicate_id_first_wins(root, fmt):
    rows = [("1", "first", "images/a.jpg"), ("2", "other", "images/b.jpg"), ("1", "second", "images/c.jpg")]
    if fmt == "jsonl":
        text = jsonl(*(item(i, t, p) for i, t, p in rows))
    else:
        text = "item_id,title,image\n" + "".join(f"{i},{t},{p}\n" for i, t, p in rows)
    out = read(write(root, f"m.{fmt}", text))
    assert isinstance(out[0], ManifestEntry) and out[0].title == "first"
    assert (out[2].reason, out[2].item_id) == ("duplicate_id", "1")


def test_duplicate_of_a_rejected_line_is_still_a_duplicate(root):
    # The first well-formed line owns the id even when its image is missing, so which line
    # owns an id does not change when images appear between runs.
    out = read(write(root, "m.jsonl", jsonl(item("1", image="images/nope.jpg"), item("1"))))
    assert [e.reason for e in out] == ["image_missing", "duplicate_id"]
    # ...but a malformed line claims nothing.
    out = read(write(root, "m.jsonl", jsonl(item("1", split="bogus"), item("1"))))
    assert out[0].reason == "bad_manifest_line" and isinstance(out[1], ManifestEntry)


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
@pytest.mark.parametrize(("image", "reason"), [
    ("../x.jpg", "path_outside_root"),
    ("images/../../x.jpg", "path_outside_root"),
    ("/etc/passwd", "path_outside_root"),
    ("C:\\Windows\\win.ini", "path_outside_root"),
    ("images/nope.jpg", "image_missing"),
    ("images", "image_missing"),  # a folder
])
def test_image_path_reasons(root, fmt, image, reason):
    (root.parent / "x.jpg").write_bytes(b"outside")
    text = jsonl(item("5", image=image)) if fmt == "jsonl" else f'item_id,title,image\n5,t,"{image}"\n'
    entry = only(write(root, f"m.{fmt}", text))
    assert (entry.reason, entry.item_id) == (reason, "5")


def test_symlink_escaping_root(root, tmp_path_factory):
    outside = tmp_path_factory.mktemp("outside")
    (outside / "secret.jpg").write_bytes(b"secret")
    os.symlink(outside / "secret.jpg", root / "images" / "link.jpg")
    os.symlink(outside, root / "linkdir")
    os.symlink(root / "images" / "a.jpg", root / "inside.jpg")  # stays inside: fine
    text = jsonl(item("1", image="images/link.jpg"), item("2", image="linkdir/secret.jpg"),
                 item("3", image="inside.jpg"))
    out = read(write(root, "m.jsonl", text))
    assert [e.reason for e in out[:2]] == ["path_outside_root", "path_outside_root"]
    assert out[2].image == (root / "images" / "a.jpg").resolve()


def test_unresolvable_image_names_are_rejected_not_raised(root):
    out = read(write(root, "m.jsonl", jsonl(item("1", image="a" * 300), item("2", image="x/" * 3000 + "a"))))
    assert [e.reason for e in out] == ["image_missing", "image_missing"]


def test_lone_surrogates_in_titles_become_replacement_characters(root):
    entry = only(write(root, "m.jsonl", '{"item_id": "1", "title": "a\\ud800b", "image": "images/a.jpg"}\n'))
    assert entry.title == "a\ufffdb"
    entry.title.encode("utf-8")


def test_overlong_line_is_rejected_and_skipped(root, monkeypatch):
    monkeypatch.setattr(manifest, "MAX_LINE_CHARS", 64)
    text = jsonl(item("1", title="x" * 200), item("2"))
    out = read(write(root, "m.jsonl", text))
    assert [(e.line, type(e)) for e in out] == [(1, Rejected), (2, ManifestEntry)]
    out = read(write(root, "m.csv", HEADER + "1," + "x" * 200 + ",images/a.jpg,\n2,b,images/b.jpg,\n"))
    assert [(e.line, type(e)) for e in out] == [(2, Rejected), (3, ManifestEntry)]


def test_overlong_csv_header_is_a_file_error(root, monkeypatch):
    monkeypatch.setattr(manifest, "MAX_LINE_CHARS", 64)
    with pytest.raises(TaommError, match="no CSV header"):
        list(read_manifest(write(root, "m.csv", "item_id,image," + "x" * 100 + "\n")))


def test_unbalanced_quote_swallows_a_bounded_number_of_lines(root, monkeypatch):
    monkeypatch.setattr(manifest, "MAX_RECORD_LINES", 3)
    rows = ['1,"unbalanced,images/a.jpg,'] + [f"{i},t,images/b.jpg," for i in range(2, 8)]
    out = read(write(root, "m.csv", HEADER + "\n".join(rows) + "\n"))
    assert (out[0].line, out[0].reason) == (2, "bad_manifest_line")
    assert [e.item_id for e in out if isinstance(e, ManifestEntry)] == ["4", "5", "6", "7"]


def test_ok_plus_rejected_equals_non_blank_lines(root):
    lines = [
        json.dumps(item("1")), "", "{oops", json.dumps(item("2", title=None)), "[]",
        json.dumps(item("1", image="images/b.jpg")), json.dumps(item("3", image="../x.jpg")), "  ",
        json.dumps(item("4", image="images/none.jpg")), json.dumps(item("5", split="x")),
        json.dumps(item(6, image="images/c.jpg", split="test")), '{"item_id": "7"}',
        json.dumps(item("8", title="")),
    ]
    out = read(write(root, "m.jsonl", "\n".join(lines) + "\n"))
    assert len(out) == sum(1 for line in lines if line.strip()) == 11
    assert [e.line for e in out] == [i + 1 for i, line in enumerate(lines) if line.strip()]
    assert [getattr(e, "reason", "ok") for e in out] == [
        "ok", "bad_manifest_line", "missing_title", "bad_manifest_line", "duplicate_id", "path_outside_root",
        "image_missing", "bad_manifest_line", "ok", "bad_manifest_line", "ok"]


def test_ok_plus_rejected_equals_csv_data_rows(root):
    rows = ["1,a,images/a.jpg,", "1,b,images/b.jpg,", "2,c", "3,d,../x.jpg,", ",e,images/a.jpg,",
            "4,f,images/no.jpg,", '5,"g",images/c.jpg,val', "6,h,images/a.jpg,bad", '7,"i"j,images/a.jpg,']
    out = read(write(root, "m.csv", HEADER + "\n".join(rows) + "\n"))
    assert len(out) == len(rows)
    assert [e.line for e in out] == list(range(2, 2 + len(rows)))
    assert sum(isinstance(e, ManifestEntry) for e in out) == 2


# --- whole-file errors ----------------------------------------------------------------------


@pytest.mark.parametrize("header", ["item_id,title,path", "id,title,image", "title", "a\tb"])
def test_csv_header_without_required_columns_is_one_error(root, header):
    path = write(root, "m.csv", header + "\n1,a,images/a.jpg\n")
    with pytest.raises(TaommError) as info:
        list(read_manifest(path))
    assert "lacks column" in str(info.value) and "\n" not in str(info.value)


def test_file_level_errors(root):
    for path in [root / "absent.jsonl", root / "images"]:
        with pytest.raises(TaommError, match="cannot read manifest"):
            list(read_manifest(path))
    with pytest.raises(TaommError, match="UTF-16"):
        list(read_manifest(write(root, "m.csv", HEADER.encode("utf-16"))))
    with pytest.raises(TaommError, match="JSON array"):
        list(read_manifest(write(root, "m.json", json.dumps([item()]))))
    with pytest.raises(TaommError, match="twice"):
        list(read_manifest(write(root, "m.csv", "item_id,image,title,title\n")))


def test_empty_manifests(root):
    assert read(write(root, "m.jsonl", "")) == []
    assert read(write(root, "m.csv", "\n\n")) == []
    assert read(write(root, "m.csv", HEADER)) == []
    assert read(write(root, "m.txt", "")) == []
