"""The title spam filter: curated lexicons, matched so that cheap obfuscation does not hide them
and an innocent title that only holds a term across a word boundary is not flagged.

A title is read in two forms, both precompiled regex work, so a clean title costs a few
microseconds:

- the *marked* title: lower-cased, ``+``/``➕`` before a contact word read as 加, homophones and shape variants of the
  contact words mapped (薇/威/徽 -> 微; 溦信, 卫芯, 威鑫, v信, vx, wx, weixin -> 微信; 扣扣, 企鹅 ->
  qq; +V, 加V -> 加微), every character that is not a Latin letter, a digit or a CJK ideograph
  turned into one space, and a separator of any script repeated between single characters
  (``加丨微丨信``, ``冰一毒一出一售``) read as spaces too (a second view of the title);
- the *squeezed* title: the marked one without its spaces, so ``加 微 信``, ``加.V.信`` and ``+V``
  all read ``加微信``/``加微``.

Before both, characters written for others are read as those (``_READ_AS``): Cyrillic and
Greek look-alikes of Latin letters and digits (``vх``, ``ԛiang``, ``1З8...``), the CJK Radicals
Supplement forms (⻔ for 门, ⻩ for 黄), emoji written for a word (手🔫, 🐧 for 企鹅, 法☸功) and the
financial numerals (肆号); a number written in Chinese numerals (一八二七..., 壹叁捌...) is read as
digits, and so are the numerals of an id after a contact word (``微信 dxk壹n〇n伍g``) and letters
in a number that look like its digits (``9188o7``). A third view reads a single 一 between two
characters as a separator (``招一嫖``): 一 is both a common character and a favourite separator,
so only the judge below decides; a fourth reads the title without noise typed into words (a
particle or a stray letter between two characters, ``港a独``, ``共产啊党``; a character typed
twice, ``法轮轮功``). Then, on a clean reading, two more: terms written in pinyin in part or
whole (``du博``, ``百jia乐``, ``YI夜QING``, see ``_Pinyin``) and terms of three characters or more
written with homophones (海洛引, 代开发漂, see ``_Homophones``), each read as the term and
checked again.

Four kinds of rules run on them:

1. Phrases, on the squeezed title. One alternation holds the spam phrases and the allow-list
   together; the leftmost match wins and, at one position, the longest, so an allowed word
   covering a spam phrase (充气枪 over 气枪, 仿真枪 over 真枪) keeps the title clean while
   代开发票 is still fraud next to the allowed 开发票; after a phrase the judge below turns down,
   the search resumes at its next character (卖家全家死|光 turned down, 全家死光 stands). A
   ``a…b`` entry (代开…发票, ``{收购,代办}…{银行卡,信用卡}``) allows up to six characters between its
   parts, and every second part in reach is tried (店主|是狗 turned down, 店主…狗东西 stands);
   each part must stand as a word or end a longer one (专用|发票, not 手枪|钻), and an allowed entry covering a
   part clears the match (出售儿童玩具手枪).
2. Contact patterns: a mainland mobile number ``1[3-9]\\d{9}`` standing alone, written whole,
   in groups (138-1234-5678) or digit by digit; and digit or id runs after a contact keyword
   (``qq12345``, ``微信abc123``, ``电话12345678``, ``加微 ...``). Model numbers, sizes and dates
   are not contacts: only an 11-digit run that is a mobile number counts without a keyword.
3. Broad lists: some 6,700 terms reviewed one by one, from the large public sensitive-word lists
   and from writers who saw no lexicon (``spam/broad/<category>.txt``), found on the squeezed
   title through an index by their least common character (see ``_Broad``); a two-character one
   counts as a whole word only.
4. Words: short or ambiguous terms (lexicon lines starting with ``=``, e.g. 大麻, 套现, 刷单)
   count only as a word of their own: not inside a longer dictionary word (大麻哈鱼), and not
   when the title holds an allowed word containing the term (大麻籽, 大麻绳).

A phrase or word found is then judged by the words jieba finds in the marked title: when a
dictionary word straddles either end of it (黑色|情侣装 holds 色情, 搞笑|气球 holds 笑气,
水枪|支架 holds 枪支), the title is about something else and the match does not count, unless
the term is one character and a word that runs on (假|学历证书 still holds 假学历). Words the
segmenter only guessed (its HMM glues unknown text such as 刷单赚) do not veto a match, and an
ASCII term must not touch another letter or digit in the marked title, where the spaces the
squeezed one lost still show (``k粉`` stands in ``ahc k粉``, not in ``pink粉``).

The lexicons live in ``taomm/resources/spam/<category>.txt`` plus ``allow.txt`` (curated in part
from konsheng/Sensitive-lexicon, MIT, see ``LICENSE-lexicon.txt``) and ``spam/broad/<category>.txt``
(reviewed from the same project's broad lists, and written for taomm).
"""

from __future__ import annotations

import functools
import itertools
import re
import unicodedata
from collections.abc import Iterable, Iterator, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import NamedTuple

from taomm.errors import TaommError
from taomm.text.normalize import normalize_title

SPAM_CATEGORIES: tuple[str, ...] = (
    "porn", "politics", "terror", "drugs", "gambling", "contact", "fraud", "abuse",
)

