"""Title cleaning: properties (hypothesis), reason codes, the demo catalog's bad titles."""

from __future__ import annotations

import json
import os
import stat
import unicodedata
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from taomm.datasets.demo_catalog import generate_catalog
from taomm.errors import TaommError
from taomm.text import MAX_TITLE_CHARS
from taomm.text.clean import TitleCleaner, clean_titles, truncate_words
from taomm.text.normalize import normalize_title
from taomm.text.segment import Segmenter, cache_dir, token_agreement

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
DROPPED = {"Cc", "Cf", "Cs", "Co", "Cn"}


@pytest.fixture(scope="module")
def cleaner() -> TitleCleaner:
    return TitleCleaner()


FRAGMENTS = ["连衣裙", "波点", "荷叶边", "韓版", "顯瘦", "２０２０", "ＡＢＣ", "&lt;b&gt;", "&amp;", "&nbsp;",
             "<span>", "</span>", "\u200b", "\ufeff", "\u3000", "\t", "\n", " ", "加微信", "🎉", "iPhone12",
             "\x00", "\ud800", "尺码<36", "&#20320;", "A字裙", "夏季新款"]
titles = st.lists(st.sampled_from(FRAGMENTS) | st.text(max_size=8), max_size=12).map("".join)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=titles)
def test_cleaning_properties(cleaner: TitleCleaner, raw: str) -> None:
    result = cleaner(raw)
    assert result.input == raw
    assert "".join(result.words) == result.title
    assert unicodedata.normalize("NFKC", result.title) == result.title
    assert not any(unicodedata.category(c) in DROPPED for c in result.title)
    assert result.title == result.title.strip() and "  " not in result.title
    assert result.kept == (result.reason is None)
    if result.kept:
        assert 0 < len(result.title) <= MAX_TITLE_CHARS
    again = cleaner(result.title)
    assert (again.title, again.words, again.kept, again.reason) == (result.title, result.words, result.kept, result.reason)


@settings(max_examples=200, deadline=None)
@given(raw=st.text(alphabet=st.characters(blacklist_categories=()), max_size=60))
def test_normalisation_never_raises_and_is_a_fixed_point(raw: str) -> None:
    once = normalize_title(raw)
    assert normalize_title(once) == once


@pytest.mark.parametrize(
    ("raw", "title", "reason"),
    [
        ("&lt;b&gt;新款&lt;/b&gt;连衣裙", "新款 连衣裙", None),
        ("<span class=\"hot\">波点半身裙</span>&amp;包邮", "波点半身裙 &包邮", None),
        ("２０２０夏季新款Ｔ恤", "2020夏季新款T恤", None),
        ("韓版顯瘦連衣裙", "韩版显瘦连衣裙", None),
        ("波点\u200b荷叶边\ufeff半身裙", "波点荷叶边半身裙", None),
        # a right-to-left override shows its text reversed: stored as it shows
        ("波点\u202e裙身半边叶荷\u202c 女", "波点荷叶边半身裙 女", None),
        ("波点\u202e裙身半", "波点半身裙", None),
        ("  红色   连衣裙\t\n", "红色 连衣裙", None),
        ("Polka dot ruffle skirt 2020 new", "Polka dot ruffle skirt 2020 new", "no_chinese"),
        ("", "", "empty"),
        (" \u3000 &nbsp; \u200b", "", "empty"),
        ("\ud800\udfff", "", "empty"),
    ],
)
def test_reason_codes(cleaner: TitleCleaner, raw: str, title: str, reason: str | None) -> None:
    result = cleaner(raw)
    assert (result.title, result.reason) == (title, reason)


def test_spam_is_rejected_with_its_category(cleaner: TitleCleaner) -> None:
    result = cleaner("2020夏季新款波点连衣裙加 微 信13812345678")
    assert not result.kept and result.reason == "spam:contact"


def test_long_and_pathological_titles(cleaner: TitleCleaner) -> None:
    long = cleaner("2020夏季新款韩版显瘦百搭波点荷叶边半身裙女装网红同款小清新法式复古高腰a字裙包邮正品")
    assert long.kept and len(long.title) <= MAX_TITLE_CHARS and long.title.startswith("2020夏季新款")
    huge = cleaner("连衣裙" * 4000)  # 12k characters
    assert huge.kept and len(huge.title) <= MAX_TITLE_CHARS
    letters = cleaner("a" * 100 + "裙")  # the Chinese is cut off by truncation
    assert letters.reason == "no_chinese" and len(letters.title) <= MAX_TITLE_CHARS
    emoji = cleaner("🎉🎉新款连衣裙🔥")
    assert emoji.kept and "新款" in emoji.title


def test_truncate_by_whole_words() -> None:
    words = ["2020", "夏季", "新款", " ", "连衣裙"]
    assert truncate_words(words, 7) == ["2020", "夏季"]
    assert truncate_words(words, 9) == ["2020", "夏季", "新款"]  # the trailing space goes
    assert truncate_words(["x" * 50], 36) == ["x" * 36]
    assert truncate_words([], 36) == []


def test_demo_catalog_bad_titles_get_their_verdicts(tmp_path: Path) -> None:
    generate_catalog(tmp_path, items=400, seed=1)
    items = [json.loads(line) for line in (tmp_path / "items.jsonl").read_text("utf-8").splitlines()]
    results = list(clean_titles([it["title"] for it in items], workers=2))
    for item, result in zip(items, results, strict=True):
        noise = item["title_noise"]
        if noise == "spam":
            assert result.reason is not None and result.reason.startswith("spam:"), item["title"]
        elif noise == "english":
            assert result.reason == "no_chinese"
        else:
            assert result.kept, (item["title"], result.reason)
            assert not any(c in result.title for c in "<>") and "&lt" not in result.title
            assert all(ord(c) < 0xFF01 or ord(c) > 0xFF5E for c in result.title)  # no full-width ASCII left
    assert {it["title_noise"] for it in items} >= {None, "spam", "english", "traditional", "fullwidth", "html", "long"}


def test_workers_give_the_same_results() -> None:
    raw = ["韓版顯瘦連衣裙", "Polka", "", "加微信123456 连衣裙", "2020夏季新款波点荷叶边半身裙女"] * 40
    assert list(clean_titles(raw, workers=2, chunk_size=7)) == list(clean_titles(raw, workers=1))


def test_segmenter_cache_is_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAOMM_CACHE_DIR", str(tmp_path / "cache"))
    folder = cache_dir()
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    Segmenter("jieba")
    assert any(folder.iterdir()), "the dictionary cache goes to the private folder"
    os.chmod(folder, 0o777)
    with pytest.raises(TaommError, match="writable by other users"):
        cache_dir()


def test_product_words_stay_whole() -> None:
    seg = Segmenter("jieba")
    assert seg.cut("波点荷叶边半身裙") == ["波点", "荷叶边", "半身裙"]
    assert "显瘦" in seg.cut("2020夏季新款韩版半身裙女显瘦")


def real_titles() -> list[str]:
    path = SHARED / "real-titles" / "product1m_dev.txt"
    if not path.is_file():
        pytest.skip("shared reference data is absent")
    return [line.split("#####")[1] for line in path.read_text("utf-8").splitlines() if "#####" in line]


def test_fast_backend_agrees_with_jieba_on_real_titles() -> None:
    pytest.importorskip("jieba_fast_dat")
    titles = real_titles()
    assert token_agreement(titles, reference=Segmenter("jieba"), candidate=Segmenter("fast")) >= 0.995
    assert token_agreement(["波点荷叶边半身裙"], Segmenter("jieba"), Segmenter("jieba")) == 1.0
