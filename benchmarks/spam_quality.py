"""Spam-filter quality and speed on real Taobao titles.

Contract (DESIGN.md section 4, the spam-filter and hardening issues): at most 1% of real
titles flagged (the shared data's at 0), recall >= 95% per category on real titles with
obfuscated spam phrases injected, at most 5% of legitimate look-alikes flagged, all demo
catalog spam flagged with its category and no clean demo title flagged, and <= 10 µs per title
on one core. The baseline is a naive loop of ``in`` over every phrase of the lexicons, on the
same titles in the same run.

Twenty-one phrase sets (``ROUNDS``) are injected, each phrase disguised one random way of ``WAYS``: ``SPAM`` (the
phrases the lexicons were curated with), then sets each written before a round of changes
and measured on the code before it: ``HELD_OUT`` (64.5% then), ``FRESH`` (95.9%), ``LATER``
(87.1%), ``FINAL`` (79.8%), ``DECEMBER`` (54.8%, look-alikes 0 of 33; it also brought six
obfuscation kinds: traditional characters, zero-width joins, circled letters and digits, numbers
in Chinese numerals, a different separator at each gap, characters in brackets) and
``LATE_DECEMBER`` (written with DECEMBER, run once after that round's changes: 92.5%, look-alikes
1 of 34), then ``EVENING`` (written after that round, 66.7% on its code, look-alikes 0 of 30) and
``NIGHT`` (written before the gap classes, run once after them: 74.6%, look-alikes 0 of 30);
``CLOSING`` was written on the final code of its round and run once (77.8%, 1 of 30). ``DAWN``
(written at the start of the next round, 80.7% on the code before it, look-alikes 0 of 30) led that
round's changes; ``MORNING`` was written after DAWN's first run, before the round's code was
final, and run once on it (61.8%, look-alikes 0 of 30); its misses then led a few more classes.
``NOON`` was written on the code after those and run once on it (49.4%, look-alikes 0 of 30). ``DUSK`` was written by a separate agent from its own knowledge, without the lexicons or any word list in view: 81.1% on the code before the broad lists (``spam/broad/``, terms reviewed one by one from the large public lists), 85.9% after them and the round's contact forms, three of which its own contact misses showed (look-alikes 0 of 40 throughout). Five more sets were written the same way by other agents (``TWILIGHT``, ``MIDNIGHT``, ``DAYBREAK``, ``SUNRISE``, ``VESPER``), each run first on the code of its round: 74.2%, 84.8%, 68.9%, 78.6% and 76.2% (71.1%, 52.3%, 63.0% and 54.1% for the last four on the code this round started from); 0 of each one's 40 look-alikes flagged. ``ZENITH`` and ``AURORA`` were written the same way for the pinyin and homophone round and run first on the code before it: 77.3% and 88.8% (look-alikes 0 and 1 of 40). That round added nine obfuscation kinds of the benchmark's own (pinyin, homophone characters, look-alike letters, digit look-alikes, noise typed into a word, doubled characters, emoji words, radical forms, right-to-left text), after 29 kinds written by an agent showed them missed. ``OTHER_DOMAINS`` are ordinary titles outside cosmetics that hold the words the
lexicon classes are built from, used innocently. Each set's misses then shaped the next round, so only those
first figures are clean held-out ones; write a new set before the next change. Recall is reported per category, per phrase set and per
obfuscation kind. The look-alike sets (``LOOK_ALIKES``, ``FRESH_LOOK_ALIKES``,
``LATER_LOOK_ALIKES``, ``FINAL_LOOK_ALIKES``, ``DECEMBER_LOOK_ALIKES``, ``LATE_DECEMBER_LOOK_ALIKES``, ``EVENING_LOOK_ALIKES``, ``NIGHT_LOOK_ALIKES``, ``CLOSING_LOOK_ALIKES``, written in the same rounds) are legitimate titles
that hold a flagged term only across a word boundary, or name a brand, snack, colour or toy.

    python benchmarks/spam_quality.py [--per-category 400] [--seed 0]
"""

from __future__ import annotations

import argparse
import functools
import json
import random
import re
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path

from taomm.text.normalize import normalize_title
from taomm.text.segment import segment
from taomm.text.spam import SPAM_CATEGORIES, SpamFilter

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
TITLES = DATA / "real-titles" / "product1m_dev.txt"
CAPTIONS = (DATA / "coco-cn" / "coco-cn_ext.icap2020.txt", DATA / "flickr30k-cn-sample" / "captions.tsv")

# Spam phrases to inject, per category; {digits}, {phone} and {id} are filled at random.
SPAM = {
    "porn": ("裸聊", "约炮", "一夜情", "色情网站", "援交妹", "招嫖", "小姐上门", "成人电影", "黄色网站",
             "春药", "迷情水", "卖淫", "楼凤", "无码视频"),
    "politics": ("法轮功", "法轮大法好", "李洪志", "大纪元", "六四事件", "天安门屠杀", "九评共产党",
                 "推翻共产党", "达赖喇嘛", "东突厥斯坦", "翻墙软件", "科学上网"),
    "terror": ("出售枪支", "炸药", "雷管", "自制炸弹", "燃烧弹", "猎枪", "气枪出售", "钢珠枪", "军用手枪",
               "64式手枪", "恐怖袭击", "TNT炸药", "管制刀具", "弹簧刀", "麻醉枪"),
    "drugs": ("冰毒", "海洛因", "摇头丸", "K粉", "氯胺酮", "大麻烟", "可卡因", "吗啡", "罂粟壳", "迷药",
              "迷幻药", "听话水", "失身粉", "三唑仑", "笑气"),
    "gambling": ("网上赌场", "百家乐代理", "时时彩包赢", "六合彩", "网络赌博", "足球投注", "真人荷官",
                 "澳门新葡京", "北京赛车PK10", "幸运飞艇", "博彩", "扑克透视"),
    "contact": ("加微信{id}", "加V信{digits}", "联系QQ{digits}", "薇信同号{phone}", "私聊扣扣{digits}",
                "咨询电话{phone}", "微信号{id}", "VX:{id}", "+V {digits}", "企鹅号{digits}", "手机{phone}",
                "{phone}"),
    "fraud": ("代开发票", "刷单返现", "信用卡套现", "代开增值税发票", "兼职刷单", "花呗套现", "刷信誉",
              "高仿假币", "办假证", "出售银行卡", "无抵押贷款"),
    "abuse": ("傻逼", "操你妈", "狗日的", "王八蛋", "婊子"),
}

# Written for this benchmark, not used to curate the lexicons: offers without spaces, slang,
# contact keywords spelled other ways.
HELD_OUT = {
    "porn": ("同城约炮服务", "激情裸聊直播", "成人影片下载", "色情直播间", "援交学生妹", "招嫖广告", "一夜情交友"),
    "politics": ("法轮大法好", "退党保平安", "打倒共产党", "六四屠杀真相", "翻墙软件下载", "大纪元时报"),
    "terror": ("出售仿真手枪", "手枪出售", "卖猎枪", "出售子弹", "狙击步枪批发", "雷管出售", "自制炸药配方",
               "手榴弹批发", "求购气步枪", "低价出售钢珠枪", "弓弩出售"),
    "drugs": ("出售冰毒", "麻古批发", "k粉货到付款", "大麻叶出售", "卖冰毒", "摇头丸批发", "曲马多出售",
              "三唑仑迷药", "低价海洛因", "代购摇头丸"),
    "gambling": ("网赌平台", "线上百家乐", "足彩内幕", "赌球平台开户", "六合彩特码", "时时彩计划", "网络赌博平台"),
    "contact": ("溦信{id}", "卫芯{id}", "嶶鑫号{id}", "V芯{digits}", "wei信 {id}", "扣Q {digits}", "威芯同号{phone}",
                "加 V {id}", "电话 {phone}", "薇 {id}", "球球{digits}", "私聊+V{digits}"),
    "fraud": ("代开普通发票", "刷单兼职日结", "信用卡套现秒到", "高仿人民币", "办假驾照", "网贷黑户秒批", "出售银行卡四件套"),
    "abuse": ("傻逼卖家", "操你妈的", "你妈死了", "王八蛋店家"),
}

