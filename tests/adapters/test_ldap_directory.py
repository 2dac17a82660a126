"""LdapDirectory against a real OpenLDAP slapd on loopback, plus its pure escaping helpers.

One slapd (module scope) serves every test that leaves it running; tests that stop, restart
or freeze a server get a private one. Failures are produced for real: a closed port, a stopped
or SIGSTOPped slapd, a server certificate from another CA or for another name.

OpenLDAP has no LDAP_MATCHING_RULE_IN_CHAIN, so nested-group resolution is covered by the
filter's construction and by showing that a server without the rule adds nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import structlog

from mfa_radius.adapters.ldap_directory import (
    LdapDirectory,
    LdapSettings,
    bind_refusal,
    escape_dn_value,
    escape_filter_value,
    first_rdn_value,
    nested_group_filter,
)
from mfa_radius.core.model import (
    Identity,
    PrimaryAccept,
    PrimaryReject,
    RejectReason,
)
from mfa_radius.errors import ConfigError, PrimaryUnavailable
from tests.support.ports import LOOPBACK, free_tcp_port
from tests.support.primaries import CountingExecutor, attempt
from tests.support.slapd import (
    ALICE,
    BOB,
    CAROL_1,
    DOE,
    OBRIEN,
    PEOPLE,
    SERVICE_DN,
    SERVICE_PASSWORD,
    SUFFIX,
    SlapdServer,
)
from tests.support.tls import TestCa

pytestmark = pytest.mark.ldap


HANG_GUARD_S = 5.0
"""Deadline of a call against a dead or frozen server (timeouts of 0.5 s, with margin)."""

ALICE_IDENTITY = Identity(
    dn=f"uid=alice,{PEOPLE}",
    display_name="Alice Liddell",
    email="alice@example.org",
    phones=("+15550100", "+15550101"),
    groups=frozenset({"vpn-users"}),
)


def closed_port_url() -> str:
    return f"ldap://{LOOPBACK}:{free_tcp_port()}"


@pytest.fixture(scope="module")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlapdServer]:
    """One seeded slapd for the module; tests must not stop it."""
    with SlapdServer(tmp_path_factory.mktemp("slapd")) as server:
        yield server


@pytest.fixture
def private_slapd(tmp_path: Path) -> Iterator[SlapdServer]:
    """A seeded slapd of this test alone, free to stop, pause or restart."""
    with SlapdServer(tmp_path) as server:
        yield server


@pytest.fixture(scope="module")
def other_ca_file(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The certificate of a CA that signed nothing slapd serves."""
    path = tmp_path_factory.mktemp("other-ca") / "other-ca.pem"
    return str(TestCa("unrelated test CA").write_ca(path))


Factory = Callable[..., LdapDirectory]


@pytest.fixture
def make_directory(slapd: SlapdServer) -> Iterator[Factory]:
    """Build LdapDirectories (search-then-bind on the shared slapd by default); closed after."""
    made: list[LdapDirectory] = []

    def make(*, executor: ThreadPoolExecutor | None = None, **overrides: Any) -> LdapDirectory:
        options: dict[str, Any] = {
            "urls": (slapd.url,),
            "ca_file": str(slapd.ca_file),
            "bind_dn": SERVICE_DN,
            "bind_password": SERVICE_PASSWORD,
            "base_dn": SUFFIX,
            "connect_timeout": 0.5,
            "operation_timeout": 0.5,
        }
        options.update(overrides)
        directory = LdapDirectory(LdapSettings(**options), executor=executor)
        made.append(directory)
        return directory

    yield make
    for directory in made:
        directory.close()


def chain_texts(exc: BaseException) -> list[str]:
    """str() and repr() of an exception and of every cause/context behind it."""
    texts: list[str] = []
    current: BaseException | None = exc
    while current is not None:
        texts += [str(current), repr(current)]
        current = current.__cause__ or current.__context__
    return texts


