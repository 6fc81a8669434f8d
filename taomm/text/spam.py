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

Before both, a number written in Chinese numerals (一八二七..., 壹叁捌...) is read as digits, and
so are the numerals of an id after a contact word (``微信 dxk壹n〇n伍g``). A third view reads a
single 一 between two characters as a separator (``招一嫖``): 一 is both a common character and
a favourite separator, so only the judge below decides.

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
from collections.abc import Iterable, Iterator, Mapping, Sequence
from importlib import resources

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
    """``text`` as the phrase matcher reads it: lower-cased, separators out, homophones mapped."""
    return _squeeze(mark(text))


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
    """Finds the spam category of a title. Immutable and thread-safe once built."""

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
        lowered = _digits(text.lower())
        if _GROUPED_PHONE_RE.search(lowered):
            return "contact"
        marked = _id_digits(mark(lowered))
        views = dict.fromkeys((marked, _despread(marked), _unjoin(marked)))
        for view in views:
            category = self._check_view(view)
            if category:
                return category
        return None

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

    def find(self, squeezed: str) -> Iterator[tuple[str, str]]:
        """(category, phrase) of each broad phrase in ``squeezed`` that no allowed entry covers."""
        for found in self._anchors.finditer(squeezed):
            for phrase, offset, category in self._by_anchor[found[0]]:
                start = found.start() - offset
                if start >= 0 and squeezed.startswith(phrase, start) \
                        and not self._cover.covers(squeezed, ((start, start + len(phrase)),)):
                    yield category, phrase


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

    def _stands_at(self, start: int, end: int, whole_word: bool, part: bool) -> bool:
        view = self.view
        if (start > 0 and _is_word_char(view[start]) and _is_word_char(view[start - 1])) or \
                (end < len(view) and _is_word_char(view[end - 1]) and _is_word_char(view[end])):
            return False
        if " " in view[start:end]:
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


def _encodable(text: str) -> str:
    """``text`` as the segmenter can take it: it encodes to UTF-8, which lone surrogates
    cannot survive (each becomes ``?``, one character for one, so offsets hold)."""
    return text.encode("utf-8", "replace").decode("utf-8")


@functools.lru_cache(maxsize=4096)
def _spaced(term: str) -> re.Pattern[str]:
    """``term`` allowing one separator space between its characters (as a marked title has them)."""
    return re.compile(" ?".join(map(re.escape, term)))