# Written after the filter's code and lexicons were final and never used to change them: the
# honest held-out figure.
FRESH = {
    "porn": ("约炮软件", "裸聊一对一", "色情小电影", "招嫖服务", "援交女大学生", "成人视频免费看", "一夜情约会"),
    "politics": ("法轮功真相", "李洪志师父", "九评共产党全文", "台独分子", "翻墙梯子推荐"),
    "terror": ("卖手枪", "出售步枪子弹", "枪支弹药批发", "炸药出售", "钢珠枪低价", "自制燃烧瓶", "弓弩批发"),
    "drugs": ("冰毒出售", "出售k粉", "卖大麻", "海洛因批发", "迷幻药代购", "笑气批发", "摇头丸货到付款"),
    "gambling": ("百家乐平台", "网上赌博开户", "时时彩稳赚", "六合彩开奖", "体育投注平台", "真人荷官在线"),
    "contact": ("徾信{id}", "微芯{id}", "威信号 {id}", "QQ号{digits}", "扣扣群{digits}", "加V:{id}", "tel{phone}",
                "手机号 {phone}", "v信{id}"),
    "fraud": ("信用卡代还套现", "花呗提现", "代开专用发票", "兼职刷单", "假证办理", "出售身份证"),
    "abuse": ("傻逼商家", "草你妈", "狗日的卖家"),
}
FRESH_LOOK_ALIKES = (
    "紫色情侣卫衣", "咖啡色情侣拖鞋", "金色情人节玫瑰", "奶香蛋黄片", "搞笑气氛道具", "消毒品类齐全",
    "大麻将凉席", "广博彩色便签", "香港独家代理", "清洗钱夹", "出口交流发电机", "红色视频线",
    "黄色视频线HDMI", "蓝色情侣款手表", "粉色情人节气球", "麻辣大麻花 500g", "超大麻袋 编织", "六合彩钢板",
    "美军刺绣徽章", "海军刺绣帽", "银色情侣手链", "灰色情绪", "白色情调", "红色情怀", "卫星电视锅",
    "伟星管件", "微星显卡 rtx3060", "维新派", "唯心主义 书",
)
# Written in a later session before the filter was changed again; its misses then led to the
# "…" gap entries, the adult-media and cash-out lexicon lines and "V:" (recall 87.1% before).
LATER = {
    "porn": ("约炮神器", "裸聊视频", "成人影院", "黄色小视频", "援交妹妹", "小姐上门服务"),
    "politics": ("法轮功学员", "台独万岁", "六四真相", "推翻共产党"),
    "terror": ("出售手枪", "子弹批发", "雷管炸药", "卖气枪", "手榴弹出售"),
    "drugs": ("冰毒货到付款", "大麻种子出售", "k粉批发", "代购冰毒", "摇头丸出售"),
    "gambling": ("百家乐开户", "六合彩资料", "网上赌场注册", "时时彩平台"),
    "contact": ("加微{id}", "V:{id}", "威信{id}", "徽信号{id}", "薇芯{id}", "电话{phone}"),
    "fraud": ("代开增值税专用发票", "信用卡提现", "刷单兼职", "办理假证", "出售假币"),
    "abuse": ("傻逼玩意", "操你妈逼", "狗日的商家"),
}
# Written after those changes and run once (recall 79.8%, look-alikes 2 of 23: the clean held-out
# figures of that session); its misses then led to class-level lines (curses on a mother, calls
# to overthrow, home-made weapons, adult-film slang, toy guns allowed), so it is a build set now.
FINAL = {
    "porn": ("同城交友约炮", "真人裸聊", "成人小电影", "午夜福利视频", "av在线观看", "色情片资源"),
    "politics": ("法轮大法", "台独", "推翻政府", "天安门事件真相"),
    "terror": ("出售猎枪", "自制手枪", "枪支配件出售", "炸药配方", "钢珠枪出售"),
    "drugs": ("冰毒出售", "卖k粉", "麻古", "海洛因货到付款", "出售摇头丸", "大麻烟出售"),
    "gambling": ("网上百家乐", "赌博网站", "六合彩投注", "时时彩代理", "澳门赌场"),
    "contact": ("加微信:{id}", "VX{id}", "扣扣{digits}", "联系电话{phone}", "薇{id}", "加QQ{digits}"),
    "fraud": ("代开各种发票", "刷单返佣", "花呗取现", "假币出售", "办理假文凭", "银行卡出售"),
    "abuse": ("傻逼客服", "操你妈的", "滚你妈的"),
}
FINAL_LOOK_ALIKES = (
    "黄色网兜 收纳", "金色情侣钥匙扣", "米黄色情侣T恤", "豆沙色情侣外套", "红色视频线 1.5米",
    "酸辣大麻花", "原味蛋黄片 100g", "老式大麻花", "枪灰色 手机壳", "玩具冲锋枪 电动",
    "六合彩钢房", "广博彩虹便签", "整套现代家具", "雨刷单只装", "爆笑气球", "成人纸尿裤 L码",
    "成人牙刷 软毛", "毒品检测试纸", "微信支付贴纸 收款码", "维信诺 OLED屏", "激情四射 T恤",
    "咖啡色情侣杯", "白色情书信封",
)
# Written on 2026-12-03 before any change of that session and run on the code as it stood:
# other phrasing and slang, weapons and drugs by street names, contact offers worded freely.
DECEMBER = {
    "porn": ("同城约会上门服务", "黄片资源分享", "看片网站免费", "激情视频聊天", "包夜小姐", "卖淫嫖娼",
             "特殊服务上门按摩", "裸体直播"),
    "politics": ("法轮功学员证词", "共产党下台", "藏独分子", "疆独组织", "六四学运", "民运人士声明"),
    "terror": ("出售真枪", "气狗出售", "猎枪子弹批发", "火药枪配件", "制作炸弹教程", "一手货源枪支",
               "弩箭批发", "军用匕首出售", "仿真手雷 可爆"),
    "drugs": ("冰妹陪玩", "麻果出售", "大麻电子烟", "依托咪酯", "太空油 上头", "LSD邮票", "神仙水迷药",
              "冰壶溜冰工具"),
    "gambling": ("百家乐技巧稳赢", "外围赌球", "真钱棋牌提现", "老虎机在线玩", "博彩平台注册", "赌场开户送彩金",
                 "彩票内幕计划"),
    "contact": ("加我V{id}", "➕扣{digits}", "私信微{id}", "威❤{id}", "联系方式:{phone}", "tel:{phone}",
                "微:{id}", "加vx {id}", "拿货找我{phone}", "q群{digits}"),
    "fraud": ("代办信用卡", "黑户贷款秒批", "征信修复", "代刷银行流水", "收购银行卡", "一比一高仿假钞",
              "身份证买卖", "代考包过", "假发票出售"),
    "abuse": ("你妈逼", "傻x店家", "脑残卖家", "sb客服", "cnm垃圾店"),
}
DECEMBER_LOOK_ALIKES = (
    "SK-II神仙水 230ml", "冰糖葫芦 山楂", "溜冰鞋 儿童 初学者", "K金项链 18k", "摇头娃娃 车载摆件",
    "德州扑克 筹码 套装", "老虎机 儿童 存钱罐", "麻将机 全自动 静音", "军绿色情侣夹克", "发票夹 收纳",
    "增值税发票打印机", "身份证读卡器", "银行卡套 卡包", "裸色 口红", "子弹头 口红", "炸弹 浴球 泡澡",
    "爆炸盐 洗衣 去渍", "枪色 金属 耳钉", "狙击手 模型 手办", "小姐姐 同款 连衣裙", "上门安装 服务",
    "按摩椅 全身 家用", "新疆独特风味 葡萄干", "收藏独家版 邮票", "威信县 特产 天麻", "薇诺娜 舒敏保湿霜",
    "微单相机 a6400 套机", "电话手表 儿童 4G", "傻瓜相机 胶片", "小狗日记 儿童绘本", "操作台 不锈钢",
    "甲鱼 王八 鲜活", "冰壶 运动 玩具",
)
# Written in the same session as DECEMBER, before any change, and run once after them all: the
# session's clean held-out figure (92.5%, look-alikes 1 of 34: 百家乐 积木). Its misses then
# led to 加Q, 你妈的 before an insult, a bracketed V:, a gap between a game and 真钱, and 假|学历证书.
LATE_DECEMBER = {
    "porn": ("附近美女约见面", "成人黄色网址", "真人秀裸聊室", "上门外围女", "酒店上门服务小妹", "看av片网址",
             "一对一脱衣视频", "情色电影在线"),
    "politics": ("打倒习近平", "中共必亡", "法轮大法弟子", "天灭中共", "港独", "反共复国"),
    "terror": ("枪支出售", "出售散弹枪", "自制手雷方法", "弩弓出售", "订购军用枪", "出售手枪零件",
               "恐怖分子招募", "出售黑火药"),
    "drugs": ("冰毒批发", "出售麻古", "K粉邮寄", "大麻种植技术", "海洛因出售", "卖摇头丸", "迷奸药出售",
              "γ羟基丁酸出售"),
    "gambling": ("在线真人赌场", "网赌注册送钱", "足球赌博网站", "时时彩包中", "百家乐平台代理", "六合彩内部资料",
                 "老虎机游戏真钱"),
    "contact": ("加微X{id}", "薇❤信{id}", "扣扣号:{digits}", "加Q{digits}", "联系我:{phone}", "V❤:{id}",
                "电话/微信同号{phone}", "vx号{id}", "加我扣扣{digits}"),
    "fraud": ("办理信用卡套现", "出售假身份证", "代开各类发票", "网络刷单兼职", "贷款无需征信", "买卖银行卡",
              "高仿人民币出售", "假学历证书办理"),
    "abuse": ("傻逼老板", "草泥马卖家", "垃圾商家去死", "狗东西客服", "sb店家", "你妈的垃圾"),
}
LATE_DECEMBER_LOOK_ALIKES = (
    "金色情侣对戒 925银", "湖蓝色情侣T恤", "港式独家奶茶粉", "中国风 国画 挂画", "法式轮廓 连衣裙", "共产党员 徽章 胸针",
    "玩具枪 水弹 男孩", "枪黑色 钛钢手链", "冰箱贴 磁贴", "麻古典 木质 摆件", "K歌 麦克风 手机", "大麻花 袋装",
    "迷你药盒 便携", "时时彩色铅笔", "六合彩色木门", "百家乐 积木 拼装", "德州扑克桌布", "老虎机 儿童 玩具",
    "信用卡 收纳包", "身份证 保护套", "发票 打印纸 针式", "刷毛 单肩包",
    "假发 女 长发", "银行卡 卡套 透明", "傻瓜 相机 胶卷", "狗 衣服 泰迪", "垃圾桶 家用 带盖", "小姐姐 同款 汉服",
    "上门 取件 快递袋", "成人 纸尿片 L", "av接口 转换线", "qq星 奶粉", "微单 镜头 保护膜", "电话机 座机 家用",
)
# Written after the December round's changes and run once on that code: 66.7% (porn 36.0,
# politics 70.2, terror 44.0, drugs 88.2, gambling 83.8, contact 96.8, fraud 47.0, abuse 67.5%),
# look-alikes 0 of 30. Its misses (a modifier between verb and goods: 收购二手银行卡; hooks:
# 约妹子上门; slang: 菠菜平台, G水) led to gap classes, whose parts must stand as words.
EVENING = {
    "porn": ("免费黄色电影网", "约妹子上门", "美女主播脱光", "深夜福利群", "成人av下载", "找小姐服务", "援交少女",
             "性爱视频分享"),
    "politics": ("共产党是邪教", "习近平去死", "支持台湾独立", "六四天安门大屠杀", "法轮大法救度众生", "中共倒台在即"),
    "terror": ("出售猎枪子弹", "买枪找我", "仿真枪改装实弹", "弓弩麻醉箭出售", "炸药雷管批发", "自制燃烧弹教程",
               "军用刺刀出售"),
    "drugs": ("冰毒出售货到付款", "大麻叶子出售", "K粉冰毒批发", "摇头丸邮寄", "海洛因白粉", "迷药无色无味", "G水出售",
              "笑气气弹批发"),
    "gambling": ("菠菜平台推荐", "网赌上岸", "百家乐必胜技巧", "棋牌游戏可提现", "足球外围投注", "时时彩稳赚计划",
                 "六合彩开奖结果"),
    "contact": ("私我V:{id}", "➕V❤{id}", "QQ:{digits}", "电联{phone}", "微信联系{id}", "加薇{id}", "找我vx{id}",
                "手机:{phone}"),
    "fraud": ("代办大额信用卡", "收购二手银行卡", "出售身份证复印件", "网贷秒过", "花呗额度套现", "刷单兼职日赚300",
              "假钞出售", "代开增值税票"),
    "abuse": ("傻逼卖家骗子", "垃圾客服滚", "你妈死了卖家", "操你大爷", "草泥马的店", "狗比商家"),
}
EVENING_LOOK_ALIKES = (
    "菠菜 新鲜 蔬菜 500g", "冰丝 凉席 三件套", "K金 耳钉 女", "白粉笔 无尘 教学", "迷你 药箱 家用", "刺刀 造型 开瓶器",
    "磨刀石 家用 刀具", "福利彩票 店 装修 贴纸", "深夜食堂 漫画", "主播 同款 衬衫", "少女 连衣裙 夏", "性感 睡衣 女",
    "视频会议 摄像头 1080p", "分享装 零食 大礼包", "微信支付 立牌 收款码", "QQ飞车 周边 手办", "手机支架 车载",
    "二手 手机 回收", "台湾独立设计师 品牌 包", "天安门 纪念 明信片", "中共一大会址 纪念品", "防诈骗 宣传 海报",
    "大额 优惠券 本子", "银行卡 贴纸 卡贴", "上岸 考公 资料", "外围 护栏 围挡", "实弹 射击 体验 门票",
    "弓弩 造型 钥匙扣", "狗粮 比熊 专用", "麻醉 面霜 表麻 纹绣",
)
# Written before the gap classes and run once after them: 74.6% (porn 55.0, politics 40.8,
# terror 62.7, drugs 87.0, gambling 84.5, contact 88.5, fraud 78.8, abuse 99.8%), look-alikes
# 0 of 30: the last clean held-out figure. Its misses then led to a few lines (打倒毛泽东,
# 共产党杀人, 兼职…陪睡, Q号, 学历…代办, 西藏独立, 恐怖主义宣传); the rest are jieba's words
# across the term's ends (免费成人|网站, 炸弹|制作方法) or claims no class holds (可发射钢珠).
NIGHT = {
    "porn": ("寂寞少妇在线陪聊", "高端外围模特预约", "看黄片加群", "免费成人网站入口", "色情小说txt下载",
             "同城一夜情交友软件", "约啪神器", "女大学生兼职陪睡"),
    "politics": ("法轮功是好的", "中国共产党是恐怖组织", "打倒毛泽东", "西藏独立万岁", "六四镇压学生", "共产党杀人"),
    "terror": ("高仿真枪可发射钢珠", "气枪铅弹批发零售", "出售各种管制刀具", "猎枪配件出售", "雷管导火索出售",
               "炸弹制作方法大全", "恐怖主义宣传"),
    "drugs": ("冰毒吸食工具", "大麻烟卷出售", "买K粉加我", "摇头丸哪里买", "海洛因纯度高", "迷幻蘑菇出售", "听话水迷情药"),
    "gambling": ("真人百家乐开户", "体彩足彩内部消息", "网络赌博平台推荐", "线上老虎机游戏赢钱", "六合彩特码资料",
                 "博彩网站大全"),
    "contact": ("详情加薇:{id}", "有意者联系{phone}", "Q号{digits}", "需要的加V {id}", "微❤信号{id}", "咨询请拨打{phone}",
                "wx同号{phone}", "企鹅{digits}"),
    "fraud": ("代开各种正规发票", "银行卡四件套出售", "身份证代办加急", "高仿假币一比一", "信用卡代还提额",
              "刷单做任务赚佣金", "学历认证代办", "贷款不看征信黑户可贷"),
    "abuse": ("卖家是傻逼", "客服脑残吧", "草你妈的快递", "滚你妈的店", "这个垃圾卖家去死", "傻叉店铺"),
}
NIGHT_LOOK_ALIKES = (
    "寂寞沙洲冷 书法 作品", "陪聊 机器人 儿童 早教", "模特 同款 外套", "刀具 收纳架 厨房", "电动车 配件 出售 电池",
    "香菇 干货 蘑菇 500g", "纯度 99% 酒精 消毒", "足彩 分析 书籍", "招财猫 摆件 赢钱", "资料 收纳 文件夹 A4",
    "菜谱 大全 书", "加急 冲印 照片", "任务卡 儿童 奖励", "学历 提升 教材", "快递 盒 纸箱 批发", "滚筒 洗衣机 10公斤",
    "垃圾 分类 桶 四色", "店铺 装修 贴纸", "卖家 包邮 秒发 T恤", "女大学生 开学 必备 收纳", "兼职 招聘 海报 模板",
    "黑户 口 本 封皮", "毛泽东 像章 收藏", "西藏 特产 牦牛 奶片", "真人 cs 装备 迷彩", "宣传 海报 定制 印刷",
    "冰 吸管 杯 大容量", "烟卷 造型 棒棒糖", "恐怖 万圣节 面具", "迷情 香水 女士",
)
# Written on the session's final code and run once on it, nothing changed after: 77.8% (porn
# 37.8, politics 53.8, terror 85.5, drugs 99.2, gambling 100, contact 98.5, fraud 56.0, abuse
# 91.2%), look-alikes 1 of 30 (大麻 纺织 面料): still a clean held-out set; write the next one
# before changing the filter again.
CLOSING = {
    "porn": ("全国空降上门服务", "学生妹兼职援交", "av女优无码资源", "夫妻交换群", "一对一裸聊视频聊天", "黄网免费看",
             "情趣按摩特殊服务", "偷拍女厕视频"),
    "politics": ("推翻共产党暴政", "习近平是独裁者", "法轮功学员被迫害真相", "台湾是一个国家", "天安门母亲", "退党声明"),
    "terror": ("出售仿64手枪", "小型炸弹怎么做", "枪支弹药哪里买", "雷管炸药代购", "砍刀匕首批发", "钢珠枪配件出售",
               "制造爆炸物"),
    "drugs": ("冰毒哪里有卖", "上等大麻出售", "K粉货源", "摇头丸代购", "吸毒工具冰壶出售", "海洛因一克多少钱",
              "迷奸水出售"),
    "gambling": ("澳门赌场在线开户", "网上赌钱平台", "百家乐稳赢方法", "时时彩计划群", "体育博彩平台", "棋牌赢钱提现"),
    "contact": ("详询微信{id}", "+威{id}", "QQ号码{digits}", "联系电话:{phone}", "加V:{id}咨询", "微 {id}",
                "手机号码{phone}", "Vx:{id}"),
    "fraud": ("办理各类证件", "代还信用卡", "收银行卡", "出售假币", "刷单返佣金", "学历证书代办", "网贷黑户可下款",
              "增值税发票代开"),
    "abuse": ("卖家死全家", "傻逼商家骗钱", "操你妈的客服", "狗日的店主", "垃圾卖家滚", "你他妈的骗子"),
}
CLOSING_LOOK_ALIKES = (
    "空降兵 模型 军事", "兼职 招聘 海报", "夫妻 情侣 T恤", "交换 礼物 盲盒", "一对一 辅导 数学", "按摩 精油 全身",
    "偷拍 防护 手机膜", "真相 揭秘 书籍", "声明 书 打印", "母亲节 礼物 康乃馨", "砍刀 户外 开山刀",
    "配件 出售 自行车", "菜谱 书 家常菜", "冰壶 比赛 周边", "体育 用品 网球拍", "棋牌 桌 折叠",
    "证件照 冲印", "收银 纸 热敏", "学历 教材 自考", "发票 夹 财务", "客服 耳麦", "店主 推荐 毛衣",
    "骗子 防骗 手册 老人", "国家 地理 杂志", "台湾 零食 牛轧糖", "大麻 纺织 面料", "炸鸡 粉 调料",
    "枪色 眼影 金属", "上门 取件 搬家", "特殊 尺寸 定制 窗帘",
)
# Written at the start of the session of 2026-12-05, before any change, in words of its own.
DAWN = {
    "porn": ("同城约会妹子上门", "高端外围模特预约", "成人影片打包下载", "私密直播间福利", "激情视频一对一",
             "寂寞少妇陪聊", "私房裸照出售", "情色小说合集"),
    "politics": ("打倒共匪", "六四屠杀真相", "中共邪党必亡", "支持港独", "西藏独立万岁", "翻墙看禁书",
                 "领导人丑闻内幕", "共产党灭亡倒计时"),
    "terror": ("自制燃烧瓶教程", "土制手雷制作方法", "军用步枪出售", "弓弩专卖射程远", "气枪铅弹批发",
               "汽狗出售", "炸药配方大全", "圣战组织招募"),
    "drugs": ("溜冰工具套装", "出售麻古", "听话水GHB", "笑气弹批发", "可卡因货到付款", "大麻种子出售",
              "安眠药免处方", "K仔货源稳定"),
    "gambling": ("真人百家乐开户送彩金", "六合彩特码", "网络棋牌代理招募", "足球外围下注", "老虎机在线赢现金",
                 "北京赛车pk10计划", "赌球平台", "充值返水百分之三"),
    "contact": ("薇❤{id}", "加我V {id}", "wechat: {id}", "私信QQ{digits}", "电联{phone}", "V: {id} 备注淘宝",
                "扣扣群{digits}", "微号{id}"),
    "fraud": ("代办信用卡黑户秒批", "高仿身份证", "驾照代考包过", "刷信誉刷好评", "出售银行卡四件套",
              "假发票出售", "淘宝刷单兼职日结", "POS机套现"),
    "abuse": ("卖家全家死光", "什么垃圾东西傻X", "草泥马的破店", "去死吧奸商", "滚你妈的", "脑残客服",
              "贱人卖家", "奸商不得好死"),
}
DAWN_LOOK_ALIKES = (
    "同城 鲜花 速递", "模特 衣架 展示", "家用 投影仪 看影片", "直播 补光灯 支架", "私房菜 菜谱 书",
    "小说 全集 精装", "支持 定制 刻字", "燃烧 脂肪 代餐 奶昔", "手雷 造型 打火机", "步枪 积木 拼装 男孩",
    "射箭 体验 弓箭 儿童", "配方 奶粉 一段", "溜冰鞋 儿童 闪光轮", "可可粉 烘焙 无糖", "阳台 蔬菜 种子",
    "安眠 眼罩 遮光", "棋牌室 桌布", "赛车 模型 1:18 合金", "话费 充值卡", "V领 毛衣 女",
    "高仿真 绿植 盆栽", "驾照 考试 书 科目一", "信誉 保证 正品 面霜", "银行 存钱罐 儿童", "发票 收纳盒",
    "POS机 保护套", "全家福 相框 挂墙", "垃圾 分类 桶 厨房", "去死皮 手足霜", "奸商 表情包 抱枕 搞笑",
)
# Written after DAWN's first run and before this round's code was final; run once on it.
MORNING = {
    "porn": ("大保健一条龙服务", "莞式全套服务", "嫩模私拍视频", "少女写真无圣光", "酒店上门按摩小妹",
             "福利姬原图打包", "成人直播app下载", "看片神器免费"),
    "politics": ("打倒习包子", "反对一党专政", "法轮大法好", "中共活摘器官", "维权律师被抓真相", "六四天安门学生运动",
                 "台独万岁", "共产党就是黑社会"),
    "terror": ("秃鹰气枪配件", "猎枪散件出售", "教你制作遥控炸弹", "催泪喷雾剂批发", "军用匕首直销", "枪模配件可发射",
               "自制火药教程", "钢珠发射器出售"),
    "drugs": ("冰毒吸食工具", "正品大麻烟出售", "麻古批发零售", "一粒倒迷奸药", "K粉哪里能买到", "海洛因纯度高",
              "LSD邮票出售", "摇头丸同城配送"),
    "gambling": ("微信牛牛群", "抢红包赌博群", "网络彩票包赢计划", "百家乐必胜技巧", "在线德州真钱", "赌场洗码",
                 "体彩内部人员带单", "斗牛游戏真钱"),
    "contact": ("咨询请加VX {id}", "薇♥芯 {id}", "QQ: {digits}", "手机:{phone}", "请加微 {id}", "扣扣{digits}",
                "V芯{id}", "tel {phone}"),
    "fraud": ("代办各类毕业证", "出售个人信息数据", "刷单小时工", "高仿人民币出售", "黑户口子秒下", "帮忙开增值税票",
              "信用卡额度提升代办", "买卖微信号"),
    "abuse": ("你妈死了卖家", "垃圾店铺骗子卖家去死", "狗卖家", "操你大爷", "傻缺客服", "骗子全家暴毙",
              "客服是傻逼", "nmsl垃圾"),
}
MORNING_LOOK_ALIKES = (
    "大保健 养生 茶", "全套 茶具 礼盒", "写真 相册 定制", "按摩 滚轮 脸部", "原图 冲印 照片", "app 下载 二维码 桌贴",
    "3D 看片 眼镜", "包子 蒸笼 家用", "恐怖 故事 绘本", "器官 模型 人体 教学", "真相 推理 小说", "律师 函 模板 书",
    "钢珠 笔芯 0.5", "秃鹰 模型 摆件", "散件 拼装 电脑", "遥控 汽车 儿童", "防身 术 教学 DVD", "邮票 收藏 册",
    "纯度 99 黄金 吊坠", "牛牛 公仔 毛绒", "红包 封面 定制", "计划 本 手帐", "钓鱼 技巧 书", "毕业证 框 定制",
    "个人 信息 登记 表", "小时工 保洁 服务", "人民币 收藏 册", "封口 夹 零食", "大爷 生日 礼物 保温杯",
    "防骗 手册 老人",
)
# Written after the MORNING round's changes, on its final code, and run once on it.
NOON = {
    "porn": ("兼职妹妹可约", "裸舞视频合集", "磁力链接番号大全", "喝茶上门安排", "夜店小妹陪酒过夜", "同城空降快餐",
             "无删减床戏片段", "真人秀脱衣表演"),
    "politics": ("共产党下台", "推翻独裁政权", "李洪志师父", "中共病毒", "新疆集中营真相", "反送中",
                 "光复香港时代革命", "结束一党统治"),
    "terror": ("猎枪子弹批发", "遥控引爆器", "管制刀具网购", "燃烧弹配方", "电棍出售", "射钉枪改装发射",
               "手工制作土枪", "炸学校计划"),
    "drugs": ("出售冰壶工具", "麻黄素批发", "吗啡针剂", "大麻电子烟", "三唑仑片出售", "蓝精灵迷药", "摇头丸外卖",
              "溜冰聚会有货"),
    "gambling": ("体育投注网站", "澳门葡京娱乐", "时时彩人工计划", "网赌平台出款", "捕鱼游戏上下分", "真人轮盘",
                 "彩票代买平台", "百家乐公式"),
    "contact": ("➕V {id}", "微 信: {id}", "联系方式: {phone}", "加企鹅{digits}", "薇心{id}", "wx {id}",
                "私聊V{id}", "电话 {phone}"),
    "fraud": ("网贷无视征信", "出租银行卡", "代考驾照科目一", "假证件制作", "高仿护照", "收购微信号",
              "代写毕业论文", "信用卡提额秒批"),
    "abuse": ("卖家脑子有病", "什么破玩意儿傻屌", "去你妈的垃圾", "客服脑瘫", "店家是狗", "妈卖批",
              "卖家智障", "老板全家死"),
}
NOON_LOOK_ALIKES = (
    "预约 时间 牌 可约", "原味 薯片 大包装", "喝茶 杯 茶具 套装", "夜店 风 连衣裙", "快餐 盒 一次性",
    "民主 党派 史 书", "病毒 检测 试剂盒 宠物", "子弹头 圆珠笔", "派对 彩带 礼炮", "射钉枪 钉子 家装",
    "手电筒 强光 防身", "狙击镜 玩具 儿童", "冰壶 运动 体验", "麻黄 中药 饮片", "蓝精灵 公仔 毛绒",
    "外卖 保温箱", "投注站 招牌 灯箱", "捕鱼 玩具 磁性 儿童", "轮盘 游戏 酒桌 转盘", "彩票 打印纸",
    "公式 手册 数学", "出租房 钥匙 扣", "营业执照 框 挂墙", "护照 夹 旅行", "论文 格式 指南 书",
    "核桃 补脑子 零食", "狗 零食 宠物", "老板 椅 办公", "片段 剪辑 软件 教程", "表演 服装 儿童",
)
# Ordinary titles outside cosmetics (the real titles are mostly cosmetics), written in the
# December round: clothing, home, food, toys, sports, books, services, with the words a spam
# class is built from (刀, 枪, 彩票, 信用卡, 上门, 同城, 客服, 垃圾 ...) used innocently.
OTHER_DOMAINS = (
    "情趣内衣 性感 蕾丝 睡裙", "性感诱惑 吊带睡衣 女", "惹火身材 显瘦 连衣裙", "前凸后翘 塑身衣 收腹",
    "防狼喷雾 女士 随身", "户外 折叠刀 露营", "厨房刀具 套装 德国", "瑞士军刀 多功能 小刀", "电蚊拍 充电式",
    "彩票打印机 热敏", "18k彩金 手链 女", "足球 比赛用球 5号", "体育彩票 店 招牌 灯箱", "斗地主 扑克牌 10副",
    "炸金花 扑克 桌游", "德州扑克 筹码 100枚", "麻将 手搓 家用 大号", "老虎机 存钱罐 儿童", "在线 课程 英语 网课",
    "游戏充值卡 点卡", "信用卡 套 卡包 防消磁", "身份证 卡套 透明", "银行卡 收纳 卡包 女", "发票 专用 打印纸",
    "增值税发票 可开 办公用品", "贷款计算器 财务", "论文 查重 知网", "代写 毛笔字 春联 手写", "毕业证书 外壳 封皮 定制",
    "驾照 皮套 驾驶证 卡套", "护照 保护套 旅行", "LED 流水灯 灯带", "中共党史 书籍 出版社", "共产党员 党徽 胸针",
    "台湾 凤梨酥 礼盒", "西藏 牦牛 肉干", "法轮 齿轮 机械 配件", "轮滑鞋 成人 初学者", "冰块 模具 硅胶",
    "k歌 宝 麦克风", "摇头 风扇 落地扇", "邮票 收藏 生肖", "白粉 腻子 墙面", "仿真 手雷 模型 钥匙扣",
    "狗东西 搞笑 表情包 抱枕", "垃圾袋 加厚 家用", "客服 耳机 头戴式", "卖家秀 连衣裙", "老板椅 真皮 办公",
    "去死皮 磨砂膏 身体", "死海泥 面膜", "草泥马 毛绒 玩偶", "干发帽 吸水", "自慰器 男用", "防偷拍 检测器",
    "约会 连衣裙 温柔", "同城 配送 鲜花 生日", "附近 门店 自提", "上门 安装 空调 清洗", "上门服务 家政 保洁",
    "按摩椅 家用 全身", "小姐姐 同款 裙子", "学生妹 发型 假发", "美女 图案 T恤", "电击 按摩仪 颈椎",
    "匕首 造型 开瓶器", "弓箭 儿童 玩具 吸盘", "弹弓 专业 竞技", "仿真枪 合金 模型 不可发射", "子弹 项链 吊坠",
    "炸弹头 发型 假发", "手雷 杯 玻璃 啤酒杯", "核弹头 鼠标", "送你妈的 生日礼物", "加扣子 衬衫 男",
    "加Q弹 软糖", "统一 冰红茶 整箱", "Nike SB Dunk Low 板鞋", "1一3岁 儿童 积木", "成人电影票 2张",
    "枪支 模型 合金 1:2.05", "军火库 游戏 周边", "军刺 造型 钥匙扣",
)
LATER_LOOK_ALIKES = (
    "棕色情侣对戒", "米色情侣睡衣套装", "姜黄片 泡水喝", "大黄片 中药", "芝士味蛋黄片 饼干",
    "牙刷单支装 软毛", "阳台独立式晾衣架", "魔法轮盘 儿童玩具", "回春药酒 泡酒料", "特大麻将 手搓",
    "微笑气垫BB霜", "橙色情侣款卫衣", "成套现货 茶具", "辨别真假币 验钞笔", "儿童软弹枪 子弹 补充装",
    "伊利QQ星儿童成长牛奶 125ml", "泡泡枪 全自动 儿童", "激光枪玩具 对战", "黄色视频监控支架",
    "蓝色视频采集卡", "驼色情侣围巾", "奶黄色情侣杯", "香草味大麻花", "纯手工麻花 椒盐",
    "无毒品质 儿童蜡笔", "彩色情景贴纸",
)

