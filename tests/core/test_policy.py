"""Username normalisation and fail modes."""

from __future__ import annotations

import pytest

from mfa_radius.core.model import Accept, AcceptReason, FailMode, Reject, RejectReason
from mfa_radius.core.policy import ClientPolicy, normalise_username, on_backend_failure

ATTRS = ((25, b"c"),)


class TestNormaliseUsername:
    @pytest.mark.parametrize("raw", ["EXAMPLE\\Alice", "Alice@example.org", "alice", " ALICE "])
    def test_domain_realm_and_case_reach_the_same_user(self, raw: str) -> None:
        """With stripping and case folding every form maps to 'alice'."""
        policy = ClientPolicy(name="c", strip_domain=True, strip_realm=True, fold_case=True)
        assert normalise_username(raw, policy) == "alice"

    def test_keeps_realm_and_case_when_not_configured(self) -> None:
        """Without those options the name is kept as sent (trimmed)."""
        policy = ClientPolicy(name="c", fold_case=False)
        assert normalise_username("Alice@Example.org", policy) == "Alice@Example.org"


class TestOnBackendFailure:
    def test_secure_rejects(self) -> None:
        """fail_mode secure rejects with the failing backend as reason."""
        result = on_backend_failure(
            RejectReason.STORE_UNAVAILABLE,
            ClientPolicy(name="c"),
            primary_verified=True,
            attributes=ATTRS,
        )
        assert result == Reject(RejectReason.STORE_UNAVAILABLE)

    def test_safe_accepts_after_verified_password(self) -> None:
        """fail_mode safe accepts, keeping the primary's attributes, once the password passed."""
        policy = ClientPolicy(name="c", fail_mode=FailMode.SAFE)
        result = on_backend_failure(
            RejectReason.STORE_UNAVAILABLE, policy, primary_verified=True, attributes=ATTRS
        )
        assert result == Accept(AcceptReason.FAIL_SAFE, ATTRS)

    def test_safe_rejects_when_password_not_verified_in_this_request(self) -> None:
        """A second round cannot fail open: the password was not checked in it."""
        policy = ClientPolicy(name="c", fail_mode=FailMode.SAFE)
        result = on_backend_failure(
            RejectReason.STORE_UNAVAILABLE, policy, primary_verified=False, attributes=ATTRS
        )
        assert result == Reject(RejectReason.STORE_UNAVAILABLE)

    def test_safe_never_accepts_when_primary_is_down(self) -> None:
        """An unchecked password is never accepted, whatever the fail mode."""
        policy = ClientPolicy(name="c", fail_mode=FailMode.SAFE)
        result = on_backend_failure(
            RejectReason.PRIMARY_UNAVAILABLE, policy, primary_verified=True, attributes=ATTRS
        )
        assert result == Reject(RejectReason.PRIMARY_UNAVAILABLE)
