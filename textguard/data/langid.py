"""Language identification for rows whose dataset does not say their language (py3langid, offline)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from textguard.data.dataconfig import LanguageIdSpec
from textguard.data.examples import Example
from textguard.errors import ConfigError

#: BCP-47 "undetermined": what a row gets when the identifier is not confident enough.
UNDETERMINED = "und"


def identifier(spec: LanguageIdSpec) -> Any:
    """A py3langid identifier restricted to the configured candidate languages."""
    from py3langid.langid import MODEL_DIR, MODEL_FILE, LanguageIdentifier

    model = LanguageIdentifier.from_modelpath(MODEL_DIR / MODEL_FILE, norm_probs=True)
    if spec.candidates:
        # py3langid knows primary subtags only; "pt-BR" is identified as "pt".
        primary = sorted({tag.split("-")[0].lower() for tag in spec.candidates})
        try:
            model.set_languages(primary)
        except ValueError as exc:
            raise ConfigError(f"language_id.candidates: {exc}") from None
    return model


def fill_languages(examples: list[Example], spec: LanguageIdSpec) -> dict[str, Any]:
    """Identify the language of rows that have none; returns the counts for the report."""
    missing = [example for example in examples if example.language is None]
    if not missing:
        return {"rows": 0, "detected": {}}
    model = identifier(spec)
    # Map a detected primary subtag back to a configured regional tag ("pt" -> "pt-BR").
    regional = {tag.split("-")[0].lower(): tag for tag in spec.candidates}
    detected: Counter[str] = Counter()
    for example in missing:
        language, confidence = model.classify(example.text)
        language = UNDETERMINED if confidence < spec.min_confidence else regional.get(language, language)
        example.language = language
        detected[language] += 1
    return {"rows": len(missing), "detected": dict(detected.most_common())}