# Written by a separate agent from its own knowledge, without reading the lexicons or any
# word list, at the start of the broad-list round: 81.1% on the code before it (look-alikes
# 0 of 40); its own contact misses (加卫星, 绿泡泡, q before a QQ number) then led three contact
# forms; 85.9% with them and the broad lists (contact 70.8 -> 95.0%, porn 68.2 -> 76.5%).
DUSK = {
    "porn": ("同城约炮私聊", "学生妹包夜", "果聊一对一", "深夜福利资源", "无码片打包", "外围模特可约", "上门服务全套", "楼凤信息群", "空降服务速约", "成人直播app", "91视频会员", "寂寞少妇陪聊"),
    "politics": ("打倒共产党", "法轮大法好", "三退保平安", "台独万岁", "六四真相", "西藏独立", "共匪暴政", "光复香港", "包子帝下台", "天灭中共", "东突独立建国", "8964不能忘"),
    "terror": ("出售气狗", "秃鹰配件全套", "猎枪子弹现货", "雷管炸药有货", "三棱军刺直发", "自制炸弹教程", "钢珠枪货到付", "麻醉弩箭", "仿五四可实弹", "黑火药配方", "汽狗铅弹批发", "圣战袭击计划"),
    "drugs": ("冰糖到货私聊", "溜冰壶全套", "K粉飞叶子", "大麻叶子可寄", "听话水速效", "迷奸药无色", "上头烟弹", "摇头丸麻古", "LSD邮票", "麻黄素货源", "依托咪酯烟油", "海洛因白粉"),
    "gambling": ("网上百家乐", "澳门葡京在线", "时时彩计划群", "六合彩内幕", "足球外围投注", "棋牌上分下分", "真人荷官发牌", "透视扑克牌", "赌博出千器", "彩票必中内部号", "注册送彩金", "天天返水"),
    "contact": ("加我薇{id}", "V信{id}", "扣扣{digits}", "威芯{id}领券", "q{digits}优惠", "加卫星{id}", "电{phone}", "打{phone}更便宜", "vx：{id}", "企鹅{digits}", "绿泡泡{id}", "徽信同号{phone}"),
    "fraud": ("代开增值税发票", "办证刻章", "假毕业证学历", "高仿假币", "信用卡套现", "刷单兼职日结", "黑户秒下款", "收购银行卡", "出售四件套", "花呗提现", "代办身份证", "网贷不看征信"),
    "abuse": ("傻逼卖家", "客服脑残", "垃圾店铺滚", "你妈死了", "操你妈", "sb客服", "狗东西骗子", "nmsl", "煞笔店家", "去死吧奸商", "脑瘫玩意", "草泥马"),
}
DUSK_LOOK_ALIKES = (
    "冰丝凉席三件套夏季", "K金项链女款锁骨链", "老冰糖500g黄冰糖", "儿童泡泡枪玩具", "厨师刀不锈钢切片刀",
    "瑞士军刀多功能折叠", "射箭反曲弓入门套装", "蕾丝性感睡衣女", "成人纸尿裤老年护理", "麻辣小龙虾调料包",
    "火麻仁油冷榨", "全自动麻将机家用", "德州扑克筹码套装", "家用炸鸡粉裹粉", "爆炸头假发蓬松",
    "鸦片香水女士", "维尼熊毛绒公仔", "台湾凤梨酥礼盒装", "西藏牦牛肉干零食", "QQ糖软糖儿童",
    "人民币收藏纪念钞", "发票夹收纳文件袋", "证件套卡包保护套", "裸色口红哑光", "布洛芬缓释胶囊",
    "褪黑素软糖助眠", "热熔胶枪手工", "按摩枪筋膜枪", "黄色卫衣男宽松", "傻瓜相机胶片机",
    "鸡精调味料家用", "K歌麦克风无线", "叶酸片孕妇备孕", "上门安装空调挂机", "白色粉笔无尘教学",
    "彩票店打印纸", "雷电模型手办", "钓鱼竿碳素超轻", "天安门纪念冰箱贴", "小钢炮蓝牙音箱",
)

