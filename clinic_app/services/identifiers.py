"""Patient identifiers (medical record numbers) are never stored in clear.

A clinic may keep the patient's identifier to find the patient again; it is stored only as
AES-256-GCM ciphertext, with a keyed HMAC-SHA256 of the normalised identifier for look-ups
(equality only, so the hash reveals nothing without the key). The 64-byte key (32 for the
cipher, 32 for the look-up hash) lives in ``<keys dir>/patient-identifiers.key``, outside the
data folder and the database, mode 0600: a copy of the database alone does not reveal who the
patients are.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from clinic_app.config.secrets import load_or_create_secret
from clinic_app.config.settings import Settings
from clinic_app.domain.errors import ConfigError, InputError

KEY_FILENAME = "patient-identifiers.key"
KEY_BYTES = 64
_FORMAT = b"\x01"
_AAD = b"clinicfusion patient identifier v1"
_NONCE_BYTES = 12
MAX_IDENTIFIER_CHARS = 64


def normalise_identifier(identifier: str) -> str:
    """Upper case without spaces: "mrn 00 12-34" and "MRN0012-34" are the same identifier."""
    normalised = re.sub(r"\s+", "", identifier).upper()
    if not normalised:
        raise InputError("The patient identifier is empty.")
    if len(normalised) > MAX_IDENTIFIER_CHARS:
        raise InputError(f"The patient identifier has more than {MAX_IDENTIFIER_CHARS} characters.")
    return normalised


class PatientIdentifierCipher:
    """Encrypts, decrypts and hashes patient identifiers with one secret key."""

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError(f"the identifier key must be {KEY_BYTES} bytes")
        self._cipher = AESGCM(key[:32])
        self._lookup_key = key[32:]

    @classmethod
    def from_settings(cls, settings: Settings) -> PatientIdentifierCipher:
        return cls(
            load_or_create_secret(
                settings.keys_dir / KEY_FILENAME,
                KEY_BYTES,
                "patient identifier key",
                "the stored patient identifiers cannot be read",
            )
        )

    def encrypt(self, identifier: str) -> bytes:
        nonce = os.urandom(_NONCE_BYTES)
        data = normalise_identifier(identifier).encode("utf-8")
        return _FORMAT + nonce + self._cipher.encrypt(nonce, data, _AAD)

    def decrypt(self, blob: bytes) -> str:
        if blob[:1] != _FORMAT or len(blob) < 1 + _NONCE_BYTES + 16:
            raise ConfigError("A stored patient identifier is damaged or of an unknown format.")
        nonce, ciphertext = blob[1 : 1 + _NONCE_BYTES], blob[1 + _NONCE_BYTES :]
        try:
            return self._cipher.decrypt(nonce, ciphertext, _AAD).decode("utf-8")
        except InvalidTag as exc:
            raise ConfigError(
                "A stored patient identifier cannot be decrypted with this workstation's key.",
                hint=f"Use the {KEY_FILENAME} that was in use when the patient was registered.",
            ) from exc

    def lookup_hash(self, identifier: str) -> str:
        data = normalise_identifier(identifier).encode("utf-8")
        return hmac.new(self._lookup_key, data, hashlib.sha256).hexdigest()