# Homophones and aliases of the contact keywords, mapped twice: before separators are
# dropped, where an ASCII alias must stand alone ("vx:abc123", not the "vx" of "evx"), and
# after, to catch aliases spread out by separators ("v x", "扣 扣"). "+V", "➕V" and "加V" all
# offer a WeChat contact (but "+VC" is vitamin C); a plus sign alone joins products
# ("日霜+晚霜") and stays a separator, so that "+大麻" does not read as the word 加大; before a
# contact keyword, maybe spread out ("+丨V丨 丨1…", "➕微abc123"), it reads 加.
_ALIASES = {
    "+": "加", "➕": "加", "﹢": "加", "薇": "微", "威": "微", "徽": "微",
    "扣扣": "qq", "球球": "qq", "秋秋": "qq", "抠抠": "qq", "叩叩": "qq", "寇寇": "qq", "蔻蔻": "qq", "企鹅": "qq", "q扣": "qq", "扣q": "qq",
    "weixin": "微信", "wechat": "微信", "wx": "微信", "vx": "微信", "微x": "微信",
    "v x": "微信", "w x": "微信", "wei": "微", "v": "微", "加v": "加微", "+v": "加微", "➕v": "加微", "﹢v": "加微",
    "加卫星": "加微信", "加绿泡泡": "加微信", "绿泡泡": "微信", "q聊": "qq", "加我": "加", "加我v": "加微", "加我 v": "加微", "加扣": "加qq", "加q": "加qq", "q群": "qq群", "q号": "qq号",
}
# WeChat written with a homophone or look-alike of each character (溦信, 卫芯, 嶶鑫, v芯, wei芯).
# Pairs that are words of their own (卫星, 维新, 唯心, 微星) stay as they are.
_WEI = "微薇威徽溦嶶徾葳巍维卫喂魏危伟围韦唯"
_XIN = "信芯鑫欣心新星辛馨"
_WECHAT_WORDS = ("卫星", "维新", "唯心", "微星", "微心", "微新", "伟星", "围心")
# Where each alias applies. Every alternative starts with a literal character (ASCII ones
# look behind after it) so that the regex keeps its first-character prefilter.
_ALIAS_RE = re.compile("|".join((
    # "+V" before "+" alone: at one position the first alternative that matches wins
    r"加v(?![a-wyz])|\+v(?![a-wyz])|➕v(?![a-wyz])|﹢v(?![a-wyz])",
    # "+V" before an id of six letters or digits: not vitamin C or E, not VIP
    r"加v(?![ce]|ip)(?=[0-9a-z]{6,})|\+v(?![ce]|ip)(?=[0-9a-z]{6,})|➕v(?![ce]|ip)(?=[0-9a-z]{6,})",
    r"加 +v(?![a-z])|\+ +v(?![a-z])",  # "加 V abc123"
    # 卫星 is a word (a satellite), but not before an id: "加卫星abc123"; 绿泡泡 (WeChat's
    # green bubble) before an id
    r"加卫星(?= ?[0-9a-z])|加绿泡泡|绿泡泡(?= ?[:：]? ?[0-9a-z]{4})|q聊(?= ?[:：]? ?\d{5})",
    f"[{_WEI}][{_XIN}]{''.join(f'(?<!{word})' for word in _WECHAT_WORDS)}",
    r"[+➕﹢](?=.{0,3}?(?:v|wx|wei|扣|[微薇威徽溦嶶]|qq? ?[:：号群]? ?\d{5}|qq[号群]))",
    # "加我 V", "加我扣扣": the 我 is dropped; "加扣" (after "+扣") is QQ; "Q群", "Q号" a QQ group, number
    r"加我 ?v(?!ip)(?=[ :：]?[0-9a-z_零〇一幺壹二贰三叁四肆五伍六陆七柒八捌九玖]{4,})|加我(?=.{0,2}?(?:v|wx|vx|wei|qq|q|扣|企鹅|[微薇威徽溦嶶]))|加扣(?= ?[:：]? ?\d{5})|加q(?![a-z])(?= ?[:：]? ?\d{5})|q(?<![0-9a-z]q)群|q(?<![0-9a-z]q)号(?= ?[:：]? ?\d{5})",
    r"薇|威|徽|扣扣|球球|秋秋|抠抠|叩叩|寇寇|蔻蔻|企鹅|微x|q扣|扣q",
    r"w(?<![a-z]w)(?:eixin|echat|x)(?![a-z])|v(?<![a-z]v)x(?![a-z])",
    # a keyword before a colon is a contact whatever precedes it: "15mlVX:abc123"; a V alone
    # before a colon ("V:abc123", "V☆:☆a☆b") is one when no letter precedes it
    r"v ?x(?= ?[:：])|w ?x(?= ?[:：])|v(?<![a-z]v)[^0-9a-z\u3400-\u9fff]{0,6}[:：]|t(?<![a-z]t) ?g(?= ?[:：] ?[0-9a-z])",
    f"w(?<![a-z]w)ei[{_XIN}]|v(?<![a-z]v)[{_XIN}]",
)))
# What survives squeezing: Latin letters (already lower-cased), digits, CJK ideographs.
# Ideographs that are single strokes or bare radicals (丨 丶 丿 乀 亅 ...) are read as
# separators too: titles use them as bars and dots, and no word is written with them.
_STROKES = "丨丶丿乀乁乂乛亅亠冂冖冫凵匚卩厶"
_DROP = re.compile(f"(?:[^0-9a-z\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]|[{_STROKES}])+")
# One separator of any script (here: what survives dropping, so a CJK ideograph such as 丨 or
# 一) repeated between single characters at least twice: 冰丨毒丨出丨售, 加 一 微 一 信.
_SPREAD_HINT = re.compile(r"([^\x00-\x7f]) ?(?!\1)[^ ] ?\1")  # one repeat: a cheap test first
_SPREAD = re.compile(r"([^ ]) ?(?!\1)([^\x00-\x7f ])(?: ?\2)* ?(?!\2)[^ ](?:(?: ?\2)+ ?(?!\2)[^ ])+")
# A contact keyword standing alone, then an id of six or more letters and digits (at least one
# digit) or of six letters or more spelled out one by one: "薇 abc123", "V✿X✿:✿c✿1✿v",
# "qq 1 2 3 4 5 6", "威❤p.t.r.j.v.c", on the marked title.
_SPREAD_ID = re.compile(r"(?:微信|微|加 ?微|加 ?v|v(?<![0-9a-z]v) ?x|w(?<![0-9a-z]w) ?x|q(?<![0-9a-z]q) ?q)(?: ?号码?)? "
                        r"(?:(?=[0-9a-z ]*\d)[0-9a-z](?: ?[0-9a-z_]){5,}|[0-9a-z](?: [0-9a-z]){5,}(?![0-9a-z]))")
# A mobile number written digit by digit (1 3 8 1 2 3 4 5 6 7 8) on the marked title.
_SPREAD_PHONE = re.compile(r"1(?<!\d1)(?<!\d 1) [3-9](?: \d){9}(?! ?\d)")


# A number written in Chinese numerals (一三八..., 壹叁捌...), maybe mixed with digits: a run
# of seven or more holding three numerals or more, two of them different, is read as digits
# (no title writes a model number or a size that way), so a phone number spelled out is still one.
_NUMERAL_CHARS = "零〇一幺壹二贰三叁四肆五伍六陆七柒八捌九玖"
_NUMERALS = str.maketrans(_NUMERAL_CHARS, "001112233445566778899")
_NUMERAL_RUN = re.compile(f"[0-9{_NUMERAL_CHARS}](?:[ \\-._—]?[0-9{_NUMERAL_CHARS}]){{6,}}")


# An id after a contact keyword with some of its digits in Chinese numerals (微信 dxk壹n〇n伍g),
# on the marked title: read as digits when the run holds two letters or digits too.
_NUMERAL_ID = re.compile(f"(?:微信|微|qq|飞机|电报)(?: ?号码?)? ?((?=[0-9a-z {_NUMERAL_CHARS}]*[0-9a-z][0-9a-z {_NUMERAL_CHARS}]*[0-9a-z])"
                         f"[0-9a-z{_NUMERAL_CHARS}](?: ?[0-9a-z{_NUMERAL_CHARS}]){{4,}})")


# A QQ number all in Chinese numerals after its keyword (企鹅贰叁捌贰柒壹 reads qq238271, q玖捌柒柒 q9877).
_NUMERAL_QQ = re.compile(f"(?:qq|q(?<![0-9a-z]q))(?: ?号码?)? ?([{_NUMERAL_CHARS}](?: ?[0-9{_NUMERAL_CHARS}]){{4,}})")


# What a title's characters are read as before anything else, on the lower-cased title (only
# the filter's reading of a title changes, never the title):
# - letters of other scripts that look like Latin letters or digits, written to break up an id
#   or a keyword (Cyrillic "vх", "аbс123", "ԛq"; Greek "νx"; "1З8..." with a Cyrillic З);
#   γ is the g of g水 (GHB, γ-羟基丁酸);
_HOMOGLYPHS = dict(zip("аеорсхуктмнвіјѕԁԛԝɡһӏзэѵүαβγεικνορτυχωϲ",
                       "aeopcxyktmhbijsdqwghl33vyabgeikvoptuxwc", strict=True))
# - the forms of the CJK Radicals Supplement written for the character they are a form of (⻔
#   for 门, ⻩ 黄, ⻢ 马; NFKC already maps the Kangxi radicals, ⼤ to 大, but not these);
_RADICAL_QUALIFIERS = frozenset({"ONE", "TWO", "THREE", "FOUR", "SECOND", "THIRD", "FOURTH", "ALTERNATE"})
# - emoji written for a word (手🔫, 自制💣, 🐧 for 企鹅, ✈ for 飞机, 法☸功) and the financial
#   numerals read as the plain ones (肆号, 玖评).
_EMOJI_WORDS = {
    "🔫": "枪", "💣": "炸弹", "💊": "药", "💉": "针", "☸": "法轮", "🐴": "马", "🐶": "狗", "🐔": "鸡",
    "🚪": "门", "💰": "钱", "🐧": "企鹅", "✈": "飞机", "🛩": "飞机", "📞": "电话", "☎": "电话", "📱": "手机",
}
# (not 伍, 陆 and 拾: also the 伍 of 队伍, the 陆 of 大陆, the 拾 of 收拾)
_FINANCIAL_NUMERALS = dict(zip("壹贰叁肆柒捌玖", "一二三四七八九", strict=True))


def _radical_forms() -> dict[str, str]:
    """Each CJK Radicals Supplement form whose name names a Kangxi radical, as that radical's
    character, simplified ("CJK RADICAL C-SIMPLIFIED GATE" -> 门)."""
    forms = {}
    for code in range(0x2E80, 0x2EFF):
        words = unicodedata.name(chr(code), "").removeprefix("CJK RADICAL ").split()
        words = [w for w in words if w not in _RADICAL_QUALIFIERS and not w.endswith("SIMPLIFIED")]
        try:
            forms[chr(code)] = normalize_title(unicodedata.lookup("KANGXI RADICAL " + " ".join(words)))
        except KeyError:
            continue
    return forms