class TestEscaping:
    @pytest.mark.parametrize(
        ("raw", "escaped"),
        [
            ("alice", "alice"),
            ("*", r"\2a"),
            ("alice)(uid=*", r"alice\29\28uid=\2a"),
            ("back\\slash", r"back\5cslash"),
            ("nul\x00", r"nul\00"),
            ("o'brien*(x)", r"o'brien\2a\28x\29"),
            ("café", "café"),
        ],
        ids=["plain", "star", "injection", "backslash", "nul", "mixed", "utf8"],
    )
    def test_escape_filter_value_follows_rfc4515(self, raw: str, escaped: str) -> None:
        """RFC 4515 §3 specials become a backslash and two hex digits; others stay."""
        assert escape_filter_value(raw) == escaped

    @pytest.mark.parametrize(
        ("raw", "escaped"),
        [
            ("alice", "alice"),
            ("doe,jane+x", r"doe\,jane\+x"),
            ('a"b;c<d>e\\f=g', r"a\"b\;c\<d\>e\\f\=g"),
            (" lead", r"\ lead"),
            ("#hash", r"\#hash"),
            ("trail ", r"trail\ "),
            ("in side#", "in side#"),
            ("nul\x00", r"nul\00"),
        ],
        ids=["plain", "comma-plus", "specials", "lead-space", "lead-hash", "trail-space",
             "inner", "nul"],
    )  # fmt: skip
    def test_escape_dn_value_follows_rfc4514(self, raw: str, escaped: str) -> None:
        """RFC 4514 §2.4 specials are backslash-escaped; space and # only where they matter."""
        assert escape_dn_value(raw) == escaped

    @pytest.mark.parametrize(
        ("dn", "value"),
        [
            (f"cn=vpn-users,ou=groups,{SUFFIX}", "vpn-users"),
            (r"uid=doe\2Cjane\2Bx,ou=people", "doe,jane+x"),
            (r"CN=Doe\, Jane,OU=Staff", "Doe, Jane"),
            (r"cn=caf\C3\A9,ou=x", "café"),
            ("cn=a+sn=b,ou=x", "a"),
            ("not a dn", "not a dn"),
        ],
        ids=["plain", "hex-escapes", "char-escape", "utf8-hex", "multi-valued-rdn", "no-equals"],
    )
    def test_first_rdn_value_unescapes_the_first_value(self, dn: str, value: str) -> None:
        """The group name in ``cn`` mode is the first RDN's value, unescaped (RFC 4514 §3)."""
        assert first_rdn_value(dn) == value

    def test_nested_group_filter_uses_matching_rule_in_chain(self) -> None:
        """Nested groups are asked for with AD's LDAP_MATCHING_RULE_IN_CHAIN on ``member``."""
        assert nested_group_filter(f"uid=alice,{PEOPLE}") == (
            f"(member:1.2.840.113556.1.4.1941:=uid=alice,{PEOPLE})"
        )

    def test_nested_group_filter_escapes_the_user_dn(self) -> None:
        """Filter specials in the DN (and its own backslashes) are escaped per RFC 4515."""
        assert nested_group_filter(r"CN=O'Brien (x)\, Pat*,OU=Staff") == (
            r"(member:1.2.840.113556.1.4.1941:=CN=O'Brien \28x\29\5c, Pat\2a,OU=Staff)"
        )


class TestBindRefusal:
    @pytest.mark.parametrize(
        ("code", "message", "reason"),
        [
            (49, "", RejectReason.BAD_PASSWORD),
            (
                49,
                "80090308: LdapErr: DSID-0C09042A, comment: AcceptSecurityContext error, "
                "data 52e, v3839",
                RejectReason.BAD_PASSWORD,
            ),
            (
                49,
                "80090308: LdapErr: DSID-0C09042A, comment: AcceptSecurityContext error, "
                "data 533, v4563",
                RejectReason.USER_DISABLED,
            ),
            (34, "invalid DN", RejectReason.UNKNOWN_USER),
            (50, "", None),
            (53, "unauthenticated bind (DN with no password) disallowed", None),
        ],
        ids=["openldap", "ad-bad-password", "ad-disabled", "bad-dn", "access-denied", "unwilling"],
    )
    def test_bind_refusal_classifies_result_codes(
        self, code: int, message: str, reason: RejectReason | None
    ) -> None:
        """invalidCredentials and a bad DN are the user's (AD 533: disabled); others are faults."""
        assert bind_refusal(code, message) == reason


