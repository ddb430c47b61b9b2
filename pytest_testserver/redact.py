"""Secrets out of every output: values of secret_env, and of env keys that look secret."""

from __future__ import annotations

import re
from collections.abc import Iterable

MASK = "***"
# Masking a value that was not secret costs little; printing one that was costs a lot.
_SECRET_KEY = re.compile(r"PASS|TOKEN|SECRET|KEY|CREDENTIAL|PRIVATE", re.IGNORECASE)
# Very short values would mask ordinary words and digits everywhere; they are not hidden.
MIN_SECRET_LENGTH = 3


def looks_secret(key: str) -> bool:
    return bool(_SECRET_KEY.search(key))


class Redactor:
    """Replaces every known secret value in a text with ``***``."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        new = {s for s in secrets if len(s) >= MIN_SECRET_LENGTH} - self._secrets
        if not new:
            return
        self._secrets |= new
        # Longest first, so a secret containing another is masked whole.
        ordered = sorted(self._secrets, key=len, reverse=True)
        self._pattern = re.compile("|".join(re.escape(s) for s in ordered))

    def __call__(self, text: str) -> str:
        if self._pattern is None or not text:
            return text
        return self._pattern.sub(MASK, text)
