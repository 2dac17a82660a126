"""Command line: argv to subcommands, exit codes, and what the admin sees. Nothing else.

Exit codes: 0 success; 1 the operation failed (login rejected, user not found); 2 the
configuration is invalid (the message names the file and the key path).

Everything is printed without console markup: error messages and user data (names, prompts,
``[profile.vpn]`` in a message) contain square brackets that rich would otherwise take for
style tags and drop. Styles are given as ``style=`` arguments instead.
"""

from __future__ import annotations

import asyncio
import getpass
import secrets
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, NoReturn, TypeVar

import segno
import typer
from rich.console import Console
from rich.table import Table

from mfa_radius import __version__, admin, app, config
from mfa_radius.adapters.aesgcm_keyring import Keyring
from mfa_radius.adapters.argon2_primary import hash_password
from mfa_radius.adapters.radius_client import LoginResult, RadiusClient
from mfa_radius.adapters.sql_enrolments import SqlEnrolmentStore
from mfa_radius.core import factors, limits, otp
from mfa_radius.core.model import User
from mfa_radius.demo import prepare as prepare_demo
from mfa_radius.errors import AlreadyExists, BackendError, ConfigError, NotFound
from mfa_radius.logs import configure as configure_logs
from mfa_radius.logs import mask_phone
from mfa_radius.radius.dictionary import load as load_dictionary
from mfa_radius.radius.packet import AttrType

T = TypeVar("T")

# soft_wrap: a "file: key.path: problem" line stays one line in a pipe or a journal; outside a
# terminal, tables get room instead of the 80 columns rich assumes.
_WIDTH = None if sys.stdout.isatty() else 200
out = Console(highlight=False, markup=False, emoji=False, soft_wrap=True, width=_WIDTH)
err = Console(stderr=True, highlight=False, markup=False, emoji=False, soft_wrap=True, width=_WIDTH)

HELP = (  # the top-level help: typer shows the callback's for the whole command
    "RADIUS proxy adding a second factor to VPN gateways and RD Gateway: "
    "TOTP codes from an authenticator app, one-time codes by SMS or voice call, "
    "and approve calls (answer and press a key)."
)

cli = typer.Typer(
    name="mfa-radius",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
user_cli = typer.Typer(help="Manage users of the enrolment database.", no_args_is_help=True)
totp_cli = typer.Typer(help="Enrol TOTP tokens.", no_args_is_help=True)
key_cli = typer.Typer(help="Secret-encryption keys.", no_args_is_help=True)
db_cli = typer.Typer(help="The enrolment database.", no_args_is_help=True)
cli.add_typer(user_cli, name="user")
cli.add_typer(totp_cli, name="totp")
cli.add_typer(key_cli, name="key")
cli.add_typer(db_cli, name="db")

ConfigOpt = Annotated[
    Path, typer.Option("--config", "-c", help="Configuration file (TOML).", show_default=True)
]
DEFAULT_CONFIG = Path("/etc/mfa-radius/radius.conf")


def _load(path: Path) -> config.Loaded:
    try:
        return config.load(path)
    except ConfigError as exc:
        _config_error(exc)


def _config_error(exc: ConfigError) -> NoReturn:
    """Print a configuration error (its ``file: key.path: problem`` lines) and exit 2."""
    err.print("config error", style="bold red")
    err.print(str(exc))
    raise typer.Exit(2) from None


def _print_version(value: bool) -> None:
    if value:
        out.print(f"mfa-radius {__version__}")
        raise typer.Exit


@cli.callback(help=HELP)
def _main(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            help="Print the version and exit.",
            callback=_print_version,
            is_eager=True,
        ),
    ] = False,
) -> None:
    """Options that apply before any command."""


def _run(coro: Awaitable[T]) -> T:
    async def wrapper() -> T:
        return await coro

    try:
        return asyncio.run(wrapper())
    except ConfigError as exc:
        _config_error(exc)
    except (NotFound, AlreadyExists) as exc:
        err.print(str(exc))
        raise typer.Exit(1) from None
    except BackendError as exc:
        err.print(f"backend unavailable: {exc}")
        raise typer.Exit(1) from None