_READ_AS = str.maketrans({**_HOMOGLYPHS, **_radical_forms(), **_EMOJI_WORDS, **_FINANCIAL_NUMERALS})
_READ_AS_ANY = re.compile(f"[{''.join(map(re.escape, map(chr, sorted(_READ_AS))))}]")  # most titles hold none
# A number with letters written for the digits they look like (138l2345678, qq9188o7, 企鹅o99475):
# l and i for 1, o for 0, in a run of digits and those letters holding five digits or more and
# more digits than letters.
_LOOKALIKE_RUN = re.compile(r"(?<![0-9a-z])(?=[lio]*\d)[0-9lio]{6,}(?![0-9a-z])")
_LOOKALIKE_HINT = re.compile(r"\d[lio]|[lio]\d")
_LOOKALIKE_DIGITS = str.maketrans("lio", "110")


def _lookalike_digits(lowered: str) -> str:
    """``lowered`` with look-alike letters of a number read as its digits."""
    def read(match: re.Match[str]) -> str:
        run = match[0]
        letters = sum(c.isalpha() for c in run)
        return run.translate(_LOOKALIKE_DIGITS) if 0 < letters < len(run) - letters and len(run) - letters >= 5 else run
    return _LOOKALIKE_RUN.sub(read, lowered) if _LOOKALIKE_HINT.search(lowered) else lowered


def _id_digits(marked: str) -> str:
    """``marked`` with the Chinese numerals of an id after a contact keyword read as digits."""
    def read(match: re.Match[str]) -> str:
        return match[0][:match.start(1) - match.start()] + match[1].translate(_NUMERALS)
    return _NUMERAL_QQ.sub(read, _NUMERAL_ID.sub(read, marked))


def _digits(text: str) -> str:
    """``text`` with each run of Chinese numerals long enough to be a number read as digits."""
    def read(match: re.Match[str]) -> str:
        run = match[0]
        numerals = [c for c in run if not c.isascii()]
        # a run of one numeral between digits is a separator (7一3一3一7), not a number
        return run.translate(_NUMERALS) if len(numerals) >= 3 and len(set(numerals)) >= 2 else run
    return _NUMERAL_RUN.sub(read, text)


# A lexicon entry "a…b" matches a and b with up to _GAP_SIZE characters between them.
_GAP, _GAP_SIZE = "…", 6
# What a marked title is read as for pinyin: Latin words, numbers, CJK characters, spaces
_UNIT = re.compile(r"[a-z]+|[0-9]+|[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]| ")
_PINYIN_LETTERS = 30  # a longer Latin word is not read as pinyin
_TWO_LETTERS = re.compile("[a-z]{2}")
_LETTER_BY_CJK = re.compile(r"[\u3400-\u9fff][a-z]|[a-z][\u3400-\u9fff]")
_LATIN_WORDS = re.compile(r"[a-z]+(?: [a-z]+)*")  # Latin words, a space between them
_TERM_REACH = 12  # the most characters a term reaches beyond its pinyin
_HOMOPHONE_CHARS = 3  # the fewest characters of a term found through homophones
_COMMONER = 20  # a character this many times as common as a term's is not a disguise of it
_INITIALS = 4  # the most letters of initials read in one word (成ry片)
# A digit standing alone between characters of the sound string (not in a number, not in an id)
_LONE_DIGIT = re.compile(r"(?<![0-9a-z])[0-9](?![0-9a-z])")
_INITIALS_WORD = re.compile(r"(?<![0-9a-z])[a-z]{1,4}(?![0-9a-z])")


class _Unit(NamedTuple):
    """A CJK character, a pinyin syllable or another token of a marked title (see ``_Pinyin``)."""
    start: int
    end: int
    text: str
    sounds: tuple[str, ...]  # toneless pinyin, ü as u: a character's readings, a syllable itself
    word: int  # the number of a syllable's Latin word, -1 for anything else
    gap: bool  # a space before it


def _toneless(syllable: str) -> str:
    """A pinyin syllable without its tone marks, ü (or v) as u: "lǜ" -> "lu"."""
    plain = "".join(c for c in unicodedata.normalize("NFD", syllable) if not unicodedata.combining(c))
    return plain.replace("v", "u")


def _known(word: str) -> bool:
    from taomm.text.segment import get_segmenter

    return get_segmenter().known(word)


def _dictionary(terms: Iterable[str], sound: Mapping[int, str]) -> tuple[dict[str, list[str]], dict[str, int]]:
    """From jieba's dictionary: the words that sound as one of ``terms`` does that is not a word
    there itself, by that sound (``sound`` is a translation table from character to sound), and
    how common each character is (its count as a word of its own)."""
    import jieba

    terms = set(terms)
    words, innocent, counts = set(), {}, {}
    sounds = {term.translate(sound) for term in terms}
    with open(Path(jieba.__file__).with_name("dict.txt"), encoding="utf-8") as lines:
        for line in lines:
            word, count = line.split(" ", 2)[:2]
            if len(word) == 1:
                counts[word] = int(count)
            elif word in terms:
                words.add(word)
            elif len(word) <= 8 and word.translate(sound) in sounds:
                innocent.setdefault(word.translate(sound), []).append(word)
    spoken = {term.translate(sound) for term in terms - words}
    return {key: found for key, found in innocent.items() if key in spoken}, counts


@functools.lru_cache(maxsize=65536)
def _spelled(term: str) -> tuple[str, ...]:
    """The toneless pinyin of ``term`` in context (重庆: chong qing), one syllable per character
    (a run of other characters is one item), ü written u; shared by the three readers' indexes."""
    from pypinyin import lazy_pinyin

    return tuple(map(_toneless, lazy_pinyin(term)))


@functools.lru_cache(maxsize=8192)
def _sounds(char: str) -> tuple[str, ...]:
    """The toneless readings of a CJK character, most common first, ü written u."""
    from pypinyin.pinyin_dict import pinyin_dict

    readings = pinyin_dict.get(ord(char), "") if len(char) == 1 else ""
    return tuple(dict.fromkeys(r for r in map(_toneless, readings.split(",")) if r))


@functools.lru_cache(maxsize=1)
def _syllables() -> frozenset[str]:
    """Every toneless pinyin syllable with a vowel (not the interjections m, ng, hm), ü written
    u and also v after n and l (nv, lve), as Latin text writes them."""
    from pypinyin.pinyin_dict import pinyin_dict

    plain = {_toneless(r) for readings in pinyin_dict.values() for r in readings.split(",")}
    plain = {s for s in plain if s.isascii() and s.isalpha() and any(v in s for v in "aeiou")}
    return frozenset(plain | {s[0] + "v" + s[2:] for s in plain if s[:2] in ("nu", "lu")})


def _split_syllables(word: str) -> tuple[str, ...] | None:
    """``word`` as pinyin syllables, longest first (ü as u), or None where it is not pinyin."""
    syllables = _syllables()

    def split(at: int) -> tuple[str, ...] | None:
        if at == len(word):
            return ()
        for end in range(min(len(word), at + 6), at, -1):
            if word[at:end] in syllables and (rest := split(end)) is not None:
                return (word[at:end].replace("v", "u"), *rest)
        return None
    return split(0)


def _is_word_char(char: str | None) -> bool:
    return char is not None and char.isascii() and char.isalnum()


def _trie_regex(literals: Iterable[str]) -> str:
    """One regex matching any of ``literals``, leftmost then longest, built as a trie.

    A trie keeps each branch point to its distinct next characters, so a position costs a
    few comparisons instead of one per literal. Word boundaries are not checked here: the
    squeezed title it runs on has lost them (``ahc k粉`` reads ``ahck粉``), so a match is judged
    on the marked title, where they still show (``k粉`` stands in ``ahc k粉``, not in ``pink粉``).
    """
    trie: dict = {}
    for literal in literals:
        node = trie
        for char in literal:
            node = node.setdefault(char, {})
        node[""] = {}

    def emit(node: dict) -> list[str]:
        alternatives = []
        for char in sorted(k for k in node if k):
            tail = emit(node[char])
            alternatives.append(re.escape(char) + (tail[0] if len(tail) == 1 else f"(?:{'|'.join(tail)})"))
        if "" in node:  # last, so that a longer literal wins at the same start
            alternatives.append("")
        return alternatives

    return "|".join(emit(trie)) or "(?!)"