class TestSettings:
    @pytest.mark.parametrize(
        "overrides",
        [
            {"urls": ()},
            {"urls": ("http://127.0.0.1",)},
            {"urls": ("ldap://",)},
            {"urls": ("ldap://user:pw@127.0.0.1",)},
            {"urls": ("ldap://127.0.0.1/dc=example,dc=org",)},
            {"user_filter": "(uid=alice)"},
            {"user_filter": "uid={username}"},
            {"dn_template": "uid=alice,ou=people"},
            {"bind_password": None},
            {"bind_dn": None},
            {"bind_password": ""},
            {"base_dn": ""},
            {"connect_timeout": 0.0},
            {"operation_timeout": -1.0},
            {"pool_size": 0},
        ],
        ids=["no-urls", "scheme", "no-host", "credentials", "path", "filter-placeholder",
             "filter-parens", "template-placeholder", "dn-without-password",
             "password-without-dn", "empty-bind-password", "base", "connect-timeout",
             "operation-timeout", "pool-size"],
    )  # fmt: skip
    def test_settings_reject_unworkable_values(self, overrides: dict[str, Any]) -> None:
        """Settings that cannot work raise ValueError naming the field."""
        options: dict[str, Any] = {
            "urls": ("ldap://127.0.0.1",),
            "bind_dn": SERVICE_DN,
            "bind_password": SERVICE_PASSWORD,
            "base_dn": SUFFIX,
        }
        options.update(overrides)
        with pytest.raises(ValueError, match=r"\w+: "):
            LdapSettings(**options)

    def test_settings_repr_hides_bind_password(self) -> None:
        """The service account's password never appears in a repr."""
        settings = LdapSettings(
            urls=("ldap://127.0.0.1",),
            bind_dn=SERVICE_DN,
            bind_password=SERVICE_PASSWORD,
            base_dn=SUFFIX,
        )
        assert SERVICE_PASSWORD not in repr(settings)

    def test_directory_raises_config_error_when_ca_file_missing(self, tmp_path: Path) -> None:
        """An unreadable ca_file is a start-up configuration error, not a login failure."""
        settings = LdapSettings(
            urls=("ldaps://127.0.0.1",), ca_file=str(tmp_path / "missing.pem"), base_dn=SUFFIX
        )
        with pytest.raises(ConfigError, match=r"ldap\.ca_file"):
            LdapDirectory(settings)

    def test_directory_raises_config_error_when_user_filter_does_not_parse(self) -> None:
        """An unbalanced user_filter is a start-up configuration error naming the key."""
        settings = LdapSettings(
            urls=("ldap://127.0.0.1",), user_filter="(|(uid={username})(mail=x)", base_dn=SUFFIX
        )
        with pytest.raises(ConfigError, match=r"ldap\.user_filter"):
            LdapDirectory(settings)


