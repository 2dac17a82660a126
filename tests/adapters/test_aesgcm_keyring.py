from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mfa_radius.adapters.aesgcm_keyring import Keyring, key_id_of
from mfa_radius.errors import KeyUnavailable

KEY_A = base64.b64encode(bytes(range(32))).decode()
KEY_B = base64.b64encode(bytes(range(100, 132))).decode()
SECRET = b"12345678901234567890"


def keyring(text: str) -> Keyring:
    return Keyring.from_text(text, source="/etc/mfa-radius/keys")


class TestFromText:
    def test_last_key_is_current(self) -> None:
        """The last key line is the one new secrets are encrypted with."""
        ring = keyring(f"old {KEY_A}\nnew {KEY_B}\n")
        assert ring.current_key_id == "new"
        assert ring.key_ids == {"old", "new"}

    def test_ignores_comments_and_blank_lines(self) -> None:
        """Lines starting with '#' and blank lines are not keys."""
        ring = keyring(f"# rotated 2025-01\n\n  k1 {KEY_A}  \n# k2 {KEY_B}\n")
        assert ring.key_ids == {"k1"}

    @pytest.mark.parametrize(
        ("line", "why"),
        [
            (f"k1 {KEY_A} extra", "three fields"),
            (KEY_A, "no key id"),
            (f"k:1 {KEY_A}", "colon in key id"),
            (f"k1 {KEY_A[:-4]}", "invalid base64"),
            ("k1 \u00e9t\u00e9", "non-ASCII base64"),
            (f"k1 {base64.b64encode(bytes(31)).decode()}", "31 bytes"),
            (f"k1 {base64.b64encode(bytes(33)).decode()}", "33 bytes"),
        ],
        ids=[
            "three-fields",
            "no-key-id",
            "colon-in-id",
            "bad-base64",
            "non-ascii",
            "short-key",
            "long-key",
        ],
    )
    def test_malformed_line_names_source_and_line_when_invalid(self, line: str, why: str) -> None:
        """A malformed line is a KeyUnavailable naming the file and line number only."""
        with pytest.raises(KeyUnavailable) as caught:
            keyring(f"# keys\nk0 {KEY_B}\n{line}\n")
        message = str(caught.value)
        assert "/etc/mfa-radius/keys line 3" in message, why
        assert KEY_A[:12] not in message
        assert KEY_B[:12] not in message

    def test_duplicate_key_id_is_rejected(self) -> None:
        """Two keys under one id would make blobs ambiguous, so the file is refused."""
        with pytest.raises(KeyUnavailable, match="appears twice"):
            keyring(f"k1 {KEY_A}\nk1 {KEY_B}\n")

    def test_file_without_keys_is_rejected(self) -> None:
        """A key file with only comments gives no current key, so it is refused."""
        with pytest.raises(KeyUnavailable, match="no key found"):
            keyring("# nothing here\n")

    def test_generate_line_round_trips(self) -> None:
        """A generated line parses into a keyring with that key id as current."""
        ring = keyring(Keyring.generate_line("2025-06"))
        assert ring.current_key_id == "2025-06"

    def test_generate_line_draws_fresh_keys(self) -> None:
        """Two generated lines never share key material."""
        assert Keyring.generate_line("k").split()[1] != Keyring.generate_line("k").split()[1]

    def test_generate_line_rejects_malformed_key_id(self) -> None:
        """A key id with whitespace would not parse back, so it is refused."""
        with pytest.raises(KeyUnavailable):
            Keyring.generate_line("my key")

    @given(st.text())
    def test_parses_or_raises_key_unavailable_on_any_text(self, text: str) -> None:
        """Any text is either a keyring or a KeyUnavailable, never another exception."""
        try:
            ring = keyring(text)
        except KeyUnavailable:
            return
        assert ring.current_key_id in ring.key_ids

    @given(
        st.lists(
            st.tuples(
                st.text(max_size=8),
                st.one_of(
                    st.text(max_size=48),
                    st.binary(min_size=30, max_size=34).map(lambda b: base64.b64encode(b).decode()),
                ),
            ),
            max_size=4,
        )
    )
    def test_parses_or_raises_key_unavailable_on_key_like_lines(
        self, lines: list[tuple[str, str]]
    ) -> None:
        """Lines shaped like '<id> <base64>' parse or raise KeyUnavailable, nothing else."""
        try:
            ring = keyring("\n".join(f"{key_id} {key}" for key_id, key in lines))
        except KeyUnavailable:
            return
        assert ring.current_key_id in ring.key_ids


