"""Build randomly initialised Chinese BERT models for tests and benchmarks.

The real bert-base-chinese weights cannot be downloaded everywhere (CI has no hub access), so
tests and the benchmark build a model with random weights and a generated vocabulary whose
special tokens sit at bert-base-chinese's ids. Outputs of such a model are noise: they are only
good for checking mechanics and measuring cost (which does not depend on weight values).

Needs torch + transformers: never imported by the serving path.
"""

import logging
from pathlib import Path

logger = logging.getLogger(__name__)

# bert-base-chinese's layout: [PAD]=0, [unused1..99]=1..99, [UNK]=100, [CLS]=101, [SEP]=102,
# [MASK]=103, then punctuation, digits, letters and CJK characters.
SPECIAL_TOKENS = (
    ["[PAD]"]
    + [f"[unused{i}]" for i in range(1, 100)]
    + ["[UNK]", "[CLS]", "[SEP]", "[MASK]", "<S>", "<T>"]
)
ASCII_TOKENS = list("!\"#$%&'()*+,-./0123456789:;<=>?@[\\]^_`abcdefghijklmnopqrstuvwxyz{|}~")
CJK_PUNCTUATION = list("，。、；：？！“”‘’（）《》【】…—·～")
COMMON_CHINESE = (
    "的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年得就那要下以生会自着去之过家"
    "学对可她里后小么心多天而能好都然没日于起还发成事只作当想看文无开手十用主行方又如前所本见经"
    "头面公同三已老从动两长知民样现分将外但身些与高意进把法此实回二理美点月明社长气真今花山水风"
    "雨春秋冬夏雪云月日星光红绿白黑青蓝黄吃喝睡走跑飞读写画唱听说笑哭爱恨喜怒哀乐床前疑是地上霜"
    "举头望低故乡画蛇添足守株待兔一石二鸟马到成功自相矛盾亡羊补牢对牛弹琴井底之蛙狐假虎威杯弓影"
    "朝三暮四掩耳盗铃刻舟求剑叶公龙鹤鸡群锦上添花雪中送炭半途而废熟能生巧入木分百发中心旷神怡"
    "北京上海广州城市火车飞机汽车学校老师同学朋友妈妈爸爸哥姐弟妹猫狗鱼鸟书本电脑手机咖啡茶饭菜"
)
SUBWORD_TOKENS = ["##s", "##ing", "##ed", "##er", "##0", "##1"]


def chinese_vocab(size=None):
    """Return a vocabulary list: specials at bert-base-chinese ids, then text characters.

    With ``size`` the list is filled up with further CJK ideographs (U+4E00 onwards) to exactly
    that length, as bert-base-chinese's 21128 entries.
    """
    tokens = list(SPECIAL_TOKENS)
    seen = set(tokens)
    for tok in ASCII_TOKENS + CJK_PUNCTUATION + list(COMMON_CHINESE) + SUBWORD_TOKENS:
        if tok not in seen:
            seen.add(tok)
            tokens.append(tok)
    if size is not None:
        code = 0x4E00
        while len(tokens) < size:
            ch = chr(code)
            code += 1
            if ch not in seen:
                seen.add(ch)
                tokens.append(ch)
        del tokens[size:]
    return tokens


def build_random_model(
    out_dir,
    *,
    vocab_size=None,
    hidden_size=32,
    num_layers=2,
    num_heads=2,
    intermediate_size=64,
    max_position_embeddings=128,
    seed=0,
):
    """Save a random ``BertForMaskedLM`` and its tokenizer to ``out_dir`` (save_pretrained).

    Defaults give a tiny model for tests. ``bert_base_chinese_architecture()`` gives the
    arguments for a model of bert-base-chinese's exact size.
    """
    import torch
    from transformers import BertConfig, BertForMaskedLM, BertTokenizerFast

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    vocab = chinese_vocab(vocab_size)
    vocab_file = out / "vocab.txt"
    vocab_file.write_text("\n".join(vocab) + "\n", encoding="utf-8")
    # transformers 5.x silently ignores vocab_file= on the fast tokenizer and builds a 5-token
    # vocabulary, so pass the mapping itself.
    tokenizer = BertTokenizerFast(
        vocab={t: i for i, t in enumerate(vocab)}, do_lower_case=True, tokenize_chinese_chars=True
    )
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        intermediate_size=intermediate_size,
        max_position_embeddings=max_position_embeddings,
    )
    torch.manual_seed(seed)
    model = BertForMaskedLM(config)
    if hidden_size <= 64:
        # A tiny model initialised at std 0.02 predicts an almost flat distribution (scores all
        # near 1/vocab), where a wrong word scores like the right one and a test could not tell
        # them apart. Spreading the output weights makes scores differ, for every seed alike;
        # tests still compare rankings with a float tolerance, so none depends on the seed.
        with torch.no_grad():
            model.cls.predictions.decoder.weight.mul_(20.0)
    model.eval()
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    logger.info(
        "random model saved to %s (vocab %d, %d layers, hidden %d)",
        out,
        len(vocab),
        num_layers,
        hidden_size,
    )
    return out


def bert_base_chinese_architecture():
    """Arguments for ``build_random_model`` matching bert-base-chinese's config exactly."""
    return dict(
        vocab_size=21128,
        hidden_size=768,
        num_layers=12,
        num_heads=12,
        intermediate_size=3072,
        max_position_embeddings=512,
    )