class TestSearchThenBind:
    async def test_accepts_right_password_with_identity(self, make_directory: Factory) -> None:
        """The right password gives PrimaryAccept with DN, names, phones and groups."""
        result = await make_directory().verify(attempt("alice"), ALICE.password.encode())
        assert result == PrimaryAccept(identity=ALICE_IDENTITY)

    async def test_rejects_wrong_password_as_bad_password(self, make_directory: Factory) -> None:
        """A wrong password is a BAD_PASSWORD reject, not an exception."""
        result = await make_directory().verify(attempt("alice"), b"wrong")
        assert result == PrimaryReject(RejectReason.BAD_PASSWORD)

    async def test_rejects_missing_user_as_unknown_user(self, make_directory: Factory) -> None:
        """A username no entry matches is UNKNOWN_USER."""
        result = await make_directory().verify(attempt("nobody"), b"whatever")
        assert result == PrimaryReject(RejectReason.UNKNOWN_USER)

    async def test_rejects_empty_password_without_any_ldap_work(
        self, make_directory: Factory
    ) -> None:
        """An empty password is MISSING_PASSWORD at once: no job, no connection, no bind."""
        executor = CountingExecutor()
        try:
            directory = make_directory(urls=(closed_port_url(),), executor=executor)
            result = await directory.verify(attempt("alice"), b"")
        finally:
            executor.shutdown(wait=True)
        assert result == PrimaryReject(RejectReason.MISSING_PASSWORD)
        assert executor.jobs == 0

    @pytest.mark.parametrize("username", ["*", "alice)(uid=*", "*)(|(uid=*", "al*"])
    async def test_filter_specials_in_username_match_nobody(
        self, make_directory: Factory, username: str
    ) -> None:
        """RFC 4515 escaping keeps wildcards and extra clauses in a username literal."""
        result = await make_directory().verify(attempt(username), ALICE.password.encode())
        assert result == PrimaryReject(RejectReason.UNKNOWN_USER)

    async def test_accepts_user_with_filter_specials_in_uid(self, make_directory: Factory) -> None:
        """A uid containing ``'*()`` is found literally and can log in."""
        result = await make_directory().verify(attempt(OBRIEN.uid), OBRIEN.password.encode())
        assert isinstance(result, PrimaryAccept)
        assert result.identity is not None
        assert result.identity.dn == OBRIEN.dn

    async def test_rejects_ambiguous_username_as_unknown_user(
        self, make_directory: Factory
    ) -> None:
        """Two entries matching the filter are refused and logged, even with a right password."""
        with structlog.testing.capture_logs() as logs:
            result = await make_directory().verify(attempt("carol"), CAROL_1.password.encode())
        assert result == PrimaryReject(RejectReason.UNKNOWN_USER)
        assert {"event": "ldap_user_ambiguous", "user": "carol", "log_level": "warning"} in logs

    async def test_reports_groups_as_dns_when_group_name_dn(self, make_directory: Factory) -> None:
        """With group_name "dn" the groups are the case-folded group DNs."""
        result = await make_directory(group_name="dn").verify(attempt("bob"), BOB.password.encode())
        assert isinstance(result, PrimaryAccept)
        assert result.identity is not None
        assert result.identity.groups == {f"cn=admins,ou=groups,{SUFFIX}"}

    async def test_keeps_memberof_groups_when_server_lacks_matching_rule_in_chain(
        self, make_directory: Factory
    ) -> None:
        """nested_groups on OpenLDAP adds nothing (unknown rule) and breaks nothing."""
        result = await make_directory(nested_groups=True).verify(
            attempt(OBRIEN.uid), OBRIEN.password.encode()
        )
        assert isinstance(result, PrimaryAccept)
        assert result.identity is not None
        assert result.identity.groups == {"vpn-users"}

    async def test_serves_concurrent_logins_with_small_pool(self, make_directory: Factory) -> None:
        """More concurrent logins than workers all get their own right answer."""
        directory = make_directory(pool_size=2)
        good = [directory.verify(attempt("alice"), ALICE.password.encode()) for _ in range(10)]
        bad = [directory.verify(attempt("bob"), b"wrong") for _ in range(10)]
        results = await asyncio.gather(*good, *bad)
        assert results[:10] == [PrimaryAccept(identity=ALICE_IDENTITY)] * 10
        assert results[10:] == [PrimaryReject(RejectReason.BAD_PASSWORD)] * 10

    async def test_raises_primary_unavailable_when_service_account_refused(
        self, make_directory: Factory
    ) -> None:
        """A wrong service password is an outage (configuration), not a user's reject."""
        directory = make_directory(bind_password="not-the-service-password")
        with pytest.raises(PrimaryUnavailable, match="service account bind refused") as caught:
            await directory.verify(attempt("alice"), ALICE.password.encode())
        assert not any("not-the-service-password" in t for t in chain_texts(caught.value))

    async def test_raises_primary_unavailable_when_base_dn_missing(
        self, make_directory: Factory
    ) -> None:
        """A base_dn the server does not hold fails closed instead of reading as unknown user."""
        directory = make_directory(base_dn="dc=missing,dc=org")
        with pytest.raises(PrimaryUnavailable, match="user search failed"):
            await directory.verify(attempt("alice"), ALICE.password.encode())