# Written by another agent the same way, on the code after DUSK's round: 74.2% on it (look-alikes
# 0 of 40), 79.1% after the written broad lists (brainstormed per category by writers who saw no
# lexicon, reviewed again); its misses then led the round's last contact forms and classes.
TWILIGHT = {
    "porn": ("同城约炮", "上门服务全套", "学生妹兼职", "果聊一对一", "福利视频懂的来", "小黄片资源群", "外围模特预约", "楼凤信息", "看片网址加群", "包夜快餐可选", "成人直播免费看", "约pao私聊"),
    "politics": ("打倒共产党", "天安门六四真相", "法轮大法好", "三退保平安", "台独建国", "西藏独立", "包子下台", "光复香港时代革命", "东突厥斯坦独立", "共匪暴政", "8964勿忘", "结束一党专政"),
    "terror": ("出售真枪实弹", "汽狗配件", "猎枪子弹货源", "雷管炸药批发", "军刺管制刀具", "钢珠枪一手", "弓弩包邮送箭", "土制炸弹教程", "手枪图纸私", "消音器可定做", "黑火药配方", "铅弹狗粮现货"),
    "drugs": ("冰毒一手货源", "麻古批发", "K粉到货", "溜冰工具全套", "迷药水无色无味", "听话水速效", "大麻种子出售", "叶子油烟弹", "邮票LSD", "麻黄素原料", "笑气弹批发", "飞叶子懂的来"),
    "gambling": ("澳门皇冠娱乐城", "百家乐代理", "时时彩计划群", "六合彩内部资料", "赌球平台注册", "麻将透视眼镜", "扑克分析仪", "棋牌上分下分", "网赌回血", "首充送彩金", "博彩APP下载", "必中特码"),
    "contact": ("详情咨询薇{id}", "加v{id}", "+威信{id}", "扣扣{digits}", "企鹅{digits}", "电联{phone}", "飞机{id}", "tg搜{id}", "加绿泡泡领券", "徽信{id}", "电{phone}同微", "VX{id}"),
    "fraud": ("代开增值税发票", "办证刻章", "学历证书可查", "高仿人民币", "信用卡套现", "刷单兼职日结", "黑户秒批贷款", "收购银行卡四件套", "出售公民信息", "四六级答案", "驾照包过免考", "点链接领退款"),
    "abuse": ("卖家傻逼", "客服脑残", "垃圾店铺sb", "rnm退钱", "操你妈", "nmsl", "尼玛的骗子", "滚你大爷", "cnm黑店", "智障客服", "店主是狗东西", "买家脑子有坑"),
}
TWILIGHT_LOOK_ALIKES = (
    "儿童水枪玩具夏季戏水大容量", "厨房切菜刀不锈钢家用", "黑火龙果新鲜水果5斤装", "冰糖雪梨罐头整箱", "麻辣小龙虾调料包",
    "迷彩户外冲锋衣男", "射箭运动反曲弓初学者套装", "台球杆黑八专业球杆", "扑克牌纸牌桌游聚会", "麻将机全自动家用",
    "情趣内衣性感睡裙", "成人纸尿裤老人护理", "婴儿爽身粉痱子粉", "白色粉底液遮瑕持久", "中国共产党历史读本",
    "狗粮成犬通用型10kg", "猫薄荷逗猫玩具", "999感冒灵颗粒10袋", "枪色耳钉男潮", "瑞士军刀折叠便携",
    "军刀卡多功能工具", "鸡尾酒调酒器套装", "约会穿搭小香风外套", "老虎机存钱罐儿童", "骰子酒吧游戏道具",
    "发票夹财务收纳文件夹", "证书外壳烫金荣誉证书", "银行卡套防消磁卡包", "白粉笔无尘教学用", "叶子造型硅胶杯垫",
    "子弹笔记本手帐", "爆炸头假发派对", "溜冰鞋成人轮滑鞋", "K歌麦克风无线", "神仙水精华液护肤",
    "刀剑神域手办", "西藏旅游攻略书", "彩色铅笔36色套装", "礼炮彩带婚庆用品", "QQ糖软糖零食",
)