# Contact keywords as written in characters (for pinyin: "qi鹅", "wei信", "dian话")
_CONTACT_WORDS = ("微信", "电话", "手机", "联系", "联系方式", "飞机", "电报", "加微", "私聊", "私信", "咨询")
# Off-platform contact by number or id, on the squeezed title.
_CONTACT_RE = re.compile("|".join((
    # a mainland mobile number standing alone (never part of a longer digit run)
    r"1(?<!\d1)[3-9]\d{9}(?!\d)",
    # a QQ number, a WeChat id, a phone number after their keyword
    r"qq(?:号码?|群)?\d{5,}",
    r"q(?<![0-9a-z]q)\d{6,11}(?!\d)",  # "q1234567": QQ by its letter alone, before a QQ number's digits
    # Telegram (the paper plane, a toy too: only before an id; its number; the telegraph) and
    # an account on another app, before an id
    *(rf"{keyword}[0-9a-z_]{{5,}}" for keyword in (
        "纸飞机", "纸飞机号", "飞机号", "电报", "电报号", "抖音号", "快手号", "小红书号")),
    # "飞机abcde" (Telegram) but not a drone or an airliner by its model (飞机mavic3, 飞机boeing737)
    r"飞机(?!mavic|mini|air|avata|phantom|inspire|tello|fpv|dji|boeing|airbus|model|drone)[a-z][0-9a-z_]{4,}",
    r"t(?<![a-z]t)g(?:搜索?|号|群|账号)[0-9a-z_]{5,}|telegram[0-9a-z_]{5,}",  # "TG搜abc123"
    r"微信(?:号码?)?[0-9a-z]{5,}",
    r"微号码?[0-9a-z]{6,}",  # "微号abc123", "薇号 etmfzx": WeChat's number (an id may be letters only)
    # a request to message or ask an id, letters only too: "私信微abcde", "详情咨询薇bufitzxj"
    *(rf"{keyword}(?:微信?|qq|v)[0-9a-z]{{5,}}" for keyword in ("私信", "私聊", "私我", "咨询", "详询", "找我")),
    # WeChat named by one character, glued to an id with a digit: "薇abc123" (not 微单a6400)
    r"微(?<!稍微)(?=[0-9a-z]{6,}(?![0-9a-z]))[a-z]*\d",
    # "vxabc123": no boundary; "w e c h a t : abc123" spelled out reads wechatabc123 here
    r"v(?<![a-z]v)x[0-9a-z]{5,}|w(?<![a-z]w)(?:x|eixin|echat)[0-9a-z]{5,}",
    # (each alternative starts with a literal character: the regex keeps its prefilter)
    *(rf"{keyword}(?:号码?)?\d{{7,}}" for keyword in ("电话", "热线", "手机", "座机", "联系", "联系方式", "t(?<![a-z]t)el")),
    # 加微 / +V followed by an id, a number or nothing (not 加V领)
    r"加微(?=[0-9a-z号]|$)",
    # "rarely here, add abc123" (闲鱼不常上加abc123, 淘宝很少看 加qq...)
    r"(?:不常|很少|不经常|偶尔)[上在看登回][\u4e00-\u9fff]{0,4}?加[0-9a-z_]{5,}",
)))

# A mobile number written in groups, 138 1234 5678 or 138-1234-5678, on the lower-cased text
# before squeezing, where its ends still show (squeezing can glue it to the next number).
_GROUPED_PHONE_RE = re.compile(r"1(?<!\d1)[3-9]\d[ \-._—]?\d{4}[ \-._—]?\d{4}(?!\d)")


# Characters common in product titles, most common first (measured on Taobao titles). Speed
# only: each spam phrase is anchored on its least common character, and a title holding no
# anchor skips the phrase scan, which is what most titles do. Correctness does not depend on
# this list.
_COMMON_CHARS = (
    "0123456789mlgsaeiocnrtdphbukf"
    "水套装乳霜肤面保湿护加品精补华件液兰三爽肌润日眼油正盒蔻清瓶白修小诗国美洁男滋化妆洗奶控韩"
    "金部黛新女现生货士毛神仙晚韵本露雅紧酸斑致复红代购黄黑舒娇大版玻邮尿抗包澳欧流洲活学紫明缓"
    "碧光膜苏牛感珂亮免底专丽颜官淡去理透提香税上棕敏柜礼原多港胸用祛两店缘养孔体款痘泉堂夜和皱"
    "德妃莹色全采凝之赋组合宝柔妍蜗钥缇莱直方御限春脱收防份皮效法纯力平型膏泡智温量泥孕啫然物可"
    "喱丝四缩植衡灯嫩妇场脸坊纹动自能老网粉高蓝果倩年梵基榴花石特喷雾晒菁臻希旗瑰磁细舰钻曲一塑"
    "衣裙裤鞋童秋冬季时尚休闲百搭外长短袖棉麻厚绒宽松显瘦气质复古高腰儿婴车手机壳"
    # characters common in titles of clothing, home, food, electronics, sports and toys
    "码号款式季节系源货头内带双单层板架座台电池充线器箱柜桌椅床垫被枕毯帘窗锁匙杯壶锅碗盘筷勺刀"
    "盒袋鞋靴帽围巾套袜表链戒耳环项坠镜框片贴纸笔册书卡票证件夹扣绳球拍网杆轮胎脚踏骑跑步健身"
    "瑜伽游泳钓鱼营登山旅烧烤厨卫浴刷擦拖扫吸尘净器湿风扇空调冰箱热微波饭煲茶叶咖啡酒饮料零食糖"
    "果饼干坚肉虾蟹牛羊猪鸡鸭蛋粉米油盐酱醋调味辣椒蒜姜葱苹梨桃橙柚蕉莓瓜菜豆玉薯树木种盆栽肥宠"
    "狗猫粮玩具积拼图娃模型遥控汽飞船价值送赠礼券店铺旗舰厂直销批发售卖代理提现金额分期免息"
    # and the most common characters of written Chinese
    "的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年得就那要下以生会自着去之过家学对"
    "可她里后小么心多天而能好都然没日于起还发成事只作当想看文无开手十用主行方又如前所本见经头面公"
    "同三已老从动两长知民样现分将外但身些与高意进把法此实回二理美点月明其种声全工己话儿者向情部正"
    "名定女问力机给等几很业最间新什打便位因重被走电四第门相次东海口使教西再平真世气土草买卖推"
)
_RANK = {char: rank for rank, char in enumerate(dict.fromkeys(_COMMON_CHARS))}


def _anchor(phrase: str) -> str:
    """The least common character of ``phrase`` (by ``_COMMON_CHARS``)."""
    return max(phrase, key=lambda char: _RANK.get(char, len(_RANK)))


def _char_class(chars: Iterable[str]) -> re.Pattern[str]:
    """A regex matching any one of ``chars`` (never matching when there are none)."""
    chars = sorted(set(chars))
    return re.compile(f"[{''.join(map(re.escape, chars))}]" if chars else "(?!)")


def squeeze(text: str) -> str:
    """``text`` as the phrase matcher reads it: lower-cased, look-alikes read (``_READ_AS``),
    separators out, homophones mapped."""
    return _squeeze(mark(_read(text)))


def _read(text: str) -> str:
    """``text`` lower-cased, with the characters of ``_READ_AS`` read as it says."""
    lowered = text.lower()
    return lowered.translate(_READ_AS) if _READ_AS_ANY.search(lowered) else lowered


def mark(text: str) -> str:
    """``text`` lower-cased, homophones mapped and each run of separators one space."""
    return _DROP.sub(" ", _ALIAS_RE.sub(_alias, text.lower()))


def _squeeze(marked: str) -> str:
    return _ALIAS_RE.sub(_alias, marked.replace(" ", ""))


def _despread(marked: str) -> str:
    """``marked`` with a separator repeated between single characters read as spaces."""
    if not _SPREAD_HINT.search(marked):
        return marked
    return _SPREAD.sub(_read_spread, marked)


# 一 standing between two characters, as a separator once ("裸一聊"): the one separator that is
# also a common character, so a view reads it as a space and the judge weighs what it finds.
_JOIN = re.compile(r"(?<=[0-9a-z\u3400-\u9fff])一(?=[0-9a-z\u3400-\u9fff])")


# Noise typed into a word to break it up: a particle (啊, 的 ...) or one Latin letter between two
# characters (港a独, 共产啊党), or a character typed twice (法轮轮功, 成成人人). A fourth view
# reads the title without it, joined up, so a word straddling a term still shows to the judge
# (黄色的情侣装 reads 黄色情侣装: 黄色|情侣 holds 色情 across a boundary). Particles that are
# parts of common words are not noise (哈 of 大麻哈鱼 and 哈密瓜, 喔 of 喔喔).
_NOISE = re.compile(r"(?<=[\u3400-\u9fff]) ?(?:[啊呀哦噢嗯的]|[a-z]) ?(?=[\u3400-\u9fff])|([\u3400-\u9fff])(?=\1)")


