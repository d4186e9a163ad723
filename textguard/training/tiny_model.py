"""Tiny randomly initialised encoders with tokenizers built on the fly from a corpus.

They exercise the real code paths (BERT/WordPiece and XLM-R/SentencePiece-Unigram, as the multilingual
production checkpoints use) in tests and smoke runs without any download.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any, Literal

from textguard.labels import LABELS, id2label, label2id
from textguard.text import normalize

TinyArchitecture = Literal["bert", "xlm-roberta"]


def _word_counts(corpus: list[str], normalizer: Any, pre_tokenizer: Any) -> Counter[str]:
    counts: Counter[str] = Counter()
    for text in corpus:
        counts.update(word for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text)))
    return counts


def _frequent_first(counts: Counter[str]) -> list[str]:
    # Ties broken by the string itself: the Rust trainers break them by hash order, which differs
    # between processes and made tiny models (and every test built on them) irreproducible.
    return sorted(counts, key=lambda word: (-counts[word], word))


def _bert_tokenizer(corpus: list[str], vocab_size: int, max_length: int) -> Any:
    """WordPiece over the corpus: every character (alone and as a ##continuation) plus the most
    frequent whole words, ids in a deterministic order."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    normalizer = normalizers.BertNormalizer(lowercase=True)
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    counts = _word_counts(corpus, normalizer, pre_tokenizer)
    characters = sorted({character for word in counts for character in word})
    vocab = [*specials, *characters, *(f"##{character}" for character in characters)]
    known = set(vocab)
    vocab += [word for word in _frequent_first(counts) if word not in known][
        : max(0, vocab_size - len(vocab))
    ]
    tokenizer = Tokenizer(
        models.WordPiece(vocab={token: i for i, token in enumerate(vocab)}, unk_token="[UNK]")
    )
    tokenizer.normalizer = normalizer
    tokenizer.pre_tokenizer = pre_tokenizer
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab.index("[CLS]")), ("[SEP]", vocab.index("[SEP]"))],
    )
    tokenizer.decoder = decoders.WordPiece()
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=max_length,
    )


def _xlmr_tokenizer(corpus: list[str], vocab_size: int, max_length: int) -> Any:
    """SentencePiece-style Unigram over the corpus (Metaspace pieces scored by log frequency), with
    xlm-roberta-base's special-token layout: <s>=0, <pad>=1, </s>=2, <unk>=3."""
    import math

    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    normalizer = normalizers.Sequence(
        [normalizers.Nmt(), normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")]
    )
    pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
    counts = _word_counts(corpus, normalizer, pre_tokenizer)
    characters = Counter(character for word, count in counts.items() for character in word * count)
    total = sum(counts.values()) + sum(characters.values())
    pieces: list[tuple[str, float]] = [(token, 0.0) for token in specials]
    # Characters first, so every text stays encodable however small vocab_size is.
    pieces += [
        (character, math.log(characters[character] / total) - 10.0) for character in sorted(characters)
    ]
    budget = max(0, vocab_size - len(pieces))
    pieces += [(word, math.log(counts[word] / total)) for word in _frequent_first(counts) if len(word) > 1][
        :budget
    ]
    tokenizer = Tokenizer(models.Unigram(pieces, unk_id=specials.index("<unk>"), byte_fallback=False))
    tokenizer.normalizer = normalizer
    tokenizer.pre_tokenizer = pre_tokenizer
    tokenizer.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", 0), ("</s>", 2)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<s>",
        eos_token="</s>",
        cls_token="<s>",
        sep_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        mask_token="<mask>",
        model_max_length=max_length,
    )


def build_tiny_tokenizer(
    architecture: TinyArchitecture, corpus: Iterable[str], *, vocab_size: int = 1000, max_length: int = 64
) -> Any:
    """A fast tokenizer trained on `corpus` (normalised first, as every text is before tokenisation)."""
    texts = [normalize(text) for text in corpus]
    if not texts:
        raise ValueError("a tiny model needs a non-empty corpus to train its tokenizer")
    if architecture == "bert":
        return _bert_tokenizer(texts, vocab_size, max_length)
    if architecture == "xlm-roberta":
        return _xlmr_tokenizer(texts, vocab_size, max_length)
    raise ValueError(f"unknown tiny architecture {architecture!r}: choose bert or xlm-roberta")


def build_tiny_classifier(
    architecture: TinyArchitecture,
    tokenizer: Any,
    *,
    hidden_size: int = 32,
    num_layers: int = 2,
    num_heads: int = 2,
    max_length: int = 64,
    seed: int = 0,
) -> Any:
    """A randomly initialised multi-label classifier over the taxonomy sized for `tokenizer`."""
    import torch
    from transformers import (
        BertConfig,
        BertForSequenceClassification,
        XLMRobertaConfig,
        XLMRobertaForSequenceClassification,
    )

    common: dict[str, Any] = {
        "hidden_size": hidden_size,
        "num_hidden_layers": num_layers,
        "num_attention_heads": num_heads,
        "intermediate_size": hidden_size * 2,
        "num_labels": len(LABELS),
        "id2label": dict(id2label),
        "label2id": dict(label2id),
        "problem_type": "multi_label_classification",
    }
    torch.manual_seed(seed)
    if architecture == "bert":
        bert = BertConfig(
            vocab_size=len(tokenizer),
            max_position_embeddings=max_length,
            pad_token_id=tokenizer.pad_token_id,
            **common,
        )
        return BertForSequenceClassification(bert)
    if architecture == "xlm-roberta":
        # XLM-R offsets positions by padding_idx + 1, hence the two extra positions.
        xlmr = XLMRobertaConfig(
            vocab_size=len(tokenizer),
            max_position_embeddings=max_length + 2,
            pad_token_id=tokenizer.pad_token_id,
            type_vocab_size=1,
            **common,
        )
        return XLMRobertaForSequenceClassification(xlmr)
    raise ValueError(f"unknown tiny architecture {architecture!r}: choose bert or xlm-roberta")


def build_tiny_model(
    architecture: TinyArchitecture,
    corpus: Iterable[str],
    *,
    vocab_size: int = 1000,
    hidden_size: int = 32,
    num_layers: int = 2,
    num_heads: int = 2,
    max_length: int = 64,
    seed: int = 0,
) -> tuple[Any, Any]:
    """(model, tokenizer) for a tiny multi-label classifier over the taxonomy."""
    tokenizer = build_tiny_tokenizer(architecture, corpus, vocab_size=vocab_size, max_length=max_length)
    model = build_tiny_classifier(
        architecture,
        tokenizer,
        hidden_size=hidden_size,
        num_layers=num_layers,
        num_heads=num_heads,
        max_length=max_length,
        seed=seed,
    )
    return model, tokenizer
