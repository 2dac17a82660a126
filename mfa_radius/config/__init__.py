"""The configuration file (``radius.conf``, TOML): its schema, loading, checks and mapping.

Everything is checked here, at start-up, so that a running proxy never meets a bad setting: an
unknown key, a bad CIDR, a short shared secret or a missing file is a :class:`ConfigError`
naming the file, the key path and the problem. Secrets are ``SecretStr`` and never appear in an
error message. One job per module:

* :mod:`~mfa_radius.config.schema`: the frozen pydantic models, one per section.
* :mod:`~mfa_radius.config.load`: the file, the secret files and the environment -> ``Loaded``.
* :mod:`~mfa_radius.config.checks`: rules across keys, and deadline warnings.
* :mod:`~mfa_radius.config.policy`: configuration -> the login engine's settings.

This package only re-exports the names the rest of the proxy uses (``config.load(path)``,
``from mfa_radius.config import Config``) so callers need not know the split; it must not
define anything itself. ``load`` here is the function: reach the module as
``mfa_radius.config.load`` only in ``from mfa_radius.config.load import ...`` form.
"""

from mfa_radius.config import checks, policy, schema
from mfa_radius.config.checks import deadline_warnings
from mfa_radius.config.load import Loaded, load
from mfa_radius.config.schema import (
    KEY_ENV,
    MIN_SECRET_LENGTH,
    ChallengeConfig,
    ClientConfig,
    Config,
    DeliveryConfig,
    EnrolmentConfig,
    FactorName,
    HomeServerConfig,
    IpNetwork,
    LdapConfig,
    LimitsConfig,
    LockoutConfig,
    LogConfig,
    PrimaryName,
    ProfileConfig,
    RedisConfig,
    ServerConfig,
    StoreConfig,
    TotpConfig,
    TwilioConfig,
    UpstreamConfig,
    WebhookConfig,
    check_prompt,
    check_secret,
    parse_listen,
)
from mfa_radius.errors import ConfigError

__all__ = [
    "KEY_ENV",
    "MIN_SECRET_LENGTH",
    "ChallengeConfig",
    "ClientConfig",
    "Config",
    "ConfigError",
    "DeliveryConfig",
    "EnrolmentConfig",
    "FactorName",
    "HomeServerConfig",
    "IpNetwork",
    "LdapConfig",
    "LimitsConfig",
    "Loaded",
    "LockoutConfig",
    "LogConfig",
    "PrimaryName",
    "ProfileConfig",
    "RedisConfig",
    "ServerConfig",
    "StoreConfig",
    "TotpConfig",
    "TwilioConfig",
    "UpstreamConfig",
    "WebhookConfig",
    "check_prompt",
    "check_secret",
    "checks",
    "deadline_warnings",
    "load",
    "parse_listen",
    "policy",
    "schema",
]