def _unjoin(marked: str) -> str:
    """``marked`` with each 一 between two characters read as a separator."""
    return _JOIN.sub(" ", marked) if "一" in marked else marked


def _read_spread(match: re.Match[str]) -> str:
    """A spread run with its separator read as spaces. A run holding spaces needs three
    separators: two may be a title's own words (``药酒 泡酒料`` is not 药|泡|料 spread by 酒)."""
    run, separator = match[0], match[2]
    if " " in run and run.count(separator) < 3:
        return run
    return " ".join(run.replace(separator, " ").split())


def _alias(match: re.Match[str]) -> str:
    """The reading of an alias: listed ones, else "加 V" -> 加微 and a WeChat homophone or
    "V:" -> 微信."""
    text = match[0]
    return _ALIASES.get(text) or ("加微" if text[0] in "加+➕﹢" else "微信")


def _parse(text: str) -> tuple[list[str], list[str]]:
    """A lexicon file's (phrases, words): ``#`` comments out, ``=`` entries are words,
    ``{a,b}`` alternatives expand (``{出售,批发}{手枪,步枪}`` is four entries), and ``a…b`` is a
    phrase with up to six characters between its parts."""
    phrases, words = [], []
    for line in text.splitlines():
        entry = line.split("#", 1)[0].strip()
        target = words if entry.startswith("=") else phrases
        target.extend(_expand(entry.lstrip("=").strip()) if entry else ())
    return phrases, words


def _expand(entry: str) -> list[str]:
    """Every spelling of ``entry`` with each ``{a,b,...}`` group replaced by one of its parts."""
    groups = re.split(r"\{([^{}]*)\}", entry)  # literal, group, literal, group, ..., literal
    options = [[part] if i % 2 == 0 else part.split(",") for i, part in enumerate(groups)]
    return ["".join(choice).strip() for choice in itertools.product(*options)]


def _shadows(allowed: str, phrase: str) -> bool:
    """Whether an allowed entry can take a match from ``phrase`` (contains it or overlaps its head)."""
    return phrase in allowed or any(phrase.startswith(allowed[i:]) for i in range(1, len(allowed)))


class SpamFilter:
    """Finds the spam category of a title. Thread-safe; the pinyin, homophone and initials
    indexes are built on the first title that needs them."""

    def __init__(self, phrases: Mapping[str, Iterable[str]], words: Mapping[str, Iterable[str]],
                 allowed: Iterable[str], broad: Mapping[str, Iterable[str]] | None = None) -> None:
        """Build from spam phrases and whole-word terms per category, allowed entries, and the
        broad lists' phrases per category (see ``_Broad``)."""
        broad = broad or {}
        unknown = (set(phrases) | set(words) | set(broad)) - set(SPAM_CATEGORIES)
        if unknown:
            raise TaommError(f"unknown spam categories {sorted(unknown)} (known: {SPAM_CATEGORIES})")
        self._phrase_category: dict[str, str] = {}
        gaps: list[tuple[str, str]] = []
        for category, entries in phrases.items():
            for entry in entries:
                if _GAP in entry:
                    gaps.append((category, entry))
                else:
                    self._phrase_category.setdefault(squeeze(entry), category)
        self._phrase_category.pop("", None)
        allowed = {squeeze(a) for a in allowed} - {""}
        self._gaps = _Gaps(gaps, allowed)
        self._broad = _Broad(broad, allowed)
        clash = allowed & set(self._phrase_category)
        if clash:
            raise TaommError(f"entries both allowed and spam: {sorted(clash)}")
        # Only allowed entries that can shadow a spam phrase need to be in the alternation.
        self._phrase_category.update(
            (a, "") for a in allowed if any(_shadows(a, p) for p in self._phrase_category if p))
        self._phrases = re.compile(_trie_regex(self._phrase_category))
        self._anchors = _char_class(_anchor(p) for p, category in self._phrase_category.items() if category)

        self._word_category: dict[str, str] = {}
        for category, entries in words.items():
            for entry in entries:
                self._word_category.setdefault(squeeze(entry), category)
        self._word_category.pop("", None)
        self._word_allowed = {w: tuple(a for a in allowed if w in a) for w in self._word_category}
        # an all-ASCII word is its own anchor: its letters are in most titles
        anchors = {_anchor(w) for w in self._word_category if not w.isascii()}
        self._word_anchors = re.compile("|".join(
            ([f"[{''.join(map(re.escape, sorted(anchors)))}]"] if anchors else [])
            + [re.escape(w) for w in sorted(self._word_category) if w.isascii()]) or "(?!)")
        # every occurrence, overlapping ones included (a lookahead consumes nothing)
        self._word_finder = re.compile(
            "(?=(" + "|".join(map(re.escape, sorted(self._word_category, key=len, reverse=True))) + "))"
            if self._word_category else "(?!)")
        # every literal the rules read, the contact keywords and the parts of gap entries too
        literals = [*(p for p, category in self._phrase_category.items() if category), *self._word_category,
                    *self._broad.phrases()]
        self._homophones = _Homophones(literals)
        self._initials = _Initials(literals)
        self._pinyin = _Pinyin(itertools.chain(
            literals, (squeeze(part) for _, entry in gaps for part in entry.split(_GAP)), _ALIASES, _CONTACT_WORDS),
            self._homophones)

    @classmethod
    @functools.lru_cache(maxsize=1)
    def default(cls) -> SpamFilter:
        """The filter built from the packaged lexicons (built once per process)."""
        folder = resources.files("taomm.resources").joinpath("spam")
        phrases, words = {}, {}
        for category in SPAM_CATEGORIES:
            phrases[category], words[category] = _parse(
                folder.joinpath(f"{category}.txt").read_text("utf-8"))
        allowed, _ = _parse(folder.joinpath("allow.txt").read_text("utf-8"))
        broad = {category: _parse(folder.joinpath("broad", f"{category}.txt").read_text("utf-8"))[0]
                 for category in SPAM_CATEGORIES if folder.joinpath("broad", f"{category}.txt").is_file()}
        return cls(phrases, words, allowed, broad)

    def check(self, text: str, words: Sequence[str] | None = None) -> str | None:
        """The spam category of a title, or None when it is clean.

        ``text`` is normalised as the text pipeline does (NFKC, whitespace collapsed,
        simplified Chinese). ``words`` (the caller's segmentation) is accepted for
        compatibility and not needed: a term found is judged on the segmentation of the
        marked title, which this method makes itself, and only then. Never raises on any string.
        """
        lowered = _lookalike_digits(_digits(_read(text)))
        if _GROUPED_PHONE_RE.search(lowered):
            return "contact"
        marked = _id_digits(mark(lowered))
        views = dict.fromkeys((marked, _despread(marked), _unjoin(marked), _NOISE.sub("", marked)))
        for view in itertools.chain(views, self._readings(marked)):
            category = self._check_view(view) if view else None
            if category:
                return category
        return None

    def _readings(self, marked: str) -> Iterator[str | None]:
        """The marked title read through pinyin, initials and homophones (None where a reading
        finds no term), each built only when the one before it found nothing."""
        if _TWO_LETTERS.search(marked):
            yield self._pinyin.reading(marked)
        if _LETTER_BY_CJK.search(marked):
            yield self._initials.reading(marked)
        # homophones are read across separators (约#泡 is 约泡), on the marked title without its spaces
        joined = marked.replace(" ", "")
        yield self._homophones.reading(joined, _Judge(joined))

    def _check_view(self, view: str) -> str | None:
        squeezed = _squeeze(view)
        judge = _Judge(view)
        if self._anchors.search(squeezed):
            match = self._phrases.search(squeezed)
            while match:
                # the longest phrase here first, then the shorter ones it starts with (色情直播|间
                # does not stand where 色情 does)
                text, resume = match[0], match.start() + 1
                for size in range(len(text), 1, -1):
                    category = self._phrase_category.get(text[:size])
                    if category and judge.stands(text[:size], whole_word=False):
                        return category
                    if category == "":
                        resume = match.start() + size  # an allowed entry covers it
                        break
                # one the judge turned down must not hide a phrase that starts inside it
                # (卖家全家死|光 does not stand, 全家死光 does): search again from its next character
                match = self._phrases.search(squeezed, resume)
        for category, text, first, second in self._gaps.find(squeezed):
            if judge.stands(text, whole_word=False) and judge.stands(first, whole_word=False, part=True) \
                    and judge.stands(second, whole_word=False, part=True):
                return category
        for category, text in self._broad.find(squeezed):
            if judge.stands(text, whole_word=len(text) == 2):
                return category
        if _CONTACT_RE.search(squeezed) or _SPREAD_PHONE.search(view) or _SPREAD_ID.search(view):
            return "contact"
        for match in self._word_finder.finditer(squeezed) if self._word_anchors.search(squeezed) else ():
            term = match[1]
            if any(a in squeezed for a in self._word_allowed[term]):
                continue
            if judge.stands(term, whole_word=True):
                return self._word_category[term]
        return None