async def _with_enrolments(
    loaded: config.Loaded, action: Callable[[SqlEnrolmentStore], Awaitable[T]]
) -> T:
    loaded.require_database()
    store = await app.open_enrolments(loaded)
    try:
        return await action(store)
    finally:
        await store.close()


@cli.command()
def version() -> None:
    """Print the version."""
    out.print(__version__)


@cli.command()
def serve(config_path: ConfigOpt = DEFAULT_CONFIG) -> None:
    """Run the proxy until SIGTERM or SIGINT."""
    loaded = _load(config_path)
    try:
        loaded.require_database()
    except ConfigError as exc:
        _config_error(exc)
    _serve(loaded)


def _serve(loaded: config.Loaded, *, headline: bool = True) -> None:
    """Run the proxy; a start-up failure (port taken, database down) is a message, not a trace.

    ``headline=False`` leaves out the ``config error`` line: the demo wrote the configuration
    itself, so a port already in use is reported on one line naming the address and the reason.
    """
    configure_logs(level=loaded.config.log.level, fmt=loaded.config.log.format)
    try:
        app.run(loaded)
    except ConfigError as exc:
        if headline:
            _config_error(exc)
        err.print(str(exc))
        raise typer.Exit(2) from None
    except BackendError as exc:
        err.print(f"start-up failed: {exc}")
        raise typer.Exit(1) from None


@cli.command("check-config")
def check_config(config_path: ConfigOpt = DEFAULT_CONFIG) -> None:
    """Validate the configuration, the key file and the backends it names."""
    loaded = _load(config_path)

    async def check() -> None:
        async def backends(store: SqlEnrolmentStore) -> None:
            await store.check()
            primaries = await app.open_primaries(loaded, store, app.SystemClock())
            try:
                await primaries.check()
            finally:
                await primaries.close()

        await _with_enrolments(loaded, backends)
        if loaded.config.store.backend == "redis":
            store = app.open_store(loaded, app.SystemClock())
            try:
                await store.ping()
            finally:
                await store.close()

    _run(check())
    cfg = loaded.config
    table = Table(
        "client", "ipaddr", "profile", "mode", "primary", "fail_mode", "message-authenticator"
    )
    for c in cfg.client:
        prof = cfg.profile_of(c)
        table.add_row(
            c.name,
            ", ".join(str(n) for n in c.ipaddr),
            c.profile,
            prof.mode.value,
            prof.primary,
            prof.fail_mode.value,
            c.require_message_authenticator.value,
        )
    out.print(table)
    for note in config.checks.client_overlaps(cfg):
        out.print(f"note: {config_path}: {note}")
    for warning in config.deadline_warnings(cfg):
        out.print(f"warning: {config_path}: {warning}")
    out.print(f"{config_path}: OK (store: {cfg.store.backend})")


# users ------------------------------------------------------------------------------------


def _user_row(table: Table, user: User) -> None:
    table.add_row(
        user.username,
        user.display_name,
        user.email,
        mask_phone(user.phone) if user.phone else "",
        "disabled" if user.disabled else "active",
        ", ".join(t.serial or t.token_id[:8] for t in user.tokens) or "-",
    )


def _user_table() -> Table:
    return Table("user", "display name", "email", "phone", "status", "totp tokens")


@user_cli.command("add")
def user_add(
    username: str,
    config_path: ConfigOpt = DEFAULT_CONFIG,
    display_name: Annotated[str, typer.Option(help="Display name for the audit line.")] = "",
    email: Annotated[str, typer.Option(help="E-mail address.")] = "",
    phone: Annotated[str, typer.Option(help="Phone number, E.164.")] = "",
    language: Annotated[
        str, typer.Option(help="Language calls speak (de-DE); default: the profile's.")
    ] = "",
) -> None:
    """Create a user."""
    loaded = _load(config_path)
    if phone:
        phone = _valid_phone(phone)
    user = _run(
        _with_enrolments(
            loaded,
            lambda s: s.add_user(
                username.casefold(),
                display_name=display_name,
                email=email,
                phone=phone,
                language=language,
            ),
        )
    )
    out.print(f"user {user.username} created (id {user.user_id})")


@user_cli.command("list")
def user_list(config_path: ConfigOpt = DEFAULT_CONFIG) -> None:
    """List users and their enrolled tokens."""
    loaded = _load(config_path)
    users = _run(_with_enrolments(loaded, lambda s: s.list_users()))
    table = _user_table()
    for user in users:
        _user_row(table, user)
    out.print(table)


