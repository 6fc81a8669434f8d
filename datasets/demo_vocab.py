"""Vocabulary of the demo catalog: products, colours, patterns, styles and their words.

Every product type belongs to one class of the ``taobao33`` taxonomy and has a shape
(drawn by :mod:`taomm.datasets.demo_drawing`), a canonical Chinese name with seller
synonyms, an optional generic noun used by queries (裙 covers 半身裙 and 连衣裙), and the
patterns and styles it can carry. Titles and queries are built from these words only.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Colour:
    name: str  # canonical, e.g. 红色
    synonyms: tuple[str, ...]  # words a seller may write instead
    rgb: tuple[int, int, int]
    english: str


@dataclass(frozen=True)
class Pattern:
    name: str
    synonyms: tuple[str, ...]
    english: str


@dataclass(frozen=True)
class Product:
    key: str  # shape name in demo_drawing
    category_id: int  # taobao33 class id
    name: str  # canonical Chinese name
    synonyms: tuple[str, ...]
    generic: str | None  # generic noun shared by similar products (queries use it)
    english: str
    aspect: float  # width / height of the drawing
    weight: float  # relative frequency in the catalog
    fabric: bool  # takes every pattern (clothes, bags, textiles) or only a few
    styles: tuple[str, ...] = ()
    clothing: bool = False


COLOURS = (
    Colour("红色", ("红色", "红", "大红色"), (214, 32, 40), "red"),
    Colour("粉色", ("粉色", "粉红色", "粉"), (243, 143, 177), "pink"),
    Colour("橙色", ("橙色", "橘色"), (243, 128, 28), "orange"),
    Colour("黄色", ("黄色", "黄"), (242, 204, 36), "yellow"),
    Colour("绿色", ("绿色", "绿"), (36, 142, 66), "green"),
    Colour("蓝色", ("蓝色", "蓝"), (38, 86, 196), "blue"),
    Colour("紫色", ("紫色", "紫"), (128, 56, 168), "purple"),
    Colour("黑色", ("黑色", "黑"), (28, 28, 30), "black"),
    Colour("白色", ("白色", "白"), (246, 246, 244), "white"),
    Colour("灰色", ("灰色", "灰"), (128, 128, 132), "grey"),
    Colour("棕色", ("棕色", "咖啡色"), (118, 72, 38), "brown"),
)

PATTERNS = (
    Pattern("纯色", ("纯色", "素色"), "solid"),
    Pattern("波点", ("波点", "圆点", "波点点"), "polka dot"),
    Pattern("条纹", ("条纹", "竖条纹", "间条"), "striped"),
    Pattern("格子", ("格子", "格纹"), "plaid"),
    Pattern("碎花", ("碎花", "小碎花", "印花"), "floral"),
)
# Hard goods (bottles, fans ...) come mostly plain; the rest of the mass goes to these.
HARD_GOODS_PATTERNS = {"纯色": 0.6, "条纹": 0.2, "波点": 0.2}

STYLES = {
    "荷叶边": ("荷叶边", "木耳边", "ruffle"),
    "百褶": ("百褶", "褶皱", "pleated"),
    "A字": ("A字", "a字", "A-line"),
}

_SKIRT_STYLES = ("荷叶边", "百褶", "A字")

PRODUCTS = (
    Product("tshirt", 0, "T恤", ("T恤", "短袖T恤", "体恤"), "上衣", "T-shirt", 1.0, 6, True, clothing=True),
    Product("shirt", 0, "衬衫", ("衬衫", "衬衣", "长袖衬衫"), "上衣", "shirt", 0.9, 5, True, clothing=True),
    Product("hoodie", 0, "卫衣", ("卫衣", "连帽卫衣"), "上衣", "hoodie", 0.9, 4, True, clothing=True),
    Product("coat", 0, "风衣", ("风衣", "外套", "长款风衣"), "外套", "trench coat", 0.72, 3, True, clothing=True),
    Product("skirt", 1, "半身裙", ("半身裙", "短裙", "半裙"), "裙", "skirt", 1.0, 9, True, _SKIRT_STYLES, True),
    Product("dress", 1, "连衣裙", ("连衣裙", "裙子", "长裙"), "裙", "dress", 0.7, 9, True, _SKIRT_STYLES, True),
    Product("trousers", 2, "长裤", ("长裤", "裤子", "休闲裤"), "裤", "trousers", 0.62, 5, True, clothing=True),
    Product("shorts", 2, "短裤", ("短裤", "热裤"), "裤", "shorts", 1.25, 3, True, clothing=True),
    Product("handbag", 3, "手提包", ("手提包", "女包", "包包"), "包", "handbag", 1.2, 4, True),
    Product("suitcase", 3, "行李箱", ("行李箱", "拉杆箱", "旅行箱"), "箱", "suitcase", 0.62, 2, False),
    Product("backpack", 3, "双肩包", ("双肩包", "背包", "书包"), "包", "backpack", 0.8, 3, True),
    Product("sneaker", 4, "运动鞋", ("运动鞋", "跑鞋", "板鞋"), "鞋", "sneakers", 1.8, 4, True),
    Product("boot", 4, "靴子", ("靴子", "短靴", "马丁靴"), "鞋", "boots", 0.8, 2, True),
    Product("hat", 5, "帽子", ("帽子", "渔夫帽", "遮阳帽"), "帽", "hat", 1.6, 3, True),
    Product("scarf", 5, "围巾", ("围巾", "丝巾"), None, "scarf", 0.45, 2, True),
    Product("chips", 6, "薯片", ("薯片", "袋装薯片", "零食"), None, "crisps", 0.75, 1, False),
    Product("lipstick", 7, "口红", ("口红", "唇膏"), None, "lipstick", 0.35, 2, False),
    Product("perfume", 7, "香水", ("香水", "淡香水"), None, "perfume", 0.8, 1, False),
    Product("bottle", 8, "饮料", ("饮料", "瓶装饮料", "果汁饮料"), None, "bottled drink", 0.38, 1, False),
    Product("chair", 9, "椅子", ("椅子", "餐椅", "靠背椅"), None, "chair", 0.7, 1, True),
    Product("notebook", 10, "笔记本", ("笔记本", "记事本", "本子"), None, "notebook", 0.75, 1, True),
    Product("fan", 11, "电风扇", ("电风扇", "风扇", "落地扇"), None, "electric fan", 0.7, 1, False),
    Product("vase", 12, "花瓶", ("花瓶", "陶瓷花瓶"), None, "vase", 0.6, 1, True),
    Product("cushion", 13, "抱枕", ("抱枕", "靠垫", "靠枕"), None, "cushion", 1.0, 2, True),
    Product("mug", 14, "马克杯", ("马克杯", "水杯", "杯子"), None, "mug", 1.15, 2, True),
    Product("bucket", 15, "水桶", ("水桶", "提水桶"), None, "bucket", 0.9, 1, False),
    Product("storage", 16, "收纳盒", ("收纳盒", "收纳箱", "储物盒"), None, "storage box", 1.4, 1, True),
    Product("bicycle", 17, "自行车", ("自行车", "单车"), None, "bicycle", 1.6, 1, False),
    Product("tent", 18, "帐篷", ("帐篷", "户外帐篷"), None, "tent", 1.4, 1, True),
    Product("lamp", 19, "台灯", ("台灯", "护眼台灯"), None, "desk lamp", 0.7, 1, False),
    Product("teddy", 20, "毛绒熊", ("毛绒熊", "玩偶", "公仔"), None, "teddy bear", 0.8, 1, True),
    Product("socks", 21, "袜子", ("袜子", "中筒袜"), None, "socks", 0.6, 2, True),
    Product("phonecase", 22, "手机壳", ("手机壳", "保护壳"), None, "phone case", 0.5, 3, True),
    Product("headphones", 22, "耳机", ("耳机", "头戴式耳机"), None, "headphones", 1.0, 1, False),
    Product("pillow", 23, "枕头", ("枕头", "枕芯"), None, "pillow", 1.8, 1, True),
    Product("babybottle", 24, "奶瓶", ("奶瓶", "婴儿奶瓶"), None, "baby bottle", 0.45, 1, False),
    Product("pump", 25, "洗发水", ("洗发水", "洗发露"), None, "shampoo", 0.5, 1, False),
    Product("dumbbell", 26, "哑铃", ("哑铃", "健身哑铃"), None, "dumbbell", 2.0, 1, False),
    Product("romper", 27, "婴儿连体衣", ("婴儿连体衣", "宝宝连体衣", "爬服"), None, "baby romper", 0.85, 2, True),
)

PRODUCT_BY_KEY = {p.key: p for p in PRODUCTS}

# Words sellers pad titles with. Legitimate commerce words (包邮, 正品 ...) on purpose: the
# spam filter must keep them.
CLOTHING_FILLERS = ("韩版", "显瘦", "百搭", "宽松", "修身", "气质", "复古", "小清新", "ins风", "网红同款",
                    "学生", "chic", "法式", "高腰")
GENERAL_FILLERS = ("新款", "2020春季新款", "2020夏季新款", "秋冬新款", "包邮", "正品", "时尚", "简约",
                   "特价", "清仓", "爆款", "现货", "实拍", "高品质", "家用", "创意", "官方旗舰店")
AUDIENCE = ("女", "女装", "女士", "男", "男士", "男女同款")

# Ads that take buyers off the platform, fraud and gambling: the catalog's spam titles.
SPAM_PHRASES = {
    "contact": ("加微信{digits}", "加V信{digits}", "联系QQ{digits}", "薇信同号{phone}", "私聊扣扣{digits}",
                "咨询电话{phone}"),
    "fraud": ("代开发票", "刷单返现", "信用卡套现"),
    "gambling": ("网上赌场", "百家乐代理", "时时彩包赢"),
}

# Simplified -> traditional for the characters the catalog's words use, to make
# traditional-script titles (the text pipeline converts them back).
TRADITIONAL = str.maketrans({
    "连": "連", "红": "紅", "蓝": "藍", "绿": "綠", "黄": "黃", "条": "條", "纹": "紋", "点": "點",
    "叶": "葉", "边": "邊", "韩": "韓", "显": "顯", "长": "長", "裤": "褲", "运": "運", "动": "動",
    "围": "圍", "袜": "襪", "机": "機", "壳": "殼", "灯": "燈", "风": "風", "电": "電", "马": "馬",
    "头": "頭", "卫": "衛", "衬": "襯", "时": "時", "简": "簡", "约": "約", "气": "氣", "质": "質",
    "宽": "寬", "松": "鬆", "复": "復", "网": "網", "实": "實", "现": "現", "货": "貨", "邮": "郵",
    "价": "價", "仓": "倉", "双": "雙", "杆": "桿", "丝": "絲", "坚": "堅", "饮": "飲", "笔": "筆",
    "记": "記", "帐": "帳", "绒": "絨", "婴": "嬰", "儿": "兒", "体": "體", "宝": "寶", "单": "單",
    "车": "車", "纳": "納", "储": "儲", "发": "發", "哑": "啞", "铃": "鈴", "纯": "純",
    "装": "裝", "级": "級", "脚": "腳", "带": "帶", "学": "學",
    "礼": "禮", "护": "護", "户": "戶", "爱": "愛", "专": "專",
    "厂": "廠", "极": "極", "这": "這", "门": "門", "万": "萬", "优": "優", "经": "經",
})