class _Cover:
    """Allowed entries that hold a literal of some rule (玩具手枪 holds 手枪): a span of a title
    that one of them covers, and is longer than, is not spam (出售儿童玩具手枪)."""

    def __init__(self, allowed: Iterable[str], literals: Iterable[str]) -> None:
        literals = set(literals)
        covering = [a for a in allowed if any(lit in a and lit != a for lit in literals)]
        self._regex = re.compile(f"(?=({_trie_regex(covering)}))") if covering else None

    def covers(self, squeezed: str, spans: Iterable[tuple[int, int]]) -> bool:
        """Whether an allowed entry in ``squeezed`` covers one of ``spans`` (start, end)."""
        if self._regex is None:
            return False
        spans = tuple(spans)
        for found in self._regex.finditer(squeezed):
            start, end = found.span(1)
            if any(start <= left and right <= end and end - start > right - left for left, right in spans):
                return True
        return False


class _Gaps:
    """Lexicon entries ``a…b``: ``a``, up to ``_GAP_SIZE`` characters, then ``b`` (代开增值税专用
    发票 for 代开…发票, 收购二手银行卡 for 收购…银行卡). The entries a ``{...}`` line expands to
    are matched as one regex of two tries, run on a title only when it holds an anchor character
    of each side, and a match is dropped where an allowed entry covers one of its parts
    (出售儿童玩具手枪: 玩具手枪 covers 手枪)."""

    def __init__(self, gaps: Iterable[tuple[str, str]], allowed: Iterable[str]) -> None:
        seconds: dict[tuple[str, str], set[str]] = {}  # (category, first part) -> second parts
        for category, entry in gaps:
            parts = [squeeze(part) for part in entry.split(_GAP)]
            if len(parts) != 2 or not all(parts):
                raise TaommError(f"a gap entry needs two parts around one {_GAP}: {entry!r}")
            first, second = parts
            seconds.setdefault((category, first), set()).add(second)
        lines: dict[tuple[str, frozenset[str]], list[str]] = {}
        for (category, first), parts in seconds.items():
            lines.setdefault((category, frozenset(parts)), []).append(first)
        # one regex per line, run only on a title holding an anchor of its first parts and one
        # of its second parts: most titles hold neither pair for any line and skip them all
        # every first part (overlapping ones too), then every second part within reach of it:
        # the nearest second part may be turned down by the judge (店主|是狗|东西) where a longer
        # one stands (店主是|狗东西)
        self._lines = [(category, frozenset(map(_anchor, firsts)), frozenset(map(_anchor, parts)),
                        re.compile(_trie_regex(firsts)), re.compile(_trie_regex(parts)))
                       for (category, parts), firsts in lines.items()]
        literals = {first for firsts in lines.values() for first in firsts} | {p for _, ps in lines for p in ps}
        self._cover = _Cover(allowed, literals)

    def find(self, squeezed: str) -> Iterator[tuple[str, str, str, str]]:
        """(category, matched text, first part, second part) of each match not allowed, line by line."""
        chars = set(squeezed)
        for category, first_anchors, second_anchors, firsts, seconds in self._lines:
            if chars.isdisjoint(first_anchors) or chars.isdisjoint(second_anchors):
                continue
            first = firsts.search(squeezed)
            while first:
                for at in range(first.end(), min(first.end() + _GAP_SIZE + 1, len(squeezed))):
                    second = seconds.match(squeezed, at)
                    if second and not self._cover.covers(squeezed, (first.span(), second.span())):
                        yield category, squeezed[first.start():second.end()], first[0], second[0]
                first = firsts.search(squeezed, first.start() + 1)


class _Broad:
    """The broad lists' phrases (``broad/<category>.txt``): thousands of terms reviewed one by one
    from the large public sensitive-word lists, each matched where it stands in the squeezed
    title and judged like a phrase (a two-character one as a whole word).

    They are too many for the phrase alternation, which tries every first character at each
    position, so each phrase is indexed by its least common character: a title is searched for
    those characters only (one character class), and each one found is checked against the few
    phrases it anchors, at their offsets: a common anchor costs a few more checks, not a scan. An
    allowed entry covering a match clears it, as for the phrases."""

    def __init__(self, broad: Mapping[str, Iterable[str]], allowed: Iterable[str]) -> None:
        self._by_anchor: dict[str, list[tuple[str, int, str]]] = {}
        seen: set[str] = set()
        for category, entries in broad.items():
            for entry in entries:
                # as the caller normalises a title: the broad lists keep their sources' traditional
                # characters (幹你老母), which a title never holds after it
                phrase = squeeze(normalize_title(entry))
                if len(phrase) < 2 or phrase in seen:
                    continue
                seen.add(phrase)
                # the least common character, a CJK one where there is one (pornhub, yue炮)
                anchor = max(phrase, key=lambda char: (not char.isascii(), _RANK.get(char, len(_RANK))))
                self._by_anchor.setdefault(anchor, []).append((phrase, phrase.index(anchor), category))
        self._anchors = _char_class(self._by_anchor)
        self._cover = _Cover(allowed, seen)

    def phrases(self) -> Iterator[str]:
        return (phrase for entries in self._by_anchor.values() for phrase, _, _ in entries)

    def find(self, squeezed: str) -> Iterator[tuple[str, str]]:
        """(category, phrase) of each broad phrase in ``squeezed`` that no allowed entry covers."""
        for found in self._anchors.finditer(squeezed):
            for phrase, offset, category in self._by_anchor[found[0]]:
                start = found.start() - offset
                if start >= 0 and squeezed.startswith(phrase, start) \
                        and not self._cover.covers(squeezed, ((start, start + len(phrase)),)):
                    yield category, phrase