class TestDirectBind:
    async def test_accepts_right_password_with_identity_when_direct_bind(
        self, make_directory: Factory
    ) -> None:
        """dn_template binds as the user and reads the identity on the same connection."""
        directory = make_directory(
            dn_template=f"uid={{username}},{PEOPLE}", bind_dn=None, bind_password=None
        )
        result = await directory.verify(attempt("alice"), ALICE.password.encode())
        assert result == PrimaryAccept(identity=ALICE_IDENTITY)

    async def test_rejects_wrong_password_when_direct_bind(self, make_directory: Factory) -> None:
        """A wrong password on a direct bind is BAD_PASSWORD."""
        directory = make_directory(dn_template=f"uid={{username}},{PEOPLE}")
        result = await directory.verify(attempt("alice"), b"wrong")
        assert result == PrimaryReject(RejectReason.BAD_PASSWORD)

    async def test_escapes_dn_specials_in_username_when_direct_bind(
        self, make_directory: Factory
    ) -> None:
        """RFC 4514 escaping turns ``doe,jane+x`` into one RDN value, so that user can log in."""
        directory = make_directory(dn_template=f"uid={{username}},{PEOPLE}")
        result = await directory.verify(attempt(DOE.uid), DOE.password.encode())
        assert isinstance(result, PrimaryAccept)
        assert result.identity is not None
        assert result.identity.display_name == "Jane Doe"

    async def test_rejects_unknown_user_as_bad_password_when_direct_bind(
        self, make_directory: Factory
    ) -> None:
        """A bind to a DN that does not exist is invalidCredentials, so BAD_PASSWORD."""
        directory = make_directory(dn_template=f"uid={{username}},{PEOPLE}")
        result = await directory.verify(attempt("nobody"), b"whatever")
        assert result == PrimaryReject(RejectReason.BAD_PASSWORD)


class TestTls:
    async def test_accepts_over_ldaps_with_right_ca(
        self, make_directory: Factory, slapd: SlapdServer
    ) -> None:
        """An ldaps:// URL with the CA that signed the server works."""
        result = await make_directory(urls=(slapd.tls_url,)).verify(
            attempt("alice"), ALICE.password.encode()
        )
        assert result == PrimaryAccept(identity=ALICE_IDENTITY)

    async def test_accepts_over_start_tls_with_right_ca(self, make_directory: Factory) -> None:
        """StartTLS on ldap:// with the right CA works."""
        result = await make_directory(start_tls=True).verify(
            attempt("alice"), ALICE.password.encode()
        )
        assert result == PrimaryAccept(identity=ALICE_IDENTITY)

    @pytest.mark.parametrize("mode", ["ldaps", "start_tls"])
    async def test_refuses_server_certificate_from_other_ca(
        self, make_directory: Factory, slapd: SlapdServer, other_ca_file: str, mode: str
    ) -> None:
        """A certificate the configured CA did not sign is refused: an outage, never an accept."""
        url = slapd.tls_url if mode == "ldaps" else slapd.url
        directory = make_directory(
            urls=(url,), start_tls=mode == "start_tls", ca_file=other_ca_file
        )
        with pytest.raises(PrimaryUnavailable, match="SSLCertVerificationError") as caught:
            await directory.verify(attempt("alice"), ALICE.password.encode())
        assert any(
            "self-signed certificate in certificate chain" in t for t in chain_texts(caught.value)
        )

    @pytest.mark.parametrize("mode", ["ldaps", "start_tls"])
    async def test_refuses_server_certificate_for_other_host(
        self, make_directory: Factory, tmp_path: Path, mode: str
    ) -> None:
        """A certificate from the right CA but for another name is refused (hostname check)."""
        with SlapdServer(tmp_path, tls_names=("ldap.example.org",)) as server:
            url = server.tls_url if mode == "ldaps" else server.url
            directory = make_directory(
                urls=(url,), start_tls=mode == "start_tls", ca_file=str(server.ca_file)
            )
            with pytest.raises(PrimaryUnavailable, match="SSLCertVerificationError") as caught:
                await directory.verify(attempt("alice"), ALICE.password.encode())
        assert any("IP address mismatch" in t for t in chain_texts(caught.value))