# Written by a third agent with the others, not looked at until the round's code was final, then run
# once: 84.8% (71.1% on the code before the round; look-alikes 0 of 40).
MIDNIGHT = {
    "porn": ("上门服务全套", "同城约炮", "外围女包夜", "小姐上门", "看片神器", "福利资源私发", "裸聊一对一", "成人视频网站", "兼职学生妹", "无码高清种子", "楼凤信息", "午夜福利群"),
    "politics": ("打倒共产党", "法轮大法好", "台湾独立", "西藏独立", "六四真相", "天安门屠杀", "共匪暴政", "习包子", "东突独立", "反共复国", "推翻专制", "三退保平安"),
    "terror": ("出售仿真枪", "气枪铅弹", "猎枪配件", "军用子弹", "雷管炸药", "自制炸弹教程", "弓弩专卖", "管制刀具直发", "钢珠枪", "黑火药配方", "消音器出售", "手枪全套散件"),
    "drugs": ("冰毒批发", "K粉", "麻古", "摇头丸", "海洛因", "迷药水", "听话水", "大麻种子", "神仙水同城", "溜冰飞叶子", "麻黄碱出售", "三唑仑"),
    "gambling": ("真人百家乐", "澳门葡京赌场", "首充送彩金", "招代理高返水", "六合彩内幕", "特码必中", "时时彩计划", "麻将透视", "扑克分析仪", "出千神器", "足球外围投注", "棋牌上分下分"),
    "contact": ("私我V{id}", "加薇{id}", "+vx:{id}", "扣扣{digits}", "Q{digits}", "企鹅{digits}", "电{phone}", "飞机@{id}", "纸飞机{id}", "威信{id}", "详询{phone}", "绿泡泡{id}"),
    "fraud": ("代开增值税发票", "办证刻章", "毕业证代办", "高仿假币", "花呗套现", "信用卡提额套现", "刷单兼职", "黑户秒下款", "银行卡四件套", "实名手机卡出售", "考试答案包过", "隐形作弊耳机"),
    "abuse": ("傻逼卖家", "客服死全家", "你妈死了", "SB客服", "NMSL", "草泥马", "狗日的商家", "cnm", "滚你妈的", "脑残买家", "操你大爷", "尼玛逼"),
}
MIDNIGHT_LOOK_ALIKES = (
    "儿童水枪玩具夏季戏水", "厨房不锈钢切菜刀", "专业射箭反曲弓套装", "台湾凤梨酥礼盒装", "迷迭香精油按摩油",
    "冰糖雪梨润喉糖", "麻将机全自动家用", "扑克牌桌游聚会", "员工福利节日礼盒", "成人纸尿裤护理垫",
    "大麻哈鱼籽罐头", "汽车轮胎充气枪", "热熔胶枪手工套装", "子弹头保温杯316", "溜冰鞋儿童初学者",
    "K歌麦克风无线", "无尘白粉笔教学用", "草泥马公仔毛绒玩具", "布洛芬缓释胶囊", "魔法轮盘桌游",
    "水果刀家用便携", "北京天安门纪念币", "麻将凉席夏季", "票据发票收纳夹", "毕业纪念册定制",
    "地板清洁刷子", "银行卡套防消磁", "手机卡针取卡器", "考试专用2B铅笔", "薇诺娜舒敏保湿霜",
    "企鹅毛绒公仔", "纸飞机折纸手工书", "约克夏犬专用狗粮", "小姐姐同款连衣裙", "全套厨具不锈钢锅",
    "上门安装空调清洗", "黄色小鸭沐浴玩具", "成人自行车变速", "大麻纤维凉席", "足球训练背心",
)

# Written by a fourth agent, told to avoid each category's most obvious terms, after MIDNIGHT's
# run: 52.3% on the session's starting code, 68.9% on the code of its first run (look-alikes 0 of
# 40); its misses then led context classes (slang that is also a product beside a dealer's words).
DAYBREAK = {
    "porn": ("同城yue炮", "上门服务可包夜", "楼凤qm信息", "外围模特陪玩", "裸聊一对一", "福利姬资源", "看片神器永久", "资源网盘懂得来", "快餐300包夜", "学生妹兼职陪", "大保健全套", "成人直播间"),
    "politics": ("退党保平安", "天灭zg", "共铲党必亡", "五月三十五日", "八平米真相", "包子帝下台", "维尼熊连任", "光复香港时代革命", "东突独立", "九评共c党", "推翻一党专政", "声援民运人士"),
    "terror": ("气狗全套", "秃子配件", "钢珠枪直发", "消音器订做", "铅弹打鸟", "雷管导火索", "黑火药配方", "三棱军刺", "狩猎弩箭", "pcp高压打鸟", "自制土炸弹", "报复社会炸超市"),
    "drugs": ("溜冰壶包邮", "飞叶子同城", "麻古批发", "神仙水有货", "听话水无色", "迷幻蘑菇孢子", "LSD邮票", "麻黄碱提纯", "笑气弹批发", "冰糖同城送", "G水无味迷情", "小树枝货到付"),
    "gambling": ("真人百家乐", "pk10计划群", "时时彩带单", "首充送彩金", "代理日结返水", "六合特码资料", "牛牛上下分", "扑克透视眼镜", "遥控骰子", "外围球盘", "老虎机在线玩", "澳门新葡京"),
    "contact": ("加v{id}", "薇信{id}", "威芯{phone}", "扣扣{digits}", "企鹅{digits}", "Q{digits}聊", "飞机{id}", "tg@{id}", "电报{id}找我", "嶶{id}领券", "绿泡泡{id}", "来电{phone}"),
    "fraud": ("增值税票代开", "刷单日结佣金", "高仿币1比5", "花呗秒回款", "无视征信下款", "银行卡四件套", "实名电话卡批", "收售老Q号", "公民信息查档", "考试包过答案", "学信网可查证", "补单刷好评"),
    "abuse": ("nmsl奸商", "沙比店家", "cnm客服", "狗日的卖家", "脑残买家别来", "智障客服", "滚你大爷", "死全家的骗子", "煞笔掌柜", "贱货店主", "tmd黑心店", "客服是畜生"),
}
DAYBREAK_LOOK_ALIKES = (
    "溜冰鞋成人初学者套装", "冰糖雪梨罐头整箱", "神仙水精华液正品", "儿童水枪戏水玩具", "全自动麻将机静音款",
    "防水塑料扑克牌", "亚克力骰子桌游配件", "合金民航飞机模型", "企鹅毛绒玩具公仔", "发票夹票据收纳册",
    "三棱镜光学教学仪器", "绿萝叶子植物盆栽", "干蘑菇香菇500g", "钢珠滚珠轴承配件", "射箭靶纸反曲弓配件",
    "摩托车排气消音器", "炸鸡翅调料腌料", "家用爆米花机", "小姐姐同款连衣裙", "学生书包双肩包",
    "全套功夫茶具陶瓷", "空调清洗上门安装服务", "成人纸尿裤老人用", "香港丝袜奶茶杯", "西藏牦牛肉干手撕",
    "新疆和田大枣特级", "彩虹糖果礼盒装", "真人发丝假发片", "蓝精灵毛绒玩具", "维尼熊抱枕靠垫",
    "包子机蒸笼不锈钢", "儿童电话手表定位", "刷鞋刷子单支装", "真人CS对战装备", "猪肉脯零食小包装",
    "黄麻绳手工编织", "打鸟摄影长焦镜头", "热熔胶枪手工胶棒", "子弹头入耳式耳机", "自由行旅行收纳袋",
)

# Written by a fifth agent after DAYBREAK's run, not looked at until the round's code was final,
# then run once: 78.6% (63.0% on the session's starting code; look-alikes 0 of 40); its misses then
# led a last few classes (paid reviews, 跑分 with cards, the id in the seller's picture).
SUNRISE = {
    "porn": ("小姐上门服务", "色情视频资源", "同城约炮", "裸聊一对一", "楼凤qm信息", "外围空降", "福利姬原图", "约p学生妹", "全套大保健", "懂的进资源群", "黄网ZY分享", "磁力链小电影"),
    "politics": ("打倒共产党", "推翻独裁政权", "法轮大法好", "台湾独立万岁", "疆独东突建国", "六四天安门真相", "五月三十五", "包子下台", "天灭共惨党", "三退保平安", "光复香港时代革命", "翻墙看真相"),
    "terror": ("出售仿真枪", "气狗配件", "狗粮铅弹", "PCP打鸟神器", "五四手枪", "雷管炸药", "自制炸弹方法", "三棱军刺", "钢珠弩箭", "土狗全套", "黑火药导火索", "扬言炸学校"),
    "drugs": ("冰毒出售", "K粉白粉", "大麻种子", "摇头丸", "溜冰壶全套", "飞叶子", "听话水", "麻古同城速配", "三唑仑", "G水无色无味", "上头电子烟", "羟亚胺现货"),
    "gambling": ("网上赌场", "真人百家乐", "时时彩计划群", "菠菜平台", "澳门新葡京", "首存送彩金", "招代理日返水", "六合彩特码", "透视麻将牌", "斗牛作弊器", "棋牌上下分", "BC稳赢带单"),
    "contact": ("加微信{id}", "vx:{id}", "薇❤{id}", "QQ{digits}", "扣扣{digits}", "电话{phone}", "加V私聊优惠", "tg飞机{id}", "企鹅{digits}", "➕威信{id}", "联系方式看头像", "私{phone}"),
    "fraud": ("代开发票", "办证刻章", "高仿币一比十", "花呗套现", "刷单日结", "好评返现", "黑户秒下款", "四件套收出", "社工库查档", "考试答案群", "代考包过", "跑分收卡"),
    "abuse": ("傻逼卖家", "客服是猪", "买家死全家", "sb店主", "垃圾狗商家", "滚你妈", "草泥马", "nmsl", "脑残买家", "卖家全家暴毙", "客服tm智障", "孙子别买"),
}
SUNRISE_LOOK_ALIKES = (
    "热熔胶枪家用小号", "水枪儿童玩具夏季戏水", "冰糖炖雪梨专用炖盅", "大麻哈鱼鱼子酱罐装", "火麻仁即食低温烘焙",
    "骰子桌游聚会套装", "扑克牌加厚塑料防水", "全自动麻将机家用静音", "刮刮乐儿童奖励卡", "小姐姐同款碎花连衣裙",
    "情侣睡衣纯棉长袖套装", "空调清洗上门安装服务", "按摩椅全身家用多功能", "微信收款提示音箱", "QQ糖水果软糖袋装",
    "电话手表儿童4G全网通", "飞机模型合金民航客机", "裸眼3D立体装饰画", "无尘白粉笔教学用", "仙女棒冷烟花婚礼拍照",
    "炸鸡裹粉家用脆皮", "爆炸头假发派对道具", "子弹头笔记本手账", "飞镖盘磁性儿童安全", "革命老区红枣特产",
    "天安门城楼拼图模型", "党员学习笔记本套装", "中国地图挂图新版", "发票夹收纳册A4", "考试专用2B铅笔套装",
    "银行卡套防消磁卡包", "藏书章姓名印章定制", "靖江猪肉脯特产零食", "狗粮成犬通用型10kg", "叶子吊坠纯银项链",
    "溜冰鞋儿童初学者", "摇头落地扇家用静音", "冰壶运动桌面玩具", "迷你小电影院投影仪", "18K金戒指女款素圈",
)

