"""Loading the configuration: the TOML file, the secret files it names, the environment.

Responsible for turning a path into a :class:`Loaded` value, or into a :class:`ConfigError`
that names the file, the key path and the problem (``radius.conf: client[0].secret_file:
cannot read ...``) so an admin can fix it without reading a traceback. Relative paths in the
file are made relative to the file's folder first, so a configuration works from any working
directory. This is the only module of the proxy that reads the configuration file, the files it
points at (``secret_file``, ``key_file``, ``password_file``) and the environment.

A key or secret file that group or others may read or write is refused, naming the file and
the key, as ssh refuses a private key others can read: such a file has usually been copied with
the wrong umask, and the secret is already as good as public on a shared host. The check is on
the file actually read (a symlink's target, through the open descriptor). ``[server]
allow_insecure_permissions = true`` turns it off.

Must not echo a secret or an input value in an error, nor decide anything the schema or the
checks decide: what is valid is :mod:`mfa_radius.config.schema` and
:mod:`mfa_radius.config.checks`; this module only reads and reports.
"""

from __future__ import annotations

import os
import stat
import tomllib
from pathlib import Path

from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError
from pydantic_core import ErrorDetails

from mfa_radius.config.checks import KeyProblem
from mfa_radius.config.schema import KEY_ENV, Config, check_secret
from mfa_radius.errors import ConfigError

OPEN_BITS = stat.S_IRGRP | stat.S_IWGRP | stat.S_IROTH | stat.S_IWOTH
"""Mode bits a key or secret file must not have: read or write by group or others."""


class Loaded(BaseModel):
    """A validated configuration with the contents of the files it names.

    Attributes:
        path: the configuration file.
        config: the validated settings.
        client_secrets: shared secret of each client, by client name.
        redis_password: the Redis password, if configured.
        key_text: the secret-encryption key lines, if configured.
        home_server_secrets: shared secret of each home server, by name.
        ldap_bind_password: the LDAP service account's password, if configured.
        twilio_auth_token: the Twilio auth token, if configured.
    """

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    path: Path
    config: Config
    client_secrets: dict[str, SecretStr]
    redis_password: SecretStr | None = None
    key_text: SecretStr | None = None
    home_server_secrets: dict[str, SecretStr] = {}
    ldap_bind_password: SecretStr | None = None
    twilio_auth_token: SecretStr | None = None

    def database_path(self) -> Path | None:
        """The SQLite file of the enrolment database, or None for another engine."""
        url = self.config.enrolment.database
        if url.startswith("sqlite:///"):
            return Path(url.removeprefix("sqlite:///"))
        return None

    def require_database(self) -> None:
        """Refuse to go on when the SQLite enrolment database does not exist.

        A missing database is never created on the way (it would hold no enrolments: with
        ``unenrolled = "accept"`` every login would be password-only); ``mfa-radius db init``
        creates it.

        Raises:
            ConfigError: naming the configuration file, ``enrolment.database``, the missing
                file and the command that creates it.
        """
        database = self.database_path()
        if database is None or str(database) == ":memory:":
            return
        try:
            database.stat()
        except (FileNotFoundError, NotADirectoryError):
            raise ConfigError(
                f"{self.path}: enrolment.database: the SQLite database {database} does not "
                f"exist; create it with `mfa-radius db init -c {self.path}`"
            ) from None
        except OSError:
            return  # not ours to judge: opening it reports the reason


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
        raise ConfigError(_describe(path, exc, raw)) from None

    secrets_by_client = {
        c.name: _shared_secret(path, config, f"client[{i}]", c.secret, c.secret_file)
        for i, c in enumerate(config.client)
    }
    home_secrets = {
        h.name: _shared_secret(path, config, f"home_server[{i}]", h.secret, h.secret_file)
        for i, h in enumerate(config.home_server)
    }
    ldap_password = None
    if config.ldap.bind_password_file is not None:
        ldap_password = SecretStr(
            _read_secret(path, config, "ldap.bind_password_file", config.ldap.bind_password_file)
        )

    redis_password = None
    if config.redis.password_file is not None:
        redis_password = SecretStr(
            _read_secret(path, config, "redis.password_file", config.redis.password_file)
        )
    key_text = None
    if config.enrolment.key_file is not None:
        key_text = SecretStr(
            _read_secret(
                path, config, "enrolment.key_file", config.enrolment.key_file, first_line=False
            )
        )
    elif env.get(KEY_ENV):
        key_text = SecretStr(env[KEY_ENV])
    twilio_token = None
    if config.twilio.auth_token_file is not None:
        twilio_token = SecretStr(
            _read_secret(path, config, "twilio.auth_token_file", config.twilio.auth_token_file)
        )
    return Loaded(
        twilio_auth_token=twilio_token,
        path=path,
        config=config,
        client_secrets=secrets_by_client,
        redis_password=redis_password,
        key_text=key_text,
        home_server_secrets=home_secrets,
        ldap_bind_password=ldap_password,
    )


def _shared_secret(
    path: Path, config: Config, where: str, inline: SecretStr | None, file: Path | None
) -> SecretStr:
    """The shared secret given inline or in a file (validated models hold exactly one)."""
    if inline is not None:
        return inline
    assert file is not None  # noqa: S101 (guaranteed by the model's _one_secret)
    text = _read_secret(path, config, f"{where}.secret_file", file)
    try:
        check_secret(text)
    except ValueError as exc:
        raise ConfigError(f"{path}: {where}.secret_file: {exc}") from None
    return SecretStr(text)