class TestOutages:
    async def test_raises_primary_unavailable_when_server_stopped(
        self, make_directory: Factory, private_slapd: SlapdServer
    ) -> None:
        """A stopped server gives PrimaryUnavailable quickly, not a hang or a reject."""
        directory = make_directory(urls=(private_slapd.url,))
        private_slapd.stop()
        async with asyncio.timeout(HANG_GUARD_S):
            with pytest.raises(PrimaryUnavailable, match="no LDAP server answered"):
                await directory.verify(attempt("alice"), ALICE.password.encode())

    async def test_raises_primary_unavailable_when_server_frozen(
        self, make_directory: Factory, private_slapd: SlapdServer
    ) -> None:
        """A server that accepts connections but never answers times out into PrimaryUnavailable."""
        directory = make_directory(urls=(private_slapd.url,))
        private_slapd.pause()
        async with asyncio.timeout(HANG_GUARD_S):
            with pytest.raises(PrimaryUnavailable, match="LDAPSocketReceiveError"):
                await directory.verify(attempt("alice"), ALICE.password.encode())

    async def test_recovers_after_server_restart(
        self, make_directory: Factory, private_slapd: SlapdServer
    ) -> None:
        """The pooled service connection that died with the server is replaced transparently."""
        directory = make_directory(urls=(private_slapd.url,))
        assert isinstance(await directory.verify(attempt("alice"), b"wrong"), PrimaryReject)
        private_slapd.restart()
        result = await directory.verify(attempt("alice"), ALICE.password.encode())
        assert result == PrimaryAccept(identity=ALICE_IDENTITY)

    async def test_recovers_when_server_returns_after_outage(
        self, make_directory: Factory, private_slapd: SlapdServer
    ) -> None:
        """After an outage the same instance works again once the server is back."""
        directory = make_directory(urls=(private_slapd.url,))
        private_slapd.stop()
        with pytest.raises(PrimaryUnavailable):
            await directory.verify(attempt("alice"), ALICE.password.encode())
        private_slapd.start()
        result = await directory.verify(attempt("alice"), ALICE.password.encode())
        assert result == PrimaryAccept(identity=ALICE_IDENTITY)

    async def test_fails_over_to_second_url_when_first_is_closed(
        self, make_directory: Factory, slapd: SlapdServer
    ) -> None:
        """A dead first server is skipped (and logged); the second one answers."""
        dead = closed_port_url()
        with structlog.testing.capture_logs() as logs:
            result = await make_directory(urls=(dead, slapd.url)).verify(
                attempt("alice"), ALICE.password.encode()
            )
        assert result == PrimaryAccept(identity=ALICE_IDENTITY)
        failed = [e for e in logs if e["event"] == "ldap_server_failed"]
        assert [e["url"] for e in failed] == [dead]

    async def test_keeps_passwords_out_of_errors_and_logs(
        self, make_directory: Factory, slapd: SlapdServer, other_ca_file: str
    ) -> None:
        """Neither the user's nor the service password appears in exception texts or logs."""
        password = "Very-Distinct-Pa55word"
        directory = make_directory(urls=(closed_port_url(), slapd.tls_url), ca_file=other_ca_file)
        with structlog.testing.capture_logs() as logs, pytest.raises(PrimaryUnavailable) as caught:
            await directory.verify(attempt("alice"), password.encode())
        texts = chain_texts(caught.value) + [repr(e) for e in logs]
        assert not any(password in t or SERVICE_PASSWORD in t for t in texts)


class TestCheck:
    async def test_check_passes_when_service_account_reads_base(
        self, make_directory: Factory
    ) -> None:
        """check() binds as the service account and reads base_dn."""
        await make_directory().check()

    async def test_check_passes_without_service_account_when_direct_bind(
        self, make_directory: Factory
    ) -> None:
        """Without bind_dn, check() reads the root DSE anonymously."""
        directory = make_directory(
            dn_template=f"uid={{username}},{PEOPLE}", bind_dn=None, bind_password=None
        )
        await directory.check()

    async def test_check_raises_when_base_dn_missing(self, make_directory: Factory) -> None:
        """A base_dn the server does not hold fails check()."""
        with pytest.raises(PrimaryUnavailable, match="base_dn not readable"):
            await make_directory(base_dn="dc=missing,dc=org").check()

    async def test_check_raises_when_server_stopped(
        self, make_directory: Factory, private_slapd: SlapdServer
    ) -> None:
        """check() reports an unreachable server as PrimaryUnavailable."""
        directory = make_directory(urls=(private_slapd.url,))
        private_slapd.stop()
        with pytest.raises(PrimaryUnavailable):
            await directory.check()


class TestClose:
    async def test_raises_primary_unavailable_after_close(self, make_directory: Factory) -> None:
        """A closed directory refuses new work with PrimaryUnavailable."""
        directory = make_directory()
        directory.close()
        with pytest.raises(PrimaryUnavailable, match="closed"):
            await directory.verify(attempt("alice"), ALICE.password.encode())
