"""The configuration file (``radius.conf``, TOML) and its validation.

This is the only module that reads the configuration file, the files it points at
(``secret_file``, ``key_file``, ``password_file``) and the environment. Everything is checked
here, at start-up, so that a running proxy never meets a bad setting: an unknown key, a bad
CIDR, a short shared secret or a missing file is a :class:`ConfigError` naming the file, the
key path and the problem. Secrets are ``SecretStr`` and never appear in an error message.

Section and key names follow FreeRADIUS where the concept is the same (``client``, ``ipaddr``,
``secret``, ``response_window``, ``time_step``).
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from mfa_radius.core.model import FailMode, Mode, Unenrolled
from mfa_radius.core.prompts import (
    DEFAULT_PROMPT,
    DEFAULT_RETRY_PROMPT,
    MAX_ATTRIBUTE_OCTETS,
    PLACEHOLDERS,
)
from mfa_radius.errors import ConfigError
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
    status_server: bool = Field(
        default=True,
        description="Answer Status-Server (RFC 5997) carrying a Message-Authenticator.",
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


class ClientConfig(_Model):
    """``[[client]]``: a NAS (VPN gateway, NPS server) allowed to send requests."""

    name: str = Field(min_length=1, description="Name used in logs and audit lines.")
    ipaddr: list[IpNetwork] = Field(
        description="Source address or CIDR network(s) of the NAS (IPv4 or IPv6)."
    )
    secret: SecretStr | None = Field(
        default=None, description="RADIUS shared secret, 16 characters or more."
    )
    secret_file: Path | None = Field(
        default=None, description="File holding the shared secret (first line), instead of secret."
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
    mode: Mode = Field(
        default=Mode.CHALLENGE,
        description="challenge: ask for the code in a second round; "
        "append: password<delimiter>code; none: password only.",
    )
    primary: Literal["local", "none"] = Field(
        default="local",
        description="Password check: local (enrolment database) or none (the NAS already did it).",
    )
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
        description="Seconds this NAS waits for an answer; every request is answered within it.",
    )
    prompt: str | None = Field(
        default=None, description="Challenge prompt for this client; default [challenge].prompt."
    )
    strip_domain: bool = Field(default=False, description="Turn DOMAIN\\user into user.")
    strip_realm: bool = Field(default=False, description="Turn user@realm into user.")
    fold_case: bool = Field(default=True, description="Compare usernames case-insensitively.")

    @field_validator("ipaddr", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value

    @field_validator("secret")
    @classmethod
    def _strong_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            _check_secret(value.get_secret_value())
        return value

    @model_validator(mode="after")
    def _one_secret(self) -> ClientConfig:
        if (self.secret is None) == (self.secret_file is None):
            raise ValueError("set exactly one of secret and secret_file")
        return self


def _check_secret(value: str) -> None:
    if len(value) < MIN_SECRET_LENGTH:
        raise ValueError(f"shared secret must be at least {MIN_SECRET_LENGTH} characters")
    if "CHANGE" in value.upper() and "ME" in value.upper():
        raise ValueError("shared secret is still the example placeholder")


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
    store: StoreConfig = Field(default_factory=StoreConfig)
    redis: RedisConfig = Field(default_factory=RedisConfig)
    enrolment: EnrolmentConfig = Field(default_factory=EnrolmentConfig)
    totp: TotpConfig = Field(default_factory=TotpConfig)
    challenge: ChallengeConfig = Field(default_factory=ChallengeConfig)
    log: LogConfig = Field(default_factory=LogConfig)

    @model_validator(mode="after")
    def _unique_clients(self) -> Config:
        names = [c.name for c in self.client]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"client names must be unique: {', '.join(dupes)}")
        for client in self.client:
            if client.prompt is not None:
                check_prompt(client.prompt)
        return self


class Loaded(BaseModel):
    """A validated configuration with the contents of the files it names.

    Attributes:
        path: the configuration file.
        config: the validated settings.
        client_secrets: shared secret of each client, by client name.
        redis_password: the Redis password, if configured.
        key_text: the secret-encryption key lines, if configured.
    """

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    path: Path
    config: Config
    client_secrets: dict[str, SecretStr]
    redis_password: SecretStr | None = None
    key_text: SecretStr | None = None

    def database_path(self) -> Path | None:
        """The SQLite file of the enrolment database, or None for another engine."""
        url = self.config.enrolment.database
        if url.startswith("sqlite:///"):
            return Path(url.removeprefix("sqlite:///"))
        return None


def load(path: Path, *, environ: dict[str, str] | None = None) -> Loaded:
    """Read, parse and validate the configuration file and the secret files it names.

    Relative paths inside the file (``secret_file``, ``key_file``, a SQLite database) are
    relative to the configuration file's folder, so a config works from any working directory.

    Args:
        path: the TOML file.
        environ: the environment to read ``MFA_RADIUS_KEYS`` from (default ``os.environ``).

    Returns:
        The validated configuration with the secrets it refers to.

    Raises:
        ConfigError: naming the file, the key path and the problem.
    """
    env = os.environ if environ is None else environ
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or type(exc).__name__}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text") from exc
    base = path.resolve().parent
    _resolve_paths(raw, base)
    try:
        config = Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_describe(path, exc)) from None

    secrets_by_client: dict[str, SecretStr] = {}
    for index, client in enumerate(config.client):
        if client.secret is not None:
            secrets_by_client[client.name] = client.secret
            continue
        assert client.secret_file is not None  # noqa: S101 (guaranteed by _one_secret)
        text = _read_secret(path, f"client[{index}].secret_file", client.secret_file)
        try:
            _check_secret(text)
        except ValueError as exc:
            raise ConfigError(f"{path}: client[{index}].secret_file: {exc}") from None
        secrets_by_client[client.name] = SecretStr(text)

    redis_password = None
    if config.redis.password_file is not None:
        redis_password = SecretStr(
            _read_secret(path, "redis.password_file", config.redis.password_file)
        )
    key_text = None
    if config.enrolment.key_file is not None:
        key_text = SecretStr(
            _read_secret(path, "enrolment.key_file", config.enrolment.key_file, first_line=False)
        )
    elif env.get(KEY_ENV):
        key_text = SecretStr(env[KEY_ENV])
    return Loaded(
        path=path,
        config=config,
        client_secrets=secrets_by_client,
        redis_password=redis_password,
        key_text=key_text,
    )


def _resolve_paths(raw: dict[str, object], base: Path) -> None:
    """Make file paths in the raw document absolute, relative to the config file's folder."""
    clients = raw.get("client")
    if isinstance(clients, list):
        for client in clients:
            if isinstance(client, dict) and isinstance(client.get("secret_file"), str):
                client["secret_file"] = str(base / client["secret_file"])
    for section, key in (("redis", "password_file"), ("enrolment", "key_file")):
        table = raw.get(section)
        if isinstance(table, dict) and isinstance(table.get(key), str):
            table[key] = str(base / table[key])
    enrolment = raw.get("enrolment")
    if isinstance(enrolment, dict) and isinstance(enrolment.get("database"), str):
        url = enrolment["database"]
        prefix = "sqlite:///"
        if url.startswith(prefix) and not url.startswith(prefix + "/"):
            enrolment["database"] = prefix + str(base / url.removeprefix(prefix))


def _read_secret(config_path: Path, key: str, file: Path, *, first_line: bool = True) -> str:
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"{config_path}: {key}: cannot read {file}: {exc.strerror or type(exc).__name__}"
        ) from None
    value = text.splitlines()[0].strip() if first_line and text.strip() else text.strip()
    if not value:
        raise ConfigError(f"{config_path}: {key}: {file} is empty")
    return value


def _describe(path: Path, exc: ValidationError) -> str:
    """Render pydantic errors as ``file: key.path: problem`` lines, never echoing input."""
    lines = []
    for error in exc.errors(include_input=False, include_url=False):
        loc = ""
        for part in error["loc"]:
            loc += f"[{part}]" if isinstance(part, int) else (f".{part}" if loc else str(part))
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown key"
        lines.append(f"{path}: {loc or '(top level)'}: {message}")
    return "\n".join(lines)