class _Pinyin:
    """Terms with some or all of their characters written in pinyin, as sellers write them to
    slip past a word list (du博, 百jia乐, bing毒, YI夜QING, dubo, wai围nvbao夜).

    A marked title is read as units: each CJK character, and each syllable of a Latin word that
    splits into pinyin syllables (longest first: ``nvbao`` is nv|bao, ``nike`` ni|ke). A term
    is found where each of its characters is written as itself or as its toneless pinyin (ü
    as v or u), at least one in pinyin. Found terms are then read as their characters and the
    title so read is checked again, the judge and the allowed entries included. To keep a
    brand or a word in Latin letters from reading as a term by chance:

    - a Latin word counts only when found terms cover all of its syllables (``modu博`` holds
      no 赌博: mo is left over);
    - pinyin touches the characters written beside it (``Yin 水`` is a brand and a toner, not
      ``yin水``);
    - a term written in pinyin throughout needs four letters or more (no ``ma``, ``dj``).

    The index (each pair of neighbouring syllables of each term) is built on the first title
    that holds a Latin word."""

    def __init__(self, terms: Iterable[str], homophones: _Homophones) -> None:
        self._terms = sorted(t for t in set(terms) if len(t) >= 2 and all(map(_is_cjk, t)))
        self._homophones = homophones
        self._pairs: dict[tuple[str, str], list[tuple[str, tuple[str, ...], int]]] | None = None
        self._splits: dict[str, tuple[str, ...] | None] = {}  # Latin word -> its syllables

    def _index(self) -> dict[tuple[str, str], list[tuple[str, tuple[str, ...], int]]]:
        if self._pairs is None:
            pairs: dict[tuple[str, str], list[tuple[str, tuple[str, ...], int]]] = {}
            for term in self._terms:
                spelled = _spelled(term)
                if len(spelled) != len(term) or not all(s.isascii() and s.isalpha() for s in spelled):
                    continue
                for k in range(len(term) - 1):
                    pairs.setdefault(spelled[k:k + 2], []).append((term, spelled, k))
            self._pairs = pairs
        return self._pairs

    def reading(self, marked: str) -> str | None:
        """``marked`` with the pinyin of each term found read as the term's characters, or None
        where no term is found."""
        pairs = self._index()
        region = self._region(marked)
        if region is None:
            return None
        units = self._units(marked, *region)
        found: set[tuple[int, str, tuple[str, ...]]] = set()
        for at, unit in enumerate(units):
            if unit.word < 0:
                continue
            for left in (at - 1, at):
                if left < 0 or left + 1 >= len(units):
                    continue
                for first in units[left].sounds:
                    for second in units[left + 1].sounds:
                        for term, spelled, k in pairs.get((first, second), ()):
                            start = left - k
                            if self._fits(units, start, term, spelled) and not self._homophones.plain_word(
                                    term, "".join(u.text if u.word < 0 else "?" for u in units[start:start + len(term)])):
                                found.add((start, term, spelled))
        if not found:
            return None
        covered = {at for start, term, _ in found for at in range(start, start + len(term))}
        partial = {unit.word for at, unit in enumerate(units) if unit.word >= 0 and at not in covered}
        edits: dict[int, str] = {}
        for start, term, _ in sorted(found, key=lambda f: (-len(f[1]), f[0])):
            span = range(start, start + len(term))
            if any(units[at].word in partial for at in span) or any(at in edits for at in span):
                continue
            edits.update((at, term[at - start]) for at in span if units[at].word >= 0)
        if not edits:
            return None
        out, last = [], 0
        for at in sorted(edits):
            out += [marked[last:units[at].start], edits[at]]
            last = units[at].end
        return "".join(out) + marked[last:]

    def _region(self, marked: str) -> tuple[int, int] | None:
        """Where in ``marked`` a term may be written in pinyin: around each run of Latin words
        whose syllables (or a syllable and a character beside it) are neighbours in some term;
        None where there is no such run, as in most titles (``ml``, ``xl``, most brands)."""
        pairs, lo, hi = self._index(), -1, -1
        for run in _LATIN_WORDS.finditer(marked):
            sounds = [s for word in run[0].split(" ") for s in (self._split(word) or ("",))]
            if run.start() and _is_cjk(marked[run.start() - 1]):
                sounds = [_sounds(marked[run.start() - 1]), *sounds]
            if run.end() < len(marked) and _is_cjk(marked[run.end()]):
                sounds.append(_sounds(marked[run.end()]))
            sounds = [(s,) if isinstance(s, str) else s for s in sounds]
            if any((a, b) in pairs for i in range(len(sounds) - 1) for a in sounds[i] for b in sounds[i + 1]):
                lo, hi = (run.start() if lo < 0 else lo), run.end()
        if lo < 0:
            return None
        return max(0, lo - _TERM_REACH), min(len(marked), hi + _TERM_REACH)

    def _units(self, marked: str, lo: int, hi: int) -> list[_Unit]:
        """The units of ``marked[lo:hi]``: CJK characters (their readings), pinyin syllables (their
        Latin word's number) and anything else as a unit that matches nothing."""
        units: list[_Unit] = []
        gap, words = False, 0
        for match in _UNIT.finditer(marked, lo, hi):
            text = match[0]
            if text == " ":
                gap = True
                continue
            if _is_cjk(text[0]):
                units.append(_Unit(match.start(), match.end(), text, _sounds(text), -1, gap))
            elif text.isalpha() and (syllables := self._split(text)):
                at = match.start()
                for syllable in syllables:
                    units.append(_Unit(at, at + len(syllable), syllable, (syllable,), words, gap))
                    at, gap = at + len(syllable), False
                words += 1
            else:
                units.append(_Unit(match.start(), match.end(), text, (), -1, gap))
            gap = False
        return units

    def _split(self, word: str) -> tuple[str, ...] | None:
        """``word`` as pinyin syllables, longest first, or None where it is not pinyin (kept:
        a title's Latin words are mostly the same few)."""
        if word in self._splits:
            return self._splits[word]
        if len(self._splits) > 65536:
            self._splits.clear()
        self._splits[word] = split = _split_syllables(word) if 2 <= len(word) <= _PINYIN_LETTERS else None
        return split

    @staticmethod
    def _fits(units: list[_Unit], start: int, term: str, spelled: tuple[str, ...]) -> bool:
        """Whether ``term`` is written at unit ``start``, in characters and pinyin."""
        if start < 0 or start + len(term) > len(units):
            return False
        letters = 0
        for i, char in enumerate(term):
            unit = units[start + i]
            if unit.word >= 0:
                if unit.sounds[0] != spelled[i]:
                    return False
                letters += unit.end - unit.start
            elif unit.text != char:
                return False
            if i and unit.gap and (unit.word >= 0) != (units[start + i - 1].word >= 0):
                return False  # pinyin and characters touch: "du博", not "du 博"
        if not letters:
            return False
        return letters < sum(map(len, spelled)) or letters >= 4


class _Homophones:
    """Terms of three characters or more written with homophones for some of their characters
    (海洛引 for 海洛因, 法抡大法 for 法轮大法, 代开发漂 for 代开发票, 出售仿真手锵), a digit alone
    read as the sound of its numeral (1夜情, 9评共产党, 笑7批发).

    Each CJK character of a marked title is read as its sound (its most common toneless
    reading, ü as u: one code per syllable, by one ``str.translate``), and the terms' sounds are
    looked up there by their first three (a term's sounds by its characters' most common
    readings and by its own reading, 银行 as yin hang too), the longest at each position. A term so found that is not written as itself is
    read as its characters and the title is checked again; it counts only where no dictionary
    word of the title as written straddles either end of it (蓝天|下面 does not read 舔下面). Two
    characters are too few: a sound pair is shared by too many words. Built on first use."""

    def __init__(self, terms: Iterable[str]) -> None:
        terms = set(terms)
        self._terms = sorted(t for t in terms if len(t) >= 2 and all(map(_is_cjk, t)))
        # searched: three characters or more, digits and Latin letters kept as written (64式手强)
        self._searched = sorted(t for t in terms if sum(map(_is_cjk, t)) >= _HOMOPHONE_CHARS
                                and all(_is_cjk(c) or (c.isascii() and c.isalnum()) for c in t))
        self._table: dict[int, str] | None = None
        self._by_sound: dict[str, list[str]] = {}  # sounds -> terms
        self._by_start: dict[str, list[str]] = {}  # first three sounds -> sounds, longest first
        self._innocent: dict[str, list[str]] = {}  # sounds of terms that are not words -> words
        self._counts: dict[str, int] = {}  # how common each character is
        self._digits: dict[str, str] = {}  # digit -> the sound of its numeral

    def _build(self) -> dict[int, str]:
        if self._table is None:
            from pypinyin.pinyin_dict import pinyin_dict

            codes: dict[str, str] = {}

            def code(syllable: str) -> str:
                syllable = _toneless(syllable)
                return codes.setdefault(syllable, chr(0xF0000 + len(codes)))
            table = {point: code(readings.split(",")[0]) for point, readings in pinyin_dict.items()
                     if 0x3400 <= point <= 0x9FFF}
            self._digits = {digit: table[ord(numeral)]
                            for digit, numeral in zip("0123456789", "零一二三四五六七八九", strict=True)}
            by_sound: dict[str, list[str]] = {}
            for term in self._searched:
                # by the characters' most common readings, and by the term's own (银行: yin hang)
                spoken = "".join(map(code, _spelled(term))) if all(map(_is_cjk, term)) else ""
                for sound in dict.fromkeys((term.translate(table), spoken)):
                    if len(sound) == len(term):
                        by_sound.setdefault(sound, []).append(term)
            by_start: dict[str, list[str]] = {}
            for sound in sorted(by_sound, key=len, reverse=True):
                by_start.setdefault(sound[:_HOMOPHONE_CHARS], []).append(sound)
            # built in locals, then published with the table last: a thread that sees the table
            # sees the rest (two threads building at once each build the same)
            self._innocent, self._counts = _dictionary(self._terms, table)
            self._by_sound, self._by_start = by_sound, by_start
            self._table = table
        return self._table

    def _disguised(self, written: str, term: str) -> bool:
        """Whether ``written`` may be ``term`` in disguise: not where every character it
        changes is far more common than the term's (送你妈的 is not 送妳妈 written plainly)."""
        counts = self._counts
        return any(counts.get(w, 0) <= _COMMONER * counts.get(t, 0)
                   for w, t in zip(written, term, strict=True) if w != t)

    def plain_word(self, term: str, written: str) -> bool:
        """Whether ``written`` (the characters seen where ``term`` was found, any other character
        where the term's was heard) may as well be a dictionary word of the same sound: one that
        agrees with it wherever it agrees with the term, the term not being a word itself.
        ``tiananmen`` and 天安门 are 天安门, not the list's 天按门; ``erbi`` is 耳鼻; ``操ni妈`` is
        操你妈 (草泥马 differs where it is written)."""
        table = self._build()
        return any(all(w != t or w == d for w, t, d in zip(written, term, word, strict=True))
                   for word in self._innocent.get(term.translate(table), ()))

    def reading(self, marked: str, judge: _Judge) -> str | None:
        """``marked`` with each term written in homophones read as the term, or None where none is."""
        sounds = marked.translate(self._build())
        if _LONE_DIGIT.search(sounds):  # a digit alone says its numeral (1夜情, 9评, 笑7批发)
            sounds = _LONE_DIGIT.sub(lambda digit: self._digits[digit[0]], sounds)
        by_start, edits, size = self._by_start, {}, _HOMOPHONE_CHARS
        for start in [at for at in range(len(sounds) - size + 1) if sounds[at:at + size] in by_start]:
            for sound in by_start[sounds[start:start + size]]:
                end = start + len(sound)
                if not sounds.startswith(sound, start):
                    continue
                terms, written = self._by_sound[sound], marked[start:end]
                # a dictionary word as written is itself (草泥马, the alpaca), not a disguise
                if written not in terms and not _known(written) and self._disguised(written, terms[0]) \
                        and not self.plain_word(terms[0], written) and judge.stands_at(start, end):
                    edits.update((start + i, char) for i, char in enumerate(terms[0]))
                break
        if not edits:
            return None
        return "".join(edits.get(at, char) for at, char in enumerate(marked))