class TestEncryption:
    def test_decrypt_returns_plaintext(self) -> None:
        """What encrypt seals, decrypt opens with the same associated data."""
        ring = keyring(f"k1 {KEY_A}")
        assert ring.decrypt(ring.encrypt(SECRET, aad=b"tok-1"), aad=b"tok-1") == SECRET

    def test_blob_names_current_key_id(self) -> None:
        """The blob starts with the id of the key that sealed it."""
        ring = keyring(f"k1 {KEY_A}\nk2 {KEY_B}")
        assert key_id_of(ring.encrypt(SECRET, aad=b"")) == "k2"

    def test_blob_does_not_contain_secret(self) -> None:
        """The blob holds neither the secret nor its base64 or hex form."""
        blob = keyring(f"k1 {KEY_A}").encrypt(SECRET, aad=b"")
        for form in (SECRET.decode(), base64.b64encode(SECRET).decode(), SECRET.hex()):
            assert form not in blob

    def test_each_encryption_uses_fresh_nonce(self) -> None:
        """Sealing the same secret twice gives different blobs (random 96-bit nonce)."""
        ring = keyring(f"k1 {KEY_A}")
        assert ring.encrypt(SECRET, aad=b"") != ring.encrypt(SECRET, aad=b"")

    def test_decrypt_raises_when_aad_differs(self) -> None:
        """A blob moved to another row (other associated data) does not decrypt."""
        ring = keyring(f"k1 {KEY_A}")
        with pytest.raises(KeyUnavailable, match="'k1'"):
            ring.decrypt(ring.encrypt(SECRET, aad=b"tok-1"), aad=b"tok-2")

    def test_decrypt_raises_when_key_id_unknown(self) -> None:
        """A blob sealed under a key id absent from the key file names that id."""
        blob = keyring(f"gone {KEY_A}").encrypt(SECRET, aad=b"")
        with pytest.raises(KeyUnavailable, match="key id 'gone' is not in the key file"):
            keyring(f"k1 {KEY_A}").decrypt(blob, aad=b"")

    def test_decrypt_raises_without_secret_when_key_is_wrong(self) -> None:
        """A different key under the same id fails authentication; the message has no secret."""
        blob = keyring(f"k1 {KEY_A}").encrypt(SECRET, aad=b"")
        with pytest.raises(KeyUnavailable) as caught:
            keyring(f"k1 {KEY_B}").decrypt(blob, aad=b"")
        assert "'k1'" in str(caught.value)
        assert SECRET.decode() not in str(caught.value)
        assert blob not in str(caught.value)

    def test_decrypt_raises_when_blob_tampered(self) -> None:
        """Flipping one ciphertext bit makes the GCM tag check fail."""
        ring = keyring(f"k1 {KEY_A}")
        key_id, _, body = ring.encrypt(SECRET, aad=b"").partition(":")
        raw = bytearray(base64.b64decode(body))
        raw[14] ^= 1
        with pytest.raises(KeyUnavailable):
            ring.decrypt(f"{key_id}:{base64.b64encode(bytes(raw)).decode()}", aad=b"")

    @pytest.mark.parametrize(
        "blob",
        [
            "no-separator",
            "k1:not base64!",
            "k1:\u00e9t\u00e9",
            "k1:" + base64.b64encode(bytes(20)).decode(),
            ":abc",
        ],
        ids=["no-separator", "bad-base64", "non-ascii", "too-short", "empty-key-id"],
    )
    def test_decrypt_raises_when_blob_malformed(self, blob: str) -> None:
        """A stored value that is not a blob is a KeyUnavailable, not a crash."""
        with pytest.raises(KeyUnavailable):
            keyring(f"k1 {KEY_A}").decrypt(blob, aad=b"")

    def test_old_key_decrypts_after_rotation(self) -> None:
        """After a new key is appended, blobs sealed with the old key still open."""
        blob = keyring(f"k1 {KEY_A}").encrypt(SECRET, aad=b"x")
        assert keyring(f"k1 {KEY_A}\nk2 {KEY_B}").decrypt(blob, aad=b"x") == SECRET
