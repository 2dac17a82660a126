r"""LdapDirectory: the password check by LDAP simple bind, with the user's identity read on the way.

Responsibility: implement :class:`mfa_radius.ports.PrimaryAuthenticator` against OpenLDAP or
Active Directory. The password is proven by binding as the user (RFC 4513 §5.1.3, simple
authentication); the same round trips return the user's DN, display name, e-mail, phone numbers
and groups as an :class:`mfa_radius.core.model.Identity`. Two ways to find the user's DN:

* **search then bind** (default): a service account (``bind_dn``; anonymous when unset)
  searches ``base_dn`` with ``user_filter``; exactly one entry must match; then a fresh
  connection binds as that entry's DN with the password;
* **direct bind** (``dn_template``): bind with the DN built from the template, then read the
  user's own entry on the same connection (the directory must let users read themselves).

How it keeps its promises:

* **No unauthenticated bind.** An empty password is rejected before any I/O: RFC 4513 §5.1.2
  lets a server treat a simple bind with a DN and no password as anonymous *success*, and
  Active Directory does.
* **No injection.** The username is escaped per RFC 4515 §3 before it goes into a filter
  (``*``, ``(``, ``)``, ``\`` and NUL become ``\2a`` ...) and per RFC 4514 §2.4 before it
  goes into a DN, so ``*`` or ``alice)(uid=*`` match nobody. A search with more than one match
  is refused (logged as ``ldap_user_ambiguous``), never resolved by picking one.
* **Certificates are always verified.** ``ldaps://`` and StartTLS (RFC 4513 §3) use an
  ``ssl.create_default_context`` (CERT_REQUIRED, hostname or IP checked by OpenSSL during the
  handshake, TLS 1.2 at least) trusting ``ca_file`` or the system CAs. ldap3's own ``Tls``
  is not used for this: it turns ``check_hostname`` off and calls ``ssl.match_hostname``,
  deprecated since Python 3.7 and removed in 3.12, and it has no way to set a minimum TLS
  version without the deprecated ``OP_NO_TLS*`` flags.
* **Event loop stays free and bounded.** ldap3 is blocking; every call runs in a bounded
  thread pool (``pool_size`` workers) via ``loop.run_in_executor``. Each socket has a connect
  timeout (which also bounds an LDAPS handshake) and then ``operation_timeout`` on every read
  (set on the socket directly: ldap3's ``receive_timeout`` only accepts whole seconds, it feeds
  ``struct.pack('LL', ...)``). Searches also carry a server-side time limit. TCP_NODELAY is set
  on each socket once it is connected (ldap3 has no socket-option hook; the LDAPS handshake is
  therefore the only exchange without it). The server's schema and root DSE are never read
  (``get_info=NONE``): one round trip less per connection and nothing to parse.
* **Fail-over** walks ``urls`` in order. A server that fails to connect, handshake or answer is
  skipped for :data:`DOWN_FOR_S` seconds while another one works; when all fail, the call
  raises :class:`PrimaryUnavailable` naming each URL and the exception class. Service-account
  connections are pooled (at most ``pool_size``, dropped after :data:`MAX_IDLE_S` idle seconds);
  one that broke while idle (a restarted server, an idle timeout) is replaced and the operation
  retried once, so a restart needs no new instance. User binds always use a fresh connection.
* **Secrets stay out.** Exception texts carry URLs and exception *class names* only; the
  password and ``bind_password`` are never logged and never part of a repr (ldap3 strips them
  from its own reprs and logs nothing unless its logger is set to DEBUG).

Results: wrong password (``invalidCredentials``, result 49) is ``PrimaryReject(BAD_PASSWORD)``;
Active Directory's sub-code ``data 533`` (account disabled, sent only with a correct password)
is ``USER_DISABLED``; no entry or an ambiguous one is ``UNKNOWN_USER`` (in direct-bind mode an
unknown DN is indistinguishable from a wrong password). Any other refusal (the service account
rejected, ``base_dn`` missing, access denied) is a configuration or server fault and raises
:class:`PrimaryUnavailable`: the login fails closed.

Not done: SASL binds (GSSAPI/Kerberos), ``ldapi://``, paged results for huge nested-group
answers, AD range retrieval of ``memberOf`` beyond 1500 values, reading the entry after a
direct bind with a UPN (``{username}@example.org`` is not a DN), password-expiry warnings.
Unknown users are answered faster than wrong passwords (no dummy bind).

This module must not read configuration or decide what an outage means (``core/policy.py``
does); ldap3 objects never leave it.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import queue
import re
import socket
import ssl
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from string import hexdigits
from typing import Any, Final, Literal, TypeVar
from urllib.parse import urlsplit

import structlog

with warnings.catch_warnings():
    # ldap3 2.9.1 imports ``tagMap``/``typeMap`` from pyasn1 >= 0.6.1, which renamed them and
    # warns (DeprecationWarning) once, at import. Silenced for that module's import only.
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"ldap3\.utils\.asn1")
    import ldap3
    from ldap3.core.exceptions import LDAPException
    from ldap3.operation.search import parse_filter

from mfa_radius.core.model import (
    AuthAttempt,
    Identity,
    PrimaryAccept,
    PrimaryReject,
    PrimaryResult,
    RejectReason,
)
from mfa_radius.errors import ConfigError, PrimaryUnavailable

BACKEND: Final = "ldap"
"""The ``backend`` name of every :class:`PrimaryUnavailable` raised here."""

LDAP_MATCHING_RULE_IN_CHAIN: Final = "1.2.840.113556.1.4.1941"
"""Active Directory's transitive-membership matching rule (MS-ADTS §3.1.1.3.4.4.3)."""

