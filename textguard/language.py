"""Language of a message when the client did not say: py3langid (offline, ~30 µs per chat message).

The identifier (0.6 s to load) is built once per process, during start-up, not on the first request.
Short or ambiguous messages ("ok", "lol") get "und" (BCP-47 undetermined) instead of a guess.
"""

from __future__ import annotations

from functools import cache
from typing import Any

UNDETERMINED = "und"
#: Below this normalised probability the answer is "und".
MIN_CONFIDENCE = 0.5


class LanguageDetector:
    def __init__(self, min_confidence: float = MIN_CONFIDENCE) -> None:
        self.min_confidence = min_confidence
        self._identifier: Any = None

    def load(self) -> None:
        self._identifier = _identifier()

    def detect(self, text: str) -> str:
        if not text.strip():
            return UNDETERMINED
        if self._identifier is None:
            self.load()
        language, confidence = self._identifier.classify(text)
        return str(language) if confidence >= self.min_confidence else UNDETERMINED


@cache
def _identifier() -> Any:
    # One per process: the model is read-only once loaded, and several apps (tests) can share it.
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
