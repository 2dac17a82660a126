"""Encryption at rest for enrolled secrets: AES-256-GCM keys held by key id.

Responsibility: turn a secret (a TOTP seed) into a compact text blob that the enrolment
database can store, and back, with keys that can rotate. The key file lists keys one per line
as ``<key_id> <base64 of 32 random bytes>``; the *last* key is the current one (new secrets
are encrypted with it), the others stay to decrypt what they encrypted until every secret is
re-encrypted. A blob is ``<key_id>:<base64 of nonce || ciphertext || tag>``, so the key that
wrote it is known without trial decryption.

AES-GCM (NIST SP 800-38D) with a fresh random 96-bit nonce per encryption (§8.2.2): with one
key, the collision bound stays negligible far beyond the number of secrets an enrolment
database holds. The caller passes *associated data* that names the row the blob belongs to
(for example the token id): a blob copied into another row does not decrypt, so an attacker
who can write the database cannot give one user another user's seed.

What this module must not do: read files or the environment (the caller passes the key file's
text and its name), log, or put key material or plaintext into an exception message.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from mfa_radius.errors import KeyUnavailable

KEY_BYTES = 32
"""AES-256: 32-byte keys."""

NONCE_BYTES = 12
"""96-bit nonces, the size AES-GCM is specified for (SP 800-38D §5.2.1.1)."""

_TAG_BYTES = 16
_KEY_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


class Keyring:
    """AES-256-GCM keys by key id, with one current key for encryption.

    Args:
        keys: key id -> 32-byte key.
        current: the key id used by :meth:`encrypt`; must be in ``keys``.

    Raises:
        KeyUnavailable: a key id is malformed, a key is not 32 bytes, or ``current`` is not
            one of the keys.
    """

    __slots__ = ("_ciphers", "_current", "_current_key")

    def __init__(self, keys: Mapping[str, bytes], current: str) -> None:
        for key_id, key in keys.items():
            if not _KEY_ID.fullmatch(key_id):
                raise KeyUnavailable(f"key id {key_id!r} must match {_KEY_ID.pattern}")
            if len(key) != KEY_BYTES:
                raise KeyUnavailable(f"key id {key_id!r}: key must be {KEY_BYTES} bytes")
        if current not in keys:
            raise KeyUnavailable(f"key id {current!r} is not in the key file")
        self._ciphers = {key_id: AESGCM(key) for key_id, key in keys.items()}
        self._current = current
        self._current_key = keys[current]

    @classmethod
    def from_text(cls, text: str, *, source: str) -> Keyring:
        """Parse a key file.

        One key per line, ``<key_id> <base64 of 32 bytes>``; blank lines and lines starting
        with ``#`` are ignored; the last key is the current one.

        Args:
            text: the key file's content.
            source: the file's name, used in error messages.

        Returns:
            The keyring.

        Raises:
            KeyUnavailable: a line is malformed (the message names ``source`` and the line
                number, never the line), a key id repeats, or there is no key at all.
        """
        keys: dict[str, bytes] = {}
        current = ""
        for number, raw in enumerate(text.splitlines(), start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            where = f"{source} line {number}"
            fields = line.split()
            if len(fields) != 2 or not _KEY_ID.fullmatch(fields[0]):
                raise KeyUnavailable(
                    f"{where}: expected '<key_id> <base64 of {KEY_BYTES} bytes>'"
                    f" with a key id matching {_KEY_ID.pattern}"
                )
            key_id, encoded = fields
            try:
                key = base64.b64decode(encoded, validate=True)
            except ValueError:  # binascii.Error, or non-ASCII text
                raise KeyUnavailable(f"{where}: the key is not valid base64") from None
            if len(key) != KEY_BYTES:
                raise KeyUnavailable(f"{where}: the key must be {KEY_BYTES} bytes")
            if key_id in keys:
                raise KeyUnavailable(f"{where}: key id {key_id!r} appears twice")
            keys[key_id] = key
            current = key_id
        if not keys:
            raise KeyUnavailable(f"{source}: no key found")
        return cls(keys, current)

    @staticmethod
    def generate_line(key_id: str) -> str:
        """Return a new key file line with a fresh random key (for ``mfa-radius`` key setup).

        Args:
            key_id: the new key's id; append the line to rotate to it.

        Returns:
            ``"<key_id> <base64 key>"`` without a newline.

        Raises:
            KeyUnavailable: the key id is malformed.
        """
        if not _KEY_ID.fullmatch(key_id):
            raise KeyUnavailable(f"key id {key_id!r} must match {_KEY_ID.pattern}")
        return f"{key_id} {base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode('ascii')}"

    @property
    def current_key_id(self) -> str:
        """The key id new secrets are encrypted with."""
        return self._current

    @property
    def key_ids(self) -> frozenset[str]:
        """Every key id this keyring can decrypt."""
        return frozenset(self._ciphers)

    def derive(self, label: bytes) -> bytes:
        """A 32-byte key for another purpose, derived from the current key (HMAC-SHA256).

        Every node of a cluster reads the same key file, so they derive the same key (used to
        hash sent codes, which any node may have to check).

        Args:
            label: names the purpose; different labels give unrelated keys.
        """
        return hmac.new(
            self._current_key, b"mfa-radius derive\x00" + label, hashlib.sha256
        ).digest()

    def encrypt(self, plaintext: bytes, *, aad: bytes) -> str:
        """Encrypt with the current key and a fresh random nonce.

        Args:
            plaintext: the secret.
            aad: associated data naming the row the blob belongs to; the same value must be
                given to :meth:`decrypt`.

        Returns:
            ``"<key_id>:<base64 of nonce || ciphertext || tag>"``.
        """
        nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = self._ciphers[self._current].encrypt(nonce, plaintext, aad)
        return f"{self._current}:{base64.b64encode(nonce + sealed).decode('ascii')}"

    def decrypt(self, blob: str, *, aad: bytes) -> bytes:
        """Decrypt a blob written by :meth:`encrypt` with any key of this keyring.

        Args:
            blob: the stored text.
            aad: the associated data given at encryption.

        Returns:
            The secret.

        Raises:
            KeyUnavailable: the blob's key id is not in the keyring, or the blob does not
                authenticate (wrong key under that id, tampered blob, or another row's blob).
        """
        key_id = key_id_of(blob)
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise KeyUnavailable(f"key id {key_id!r} is not in the key file")
        try:
            raw = base64.b64decode(blob[len(key_id) + 1 :], validate=True)
        except ValueError:  # binascii.Error, or non-ASCII text
            raise KeyUnavailable(f"a secret stored under key id {key_id!r} is malformed") from None
        if len(raw) < NONCE_BYTES + _TAG_BYTES:
            raise KeyUnavailable(f"a secret stored under key id {key_id!r} is malformed")
        try:
            return cipher.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], aad)
        except InvalidTag:
            raise KeyUnavailable(
                f"key id {key_id!r} does not decrypt a stored secret"
                " (wrong key under that id, or the stored value was altered)"
            ) from None


def key_id_of(blob: str) -> str:
    """Return the key id a blob was encrypted with.

    Args:
        blob: a value written by :meth:`Keyring.encrypt`.

    Returns:
        The key id prefix.

    Raises:
        KeyUnavailable: the blob has no valid key id prefix.
    """
    key_id, sep, _ = blob.partition(":")
    if not sep or not _KEY_ID.fullmatch(key_id):
        raise KeyUnavailable("a stored secret has no valid key id prefix")
    return key_id