@user_cli.command("show")
def user_show(username: str, config_path: ConfigOpt = DEFAULT_CONFIG) -> None:
    """Show one user."""
    loaded = _load(config_path)
    user = _run(_with_enrolments(loaded, lambda s: s.find_user(username.casefold())))
    if user is None:
        err.print(f"no user {username!r}")
        raise typer.Exit(1)
    table = _user_table()
    _user_row(table, user)
    out.print(table)
    out.print(f"id: {user.user_id}")


@user_cli.command("set")
def user_set(
    username: str,
    config_path: ConfigOpt = DEFAULT_CONFIG,
    display_name: Annotated[str | None, typer.Option(help="New display name.")] = None,
    email: Annotated[str | None, typer.Option(help="New e-mail address.")] = None,
    phone: Annotated[
        str | None, typer.Option(help='New phone number, E.164 ("" removes it).')
    ] = None,
    language: Annotated[
        str | None, typer.Option(help='Language calls speak ("" for the profile\'s).')
    ] = None,
) -> None:
    """Change a user's display name, e-mail, phone number or call language."""
    loaded = _load(config_path)
    if phone:
        phone = _valid_phone(phone)
    _run(
        _with_enrolments(
            loaded,
            lambda s: s.update_user(
                username.casefold(),
                display_name=display_name,
                email=email,
                phone=phone,
                language=language,
            ),
        )
    )
    out.print(f"user {username.casefold()} updated")


def _valid_phone(phone: str) -> str:
    """The number in E.164 form, or exit 2 with a clear message."""
    normalised = factors.normalise_phone(phone, default_region=None)
    if normalised is None:
        err.print("--phone must be a valid number in international form (+14155550123)")
        raise typer.Exit(2)
    return normalised


@user_cli.command("disable")
def user_disable(username: str, config_path: ConfigOpt = DEFAULT_CONFIG) -> None:
    """Disable a user: every login is rejected after the password check."""
    loaded = _load(config_path)
    _run(_with_enrolments(loaded, lambda s: s.set_disabled(username.casefold(), True)))
    out.print(f"user {username} disabled")


@user_cli.command("enable")
def user_enable(username: str, config_path: ConfigOpt = DEFAULT_CONFIG) -> None:
    """Enable a disabled user."""
    loaded = _load(config_path)
    _run(_with_enrolments(loaded, lambda s: s.set_disabled(username.casefold(), False)))
    out.print(f"user {username} enabled")


@user_cli.command("remove")
def user_remove(username: str, config_path: ConfigOpt = DEFAULT_CONFIG) -> None:
    """Delete a user with their tokens and password."""
    loaded = _load(config_path)
    _run(_with_enrolments(loaded, lambda s: s.remove_user(username.casefold())))
    out.print(f"user {username} removed")


@user_cli.command("unlock")
def user_unlock(username: str, config_path: ConfigOpt = DEFAULT_CONFIG) -> None:
    """End a lockout for wrong codes and forget the user's wrong codes (cluster-wide)."""
    loaded = _load(config_path)
    name = username.casefold()
    if loaded.config.store.backend == "memory":
        _unlock_through_admin_socket(loaded, name)
        return

    async def unlock() -> None:
        store = app.open_store(loaded, app.SystemClock())
        try:
            await store.delete(limits.failures_key(name), limits.lock_key(name))
        finally:
            await store.close()

    _run(unlock())
    out.print(f"user {name} unlocked")


def _unlock_through_admin_socket(loaded: config.Loaded, name: str) -> None:
    """The in-process store lives in the running proxy: ask it over its admin socket."""
    path = loaded.config.server.admin_socket
    if path is None:
        err.print(
            "the in-process store belongs to the running proxy: set [server] admin_socket so "
            "that this command can reach it (or wait for the lockout to end)"
        )
        raise typer.Exit(1)
    try:
        answer = asyncio.run(admin.request(path, {"op": "unlock", "user": name}))
    except (OSError, TimeoutError, TypeError, ValueError) as exc:
        err.print(f"cannot reach the proxy at {path}: {type(exc).__name__}")
        raise typer.Exit(1) from None
    if answer.get("ok") is not True:
        err.print(f"the proxy refused: {answer.get('error')}")
        raise typer.Exit(1)
    out.print(f"user {name} unlocked")