# Written by a sixth agent after SUNRISE's round, run once on its final code: 76.2% (54.1% on the
# session's starting code; look-alikes 0 of 40). A third round of written terms (the long tail,
# 930 kept after review) then moved it by 0.1 point and no other set at all, so it was not
# adopted; a few classes from its misses were.
VESPER = {
    "porn": ("上门服务", "同城yue炮", "小姐全套", "楼凤信息", "裸聊一对一", "看片加群", "午夜福利网", "学生妹兼职", "莞式服务", "av在线看", "外围模特", "快餐包夜"),
    "politics": ("打倒gcd", "天灭中共", "五月三十五日", "法轮大法好", "三退保平安", "台湾独立", "东突厥斯坦", "包子下台", "庆丰帝", "共匪暴政", "反送中", "推翻专制"),
    "terror": ("仿真枪出售", "气狗配件", "猎枪子弹", "钢珠枪", "雷管炸药", "土制炸弹教程", "军刺三棱刀", "弓弩猎箭", "pcp高压打鸟", "黑索金", "手枪散件", "报复社会"),
    "drugs": ("出冰", "麻果", "K粉", "飞叶子", "听话水", "GHB失身水", "四号白粉", "摇头丸", "麻黄素原料", "嗨药包邮", "笑气弹", "LSD邮票"),
    "gambling": ("百家乐", "线上真人娱乐", "时时彩计划", "六合彩特马", "澳门葡京", "首存送彩金", "招代理返水", "球盘外围", "牛牛棋牌", "透视扑克", "出千工具", "bc娱乐城"),
    "contact": ("加V:{id}", "薇信{id}", "扣扣{digits}", "企鹅{digits}", "电{phone}", "飞机@{id}", "tg:{id}", "威❤{id}", "私聊加微", "Q群{digits}", "抖音号{id}", "➕wx {id}"),
    "fraud": ("代开发票", "办证刻章", "高仿币", "信用卡套现", "刷单返佣", "好评返现", "黑户秒下款", "四件套出售", "个人数据出", "四六级答案", "花呗套出", "老号批发"),
    "abuse": ("sb客服", "黑心奸商", "去死吧", "nmsl", "草泥马", "垃圾客服", "脑残买家", "滚你妈的", "狗东西", "死全家", "煞笔", "日你仙人"),
}
VESPER_LOOK_ALIKES = (
    "儿童玩具水枪 夏季戏水", "热熔胶枪家用胶棒", "电动筋膜枪按摩枪", "冰糖葫芦山楂零食", "老冰糖黄冰糖500g",
    "K金项链女锁骨链", "麻将凉席竹席夏季", "加厚塑料扑克牌", "彩金耳环女小众设计", "上门安装空调清洗",
    "孕妇护肤品套装全套", "手工编织大麻绳", "巴马特产火麻仁", "家用小型爆米花机", "炸鸡裹粉家用",
    "子弹头U盘64G", "青少年射箭反曲弓", "陶瓷水果刀便携", "发票夹收纳册", "代餐奶昔饱腹",
    "透明证件袋拉链", "防消磁银行卡套", "集邮册邮票收藏", "党员学习笔记本", "小熊维尼毛绒公仔",
    "速冻早餐包子", "小姐姐同款连衣裙", "成人纸尿裤老人用", "遥控飞机模型航模", "企鹅玩偶毛绒抱枕",
    "V领毛衣女宽松", "四合扣按扣diy", "摇头落地扇家用", "儿童溜冰鞋全套", "无线K歌麦克风",
    "无尘白粉笔教学用", "员工福利礼盒", "桌游骰子套装", "靖江猪肉脯零食", "洗碗刷单个装",
)

# Written by a separate agent from its own knowledge, told to prefer wording another writer's list
# might miss; run first on the code before the pinyin and homophone round: 77.3% (look-alikes 0 of 40).
ZENITH = {
    "porn": ("同城上门服务", "学生妹包夜", "全套一条龙", "莞式服务", "楼凤信息", "约炮软件", "福利视频打包", "裸聊一对一", "小姐姐上门按摩", "兼职外围模特", "原味内衣私拍", "快餐200包夜500"),
    "politics": ("六四天安门", "法轮大法好", "三退保平安", "九评共产党", "天灭中共", "藏独自由西藏", "台独建国", "翻墙看真相", "五月三十五日", "包子下台", "光复香港时代革命", "东突厥斯坦"),
    "terror": ("气狗出售", "仿真枪可发钢珠", "铅弹秃子批发", "猎枪散件", "雷管炸药出售", "自制炸弹教程", "三棱刀开刃", "弓弩狩猎专用", "军刺开刃", "黑火药配方", "砍死你全家", "高压鸟铳"),
    "drugs": ("冰妹陪玩", "溜冰工具壶", "麻古K粉", "神仙水到货", "叶子大麻烟", "邮票LSD", "笑气弹批发", "麻黄碱原料", "听话水迷情药", "四号白货", "开心水邮寄", "飞叶子"),
    "gambling": ("百家乐真人", "时时彩计划", "六合彩特码", "网上赌场注册送", "棋牌上分下分", "澳门葡京线上", "斗牛金花代理", "PK10稳赚", "扑克透视眼镜", "麻将出千器", "足球外围下注", "彩票导师带单"),
    "contact": ("详询V{id}", "有需要的私我VX{id}", "QQ{digits}", "加微信{id}详谈", "电话{phone}", "飞机@{id}", "纸飞机{id}", "企鹅号{digits}", "绿泡泡{id}", "TG:{id}", "拍前联系{phone}", "闲鱼不常上加{id}"),
    "fraud": ("代开增值税发票", "真实可查学历", "办证刻章", "网贷黑户秒下", "信用卡套现", "花呗额度提现", "刷单返佣日结", "好评返现五元", "出售实名微信号", "四六级答案包过", "高仿真钞出货", "银行卡四件套"),
    "abuse": ("傻逼卖家", "你妈死了", "死全家的买家", "河南人都是骗子", "穷逼别来问", "脑残滚远点", "狗东西不得好死", "NMSL", "SB店家", "乡巴佬买不起", "绿茶婊卖家", "尼玛的奸商"),
}
ZENITH_LOOK_ALIKES = (
    "南京市长江大桥纪念明信片套装", "NERF软弹枪精英系列儿童玩具", "天津大麻花特产手工零食", "冰糖雪梨饮料整箱24瓶", "白粉蝶标本昆虫教学模型",
    "SK-II神仙水护肤精华露230ml", "开心果原味500g袋装坚果", "溜冰鞋成人初学者旱冰鞋", "瑞士军刀多功能折叠刀户外", "反曲弓射箭馆入门套装",
    "奥尔良炸鸡翅腌料家用", "麻将机全自动家用静音", "扑克牌桥牌比赛专用纸牌", "百家姓书法字帖儿童描红", "天安门城楼拼图1000片",
    "中国共产党历史第二卷 中共党史出版社", "西藏自由行旅游攻略书2024版", "台湾独立包装凤梨酥20枚", "包子蒸笼竹制家用三层", "小熊维尼毛绒公仔迪士尼正版",
    "按摩椅家用全身多功能", "空调清洗上门服务", "茶具全套家用功夫茶杯", "洽洽原味瓜子500g袋装", "快餐盒一次性打包盒100只",
    "裸妆粉底液持久遮瑕", "防毒面具全面罩喷漆专用", "泡澡球浴盐炸弹精油沐浴", "可开发票 办公椅人体工学", "篆刻印章石材初学者套装",
    "三棱镜光学实验教具", "轮胎充气枪带气压表", "火药的发明 中国古代科技绘本", "禁毒教育宣传挂图一套", "奶油发泡枪裱花器烘焙工具",
    "遥控飞机儿童玩具耐摔", "电影让子弹飞蓝光DVD", "色戒 张爱玲小说集", "鸦片战争历史读本", "射钉枪装修专用一体",
)


# Written by another agent the same way, told to mix common and less common real wording; run
# first on the same code: 88.8% (look-alikes 1 of 40, the 假币识别 of a money counter).
AURORA = {
    "porn": ("约炮", "同城上门服务", "楼凤信息", "外围女模", "包夜全套", "裸聊一对一", "福利姬资源", "莞式按摩", "学生妹兼职", "全国空降", "偷拍资源", "成人看片网"),
    "politics": ("法轮大法好", "退党保平安", "六四真相", "打倒共产党", "天灭中共", "习包子下台", "共匪", "台湾独立", "九评共产党", "西藏独立", "庆丰帝", "赵家人"),
    "terror": ("出售仿真枪", "气狗出售", "钢珠枪专卖", "猎枪货到付款", "手狗出售", "狗粮配件", "雷管批发", "自制炸药", "军用弩箭", "电击枪", "买凶杀人", "黑火药配方"),
    "drugs": ("冰毒出售", "溜冰壶", "麻古批发", "K粉", "听话水", "迷情药", "飞叶子", "大麻种子", "笑气弹", "摇头丸", "嗨药", "开心水"),
    "gambling": ("百家乐", "时时彩计划", "菠菜平台", "博彩代理", "澳门赌场", "网赌上分", "棋牌上下分", "透视扑克", "麻将作弊器", "扑克分析仪", "出千道具", "北京赛车PK10"),
    "contact": ("加薇{id}", "VX:{id}", "加V{id}", "扣扣{digits}", "企鹅{digits}", "飞机@{id}", "TG:{id}", "电话{phone}", "详询{phone}", "私聊加微信{id}", "V同号{phone}", "Q群{digits}"),
    "fraud": ("代开发票", "增值税专票", "办证刻章", "花呗套现", "刷单兼职", "好评返现", "出售微信号", "四六级答案", "驾考包过", "高仿假币", "学历代办", "跑分平台"),
    "abuse": ("傻逼卖家", "操你妈", "死全家", "脑残买家", "你妈死了", "SB店家", "穷逼滚远点", "狗杂种", "草泥马卖家", "贱人店主", "河南骗子", "黑鬼滚"),
}
AURORA_LOOK_ALIKES = (
    "儿童玩具水枪夏季戏水大容量", "充电式手枪钻家用电动螺丝刀", "热熔胶枪家用手工DIY套装", "中性笔钢珠笔0.5mm黑色12支", "子弹头口红哑光持久不脱色",
    "爆炸头假发套蓬松卷发cos", "户外冲锋衣男女三合一防水", "户外露营斧头劈柴工具", "溜冰鞋儿童初学者轮滑鞋套装", "摇头风扇落地扇家用静音",
    "无尘白粉笔教学用粉笔10盒", "手工编织大麻绳粗麻绳装饰", "搞笑气球生日派对装饰套装", "SK-II神仙水230ml护肤精华", "集邮纪念邮票大版张收藏册",
    "鸦片战争中国近代史读本", "迷幻摇滚黑胶唱片收藏版", "成人纸尿裤老年人尿不湿L码", "空调清洗上门服务全城可约", "婚庆全套服务婚礼策划布置",
    "裸妆粉底液遮瑕保湿持久", "AV线三色莲花音视频连接线", "处女座星座水晶手链女", "黄色连衣裙夏季新款女装", "北京天安门拼图1000片成人",
    "迪士尼维尼熊毛绒公仔玩具", "共产党宣言马克思恩格斯单行本", "舞台独立式追光灯演出灯光", "新疆独特风味手撕牛肉干", "宝藏独家款小众耳饰女",
    "老虎机存钱罐儿童玩具", "新鲜菠菜蔬菜农家现摘500g", "人体透视解剖挂图医学教学", "QQ糖水果软糖儿童零食", "飞机模型拼装航模合金",
    "衬衫纽扣扣子50颗装", "A4打印纸整箱500张可开发票", "验钞机点钞机假币识别商用", "草泥马毛绒玩具羊驼公仔", "迷你妈妈包单肩外出母婴包",
)

