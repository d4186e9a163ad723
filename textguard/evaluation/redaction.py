"""Keeping texts out of evaluation artefacts: keyed hashes for texts, stable hashes for row ids.

Texts are replaced by an HMAC-SHA256 under a key from TEXTGUARD_EVAL_HASH_KEY, or a random key per run
when that is unset, so nobody can confirm a guessed text by hashing it (the key is never logged). With
a shared key, the same text hashes the same across runs, so an error can be followed between models.

Row ids are hashed without a key: they are dataset identifiers, not content, and `compare` must be able
to pair the rows of two runs whatever key each run used. Hashing them still keeps source-specific id
schemes (which may encode a user or a meeting) out of MLflow.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets

HASH_KEY_ENV = "TEXTGUARD_EVAL_HASH_KEY"
ROW_KEY_LENGTH = 20
TEXT_HASH_LENGTH = 16


def row_key(identifier: str) -> str:
    return hashlib.sha256(f"textguard-row:{identifier}".encode()).hexdigest()[:ROW_KEY_LENGTH]


class TextHasher:
    """HMAC-SHA256 of texts; `key_source` says where the key came from ("env" or "random")."""

    def __init__(self, key: bytes | None = None) -> None:
        if key is None:
            configured = os.environ.get(HASH_KEY_ENV, "")
            key = configured.encode("utf-8") if configured else None
            self.key_source = "env" if key else "random"
        else:
            self.key_source = "given"
        self._key = key or secrets.token_bytes(32)

    def __call__(self, text: str) -> str:
        digest = hmac.new(self._key, text.encode("utf-8"), hashlib.sha256).hexdigest()
        return f"hmac:{digest[:TEXT_HASH_LENGTH]}"