class _Initials:
    """A Latin word of one to four letters standing for the pinyin initials of some of a term's
    characters, with the rest of the term written beside it (钢珠q for 钢珠枪, 五ys十五日 for
    五月三十五日, 出售散dq for 出售散弹枪), read as those characters. The term has three
    characters or more, at least two of them written, and more written than abbreviated
    (``BF代购`` is not 白粉代购, ``TZ机场`` not 梯子机场). Initials of a
    whole term (flg, xzdl) are not read: every product code would be one. Built on first use."""

    def __init__(self, terms: Iterable[str]) -> None:
        self._terms = sorted(t for t in set(terms) if len(t) >= 3 and all(map(_is_cjk, t)))
        self._index: dict[tuple[str, str, str], list[tuple[str, str, str]]] | None = None

    def _build(self) -> dict[tuple[str, str, str], list[tuple[str, str, str]]]:
        if self._index is None:
            index: dict[tuple[str, str, str], list[tuple[str, str, str]]] = {}
            for term in self._terms:
                initials = "".join(syllable[:1] for syllable in _spelled(term))
                if len(initials) != len(term) or not (initials.isascii() and initials.isalpha()):
                    continue
                for i in range(len(term)):
                    for j in range(i + 1, min(len(term), i + _INITIALS) + 1):
                        written = len(term) - (j - i)
                        if written >= 2 and written > j - i:
                            # keyed by the written characters that touch the initials
                            key = (term[i - 1:i], initials[i:j], term[j:j + 1])
                            index.setdefault(key, []).append((term[:i], term[i:j], term[j:]))
            self._index = index
        return self._index

    def reading(self, marked: str) -> str | None:
        """``marked`` with each word of initials read as the characters of a term it completes,
        or None where there is none."""
        index, out, last = self._build(), [], 0
        for word in _INITIALS_WORD.finditer(marked):
            start, end = word.span()
            before, after = marked[:start], marked[end:]
            left = before[-1:] if before and _is_cjk(before[-1]) else ""
            right = after[:1] if after and _is_cjk(after[0]) else ""
            for key in dict.fromkeys(((left, word[0], right), (left, word[0], ""), ("", word[0], right))):
                if key == ("", word[0], ""):
                    continue
                middle = next((m for head, m, tail in index.get(key, ())
                               if before.endswith(head) and after.startswith(tail)), None)
                if middle:
                    out += [marked[last:start], middle]
                    last = end
                    break
        return "".join(out) + marked[last:] if out else None


class _Judge:
    """Whether a term found in a marked title stands as words of its own there (see the
    module docstring); the title is segmented once, on the first question."""

    def __init__(self, view: str) -> None:
        self.view = view
        self._spans: list[tuple[int, int]] | None = None

    def stands(self, term: str, whole_word: bool, part: bool = False) -> bool:
        """Whether ``term`` stands somewhere in the view: as a phrase (no word straddles an
        end), a whole word (not inside a longer one either) or a part of a gap entry (not the
        start of a longer word: 手枪|钻 is a tool; 专用|发票 is still an invoice)."""
        found = False
        for match in _spaced(term).finditer(self.view):
            found = True
            if self._stands_at(match.start(), match.end(), whole_word, part):
                return True
        # not found as written: aliases spread over separators ("v x" for 微信) read it; keep it
        return not found

    def stands_at(self, start: int, end: int) -> bool:
        """Whether what the view holds at ``start:end`` stands as a phrase there."""
        return self._stands_at(start, end, whole_word=False, part=False)

    def _stands_at(self, start: int, end: int, whole_word: bool, part: bool) -> bool:
        view = self.view
        if (start > 0 and _is_word_char(view[start]) and _is_word_char(view[start - 1])) or \
                (end < len(view) and _is_word_char(view[end - 1]) and _is_word_char(view[end])):
            return False
        if " " in view[start:end] and any(len(piece) == 1 for piece in view[start:end].split(" ")):
            return True  # spelled out character by character: written to hide, not by chance
        for left, right in self.spans():
            if part:  # a longer word may end with the part (专用发票), not start with it (手枪钻)
                if (left < start < right != end) or left <= start < end < right or start < left < end < right:
                    return False
                continue
            if left < start < right or (start < left < end < right and not self._runs_on(start, left, end)):
                return False  # a dictionary word straddles an end: 黑色|情侣 for 色情
            # (a longer word that starts with the term, 色情片 for 色情, is the term's own kind)
            if whole_word and left <= start and end <= right and right - left > end - start:
                return False  # inside a longer dictionary word: 大麻哈鱼 for 大麻
        return True

    def _runs_on(self, start: int, left: int, end: int) -> bool:
        """Whether a term is one character and a dictionary word (假|学历) and the word runs on
        into a longer one (假|学历证书): the term still stands. A longer head (成人|电影票)
        does not: 成人电影 is a word pair that a ticket title holds too."""
        from taomm.text.segment import get_segmenter

        return left == start + 1 and end - left >= 2 and get_segmenter().known(self.view[left:end])

    def spans(self) -> list[tuple[int, int]]:
        """(start, end) of each dictionary word of two or more characters in the view."""
        if self._spans is None:
            from taomm.text.segment import get_segmenter

            segmenter = get_segmenter()
            self._spans, offset = [], 0
            for word in segmenter.cut(_encodable(self.view)):
                if len(word) > 1 and segmenter.known(word):
                    self._spans.append((offset, offset + len(word)))
                offset += len(word)
        return self._spans


def _is_cjk(char: str) -> bool:
    return "\u3400" <= char <= "\u9fff" or "\uf900" <= char <= "\ufaff"


def _encodable(text: str) -> str:
    """``text`` as the segmenter can take it: it encodes to UTF-8, which lone surrogates
    cannot survive (each becomes ``?``, one character for one, so offsets hold)."""
    return text.encode("utf-8", "replace").decode("utf-8")


@functools.lru_cache(maxsize=4096)
def _spaced(term: str) -> re.Pattern[str]:
    """``term`` allowing one separator space between its characters (as a marked title has them)."""
    return re.compile(" ?".join(map(re.escape, term)))