def _resolve_paths(raw: dict[str, object], base: Path) -> None:
    """Make file paths in the raw document absolute, relative to the config file's folder."""
    for blocks in (raw.get("client"), raw.get("home_server")):
        if isinstance(blocks, list):
            for block in blocks:
                if isinstance(block, dict) and isinstance(block.get("secret_file"), str):
                    block["secret_file"] = str(base / block["secret_file"])
    for section, key in (
        ("server", "admin_socket"),
        ("redis", "password_file"),
        ("enrolment", "key_file"),
        ("ldap", "bind_password_file"),
        ("ldap", "ca_file"),
        ("twilio", "auth_token_file"),
        ("delivery", "file"),
    ):
        table = raw.get(section)
        if isinstance(table, dict) and isinstance(table.get(key), str):
            table[key] = str(base / table[key])
    enrolment = raw.get("enrolment")
    if isinstance(enrolment, dict) and isinstance(enrolment.get("database"), str):
        url = enrolment["database"]
        prefix = "sqlite:///"
        if url.startswith(prefix) and not url.startswith(prefix + "/"):
            enrolment["database"] = prefix + str(base / url.removeprefix(prefix))


def _read_secret(
    config_path: Path, config: Config, key: str, file: Path, *, first_line: bool = True
) -> str:
    """Read a key or secret file named by ``key``, refusing one that others may read or write.

    The mode is taken from the open descriptor, so it is the mode of the file read (a
    symlink's target), with no window between the check and the read.

    Raises:
        ConfigError: naming the file and the key: unreadable, open to group or others
            (unless ``server.allow_insecure_permissions``), not UTF-8, or empty.
    """
    try:
        with file.open("rb") as handle:
            mode = os.fstat(handle.fileno()).st_mode
            if mode & OPEN_BITS and not config.server.allow_insecure_permissions:
                raise ConfigError(_open_to_others(config_path, key, file, mode))
            data = handle.read()
    except OSError as exc:
        raise ConfigError(
            f"{config_path}: {key}: cannot read {file}: {exc.strerror or type(exc).__name__}"
        ) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{config_path}: {key}: {file} is not UTF-8 text") from None
    value = text.splitlines()[0].strip() if first_line and text.strip() else text.strip()
    if not value:
        raise ConfigError(f"{config_path}: {key}: {file} is empty")
    return value


def _open_to_others(config_path: Path, key: str, file: Path, mode: int) -> str:
    """The message for a secret file group or others may read or write (ssh's rule)."""
    readable = mode & (stat.S_IRGRP | stat.S_IROTH)
    writable = mode & (stat.S_IWGRP | stat.S_IWOTH)
    access = " and ".join(
        word for word, on in (("readable", readable), ("writable", writable)) if on
    )
    target = file.resolve() if file.is_symlink() else file
    named = f"{file} (a symlink to {target})" if target != file else str(file)
    return (
        f"{config_path}: {key}: {named} is {access} by group or others "
        f"(mode {stat.S_IMODE(mode):04o}); make it private with `chmod 600 {target}`, "
        "or set allow_insecure_permissions = true in [server]"
    )


def _describe(path: Path, exc: ValidationError, raw: dict[str, object]) -> str:
    """Render pydantic errors as ``file: key.path: problem`` lines, never echoing input.

    The key path is the one the admin sees in the file: pydantic's own schema names (the
    members of a union it tried) are left out, and its type names are said in TOML's words.
    """
    lines: list[str] = []
    for error in exc.errors(include_input=False, include_url=False):
        key = _key_path(error["loc"], raw, missing=error["type"] == "missing")
        cause = (error.get("ctx") or {}).get("error")
        if isinstance(cause, KeyProblem):
            key = f"{key}.{cause.key}" if key else cause.key
        line = f"{path}: {key or '(top level)'}: {_reason(error)}"
        if line not in lines:
            lines.append(line)
    return "\n".join(lines)


_REASONS = {
    "extra_forbidden": "unknown key",
    "missing": "required key missing",
    "model_type": "must be a table",
    "model_attributes_type": "must be a table",
    "dict_type": "must be a table",
    "list_type": "must be an array",
}
"""pydantic error types whose message names pydantic's or Python's types, in TOML's words."""


def _reason(error: ErrorDetails) -> str:
    """The plain reason of one pydantic error."""
    kind = error["type"]
    if kind in _REASONS:
        return _REASONS[kind]
    if kind == "too_short" and isinstance((error.get("ctx") or {}).get("min_length"), int):
        least = error["ctx"]["min_length"]
        return f"needs at least {least} {'entry' if least == 1 else 'entries'}"
    return error["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")


def _key_path(loc: tuple[int | str, ...], raw: object, *, missing: bool) -> str:
    """``client[0].ipaddr[1]`` from pydantic's location, keeping only keys of the document.

    A name that is not in the document is one of pydantic's schema names (the union member it
    was trying), except for the last part of a missing key. Indexes are kept: a single value
    given for a list (``ipaddr = "10.0.0.1"``) is its entry ``[0]``.
    """
    path = ""
    node: object = raw
    for number, part in enumerate(loc):
        if isinstance(part, int):
            path += f"[{part}]"
            node = node[part] if isinstance(node, list) and 0 <= part < len(node) else None
        elif isinstance(node, dict) and part in node:
            path += f".{part}" if path else part
            node = node[part]
        elif missing and number == len(loc) - 1:
            path += f".{part}" if path else str(part)
    return path
