"""The configuration file's schema: one frozen pydantic model per section, with every key.

Responsible for what a valid ``radius.conf`` looks like: section and key names, types, defaults,
ranges and the ``Field(description=...)`` that ``radius.conf.example`` repeats. A model is
``frozen`` (a running proxy cannot change a setting) and ``extra="forbid"`` (a typo is an error,
not a silent default). Single-key checks (a CIDR, a URL, a prompt's length) sit on the field;
checks that relate several keys are in :mod:`mfa_radius.config.checks`, called from the models'
validators so that pydantic still reports them at the key path of the section they concern.

Must not read files or the environment (that is :mod:`mfa_radius.config.load`), nor know the
login engine's types beyond the enums the keys take their values from (the mapping to
``ClientPolicy`` is :mod:`mfa_radius.config.policy`).

Section and key names follow FreeRADIUS where the concept is the same (``client``, ``ipaddr``,
``secret``, ``response_window``, ``time_step``).
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from mfa_radius.config import checks
from mfa_radius.core.model import FailMode, Mode, Unenrolled
from mfa_radius.core.prompts import (
    DEFAULT_PROMPT,
    DEFAULT_RETRY_PROMPT,
    DEFAULT_SMS_PROMPT,
    DEFAULT_VOICE_PROMPT,
    MAX_ATTRIBUTE_OCTETS,
    PLACEHOLDERS,
)
from mfa_radius.radius.clients import MaPolicy, ProxyStatePolicy

KEY_ENV = "MFA_RADIUS_KEYS"
"""Environment variable that may hold the secret-encryption key lines instead of ``key_file``."""

MIN_SECRET_LENGTH = 16
"""Shortest accepted RADIUS shared secret. Short secrets make User-Password and the
authenticators brute-forceable offline (RFC 2865 §3 asks for at least 16 octets)."""

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class _Model(BaseModel):
    """Base of every section: immutable, and a typo is an error, not a silent default."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class ServerConfig(_Model):
    """``[server]``: where the proxy listens and how much it takes on at once."""

    listen: list[str] = Field(
        default_factory=lambda: ["127.0.0.1:1812"],
        description="Addresses to receive Access-Requests on, as host:port ([::1]:1812 for IPv6).",
    )
    node_name: str = Field(
        default="",
        description="Name of this node in the audit line; empty means the host name.",
    )
    max_in_flight: int = Field(
        default=4096,
        ge=1,
        description="Requests worked on at once; past it datagrams are dropped and counted.",
    )
    reply_cache_ttl: float = Field(
        default=30.0,
        gt=0,
        description="Seconds a reply is kept to answer retransmissions (RFC 5080 §2.2.2).",
    )
    admin_socket: Path | None = Field(
        default=None,
        description="UNIX socket for admin commands to the running proxy (user unlock with "
        "the memory store); unset: none.",
    )
    reply_cache_entries: int = Field(
        default=500_000,
        ge=1000,
        description="Most replies kept for retransmissions; size it as requests/s x "
        "reply_cache_ttl (6,000/s x 30 s = 180,000).",
    )
    status_server: bool = Field(
        default=True,
        description="Answer Status-Server (RFC 5997) carrying a Message-Authenticator.",
    )
    receive_buffer: int | None = Field(
        default=None,
        ge=65_536,
        description="Receive buffer (SO_RCVBUF) of each listening socket, in bytes; unset: the "
        "kernel's default (often 208 KiB), which a burst of requests overflows. The kernel caps "
        "it at net.core.rmem_max; a capped value is logged as a warning at start-up.",
    )
    allow_insecure_permissions: bool = Field(
        default=False,
        description="Accept key and secret files (*_file keys) that group or others may read "
        "or write; by default such a file is a start-up error, as ssh refuses an open key.",
    )

    @field_validator("listen")
    @classmethod
    def _check_listen(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("at least one address is needed")
        for item in value:
            parse_listen(item)
        return value


def parse_listen(item: str) -> tuple[str, int]:
    """Split ``host:port`` or ``[v6]:port`` into its parts (port 0: any free port).

    Raises:
        ValueError: when the address or the port is not valid.
    """
    host, sep, port_text = item.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 <= int(port_text) < 65536:
        raise ValueError(f"{item!r} is not host:port")
    host = host.removeprefix("[").removesuffix("]")
    ipaddress.ip_address(host)
    return host, int(port_text)


def parse_network(item: object) -> IpNetwork:
    """Read one ``ipaddr`` entry: an address (``192.0.2.1``) or a CIDR network (``10.0.0.0/8``).

    Done here rather than by pydantic's own network types, whose errors for a union of IPv4 and
    IPv6 carry its internal schema names, and which take a bare integer for an address.

    Args:
        item: the value as written in the file.

    Returns:
        The network; an address is a network of one (``/32``, ``/128``).

    Raises:
        ValueError: with a plain reason (host bits set names the network that was meant).
    """
    if isinstance(item, ipaddress.IPv4Network | ipaddress.IPv6Network):
        return item
    if not isinstance(item, str):
        # pydantic reports a ValueError at the key path; a TypeError would escape as a traceback
        raise ValueError(  # noqa: TRY004
            'must be an address or CIDR network in quotes, like "10.0.0.0/8"'
        )
    try:
        return ipaddress.ip_network(item.strip())
    except ValueError:
        pass
    try:
        network = ipaddress.ip_network(item.strip(), strict=False)
    except ValueError:
        raise ValueError(
            f"{item!r} is not an IPv4 or IPv6 address or CIDR network (like 10.0.0.0/8)"
        ) from None
    raise ValueError(f"{item!r} has host bits set: the network is {network}")


class _SharedSecret(_Model):
    """A RADIUS peer's shared secret, given inline (``secret``) or in a file (``secret_file``)."""

    secret: SecretStr | None = Field(
        default=None, description="RADIUS shared secret, 16 characters or more."
    )
    secret_file: Path | None = Field(
        default=None, description="File holding the shared secret (first line), instead of secret."
    )

    @field_validator("secret")
    @classmethod
    def _strong_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            check_secret(value.get_secret_value())
        return value

    @model_validator(mode="after")
    def _one_secret(self) -> Self:
        checks.one_secret(self.secret, self.secret_file)
        return self


class ClientConfig(_SharedSecret):
    """``[[client]]``: a NAS (VPN gateway, NPS server) allowed to send requests."""

    name: str = Field(min_length=1, description="Name used in logs and audit lines.")
    ipaddr: list[Annotated[IpNetwork, BeforeValidator(parse_network)]] = Field(
        description="Source address or CIDR network(s) of the NAS (IPv4 or IPv6)."
    )
    require_message_authenticator: MaPolicy = Field(
        default=MaPolicy.AUTO,
        description="yes | no | auto: auto requires it once the client has sent one (BlastRADIUS).",
    )
    limit_proxy_state: ProxyStatePolicy = Field(
        default=ProxyStatePolicy.AUTO,
        description="yes | no | auto: drop Proxy-State without Message-Authenticator "
        "(FreeRADIUS 3.2.5).",
    )
    profile: str = Field(
        default="default",
        description="Name of the [profile.NAME] this NAS uses; 'default' needs no section.",
    )

    @field_validator("ipaddr", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value


def check_secret(value: str) -> None:
    """Refuse a shared secret that is short or still the example's placeholder.

    Used on ``secret`` here and on a ``secret_file``'s contents by the loader, so both ways of
    giving a secret meet the same rule.

    Raises:
        ValueError: saying what is wrong, never echoing the secret.
    """
    if len(value) < MIN_SECRET_LENGTH:
        raise ValueError(f"shared secret must be at least {MIN_SECRET_LENGTH} characters")
    if "CHANGE" in value.upper() and "ME" in value.upper():
        raise ValueError("shared secret is still the example placeholder")


PrimaryName = Literal["local", "none", "upstream", "ldap"]
FactorName = Literal["totp", "sms", "voice", "approve"]


def _default_factors() -> list[FactorName]:
    return ["totp"]


class ProfileConfig(_Model):
    """``[profile.NAME]``: how logins from the clients naming this profile are decided."""

    primary: PrimaryName = Field(
        default="local",
        description="Password check: local (enrolment database), upstream ([[home_server]]), "
        "ldap ([ldap]) or none (the NAS already did it).",
    )
    mode: Mode = Field(
        default=Mode.CHALLENGE,
        description="challenge: ask for the code in a second round; "
        "append: password<delimiter>code; none: password only.",
    )
    factors: list[FactorName] = Field(
        default_factory=_default_factors,
        min_length=1,
        description="Second factors allowed, in order of preference: totp, sms, voice "
        "(challenge mode), approve (mode approve).",
    )
    show_menu: bool = Field(
        default=True,
        description="Offer the other phone factors at the prompt (1: a text, 2: a call).",
    )
    sms_prompt: str = Field(
        default=DEFAULT_SMS_PROMPT,
        description="Prompt after a text message ({digits}, {phone}: masked number).",
    )
    voice_prompt: str = Field(
        default=DEFAULT_VOICE_PROMPT, description="Prompt after a call that read the code."
    )
    sms_text: str = Field(
        default="{organisation} sign-in code: {code}. Valid for {minutes} minutes.",
        description="The text message ({code}, {minutes}, {organisation}).",
    )
    sms_sender: str = Field(
        default="", description="E.164 number or Messaging Service SID (MG...) texts come from."
    )
    voice_caller_id: str = Field(default="", description="E.164 number calls come from.")
    organisation: str = Field(
        default="mfa-radius",
        description="Named in texts and calls (carriers may drop the caller id).",
    )
    language: str = Field(default="en-US", description="Language of spoken text (TwiML).")
    allowed_countries: list[str] = Field(
        default_factory=list,
        description="ISO 3166 regions codes may be sent to (toll fraud); empty allows all.",
    )
    default_region: str | None = Field(
        default=None, description="ISO region of numbers stored without a country code."
    )
    code_length: int = Field(default=6, ge=6, le=10, description="Digits of a sent code.")
    append_delimiter: str = Field(
        default=",", max_length=4, description="Separator between password and code in append mode."
    )
    unenrolled: Unenrolled = Field(
        default=Unenrolled.REJECT, description="reject | accept users with no second factor."
    )
    fail_mode: FailMode = Field(
        default=FailMode.SECURE,
        description="secure: reject when a backend fails after the password; safe: accept.",
    )
    response_window: float = Field(
        default=10.0,
        gt=0,
        le=120,
        description="Seconds the NAS waits for an answer; every request is answered within it.",
    )
    prompt: str | None = Field(
        default=None, description="Challenge prompt; default [challenge].prompt."
    )
    exempt_users: list[str] = Field(
        default_factory=list, description="Users who skip the second factor (after the password)."
    )
    exempt_groups: list[str] = Field(
        default_factory=list,
        description="Directory groups whose members skip the second factor (primary = ldap).",
    )
    require_groups: list[str] = Field(
        default_factory=list,
        description="When set, users outside these directory groups are rejected (primary = ldap).",
    )
    pass_reply_message: bool = Field(
        default=False,
        description="Pass the upstream's Reply-Message of an Access-Reject on to the NAS.",
    )
    strip_domain: bool = Field(default=False, description="Turn DOMAIN\\user into user.")
    strip_realm: bool = Field(default=False, description="Turn user@realm into user.")
    fold_case: bool = Field(default=True, description="Compare usernames case-insensitively.")

    @field_validator("prompt", "sms_prompt", "voice_prompt")
    @classmethod
    def _prompt_fits(cls, value: str | None) -> str | None:
        return None if value is None else check_prompt(value)

    @model_validator(mode="after")
    def _factors_fit_mode(self) -> ProfileConfig:
        checks.factors_fit_mode(self)
        return self

    @model_validator(mode="after")
    def _groups_need_a_directory(self) -> ProfileConfig:
        checks.groups_need_a_directory(self)
        return self


class HomeServerConfig(_SharedSecret):
    """``[[home_server]]``: an upstream RADIUS server (NPS, FreeRADIUS), in fail-over order."""

    name: str = Field(min_length=1, description="Name used in logs (the audit 'upstream' key).")
    ipaddr: str = Field(description="Address of the server (IPv4 or IPv6 literal).")
    port: int = Field(default=1812, gt=0, lt=65536, description="Authentication port.")
    response_window: float = Field(
        default=5.0, gt=0, le=60, description="Seconds to wait before failing over to the next."
    )
    zombie_period: float = Field(
        default=40.0, gt=0, description="Seconds without answers before a server is dead."
    )
    revive_interval: float = Field(
        default=60.0, gt=0, description="Seconds before a dead server is tried again."
    )
    status_check: Literal["status-server", "none"] = Field(
        default="status-server", description="Probe unanswering servers with Status-Server."
    )
    require_message_authenticator: bool = Field(
        default=True,
        description="Ignore replies without Message-Authenticator (BlastRADIUS); "
        "false only for servers that cannot send it.",
    )

    @field_validator("ipaddr")
    @classmethod
    def _address(cls, value: str) -> str:
        ipaddress.ip_address(value)
        return value


class UpstreamConfig(_Model):
    """``[upstream]``: what is forwarded to the home servers and what comes back."""

    forward_attributes: list[str] = Field(
        default_factory=lambda: [
            "NAS-IP-Address",
            "NAS-IPv6-Address",
            "NAS-Identifier",
            "NAS-Port",
            "NAS-Port-Type",
            "Called-Station-Id",
            "Calling-Station-Id",
        ],
        description="Request attributes passed on upstream besides User-Name and User-Password.",
    )
    reply_attributes: list[str] = Field(
        default_factory=list,
        description="Reply attributes kept from the upstream Accept; empty keeps all "
        "(Class, Filter-Id, vendor attributes...).",
    )
    probe_interval: float = Field(
        default=5.0, gt=0, description="Seconds between Status-Server probes of a zombie server."
    )


class LdapConfig(_Model):
    """``[ldap]``: LDAP / Active Directory as the password check and identity source."""

    server: list[str] = Field(
        default_factory=list,
        description="ldaps:// or ldap:// URLs in fail-over order.",
    )
    start_tls: bool = Field(default=False, description="StartTLS on ldap:// URLs.")
    allow_cleartext: bool = Field(
        default=False,
        description="Allow ldap:// without StartTLS (passwords in clear on the wire).",
    )
    ca_file: Path | None = Field(
        default=None, description="CA certificates to verify the server with (always verified)."
    )
    bind_dn: str | None = Field(default=None, description="Service account for searches.")
    bind_password_file: Path | None = Field(
        default=None, description="File holding the service account's password."
    )
    base_dn: str = Field(default="", description="Where users (and groups) are searched.")
    user_filter: str = Field(
        default="(uid={username})",
        description="Search filter; AD: (sAMAccountName={username}). {username} is escaped.",
    )
    dn_template: str | None = Field(
        default=None,
        description="Direct bind without a search: uid={username},ou=people,dc=example,dc=org.",
    )
    display_name_attribute: str = Field(default="displayName", description="Display name.")
    email_attribute: str = Field(default="mail", description="E-mail address.")
    phone_attributes: list[str] = Field(
        default_factory=lambda: ["mobile", "telephoneNumber"],
        description="Phone number attributes, first non-empty wins.",
    )
    group_attribute: str = Field(default="memberOf", description="Group membership attribute.")
    nested_groups: bool = Field(
        default=False, description="Resolve nested groups (AD LDAP_MATCHING_RULE_IN_CHAIN)."
    )
    group_name: Literal["dn", "cn"] = Field(
        default="cn", description="Compare groups by full DN or by CN."
    )
    connect_timeout: float = Field(default=3.0, gt=0, description="Seconds to connect.")
    operation_timeout: float = Field(default=5.0, gt=0, description="Seconds per operation.")
    pool_size: int = Field(default=4, ge=1, le=64, description="Worker threads for LDAP calls.")

    @field_validator("server")
    @classmethod
    def _urls(cls, value: list[str]) -> list[str]:
        for url in value:
            if not url.startswith(("ldap://", "ldaps://")):
                raise ValueError(f"{url!r} is not an ldap:// or ldaps:// URL")
        return value

    @model_validator(mode="after")
    def _bind_method(self) -> LdapConfig:
        checks.ldap_bind_method(self)
        return self


class DeliveryConfig(_Model):
    """``[delivery]``: who sends text messages and places calls."""

    sender: Literal["twilio", "file"] = Field(
        default="twilio", description="twilio, or file (a lab: messages appended to a file)."
    )
    file: Path | None = Field(default=None, description="The file of the file sender.")
    timeout: float = Field(default=5.0, gt=0, le=30, description="Seconds per provider request.")


class TwilioConfig(_Model):
    """``[twilio]``: the Twilio account (SMS, voice, approve calls)."""

    account_sid: str = Field(default="", description="Account SID (AC...).")
    auth_token_file: Path | None = Field(
        default=None, description="File holding the auth token (also verifies webhooks)."
    )
    api_base_url: str | None = Field(
        default=None, description="Override of Twilio's API URL (tests); unset in production."
    )


class WebhookConfig(_Model):
    """``[webhook]``: the HTTP listener Twilio posts approve-call keypresses to."""

    listen: str = Field(
        default="", description="host:port of the listener (behind a reverse proxy); empty: off."
    )
    public_url: str = Field(
        default="", description="The URL Twilio reaches the listener at (https://.../twilio)."
    )
    gather_seconds: int = Field(
        default=15, ge=5, le=60, description="Seconds an approve call waits for a key."
    )

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        if value:
            parse_listen(value)
        return value

    @model_validator(mode="after")
    def _both(self) -> WebhookConfig:
        checks.webhook_complete(self)
        return self


class LimitsConfig(_Model):
    """``[limits]``: how many codes may be sent (SMS bombing, toll fraud); cluster-wide."""

    user_sends: int = Field(default=5, ge=1, description="Sends per user per user_window.")
    user_window: float = Field(default=3600.0, gt=0, description="Seconds.")
    number_sends: int = Field(default=5, ge=1, description="Sends per number per number_window.")
    number_window: float = Field(default=3600.0, gt=0, description="Seconds.")
    country_sends: int = Field(
        default=1000, ge=1, description="Sends per destination country per country_window."
    )
    country_window: float = Field(default=3600.0, gt=0, description="Seconds.")
    daily_sends: int = Field(default=10_000, ge=1, description="Sends per day, all users.")
    cooldown: float = Field(default=20.0, ge=0, description="Seconds between sends to a user.")


class LockoutConfig(_Model):
    """``[lockout]``: wrong codes lock a user out (counted only after a correct password)."""

    threshold: int = Field(default=5, ge=1, description="Wrong codes before the first lockout.")
    base_delay: float = Field(default=60.0, gt=0, description="Seconds of the first lockout.")
    max_delay: float = Field(default=3600.0, gt=0, description="Longest lockout (doubling).")
    memory: float = Field(default=86_400.0, gt=0, description="Seconds a wrong code is remembered.")


class StoreConfig(_Model):
    """``[store]``: where pending challenges and replay marks live."""

    backend: Literal["memory", "redis"] = Field(
        default="memory",
        description="memory: in-process (single node); redis: shared by every node of a cluster.",
    )
    timeout: float = Field(
        default=1.0, gt=0, description="Deadline in seconds for one store operation."
    )
    max_entries: int = Field(
        default=1_000_000, ge=1000, description="memory backend: most keys held at once."
    )
    max_challenges_per_user: int = Field(
        default=5,
        ge=1,
        description="Pending challenges one user may hold at once (memory and redis); "
        "a new one removes that user's oldest, so one password cannot fill the store.",
    )


class RedisConfig(_Model):
    """``[redis]``: the shared challenge store of a cluster."""

    url: str = Field(
        default="redis://127.0.0.1:6379/0",
        description="redis://, rediss:// (TLS) or unix:// URL, without a password.",
    )
    password_file: Path | None = Field(
        default=None, description="File holding the Redis password (AUTH)."
    )
    username: str | None = Field(default=None, description="Redis ACL user name.")
    key_prefix: str = Field(default="mfa:", description="Prefix of every key this proxy writes.")
    socket_timeout: float = Field(default=0.5, gt=0, description="Seconds per Redis command.")
    connect_timeout: float = Field(default=0.5, gt=0, description="Seconds to connect.")

    @field_validator("url")
    @classmethod
    def _no_inline_password(cls, value: str) -> str:
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        netloc = value.split("://", 1)[1].split("/", 1)[0]
        if "@" in netloc:
            raise ValueError("put the password in password_file, not in the URL")
        return value


class EnrolmentConfig(_Model):
    """``[enrolment]``: the database of users, tokens and local passwords."""

    database: str = Field(
        default="sqlite:///var/lib/mfa-radius/enrolment.db",
        description="sqlite:///PATH (one node); postgresql://... for a cluster.",
    )
    key_file: Path | None = Field(
        default=None,
        description="AES-256-GCM key lines '<key_id> <base64>' (last one encrypts); "
        f"or set {KEY_ENV}.",
    )
    timeout: float = Field(default=2.0, gt=0, description="Deadline in seconds for one lookup.")


class TotpConfig(_Model):
    """``[totp]``: parameters of new enrolments and of code checks (RFC 6238)."""

    issuer: str = Field(default="mfa-radius", description="Issuer shown by authenticator apps.")
    time_step: int = Field(default=30, ge=10, le=120, description="Seconds per code (X).")
    otp_length: int = Field(default=6, ge=6, le=8, description="Digits per code.")
    algorithm: Literal["sha1", "sha256", "sha512"] = Field(
        default="sha1", description="HMAC algorithm; most apps support only sha1."
    )
    lookback_steps: int = Field(
        default=1, ge=0, le=10, description="Earlier time steps accepted (slow typing, drift)."
    )
    lookforward_steps: int = Field(
        default=1, ge=0, le=10, description="Later time steps accepted (fast token clocks)."
    )


class ChallengeConfig(_Model):
    """``[challenge]``: pending challenges."""

    ttl: float = Field(default=300.0, gt=0, le=3600, description="Seconds a challenge stays open.")
    max_attempts: int = Field(default=3, ge=1, le=20, description="Wrong codes per challenge.")
    prompt: str = Field(
        default=DEFAULT_PROMPT,
        description="Reply-Message of the Access-Challenge ({digits} is replaced).",
    )
    retry_prompt: str = Field(
        default=DEFAULT_RETRY_PROMPT,
        description="Reply-Message after a wrong code ({attempts_left} is replaced).",
    )

    @field_validator("prompt", "retry_prompt")
    @classmethod
    def _fits(cls, value: str) -> str:
        return check_prompt(value)


def check_prompt(value: str) -> str:
    """Refuse prompts that cannot be sent in one Reply-Message or use unknown placeholders."""
    rendered = value
    for placeholder in PLACEHOLDERS:
        rendered = rendered.replace(placeholder, "99")
    if "{" in rendered or "}" in rendered:
        raise ValueError(f"unknown placeholder; allowed: {', '.join(PLACEHOLDERS)}")
    if len(rendered.encode()) > MAX_ATTRIBUTE_OCTETS:
        raise ValueError(f"longer than {MAX_ATTRIBUTE_OCTETS} octets")
    return value


class LogConfig(_Model):
    """``[log]``: the audit and diagnostic log on standard output."""

    level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", description="Lowest level written."
    )
    format: Literal["json", "console"] = Field(
        default="json", description="json: one object per line; console: for a terminal."
    )


class Config(_Model):
    """The whole configuration file."""

    server: ServerConfig = Field(default_factory=ServerConfig)
    client: list[ClientConfig] = Field(min_length=1, description="The NAS allowed to ask.")
    profile: dict[str, ProfileConfig] = Field(default_factory=dict)
    home_server: list[HomeServerConfig] = Field(default_factory=list)
    upstream: UpstreamConfig = Field(default_factory=UpstreamConfig)
    ldap: LdapConfig = Field(default_factory=LdapConfig)
    delivery: DeliveryConfig = Field(default_factory=DeliveryConfig)
    twilio: TwilioConfig = Field(default_factory=TwilioConfig)
    webhook: WebhookConfig = Field(default_factory=WebhookConfig)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    lockout: LockoutConfig = Field(default_factory=LockoutConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    redis: RedisConfig = Field(default_factory=RedisConfig)
    enrolment: EnrolmentConfig = Field(default_factory=EnrolmentConfig)
    totp: TotpConfig = Field(default_factory=TotpConfig)
    challenge: ChallengeConfig = Field(default_factory=ChallengeConfig)
    log: LogConfig = Field(default_factory=LogConfig)

    @model_validator(mode="after")
    def _consistent(self) -> Config:
        checks.sections_agree(self)
        return self

    def profiles(self) -> dict[str, ProfileConfig]:
        """Every profile by name, with ``default`` present (built-in defaults unless set)."""
        return {"default": ProfileConfig(), **self.profile}

    def profile_of(self, client: ClientConfig) -> ProfileConfig:
        """The profile a client uses."""
        return self.profiles()[client.profile]