@user_cli.command("passwd")
def user_passwd(
    username: str,
    config_path: ConfigOpt = DEFAULT_CONFIG,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
) -> None:
    """Set the user's local primary password (argon2id)."""
    loaded = _load(config_path)
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass("New password: ")
        if getpass.getpass("Again: ") != password:
            err.print("passwords differ")
            raise typer.Exit(1)
    if not password:
        err.print("empty password refused")
        raise typer.Exit(1)
    hashed = hash_password(password)
    _run(_with_enrolments(loaded, lambda s: s.set_password_hash(username.casefold(), hashed)))
    out.print(f"password of {username} set")


# TOTP -------------------------------------------------------------------------------------


def print_enrolment(uri: str, *, qr: bool) -> None:
    """Show the otpauth URI and, in a terminal, its QR code."""
    out.print(uri, soft_wrap=True)
    if qr:
        segno.make(uri, error="m").terminal(compact=True)


@totp_cli.command("enrol")
def totp_enrol(
    username: str,
    config_path: ConfigOpt = DEFAULT_CONFIG,
    replace: Annotated[bool, typer.Option(help="Remove the user's other tokens.")] = False,
    qr: Annotated[bool, typer.Option(help="Print a QR code.")] = True,
) -> None:
    """Enrol a TOTP token with a fresh random 160-bit secret; print its URI and QR code."""
    loaded = _load(config_path)
    totp_cfg = loaded.config.totp
    secret = secrets.token_bytes(20)
    name = username.casefold()

    async def enrol(store: SqlEnrolmentStore) -> None:
        if replace:
            await store.remove_tokens(name)
        await store.add_totp(
            name,
            secret,
            digits=totp_cfg.otp_length,
            time_step=totp_cfg.time_step,
            algorithm=totp_cfg.algorithm,
        )

    _run(_with_enrolments(loaded, enrol))
    out.print(f"TOTP token enrolled for {name}; scan or type into the authenticator app:")
    uri = otp.provisioning_uri(
        secret,
        username=name,
        issuer=totp_cfg.issuer,
        digits=totp_cfg.otp_length,
        time_step=totp_cfg.time_step,
        algorithm=totp_cfg.algorithm,
    )
    print_enrolment(uri, qr=qr)


# database ---------------------------------------------------------------------------------


@db_cli.command("init")
def db_init(config_path: ConfigOpt = DEFAULT_CONFIG) -> None:
    """Create the SQLite enrolment database (mode 0600) with its schema; never overwrite one.

    `serve` and every other command refuse a missing database instead of creating an empty one.
    """
    loaded = _load(config_path)
    path = _run(init_database(loaded))
    out.print(f"enrolment database created: {path}")


async def init_database(loaded: config.Loaded) -> Path:
    """Create the configured SQLite database: the file (0600), the schema, the key check.

    Missing folders on the way are created for the proxy's user alone (0700).

    Args:
        loaded: the configuration; its key file must be valid.

    Returns:
        The database file.

    Raises:
        ConfigError: the database is not SQLite, or no valid key is configured.
        AlreadyExists: the file exists (it is left as it is).
        EnrolmentUnavailable: the file or its folder cannot be created, or a migration fails.
    """
    path = loaded.database_path()
    if path is None or str(path) == ":memory:":
        raise ConfigError(
            f"{loaded.path}: enrolment.database: db init creates SQLite files only; another "
            "database is created by its administrator and migrated at start-up"
        )
    keyring = app.keyring_from(loaded)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    store = await SqlEnrolmentStore.open(
        app.database_url(loaded.config.enrolment.database), keyring, create=True
    )
    await store.close()
    return path


# keys -------------------------------------------------------------------------------------


@key_cli.command("generate")
def key_generate(
    key_id: Annotated[str, typer.Option("--id", help="Key id stored beside each secret.")] = "",
) -> None:
    """Print a new key line for the key file (append it to rotate: the last line encrypts)."""
    out.print(Keyring.generate_line(key_id or f"k{secrets.token_hex(3)}"))


# login test client ------------------------------------------------------------------------