DOWN_FOR_S: Final = 30.0
"""How long a failed server is tried only after the others (it is still tried last)."""

MAX_IDLE_S: Final = 60.0
"""A pooled service connection idle longer than this is closed instead of reused: firewalls
and AD (MaxConnIdleTime) drop idle TCP sessions, sometimes silently."""

USERNAME: Final = "{username}"
"""The placeholder in ``user_filter`` and ``dn_template``."""

_INVALID_CREDENTIALS: Final = 49  # RFC 4511 §4.1.9 resultCode invalidCredentials
_INVALID_DN_SYNTAX: Final = 34
_SIZE_LIMIT_EXCEEDED: Final = 4
_NO_SUCH_OBJECT: Final = 32
_SERVER_TROUBLE: Final = frozenset({51, 52, 80})  # busy, unavailable, other: try another server
_AD_ACCOUNT_DISABLED: Final = "533"
_AD_DATA = re.compile(r"\bdata ([0-9a-fA-F]{3,4})\b")
_NO_ATTRIBUTES: Final = ["1.1"]  # RFC 4511 §4.5.1.8: return no attributes

_log = structlog.get_logger("mfa_radius.adapters.ldap_directory")

T = TypeVar("T")


# -- settings ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class LdapSettings:
    """Where the directory is and how users and their attributes are found.

    Attributes:
        urls: ``ldap://host[:port]`` or ``ldaps://host[:port]``, tried in this order.
        start_tls: upgrade ``ldap://`` connections with StartTLS (RFC 4513 §3) before binding.
        ca_file: PEM file of the CAs that sign the servers' certificates; None trusts the
            system CAs. Certificates and host names are always verified.
        bind_dn: the service account that searches for users; None searches anonymously.
        bind_password: the service account's password.
        base_dn: where users (and, for nested groups, groups) are searched.
        user_filter: the search filter; ``{username}`` is replaced by the RFC 4515-escaped
            username. Active Directory: ``(sAMAccountName={username})``.
        dn_template: direct bind instead of search: the user's DN with ``{username}``
            replaced by the RFC 4514-escaped username.
        display_name_attribute: attribute read as the display name.
        email_attribute: attribute read as the e-mail address.
        phone_attributes: attributes read as phone numbers, in preference order.
        group_attribute: the user's multi-valued group-DN attribute (``memberOf``).
        nested_groups: also resolve nested membership with Active Directory's
            LDAP_MATCHING_RULE_IN_CHAIN (not supported by OpenLDAP).
        group_name: report groups by full DN (``"dn"``) or by the value of their first RDN
            (``"cn"``); either way case-folded.
        connect_timeout: seconds for the TCP connect and, for ``ldaps://``, the TLS handshake.
        operation_timeout: seconds to wait for each server answer.
        pool_size: worker threads, and pooled service connections.
    """

    urls: tuple[str, ...]
    start_tls: bool = False
    ca_file: str | None = None
    bind_dn: str | None = None
    bind_password: str | None = field(default=None, repr=False)
    base_dn: str
    user_filter: str = "(uid={username})"
    dn_template: str | None = None
    display_name_attribute: str = "displayName"
    email_attribute: str = "mail"
    phone_attributes: tuple[str, ...] = ("mobile", "telephoneNumber")
    group_attribute: str = "memberOf"
    nested_groups: bool = False
    group_name: Literal["dn", "cn"] = "cn"
    connect_timeout: float = 3.0
    operation_timeout: float = 5.0
    pool_size: int = 4

    def __post_init__(self) -> None:
        """Refuse settings that cannot work, naming the field.

        Raises:
            ValueError: a URL is not ``ldap://``/``ldaps://``, a template lacks
                ``{username}``, a timeout or the pool size is not positive, or only one of
                ``bind_dn``/``bind_password`` is set.
        """
        if not self.urls:
            raise ValueError("urls: at least one ldap:// or ldaps:// URL is required")
        for url in self.urls:
            _parse_url(url)
        if self.dn_template is not None and self.dn_template.count(USERNAME) != 1:
            raise ValueError("dn_template: must contain {username} exactly once")
        if self.dn_template is None and USERNAME not in self.user_filter:
            raise ValueError("user_filter: must contain {username}")
        if not (self.user_filter.startswith("(") and self.user_filter.endswith(")")):
            raise ValueError("user_filter: must be a parenthesised LDAP filter (RFC 4515)")
        if (self.bind_dn is None) != (self.bind_password is None):
            raise ValueError("bind_dn and bind_password: set both or neither")
        if self.bind_password == "":
            raise ValueError("bind_password: must not be empty (RFC 4513 §5.1.2)")
        if not self.base_dn:
            raise ValueError("base_dn: must not be empty")
        if self.connect_timeout <= 0 or self.operation_timeout <= 0:
            raise ValueError("connect_timeout and operation_timeout: must be positive")
        if self.pool_size < 1:
            raise ValueError("pool_size: must be at least 1")