# The phrase sets in the order they were written.
ROUNDS = (("curated", SPAM), ("held-out", HELD_OUT), ("fresh", FRESH), ("later", LATER), ("final", FINAL),
          ("december", DECEMBER), ("late december", LATE_DECEMBER), ("evening", EVENING), ("night", NIGHT),
          ("closing", CLOSING), ("dawn", DAWN),
          ("morning", MORNING), ("noon", NOON), ("dusk", DUSK),
          ("twilight", TWILIGHT), ("midnight", MIDNIGHT), ("daybreak", DAYBREAK),
          ("sunrise", SUNRISE), ("vesper", VESPER),
          ("zenith", ZENITH), ("aurora", AURORA))

# Homophones and variants sellers write for the contact keywords.
HOMOPHONES = (
    ("微信", ("薇信", "威信", "徽信", "V信", "v信", "VX", "vx", "wx", "weixin")),
    ("V信", ("VX", "vx", "薇信", "威信")),
    ("QQ", ("扣扣", "抠抠", "企鹅", "qq")),
    ("扣扣", ("QQ", "抠抠", "企鹅")),
    ("企鹅", ("扣扣", "QQ")),
    ("薇", ("威", "徽", "微")),
    ("加", ("+", "➕", "＋")),
    ("+V", ("+v", "➕V", "加V", "加v")),
)
SEPARATORS = "*-_.|/~·、,，"
# Separators that are CJK ideographs or look like them (they survive dropping punctuation).
CJK_SEPARATORS = "丨丶丿乀一〡亅"
EMOJI_SEPARATORS = "❤★☆✿♥💋"
# Homophones and look-alikes of the WeChat keyword that sellers write.
WECHAT_VARIANTS = ("溦信", "嶶信", "卫信", "魏信", "薇芯", "威鑫", "徽欣", "V芯", "wei信", "危信")
WAYS = ("plain", "spaces", "symbols", "cjk-separator", "emoji-separator", "fullwidth", "homophone",
        "wechat-variant", "spread-id", "phone-format", "cjk-homophone",
        # added with the December round
        "traditional", "zero-width", "circled", "chinese-digits", "mixed-separators", "brackets",
        # added with the pinyin and homophone round
        "pinyin", "homophone-chars", "homoglyphs", "noise", "doubled", "emoji-words", "radical-forms",
        "right-to-left", "digit-look-alikes")
CHINESE_DIGITS = ("零一二三四五六七八九", "〇壹贰叁肆伍陆柒捌玖")

# Legitimate titles that hold a spam term only across a word boundary (黑色|情侣 holds 色情),
# or name a brand, snack, colour or toy. Written for this benchmark.
LOOK_ALIKES = (
    "黑色情侣装卫衣 春秋款", "白色情人节礼物 巧克力礼盒", "粉色情侣拖鞋 居家防滑", "青春药妆 祛痘精华液",
    "搞笑气球 生日派对装饰", "咸蛋黄片 网红零食 100g", "儿童水枪支架 户外玩具", "防盗号码锁 行李箱密码锁",
    "广博彩印笔记本 A5", "军火箭模型 拼装玩具", "消毒品牌 84消毒液 家用", "超大麻辣小龙虾 熟食",
    "天津特产 大麻花 零食", "百家乐园 儿童积木", "澳洲羊毛片 汽车坐垫", "油炸药膳鸡 半成品",
    "广博彩色文件夹 10个装", "六合彩钢瓦 厂家直销", "杀毒品牌 U盘", "验钞机 点钞机 鉴别真假币",
    "马桶刷单个装 长柄", "整套现货 秒发", "全套现代简约 沙发", "超大麻将桌 全自动",
    "天猫平台独家款 连衣裙", "西藏独特风味 牦牛肉干", "香港独立设计师 手提包", "新疆独有 和田大枣",
    "美军刺绣臂章 魔术贴", "面包夜宵 早餐 整箱", "老千层饼 手工", "清洗钱包 皮具护理剂",
    "进口交流电机 220V", "黄色视频线 AV线 3米", "喷枪支架 汽修工具", "伟星PPR水管 20mm",
    "卫星锅 接收器 高清", "微星B450M 主板", "维新 日式 茶具", "临时停车联系电话牌 挪车",
    "YSL黑鸦片香水 30ml", "冰糖雪梨 罐头", "pink粉饼 定妆", "玩具手枪 儿童 软弹枪",
    "手枪钻 充电式 12V", "热熔胶枪 买枪送胶棒", "SK-II神仙水 230ml 现货", "QQ糖 水果软糖",
    "企鹅抱枕 毛绒玩具", "唯心 手账本", "大麻绳 编织 手工", "开心果 原味 500g",
)


def normalise(text: str) -> str:
    """What the caller does before the filter: the text pipeline's normalisation (unescape,
    NFKC, invisible characters out, whitespace collapsed, traditional to simplified)."""
    return normalize_title(text)


def fill(template: str, rng: random.Random) -> str:
    letters = "abcdefghijkmnpqrstuvwxyz"
    return template.format(
        digits="".join(rng.choice("0123456789") for _ in range(rng.randint(6, 10))),
        phone="1" + rng.choice("3456789") + "".join(rng.choice("0123456789") for _ in range(9)),
        id=rng.choice(letters) + "".join(rng.choice(letters + "0123456789") for _ in range(rng.randint(5, 9))))


def obfuscate(phrase: str, rng: random.Random) -> tuple[str, str]:
    """``phrase`` disguised one random way of ``WAYS``, and the way's name ("plain" when the
    way does not apply to the phrase)."""
    way = rng.choice(WAYS)
    if way in MORE_WAYS:
        return MORE_WAYS[way](phrase, rng), way
    if way == "spaces":
        return " ".join(phrase), way
    if way == "symbols":
        return rng.choice(SEPARATORS).join(phrase), way
    if way == "cjk-separator":
        return rng.choice(CJK_SEPARATORS).join(phrase), way
    if way == "emoji-separator":
        return rng.choice(EMOJI_SEPARATORS).join(phrase), way
    if way == "fullwidth":
        return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in phrase), way
    if way in ("homophone", "cjk-homophone"):
        options = [(old, new) for old, news in HOMOPHONES if old in phrase for new in news]
        if options:
            old, new = rng.choice(options)
            out = phrase.replace(old, new, 1)
            return (out, way) if way == "homophone" else (rng.choice(CJK_SEPARATORS).join(out), way)
        return phrase.swapcase(), "case"
    if way == "wechat-variant":
        for keyword in ("微信", "V信", "薇信"):
            if keyword in phrase:
                return phrase.replace(keyword, rng.choice(WECHAT_VARIANTS), 1), way
    if way == "spread-id":
        match = re.search(r"[0-9A-Za-z_]{5,}$", phrase)
        if match:
            sep = rng.choice((" ", "-", ".", " _ ", "丨"))
            return phrase[:match.start()] + sep.join(match[0]), way
    if way == "phone-format":
        match = re.search(r"1[3-9]\d{9}", phrase)
        if match:
            d = match[0]
            sep = rng.choice(("-", " ", "—", "."))
            return phrase.replace(d, f"{d[:3]}{sep}{d[3:7]}{sep}{d[7:]}"), way
    return phrase, "plain"


@functools.lru_cache(maxsize=1)
def _to_traditional():
    import opencc

    return opencc.OpenCC("s2t")


def _traditional(phrase: str, rng: random.Random) -> str:
    return _to_traditional().convert(phrase)


def _zero_width(phrase: str, rng: random.Random) -> str:
    return rng.choice(("\u200b", "\u200c", "\u200d", "\ufeff")).join(phrase)


def _circled(phrase: str, rng: random.Random) -> str:
    def circle(char: str) -> str:
        if char in "123456789":
            return chr(0x2460 + int(char) - 1)
        if char == "0":
            return "⓪"
        if "a" <= char.lower() <= "z":
            return chr(0x24D0 + ord(char.lower()) - ord("a"))
        return char
    return "".join(map(circle, phrase))


def _chinese_digits(phrase: str, rng: random.Random) -> str:
    digits = rng.choice(CHINESE_DIGITS)
    return re.sub(r"\d", lambda m: digits[int(m[0])], phrase)


def _mixed_separators(phrase: str, rng: random.Random) -> str:
    pool = SEPARATORS + CJK_SEPARATORS + EMOJI_SEPARATORS + " "
    return "".join(char + rng.choice(pool) for char in phrase[:-1]) + phrase[-1:]


def _brackets(phrase: str, rng: random.Random) -> str:
    left, right = rng.choice(("【】", "()", "[]", "「」", "《》"))
    return "".join(f"{left}{char}{right}" for char in phrase)


def _cjk_at(phrase: str) -> list[int]:
    return [i for i, char in enumerate(phrase) if "\u4e00" <= char <= "\u9fff"]


def _pinyin(phrase: str, rng: random.Random) -> str:
    """One character, or two neighbours, written in pinyin (du博, 百jia乐, 外围nvbao夜)."""
    from pypinyin import lazy_pinyin

    at = _cjk_at(phrase)
    if not at:
        return phrase.swapcase()
    start = rng.choice(at)
    end = start + (2 if start + 1 in at and rng.random() < 0.4 else 1)
    spelled = "".join(lazy_pinyin(phrase[start:end]))
    return phrase[:start] + (spelled.upper() if rng.random() < 0.2 else spelled) + phrase[end:]


@functools.lru_cache(maxsize=1)
def _same_sound() -> dict[str, list[str]]:
    """Each common character (a word of its own at least 2,000 times in jieba's dictionary) ->
    the other common characters of its most common toneless reading."""
    import unicodedata

    import jieba
    from pypinyin.pinyin_dict import pinyin_dict

    def toneless(syllable: str) -> str:
        return "".join(c for c in unicodedata.normalize("NFD", syllable) if not unicodedata.combining(c))

    common = []
    for line in Path(jieba.__file__).with_name("dict.txt").read_text("utf-8").splitlines():
        word, count = line.split(" ", 2)[:2]
        if len(word) == 1 and int(count) >= 2000 and ord(word) in pinyin_dict:
            common.append(word)
    by_sound: dict[str, list[str]] = {}
    for char in common:
        by_sound.setdefault(toneless(pinyin_dict[ord(char)].split(",")[0]), []).append(char)
    return {char: [c for c in chars if c != char] for chars in by_sound.values() for char in chars}


def _homophone_chars(phrase: str, rng: random.Random) -> str:
    """One character (two in a phrase of five or more) written as another common one of the
    same sound (海洛引 for 海洛因, 代开发漂 for 代开发票)."""
    same = _same_sound()
    at = [i for i in _cjk_at(phrase) if same.get(phrase[i])]
    if not at:
        return _pinyin(phrase, rng)
    chars = list(phrase)
    for i in rng.sample(at, min(len(at), 2 if len(_cjk_at(phrase)) >= 5 else 1)):
        chars[i] = rng.choice(same[phrase[i]])
    return "".join(chars)


# Cyrillic and Greek letters that look like Latin letters and digits
LOOK_ALIKE_LETTERS = {"a": "а", "c": "с", "e": "е", "i": "і", "o": "о", "p": "р", "x": "х", "y": "у",
                      "k": "κ", "v": "ν", "q": "ԛ", "w": "ԝ", "3": "З", "0": "О"}


def _homoglyphs(phrase: str, rng: random.Random) -> str:
    """Latin letters and digits written as Cyrillic or Greek look-alikes (vх:аbс123, ԛiang支);
    a phrase in characters first gets one of them in pinyin."""
    if not any(c.lower() in LOOK_ALIKE_LETTERS for c in phrase):
        phrase = _pinyin(phrase, rng)
    return "".join(LOOK_ALIKE_LETTERS.get(c.lower(), c) if rng.random() < 0.6 else c for c in phrase)


def _noise(phrase: str, rng: random.Random) -> str:
    """A particle or a stray Latin letter typed between two characters (港a独, 共产啊党)."""
    at = [i for i in _cjk_at(phrase) if i + 1 in _cjk_at(phrase)]
    if not at:
        return _doubled(phrase, rng)
    i = rng.choice(at)
    return phrase[:i + 1] + rng.choice(("啊", "呀", "的", "哦", rng.choice("abdegkmrtxz"))) + phrase[i + 1:]