@cli.command()
def login(
    user: Annotated[str, typer.Option("--user", "-u", help="User-Name to send.")],
    server: Annotated[str, typer.Option(help="Proxy address.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Proxy UDP port.")] = 1812,
    secret: Annotated[str, typer.Option(help="Shared secret.")] = "",
    secret_file: Annotated[
        Path | None, typer.Option(help="File holding the shared secret.")
    ] = None,
    password: Annotated[str | None, typer.Option(help="Password (prompted when absent).")] = None,
    code: Annotated[
        str | None, typer.Option(help="Answer to the challenge (prompted when absent).")
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait per reply.")] = 5.0,
    message_authenticator: Annotated[bool, typer.Option(help="Send Message-Authenticator.")] = True,
) -> None:
    """Log in through the proxy as a NAS would: password, challenge prompt, code, outcome."""
    if secret_file is not None:
        try:
            lines = secret_file.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            err.print(f"{secret_file}: cannot read: {exc.strerror or type(exc).__name__}")
            raise typer.Exit(2) from None
        secret = lines[0].strip() if lines else ""
        if not secret:
            err.print(f"{secret_file}: empty secret file")
            raise typer.Exit(2)
    if not secret:
        err.print("give --secret or --secret-file")
        raise typer.Exit(2)
    if password is None:
        password = getpass.getpass(f"Password for {user}: ")

    def ask(prompt: str) -> str:
        if code is not None:
            out.print(f"challenge: {prompt}")
            return code
        return str(typer.prompt(f"challenge: {prompt}"))

    async def go() -> LoginResult:
        async with RadiusClient(server, port, secret.encode(), timeout=timeout) as client:
            return await client.login(
                user, password.encode(), ask, message_authenticator=message_authenticator
            )

    try:
        result = asyncio.run(go())
    except TimeoutError:
        err.print(f"no answer from {server}:{port} within {timeout} s")
        raise typer.Exit(1) from None
    out.print(f"outcome: {result.outcome}")
    dictionary = load_dictionary(app.packaged_dictionary())
    for attribute in result.packet.attributes:
        if attribute[0] == AttrType.MESSAGE_AUTHENTICATOR:
            continue
        for name, value in dictionary.describe(attribute):
            out.print(f"  {name} = {value}")
    if result.outcome != "accept":
        raise typer.Exit(1)


# demo -------------------------------------------------------------------------------------


@cli.command()
def demo(
    directory: Annotated[Path, typer.Option("--dir", help="Where the demo files go.")] = Path(
        "demo"
    ),
    port: Annotated[int, typer.Option(help="UDP port on 127.0.0.1.")] = 18120,
    serve_after: Annotated[
        bool, typer.Option("--serve/--no-serve", help="Start the proxy after set-up.")
    ] = True,
) -> None:
    """Set up a demo (config, key, SQLite database, user 'alice' with TOTP, SMS, voice) and run it.

    alice's texts and calls are written to messages.txt in the demo folder.
    """
    try:
        loaded, files = prepare_demo(directory, port=port)
    except ConfigError as exc:
        _config_error(exc)
    except OSError as exc:
        err.print(f"{directory}: cannot write the demo files: {exc.strerror or type(exc).__name__}")
        raise typer.Exit(1) from None
    except BackendError as exc:
        err.print(f"demo set-up failed: {exc}")
        raise typer.Exit(1) from None
    if files.database_created:
        out.print(f"enrolment database created: {files.database}")
    out.print(f"demo config: {files.config}")
    out.print(f"user: alice  password: {files.password}")
    out.print("TOTP for alice (scan with an authenticator app, or use `oathtool`):")
    print_enrolment(files.otpauth_uri, qr=True)
    # An existing demo config is reused as it is, with the port it was first written with.
    host, listen_port = config.parse_listen(loaded.config.server.listen[0])
    if listen_port != port:
        err.print(
            f"{files.config} exists and listens on {host}:{listen_port}: --port {port} is not "
            "used (edit server.listen there, or remove the file to start over)"
        )
    out.print("log in from another terminal with:")
    out.print(
        f"  mfa-radius login --server {host} --port {listen_port} "
        f"--secret-file {files.secret_file} --user alice",
        soft_wrap=True,
    )
    if serve_after:
        _serve(loaded, headline=False)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``mfa-radius`` command."""
    cli(args=argv, prog_name="mfa-radius")