def _parse_url(url: str) -> tuple[str, int, bool]:
    """Split an LDAP URL (RFC 4516, host and port only) into ``(host, port, use_ssl)``."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("ldap", "ldaps"):
        raise ValueError(f"urls: {url!r} is not an ldap:// or ldaps:// URL")
    if not parts.hostname:
        raise ValueError(f"urls: {url!r} has no host")
    if parts.path not in ("", "/") or parts.query or parts.username or parts.password:
        raise ValueError(f"urls: {url!r} must be scheme://host[:port] only")
    try:
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"urls: {url!r} has an invalid port") from exc
    use_ssl = scheme == "ldaps"
    return parts.hostname, port or (636 if use_ssl else 389), use_ssl


# -- escaping and names (pure) -----------------------------------------------------------------


def escape_filter_value(value: str) -> str:
    r"""Escape a string for use as an assertion value in a search filter.

    RFC 4515 §3: ``*``, ``(``, ``)``, ``\`` and NUL must appear as a backslash and two hex
    digits in a filter's string form, so a username can never add wildcards or clauses.

    Args:
        value: the raw value (a username, a DN).

    Returns:
        The escaped value, for example ``alice\29\28uid=\2a`` for ``alice)(uid=*``.
    """
    return "".join(f"\\{ord(ch):02x}" if ch in "*()\\\x00" else ch for ch in value)


def escape_dn_value(value: str) -> str:
    r"""Escape a string for use as an attribute value in a DN.

    RFC 4514 §2.4: ``"``, ``+``, ``,``, ``;``, ``<``, ``>`` and ``\`` are escaped with a
    backslash, as are a leading space or ``#`` and a trailing space; NUL becomes ``\00``.
    ``=`` is escaped too (allowed by the grammar's ``special``), which some servers require.

    Args:
        value: the raw value (a username).

    Returns:
        The escaped value, for example ``doe\,jane\+x`` for ``doe,jane+x``.
    """
    last = len(value) - 1
    out = []
    for i, ch in enumerate(value):
        if ch == "\x00":
            out.append("\\00")
        elif ch in '"+,;<>\\=' or (i == 0 and ch in " #") or (i == last and ch == " "):
            out.append("\\" + ch)
        else:
            out.append(ch)
    return "".join(out)


def first_rdn_value(dn: str) -> str:
    r"""Return the unescaped value of a DN's first RDN: ``cn=VPN\2C Users,ou=x`` -> ``VPN, Users``.

    RFC 4514 §3: a value ends at an unescaped ``,`` or ``+``; ``\`` followed by two hex
    digits is one byte of the UTF-8 value, ``\`` followed by another character is that
    character. Servers differ in which form they return (OpenLDAP sends ``\2C``, AD ``\,``).

    Args:
        dn: a distinguished name as returned by the server.

    Returns:
        The first RDN's value, or ``dn`` itself when it has no ``=``.
    """
    start = dn.find("=")
    if start < 0:
        return dn
    value = bytearray()
    i = start + 1
    while i < len(dn):
        ch = dn[i]
        if ch == "\\" and i + 1 < len(dn):
            pair = dn[i + 1 : i + 3]
            if len(pair) == 2 and all(c in hexdigits for c in pair):
                value.append(int(pair, 16))
                i += 3
            else:
                value += dn[i + 1].encode()
                i += 2
            continue
        if ch in ",+":
            break
        value += ch.encode()
        i += 1
    return value.decode("utf-8", errors="replace")


def nested_group_filter(user_dn: str) -> str:
    r"""Build the filter for every group the user is a member of, directly or through nesting.

    Active Directory evaluates ``member:1.2.840.113556.1.4.1941:=`` (LDAP_MATCHING_RULE_IN_CHAIN,
    an RFC 4515 extensible match) by walking the membership chain on the server. The DN is an
    assertion value, so it is escaped per RFC 4515 §3 (a DN may contain ``(`` or ``\``).

    Args:
        user_dn: the user's DN as returned by the server.

    Returns:
        ``(member:1.2.840.113556.1.4.1941:=<escaped DN>)``
    """
    return f"(member:{LDAP_MATCHING_RULE_IN_CHAIN}:={escape_filter_value(user_dn)})"


def bind_refusal(result_code: int, message: str) -> RejectReason | None:
    """Classify a refused user bind.

    Args:
        result_code: the bind's resultCode (RFC 4511 §4.1.9).
        message: the server's diagnosticMessage; Active Directory puts a Win32 sub-code in it
            (``... AcceptSecurityContext error, data 52e, v4563``).

    Returns:
        ``BAD_PASSWORD`` for invalidCredentials, ``USER_DISABLED`` for AD's ``data 533``
        (which AD sends only with the right password), ``UNKNOWN_USER`` for invalidDNSyntax (a
        username that makes the direct-bind DN unusable: the user's input, not an outage), None
        for any other result: a server or configuration fault, not the user's.
    """
    if result_code == _INVALID_DN_SYNTAX:
        return RejectReason.UNKNOWN_USER
    if result_code != _INVALID_CREDENTIALS:
        return None
    found = _AD_DATA.search(message)
    if found and found.group(1).lower() == _AD_ACCOUNT_DISABLED:
        return RejectReason.USER_DISABLED
    return RejectReason.BAD_PASSWORD


# -- blocking core (runs in worker threads) ----------------------------------------------------


def _tls_context(ca_file: str | None) -> ssl.SSLContext:
    """The client TLS context: CERT_REQUIRED, hostname checked, TLS 1.2 or later."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_file)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


class _VerifiedTls(ldap3.Tls):  # type: ignore[misc]  # ldap3 ships no type information
    """ldap3's TLS hook, wrapping sockets with our own strictly verifying context.

    ldap3 calls ``wrap_socket`` for LDAPS right after connecting and for StartTLS after the
    extended operation succeeded. ``server_hostname`` makes OpenSSL check the certificate's
    DNS or IP SAN during the handshake (and sends SNI for names).
    """

    def __init__(self, context: ssl.SSLContext) -> None:
        super().__init__(validate=ssl.CERT_REQUIRED)
        self._context = context

    def wrap_socket(self, connection: Any, do_handshake: bool = False) -> None:
        """Replace the connection's socket with a verified TLS socket."""
        connection.socket = self._context.wrap_socket(
            connection.socket,
            server_side=False,
            do_handshake_on_connect=do_handshake,
            server_hostname=connection.server.host,
        )


def _reason(exc: BaseException) -> str:
    """A short, secret-free reason: the exception class, plus the OS/TLS error ldap3 merged in.

    ldap3 raises classes built on the fly from its own class and the original one
    (``LDAPSocketOpenError`` + ``ConnectionRefusedError``); messages are not copied.
    """
    cls = type(exc)
    bases = cls.__bases__
    if len(bases) == 2 and bases[0].__name__ == cls.__name__:
        return f"{cls.__name__} ({bases[1].__name__})"
    return cls.__name__


def _discard(conn: Any) -> None:
    """Unbind and close a connection whatever its state, so no socket is left to the GC."""
    try:
        conn.unbind()
    except (LDAPException, OSError):
        pass
    finally:
        sock = getattr(conn, "socket", None)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()


class _ServerTrouble(Exception):
    """This server did not work (network, TLS, busy): the next one may."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"{url} {reason}")
        self.url = url
        self.reason = reason


@dataclass(slots=True)
class _Endpoint:
    """One configured server and when it last failed."""

    url: str
    host: str
    port: int
    use_ssl: bool
    start_tls: bool
    down_until: float = 0.0

    def mark_down(self) -> None:
        self.down_until = time.monotonic() + DOWN_FOR_S


@dataclass(slots=True)
class _Pooled:
    """A bound service-account connection and the server it is on."""

    conn: Any
    endpoint: _Endpoint
    idle_since: float = 0.0


@dataclass(slots=True)
class _Bound:
    """A connection on which a bind succeeded."""

    conn: Any
    endpoint: _Endpoint


@dataclass(frozen=True, slots=True)
class _Refused:
    """A bind the server refused: its resultCode, description and diagnostic message."""

    code: int
    description: str
    message: str


@dataclass(frozen=True, slots=True)
class _Entry:
    """A search result entry with attribute names case-folded and values as bytes."""

    dn: str
    attributes: dict[str, list[bytes]]

    def texts(self, name: str) -> list[str]:
        """The attribute's values as text, empty ones left out."""
        values = self.attributes.get(name.casefold(), [])
        texts = (v.decode("utf-8", errors="replace").strip() for v in values)
        return [t for t in texts if t]


@dataclass(frozen=True, slots=True)
class _Found:
    """What a search returned: the entries and the resultCode."""

    entries: list[_Entry]
    code: int
    description: str


@dataclass(slots=True)
class _Events:
    """What happened on the way, logged by the async side (where the request context is)."""

    failed: list[_ServerTrouble] = field(default_factory=list)
    ambiguous: bool = False


@dataclass(frozen=True, slots=True)
class _Verdict:
    result: PrimaryResult
    events: _Events


class _Blocking:
    """Every ldap3 call; each public method runs in one worker thread."""

    def __init__(self, settings: LdapSettings) -> None:
        self._s = settings
        self._endpoints = tuple(
            _Endpoint(url, *_parse_url(url), start_tls=settings.start_tls) for url in settings.urls
        )
        self._tls: _VerifiedTls | None = None
        if any(ep.use_ssl or ep.start_tls for ep in self._endpoints):
            try:
                self._tls = _VerifiedTls(_tls_context(settings.ca_file))
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(
                    f"ldap.ca_file: cannot load {settings.ca_file!r}: {type(exc).__name__}"
                ) from exc
        if settings.dn_template is None:
            try:  # the same parser ldap3 runs per search: a broken filter fails at start-up
                parse_filter(
                    settings.user_filter.replace(USERNAME, "x"),
                    None,
                    auto_escape=True,
                    auto_encode=True,
                    validator=None,
                    check_names=False,
                )
            except LDAPException as exc:
                raise ConfigError(f"ldap.user_filter: not a valid LDAP filter: {exc}") from exc
        self._time_limit = max(1, math.ceil(settings.operation_timeout))
        self._attributes = list(
            dict.fromkeys(
                [
                    settings.display_name_attribute,
                    settings.email_attribute,
                    *settings.phone_attributes,
                    settings.group_attribute,
                ]
            )
        )
        self._pool: queue.LifoQueue[_Pooled] = queue.LifoQueue(maxsize=settings.pool_size)
        self._lock = threading.Lock()
        self.closed = False

    # connections

    def _candidates(self) -> list[_Endpoint]:
        """Servers in configured order, those that failed recently moved to the end."""
        now = time.monotonic()
        return sorted(self._endpoints, key=lambda ep: ep.down_until > now)

    def _connect(self, ep: _Endpoint, user: str | None, password: str | bytes | None) -> Any:
        """Open (and secure) a connection to one server, not yet bound.

        A fresh ldap3 ``Server`` per connection: ldap3 keeps per-connection state
        (``current_address``) on the server object, which is not safe to share across threads.
        """
        server = ldap3.Server(
            ep.host,
            port=ep.port,
            use_ssl=ep.use_ssl,
            tls=self._tls if (ep.use_ssl or ep.start_tls) else None,
            get_info=ldap3.NONE,
            connect_timeout=self._s.connect_timeout,
        )
        conn = ldap3.Connection(
            server,
            user=user,
            password=password,
            client_strategy=ldap3.SYNC,
            auto_bind=ldap3.AUTO_BIND_NONE,
            read_only=True,
            raise_exceptions=False,
            auto_referrals=False,
            check_names=False,  # DNs and filters are escaped here; ldap3 must not re-parse them
        )
        try:
            conn.open(read_server_info=False)
            sock = conn.socket
            sock.settimeout(self._s.operation_timeout)
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            started = ep.use_ssl or not ep.start_tls or conn.start_tls(read_server_info=False)
        except (LDAPException, OSError) as exc:
            _discard(conn)
            raise _ServerTrouble(ep.url, _reason(exc)) from exc
        if not started:
            _discard(conn)
            raise _ServerTrouble(ep.url, "StartTLS not started")
        return conn

    def _open_bound(
        self, user: str | None, password: str | bytes | None, events: _Events
    ) -> _Bound | _Refused:
        """Connect to the first working server and bind; fail over on server trouble.

        Raises:
            PrimaryUnavailable: no server could be reached or answered the bind.
        """
        failures: list[_ServerTrouble] = []
        for ep in self._candidates():
            try:
                conn = self._connect(ep, user, password)
            except _ServerTrouble as trouble:
                ep.mark_down()
                failures.append(trouble)
                continue
            try:
                bound = bool(conn.bind())
            except (LDAPException, OSError) as exc:
                _discard(conn)
                ep.mark_down()
                failure = _ServerTrouble(ep.url, _reason(exc))
                failure.__cause__ = exc
                failures.append(failure)
                continue
            if bound:
                events.failed += failures
                return _Bound(conn, ep)
            result = conn.result or {}
            _discard(conn)
            code = int(result.get("result", -1))
            description = str(result.get("description", ""))
            if code in _SERVER_TROUBLE:
                ep.mark_down()
                failures.append(_ServerTrouble(ep.url, description))
                continue
            events.failed += failures
            return _Refused(code, description, str(result.get("message", "")))
        # The last failure (and through it ldap3's exception) stays the cause, for tracebacks.
        raise PrimaryUnavailable(BACKEND, _summary(failures)) from (
            failures[-1] if failures else None
        )

    def _take(self) -> _Pooled | None:
        """A pooled service connection, or None; connections idle too long are closed."""
        while True:
            try:
                pooled = self._pool.get_nowait()
            except queue.Empty:
                return None
            if time.monotonic() - pooled.idle_since <= MAX_IDLE_S:
                return pooled
            _discard(pooled.conn)

    def _give_back(self, pooled: _Pooled) -> None:
        with self._lock:
            if not self.closed:
                pooled.idle_since = time.monotonic()
                try:
                    self._pool.put_nowait(pooled)
                except queue.Full:
                    pass
                else:
                    return
        _discard(pooled.conn)

    def _service(self, events: _Events) -> _Pooled:
        """A new bound service-account connection.

        Raises:
            PrimaryUnavailable: no server answered, or the service account was refused.
        """
        bound = self._open_bound(self._s.bind_dn, self._s.bind_password, events)
        if isinstance(bound, _Refused):
            raise PrimaryUnavailable(BACKEND, f"service account bind refused: {bound.description}")
        return _Pooled(bound.conn, bound.endpoint)

    def _with_service(self, operation: Callable[[Any], T], events: _Events) -> T:
        """Run ``operation`` on a pooled service connection, retrying once on a fresh one.

        The retry covers a pooled connection that died while idle (server restart, idle
        timeout) and a server that failed mid-operation (the fresh connection skips it).
        """
        pooled = self._take()
        reused = pooled is not None
        for attempt in (1, 2):
            if pooled is None:
                pooled = self._service(events)
                reused = False
            try:
                value = operation(pooled.conn)
            except PrimaryUnavailable:
                self._give_back(pooled)  # a definite answer: the connection itself is fine
                raise
            except (LDAPException, OSError, _ServerTrouble) as exc:
                _discard(pooled.conn)
                reason = exc.reason if isinstance(exc, _ServerTrouble) else _reason(exc)
                trouble = _ServerTrouble(pooled.endpoint.url, reason)
                if not reused:
                    pooled.endpoint.mark_down()
                if attempt == 2:
                    raise PrimaryUnavailable(BACKEND, _summary([trouble])) from exc
                events.failed.append(trouble)
                pooled = None
                continue
            self._give_back(pooled)
            return value
        raise AssertionError("unreachable")  # pragma: no cover

    # operations

    def _search(
        self,
        conn: Any,
        base: str,
        scope: str,
        search_filter: str,
        attributes: list[str],
        size_limit: int = 0,
    ) -> _Found:
        """One search; busy/unavailable servers raise :class:`_ServerTrouble`."""
        conn.search(
            base,
            search_filter,
            search_scope=scope,
            dereference_aliases=ldap3.DEREF_NEVER,
            attributes=attributes,
            size_limit=size_limit,
            time_limit=self._time_limit,
        )
        result = conn.result or {}
        code = int(result.get("result", -1))
        description = str(result.get("description", ""))
        if code in _SERVER_TROUBLE:
            raise _ServerTrouble(str(conn.server.name), description)
        entries = [
            _entry(item) for item in conn.response or [] if item.get("type") == "searchResEntry"
        ]
        return _Found(entries, code, description)

    def _find_user(self, conn: Any, username: str) -> _Found:
        search_filter = self._s.user_filter.replace(USERNAME, escape_filter_value(username))
        found = self._search(
            conn, self._s.base_dn, ldap3.SUBTREE, search_filter, self._attributes, size_limit=2
        )
        if found.code not in (0, _SIZE_LIMIT_EXCEEDED):
            raise PrimaryUnavailable(BACKEND, f"user search failed: {found.description}")
        return found

    def _nested_groups(self, conn: Any, user_dn: str) -> list[str]:
        found = self._search(
            conn, self._s.base_dn, ldap3.SUBTREE, nested_group_filter(user_dn), _NO_ATTRIBUTES
        )
        if found.code != 0:
            raise PrimaryUnavailable(BACKEND, f"nested group search failed: {found.description}")
        return [e.dn for e in found.entries]

    def _identity(self, entry: _Entry, nested: Iterable[str]) -> Identity:
        s = self._s
        display = entry.texts(s.display_name_attribute)
        email = entry.texts(s.email_attribute)
        phones = tuple(p for name in s.phone_attributes for p in entry.texts(name))
        group_dns = [*entry.texts(s.group_attribute), *nested]
        names = (dn if s.group_name == "dn" else first_rdn_value(dn) for dn in group_dns)
        return Identity(
            dn=entry.dn,
            display_name=display[0] if display else "",
            email=email[0] if email else "",
            phones=phones,
            groups=frozenset(n.casefold() for n in names if n),
        )

    def _refusal(self, refused: _Refused) -> PrimaryReject:
        reason = bind_refusal(refused.code, refused.message)
        if reason is None:
            raise PrimaryUnavailable(BACKEND, f"user bind refused: {refused.description}")
        return PrimaryReject(reason)

    # entry points

    def verify(self, username: str, password: bytes) -> _Verdict:
        """Check the password; see :meth:`LdapDirectory.verify`."""
        events = _Events()
        if self._s.dn_template is not None:
            dn = self._s.dn_template.replace(USERNAME, escape_dn_value(username))
            return _Verdict(self._direct_bind(dn, password, events), events)
        return _Verdict(self._search_then_bind(username, password, events), events)

    def _search_then_bind(self, username: str, password: bytes, events: _Events) -> PrimaryResult:
        found = self._with_service(lambda conn: self._find_user(conn, username), events)
        if len(found.entries) != 1:
            events.ambiguous = len(found.entries) > 1
            return PrimaryReject(RejectReason.UNKNOWN_USER)
        entry = found.entries[0]
        bound = self._open_bound(entry.dn, password, events)
        if isinstance(bound, _Refused):
            return self._refusal(bound)
        _discard(bound.conn)
        nested: list[str] = []
        if self._s.nested_groups:
            nested = self._with_service(lambda conn: self._nested_groups(conn, entry.dn), events)
        return PrimaryAccept(identity=self._identity(entry, nested))

    def _direct_bind(self, dn: str, password: bytes, events: _Events) -> PrimaryResult:
        bound = self._open_bound(dn, password, events)
        if isinstance(bound, _Refused):
            return self._refusal(bound)
        try:
            found = self._search(bound.conn, dn, ldap3.BASE, "(objectClass=*)", self._attributes)
            entry = found.entries[0] if found.entries else _Entry(dn, {})
            nested = self._nested_groups(bound.conn, entry.dn) if self._s.nested_groups else []
        except (LDAPException, OSError, _ServerTrouble) as exc:
            bound.endpoint.mark_down()
            raise PrimaryUnavailable(BACKEND, f"{bound.endpoint.url} {_reason(exc)}") from exc
        finally:
            _discard(bound.conn)
        return PrimaryAccept(identity=self._identity(entry, nested))

    def check(self) -> None:
        """Bind as the service account and read ``base_dn`` (or, without one, the root DSE)."""
        events = _Events()
        base = self._s.base_dn if self._s.bind_dn is not None else ""
        found = self._with_service(
            lambda conn: self._search(conn, base, ldap3.BASE, "(objectClass=*)", _NO_ATTRIBUTES),
            events,
        )
        if found.code != 0 or not found.entries:
            what = "base_dn" if base else "root DSE"
            raise PrimaryUnavailable(BACKEND, f"{what} not readable: {found.description}")

    def close(self) -> None:
        """Unbind every pooled connection; connections in use are closed when returned."""
        with self._lock:
            self.closed = True
        while True:
            try:
                pooled = self._pool.get_nowait()
            except queue.Empty:
                return
            _discard(pooled.conn)


def _entry(item: dict[str, Any]) -> _Entry:
    """Convert one ldap3 response item into an :class:`_Entry` (names case-folded, bytes)."""
    raw = item.get("raw_attributes") or {}
    attributes = {str(name).casefold(): [bytes(v) for v in values] for name, values in raw.items()}
    return _Entry(str(item.get("dn", "")), attributes)


def _summary(failures: Sequence[_ServerTrouble]) -> str:
    """``no LDAP server answered: <url> <reason>; ...`` without any secret."""
    if not failures:
        return "no LDAP server answered"
    return "no LDAP server answered: " + "; ".join(f"{f.url} {f.reason}" for f in failures)


# -- async shell -------------------------------------------------------------------------------


class LdapDirectory:
    """:class:`mfa_radius.ports.PrimaryAuthenticator` by LDAP simple bind, with identity.

    Args:
        settings: the directory's location, search and attribute settings.
        executor: the bounded pool that runs ldap3; by default a private pool of
            ``settings.pool_size`` threads, shut down by :meth:`close`. A given executor is
            left to its owner.

    Raises:
        ConfigError: ``ca_file`` cannot be loaded or ``user_filter`` does not parse.
    """

    def __init__(self, settings: LdapSettings, *, executor: Executor | None = None) -> None:
        self._core = _Blocking(settings)
        self._own_executor = executor is None
        self._executor = executor or ThreadPoolExecutor(
            max_workers=settings.pool_size, thread_name_prefix="ldap"
        )

    async def verify(
        self, attempt: AuthAttempt, password: bytes, *, upstream_state: bytes | None = None
    ) -> PrimaryResult:
        """Check ``password`` for ``attempt.username`` by binding as the user.

        Args:
            attempt: the request; only its username is used.
            password: the password as received; sent unchanged (bytes skip ldap3's SASLprep,
                RFC 4513 §5.1.3 leaves the comparison to the server).
            upstream_state: ignored: LDAP never challenges.

        Returns:
            :class:`PrimaryAccept` with the user's :class:`Identity`, or
            :class:`PrimaryReject` with ``missing_password`` (empty password; nothing is sent),
            ``unknown_user`` (no entry, or more than one), ``bad_password`` or
            ``user_disabled`` (Active Directory).

        Raises:
            PrimaryUnavailable: no server answered, TLS failed, the service account was
                refused, or the search failed; never with a password in the text.
        """
        if not password:
            # RFC 4513 §5.1.2: a bind with a DN and an empty password is an *unauthenticated*
            # bind, which AD answers with success. Never send one.
            return PrimaryReject(RejectReason.MISSING_PASSWORD)
        if not attempt.username:
            return PrimaryReject(RejectReason.UNKNOWN_USER)
        if self._core.closed:
            raise PrimaryUnavailable(BACKEND, "closed")
        loop = asyncio.get_running_loop()
        verdict = await loop.run_in_executor(
            self._executor, self._core.verify, attempt.username, password
        )
        for trouble in verdict.events.failed:
            _log.warning("ldap_server_failed", url=trouble.url, error=trouble.reason)
        if verdict.events.ambiguous:
            _log.warning("ldap_user_ambiguous", user=attempt.username)
        return verdict.result

    async def check(self) -> None:
        """Verify that a server answers, the service account binds and ``base_dn`` is readable.

        Without ``bind_dn`` (direct bind, anonymous search) only the root DSE is read.

        Raises:
            PrimaryUnavailable: any of these failed.
        """
        if self._core.closed:
            raise PrimaryUnavailable(BACKEND, "closed")
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._core.check)

    def close(self) -> None:
        """Unbind pooled connections and shut the private thread pool down (not a given one)."""
        self._core.close()
        if self._own_executor:
            self._executor.shutdown(wait=False, cancel_futures=True)