def _doubled(phrase: str, rng: random.Random) -> str:
    """One character typed twice, or every one (法轮轮功, 成成人人)."""
    at = _cjk_at(phrase)
    if not at:
        return phrase + phrase[-1:]
    if rng.random() < 0.3:
        return "".join(c * 2 if i in at else c for i, c in enumerate(phrase))
    i = rng.choice(at)
    return phrase[:i + 1] + phrase[i:]


EMOJI_FOR = {"手枪": "手🔫", "枪": "🔫", "炸弹": "💣", "药": "💊", "企鹅": "🐧", "飞机": "✈️", "电话": "📞",
             "手机": "📱", "门": "🚪", "马": "🐴", "狗": "🐶", "钱": "💰"}


def _emoji_words(phrase: str, rng: random.Random) -> str:
    """A word written as its emoji (钢珠🔫, 自制💣, 🐧12345678); else an emoji between characters."""
    words = [w for w in EMOJI_FOR if w in phrase]
    if not words:
        return rng.choice(EMOJI_SEPARATORS).join(phrase)
    word = rng.choice(words)
    return phrase.replace(word, EMOJI_FOR[word], 1)


@functools.lru_cache(maxsize=1)
def _radical_form_of() -> dict[str, str]:
    """Character -> a radical form that shows as it: a Kangxi radical (⼤ for 大) or a CJK
    Radicals Supplement form named after one (⻔ for 门, ⻩ for 黄)."""
    import unicodedata

    forms: dict[str, str] = {}
    for code in range(0x2F00, 0x2FD6):  # Kangxi radicals: NFKC gives their character
        forms.setdefault(normalise(chr(code)), chr(code))
    for code in range(0x2E80, 0x2EF4):
        name = unicodedata.name(chr(code), "").removeprefix("CJK RADICAL ")
        if name.startswith(("C-SIMPLIFIED ", "SIMPLIFIED ")):
            try:
                kangxi = unicodedata.lookup("KANGXI RADICAL " + name.split(" ", 1)[1])
            except KeyError:
                continue
            forms[normalise(kangxi)] = chr(code)
    return forms


def _radical_forms(phrase: str, rng: random.Random) -> str:
    """Characters written as the radical that shows as them (⼤保健, 天安⻔, ⻩色)."""
    forms = _radical_form_of()
    if not any(c in forms for c in phrase):
        return _brackets(phrase, rng)
    return "".join(forms.get(c, c) for c in phrase)


def _right_to_left(phrase: str, rng: random.Random) -> str:
    """The phrase reversed under a right-to-left override: it shows as written."""
    return f"\u202e{phrase[::-1]}\u202c"


def _digit_look_alikes(phrase: str, rng: random.Random) -> str:
    """Digits of a number written as letters that look like them (9188o7, 138l2З45678)."""
    if not re.search(r"\d{5}", phrase):
        return _homoglyphs(phrase, rng)
    swaps = {"0": "oO", "1": "lI", "3": "З"}
    chars = list(phrase)
    at = [i for i, c in enumerate(chars) if c in swaps]
    for i in rng.sample(at, min(len(at), 2)):
        chars[i] = rng.choice(swaps[chars[i]])
    return "".join(chars)


# Ways that apply to any phrase (each one's phrase is changed, maybe only by normalisation).
MORE_WAYS = {"traditional": _traditional, "zero-width": _zero_width, "circled": _circled,
             "chinese-digits": _chinese_digits, "mixed-separators": _mixed_separators, "brackets": _brackets,
             "pinyin": _pinyin, "homophone-chars": _homophone_chars, "homoglyphs": _homoglyphs, "noise": _noise,
             "doubled": _doubled, "emoji-words": _emoji_words, "radical-forms": _radical_forms,
             "right-to-left": _right_to_left, "digit-look-alikes": _digit_look_alikes}


def inject(title: str, phrase: str, rng: random.Random) -> str:
    at = rng.randint(0, len(title))
    pad = rng.choice(("", " "))
    return f"{title[:at]}{pad}{phrase}{pad}{title[at:]}"


def load_titles() -> list[str]:
    lines = TITLES.read_text("utf-8").splitlines()
    return [normalise(line.split("#####")[1]) for line in lines if line.count("#####") >= 4]


def load_captions() -> list[str]:
    """Real Chinese captions (COCO-CN, Flickr30k-CN): more real text that must stay clean."""
    out = []
    for path in CAPTIONS:
        if path.exists():
            rows = path.read_text("utf-8").splitlines()
            out += [normalise(row.split("\t")[-1]) for row in rows[1 if path.suffix == ".tsv" else 0:] if "\t" in row]
    return out


def speed(spam: SpamFilter, titles: list[str], words: list[list[str]], repeats: int) -> tuple[float, float]:
    """Best-of-``repeats`` µs per title: the filter (words given), and a naive phrase loop over
    the same lexicons (the broad lists included)."""
    folder = resources.files("taomm.resources").joinpath("spam")
    files = [folder.joinpath(f"{category}.txt") for category in SPAM_CATEGORIES]
    files += [folder.joinpath("broad", f"{category}.txt") for category in SPAM_CATEGORIES]
    phrases = [line.split("#", 1)[0].strip().lstrip("=").lower()
               for file in files if file.is_file() for line in file.read_text("utf-8").splitlines()]
    phrases = [p for p in phrases if p]

    def naive(text: str) -> bool:
        text = text.lower()
        return any(p in text for p in phrases)

    best_filter = best_naive = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for title, cut in zip(titles, words, strict=True):
            spam.check(title, cut)
        best_filter = min(best_filter, time.perf_counter() - start)
        start = time.perf_counter()
        for title in titles:
            naive(title)
        best_naive = min(best_naive, time.perf_counter() - start)
    return best_filter / len(titles) * 1e6, best_naive / len(titles) * 1e6


def demo_catalog(spam: SpamFilter) -> tuple[int, int, int, int]:
    """(spam titles, flagged with the right category, clean titles, clean ones flagged)."""
    from taomm.datasets.demo_catalog import generate_catalog
    from taomm.datasets.demo_vocab import SPAM_PHRASES

    heads = {template.split("{")[0]: category
             for category, templates in SPAM_PHRASES.items() for template in templates}
    with tempfile.TemporaryDirectory() as tmp:
        generate_catalog(tmp, items=300, seed=0)
        rows = [json.loads(line) for line in Path(tmp, "items.jsonl").read_text("utf-8").splitlines()]
    spam_rows = [r for r in rows if r["title_noise"] == "spam"]
    clean_rows = [r for r in rows if r["title_noise"] is None]
    right = 0
    for row in spam_rows:
        title = normalise(row["title"])
        expected = next(category for head, category in heads.items() if head in title)
        right += spam.check(title) == expected
    wrong = sum(spam.check(normalise(r["title"])) is not None for r in clean_rows)
    return len(spam_rows), right, len(clean_rows), wrong


def report_clean_sets(spam: SpamFilter, titles: list[str], words: list[list[str]]) -> None:
    """Print what the filter flags among real titles, real captions and the look-alike sets."""
    flagged = [(spam.check(t, w), t) for t, w in zip(titles, words, strict=True)]
    flagged = [(c, t) for c, t in flagged if c]
    print(f"real titles: {len(flagged)}/{len(titles)} flagged = {len(flagged) / len(titles):.2%} (goal <= 1%)")
    for category, title in flagged:
        print(f"  [{category}] {title}")
    captions = load_captions()
    flagged = [(spam.check(c), c) for c in captions]
    flagged = [(c, t) for c, t in flagged if c]
    print(f"real captions (COCO-CN, Flickr30k-CN): {len(flagged)}/{len(captions)} flagged "
          f"= {len(flagged) / max(1, len(captions)):.2%}")
    for category, text in flagged[:20]:
        print(f"  [{category}] {text}")

    for name, titles_set in (("other domains", OTHER_DOMAINS), ("look-alikes", LOOK_ALIKES),
                             ("fresh look-alikes", FRESH_LOOK_ALIKES),
                             ("later look-alikes", LATER_LOOK_ALIKES), ("final look-alikes", FINAL_LOOK_ALIKES),
                             ("december look-alikes", DECEMBER_LOOK_ALIKES),
                             ("late december look-alikes", LATE_DECEMBER_LOOK_ALIKES),
                             ("evening look-alikes", EVENING_LOOK_ALIKES), ("night look-alikes", NIGHT_LOOK_ALIKES),
                             ("closing look-alikes", CLOSING_LOOK_ALIKES),
                             ("dawn look-alikes", DAWN_LOOK_ALIKES),
                             ("morning look-alikes", MORNING_LOOK_ALIKES),
                             ("noon look-alikes", NOON_LOOK_ALIKES),
                             ("dusk look-alikes", DUSK_LOOK_ALIKES), ("twilight look-alikes", TWILIGHT_LOOK_ALIKES),
                             ("midnight look-alikes", MIDNIGHT_LOOK_ALIKES),
                             ("daybreak look-alikes", DAYBREAK_LOOK_ALIKES),
                             ("sunrise look-alikes", SUNRISE_LOOK_ALIKES), ("vesper look-alikes", VESPER_LOOK_ALIKES),
                             ("zenith look-alikes", ZENITH_LOOK_ALIKES), ("aurora look-alikes", AURORA_LOOK_ALIKES)):
        looks = [(spam.check(normalise(t)), t) for t in titles_set]
        looks = [(c, t) for c, t in looks if c]
        print(f"\n{name}: {len(looks)}/{len(titles_set)} flagged = {len(looks) / len(titles_set):.1%} (goal <= 5%)")
        for category, title in looks:
            print(f"  [{category}] {title}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-category", type=int, default=400, help="injected titles per category")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=10, help="timing repeats (best is kept)")
    parser.add_argument("--show-misses", type=int, default=5, help="missed titles printed per category")
    args = parser.parse_args()
    if not TITLES.exists():
        print(f"reference data not found: {TITLES} (the shared data folder is needed)", file=sys.stderr)
        return 2

    spam = SpamFilter.default()
    titles = load_titles()
    words = [segment(t) for t in titles]
    report_clean_sets(spam, titles, words)

    rng = random.Random(args.seed)
    misses: list[tuple[str, str | None, str, str]] = []
    by_way: dict[str, list[int]] = {}
    hosts_flagged = hosts = 0
    for name, phrases in ROUNDS:
        print(f"\ninjected spam, {name} phrases, {args.per_category} titles per category (seed {args.seed}):")
        total = 0
        for category in SPAM_CATEGORIES:
            hits = 0
            for _ in range(args.per_category):
                host = rng.choice(titles)
                phrase, way = obfuscate(fill(rng.choice(phrases[category]), rng), rng)
                text = normalise(inject(host, phrase, rng))
                got = spam.check(text, segment(text))
                hits += got == category
                by_way.setdefault(way, [0, 0])[0] += got == category
                by_way[way][1] += 1
                if got != category:
                    misses.append((category, got, way, text))
                hosts += 1
                hosts_flagged += spam.check(host) is not None
            total += hits
            print(f"  {category:9s} recall {hits / args.per_category:.1%} (goal >= 95%)")
        print(f"  all       recall {total / (args.per_category * len(SPAM_CATEGORIES)):.1%}")
    print("\nrecall per obfuscation kind (all phrase sets):")
    for way, (hits, count) in sorted(by_way.items()):
        print(f"  {way:16s} {hits / count:.1%} of {count}")
    print(f"false positives on the host titles before injection: {hosts_flagged}/{hosts} "
          f"= {hosts_flagged / hosts:.2%}")
    shown: dict[str, int] = {}
    for category, got, way, text in misses:  # a few per category
        shown[category] = shown.get(category, 0) + 1
        if shown[category] <= args.show_misses:
            print(f"  missed [{category} -> {got}, {way}] {text}")

    n_spam, right, n_clean, wrong = demo_catalog(spam)
    print(f"\ndemo catalog (300 items, seed 0): spam {right}/{n_spam} flagged with the right category; "
          f"clean {wrong}/{n_clean} flagged")

    per_title, naive = speed(spam, titles, words, args.repeats)
    print(f"\nspeed (one core, words given, best of {args.repeats}): {per_title:.2f} µs/title "
          f"(goal <= 10); naive `in` loop over all lexicon phrases: {naive:.2f} µs/title")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
