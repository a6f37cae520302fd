"""De-identification: keyed pseudonyms for identifiers.

Readers copy only an explicit allow-list of non-identifying attributes out of a DICOM file and pass every
identifier through :class:`Pseudonymizer`, so the PHI attributes of the PS3.15 Annex E Basic Profile
(:data:`rfm_data.readers.dicom_phi.BASIC_PROFILE_KEYWORDS`) never leave the reader.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass


@dataclass(frozen=True)
class Pseudonymizer:
    """HMAC-SHA256 pseudonyms: stable for one key, not reversible or guessable without it."""

    key: bytes

    def __call__(self, kind: str, value: str) -> str:
        """``kind``-prefixed pseudonym of ``value``; empty stays empty (absent is not an identity)."""
        value = value.strip()
        if not value:
            return ""
        digest = hmac.new(self.key, f"{kind}\x00{value}".encode(), hashlib.sha256).hexdigest()
        return f"{kind}-{digest[:20]}"
