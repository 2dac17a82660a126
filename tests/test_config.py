"""Configuration loading: the example file, every kind of mistake, secret files."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import BaseModel

from mfa_radius import app, config
from mfa_radius.core.model import Factor, PendingChallenge
from mfa_radius.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parents[1] / "radius.conf.example"
SECRET = "s3cret-s3cret-s3cret"


def _private(path: Path, text: str) -> None:
    """Write a key or secret file readable by its owner only, as the loader requires."""
    path.write_text(text, encoding="utf-8")
    path.chmod(0o600)


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "radius.conf"
    path.write_text(text, encoding="utf-8")
    return path


MINIMAL = f"""
[[client]]
name = "vpn"
ipaddr = "127.0.0.1"
secret = "{SECRET}"
"""


def _example_with_secret(tmp_path: Path) -> Path:
    text = EXAMPLE.read_text(encoding="utf-8").replace("CHANGE-ME-to-a-long-random-secret", SECRET)
    _private(tmp_path / "enrolment.key", "k1 " + "A" * 43 + "=\n")
    text = text.replace('key_file = "/etc/mfa-radius/enrolment.key"', 'key_file = "enrolment.key"')
    return _write(tmp_path, text)


class TestExample:
    def test_example_is_refused_until_the_placeholder_secret_is_replaced(self) -> None:
        """The shipped example never works with its placeholder secret."""
        with pytest.raises(ConfigError, match=r"client\[0\]\.secret: .*placeholder"):
            config.load(EXAMPLE)

    def test_example_loads_once_secret_is_set(self, tmp_path: Path) -> None:
        """Every other key of the example is valid."""
        loaded = config.load(_example_with_secret(tmp_path))
        assert loaded.config.client[0].name == "vpn-gateway"
        assert loaded.key_text is not None

    def test_example_keeps_the_file_permission_check_on(self, tmp_path: Path) -> None:
        """The example sets allow_insecure_permissions to its default, false."""
        loaded = config.load(_example_with_secret(tmp_path))
        assert loaded.config.server.allow_insecure_permissions is False
        assert config.ServerConfig().allow_insecure_permissions is False

    def test_example_documents_every_key(self) -> None:
        """Each field of each section appears in the example (commented or set)."""
        text = EXAMPLE.read_text(encoding="utf-8")
        sections: dict[str, type[BaseModel]] = {
            "server": config.ServerConfig,
            "client": config.ClientConfig,
            "store": config.StoreConfig,
            "redis": config.RedisConfig,
            "enrolment": config.EnrolmentConfig,
            "totp": config.TotpConfig,
            "challenge": config.ChallengeConfig,
            "log": config.LogConfig,
            "profile": config.ProfileConfig,
            "home_server": config.HomeServerConfig,
            "upstream": config.UpstreamConfig,
            "ldap": config.LdapConfig,
            "delivery": config.DeliveryConfig,
            "twilio": config.TwilioConfig,
            "webhook": config.WebhookConfig,
            "limits": config.LimitsConfig,
            "lockout": config.LockoutConfig,
        }
        missing = [
            f"{name}.{field}"
            for name, model in sections.items()
            for field in model.model_fields
            if not re.search(rf"^#? ?{field} = ", text, flags=re.MULTILINE)
        ]
        assert missing == []
        assert set(config.Config.model_fields) == set(sections)


class TestErrors:
    def test_unknown_key_names_file_and_key_path(self, tmp_path: Path) -> None:
        """A typo is an error naming the file and where it is."""
        path = _write(tmp_path, MINIMAL + "profle = 3\n")
        with pytest.raises(ConfigError) as info:
            config.load(path)
        assert str(info.value) == f"{path}: client[0].profle: unknown key"

    def test_unknown_profile_is_named(self, tmp_path: Path) -> None:
        """A client naming a profile that does not exist is an error naming it."""
        path = _write(tmp_path, MINIMAL + 'profile = "vnp"\n')
        with pytest.raises(ConfigError, match=r"client 'vpn' names profile 'vnp'"):
            config.load(path)

    def test_profile_key_typo_names_the_profile(self, tmp_path: Path) -> None:
        """A typo inside a profile names the profile and the key."""
        path = _write(tmp_path, MINIMAL + '[profile.default]\nfail_mod = "safe"\n')
        with pytest.raises(ConfigError, match=r"profile\.default\.fail_mod: unknown key"):
            config.load(path)

    def test_upstream_primary_needs_a_home_server(self, tmp_path: Path) -> None:
        """primary = upstream without any [[home_server]] is refused."""
        path = _write(tmp_path, MINIMAL + '[profile.default]\nprimary = "upstream"\n')
        with pytest.raises(ConfigError, match="no \\[\\[home_server\\]\\]"):
            config.load(path)

    def test_groups_need_a_directory(self, tmp_path: Path) -> None:
        """exempt_groups with a primary that has no groups is refused."""
        path = _write(tmp_path, MINIMAL + '[profile.default]\nexempt_groups = ["a"]\n')
        with pytest.raises(ConfigError, match="need primary"):
            config.load(path)

    def test_home_server_secret_file_is_read(self, tmp_path: Path) -> None:
        """A home server's secret_file is read like a client's."""
        _private(tmp_path / "nps.secret", SECRET + "\n")
        text = MINIMAL + '[profile.default]\nprimary = "upstream"\n'
        text += '[[home_server]]\nname = "nps"\nipaddr = "127.0.0.1"\nsecret_file = "nps.secret"\n'
        loaded = config.load(_write(tmp_path, text))
        assert loaded.home_server_secrets["nps"].get_secret_value() == SECRET

    def test_bad_cidr_is_named(self, tmp_path: Path) -> None:
        """An address that is not a network is refused with its key path."""
        path = _write(tmp_path, MINIMAL.replace('"127.0.0.1"', '"10.0.0.300/24"'))
        with pytest.raises(ConfigError, match=r"client\[0\]\.ipaddr\[0\]"):
            config.load(path)

    def test_short_secret_is_refused_without_echoing_it(self, tmp_path: Path) -> None:
        """A short secret is refused and the message does not contain it."""
        path = _write(tmp_path, MINIMAL.replace(SECRET, "tooshort123"))
        with pytest.raises(ConfigError, match="at least 16") as info:
            config.load(path)
        assert "tooshort123" not in str(info.value)

    def test_secret_and_secret_file_are_exclusive(self, tmp_path: Path) -> None:
        """Exactly one of secret and secret_file."""
        path = _write(tmp_path, MINIMAL + 'secret_file = "x"\n')
        with pytest.raises(ConfigError, match="exactly one of secret and secret_file"):
            config.load(path)

    def test_missing_secret_file_is_named(self, tmp_path: Path) -> None:
        """A secret_file that cannot be read names the key and the file."""
        path = _write(tmp_path, MINIMAL.replace(f'secret = "{SECRET}"', 'secret_file = "nope"'))
        with pytest.raises(ConfigError, match=r"client\[0\]\.secret_file: cannot read .*nope"):
            config.load(path)

    def test_bad_toml_names_the_file(self, tmp_path: Path) -> None:
        """A syntax error names the file."""
        path = _write(tmp_path, "[server\n")
        with pytest.raises(ConfigError, match=f"{re.escape(str(path))}: not valid TOML"):
            config.load(path)

    def test_missing_file_names_the_file(self, tmp_path: Path) -> None:
        """A missing config file is an error naming it."""
        with pytest.raises(ConfigError, match="cannot read"):
            config.load(tmp_path / "absent.conf")

    def test_duplicate_client_names_are_refused(self, tmp_path: Path) -> None:
        """Client names are unique (they key logs and profiles)."""
        path = _write(tmp_path, MINIMAL + MINIMAL)
        with pytest.raises(ConfigError, match="unique: vpn"):
            config.load(path)

    def test_prompt_over_253_octets_is_refused(self, tmp_path: Path) -> None:
        """A prompt that cannot fit one Reply-Message is refused at start-up."""
        path = _write(tmp_path, MINIMAL + f'[challenge]\nprompt = "{"x" * 300}"\n')
        with pytest.raises(ConfigError, match=r"challenge\.prompt: .*253"):
            config.load(path)

    def test_redis_password_in_url_is_refused(self, tmp_path: Path) -> None:
        """A password inline in the Redis URL is refused (it would reach process listings)."""
        path = _write(tmp_path, MINIMAL + '[redis]\nurl = "redis://:pw@127.0.0.1:6379/0"\n')
        with pytest.raises(ConfigError, match="password_file") as info:
            config.load(path)
        assert "pw@" not in str(info.value)


PYDANTIC_INTERNALS = ("lax-or-strict", "function-", "is-instance", "Value error", "instance of")
"""Fragments of pydantic's own vocabulary that must never reach an admin."""

CLIENT_HEAD = 'name = "vpn"\nsecret = "' + SECRET + '"\n'


class TestChallengeCap:
    async def test_per_user_cap_reaches_the_memory_store(self, tmp_path: Path) -> None:
        """``[store] max_challenges_per_user`` caps the store the proxy opens: the oldest goes."""
        path = _write(tmp_path, MINIMAL + "\n[store]\nmax_challenges_per_user = 2\n")
        store = app.open_store(config.load(path), app.SystemClock())
        now = app.SystemClock().now()
        record = PendingChallenge("alice", "vpn", Factor.TOTP, created=now, expires=now + 60)
        for key in ("c1", "c2", "c3"):
            await store.put_challenge(key, record, 60.0)
        kept = [await store.get_challenge(key) is not None for key in ("c1", "c2", "c3")]
        await store.close()
        assert kept == [False, True, True]

    def test_per_user_cap_below_one_is_refused(self, tmp_path: Path) -> None:
        """A cap of zero would refuse every challenge: an error naming the key."""
        path = _write(tmp_path, MINIMAL + "\n[store]\nmax_challenges_per_user = 0\n")
        with pytest.raises(ConfigError, match=r"store\.max_challenges_per_user"):
            config.load(path)


@pytest.mark.parametrize(
    ("client_block", "expected"),
    [
        (
            CLIENT_HEAD + 'ipaddr = "10.0.0.300/24"\n',
            "client[0].ipaddr[0]: '10.0.0.300/24' is not an IPv4 or IPv6 address or CIDR network "
            "(like 10.0.0.0/8)",
        ),
        (
            CLIENT_HEAD + 'ipaddr = ["127.0.0.1", "10.0.0.0/33"]\n',
            "client[0].ipaddr[1]: '10.0.0.0/33' is not an IPv4 or IPv6 address or CIDR network "
            "(like 10.0.0.0/8)",
        ),
        (
            CLIENT_HEAD + 'ipaddr = "10.0.0.1/24"\n',
            "client[0].ipaddr[0]: '10.0.0.1/24' has host bits set: the network is 10.0.0.0/24",
        ),
        (
            CLIENT_HEAD + "ipaddr = [5]\n",
            'client[0].ipaddr[0]: must be an address or CIDR network in quotes, like "10.0.0.0/8"',
        ),
        (
            CLIENT_HEAD + 'ipaddr = "10.0.0.1"\nrequire_message_authenticator = "maybe"\n',
            "client[0].require_message_authenticator: Input should be 'yes', 'no' or 'auto'",
        ),
        (
            CLIENT_HEAD + "ipaddr = 10\n",
            "client[0].ipaddr: must be an array",
        ),
        (
            CLIENT_HEAD + 'ipaddr = "10.0.0.1"\nprofile = 3\n',
            "client[0].profile: Input should be a valid string",
        ),
        (
            f'secret = "{SECRET}"\nipaddr = "10.0.0.1"\n',
            "client[0].name: required key missing",
        ),
        (
            CLIENT_HEAD + 'ipaddr = "10.0.0.1"\ncolour = "red"\n',
            "client[0].colour: unknown key",
        ),
    ],
    ids=[
        "bad-cidr",
        "bad-cidr-in-list",
        "host-bits-set",
        "address-not-a-string",
        "bad-enum-value",
        "wrong-type-not-an-array",
        "wrong-type-not-a-string",
        "missing-required-key",
        "unknown-key",
    ],
)
class TestErrorMessages:
    def test_names_file_key_path_and_plain_reason(
        self, tmp_path: Path, client_block: str, expected: str
    ) -> None:
        """The message is exactly ``file: key.path: reason`` for each kind of mistake."""
        path = _write(tmp_path, "[[client]]\n" + client_block)
        with pytest.raises(ConfigError) as info:
            config.load(path)
        assert str(info.value) == f"{path}: {expected}"

    def test_carries_no_pydantic_internals(
        self, tmp_path: Path, client_block: str, expected: str
    ) -> None:
        """No schema names, class names or pydantic prefixes appear in the message."""
        path = _write(tmp_path, "[[client]]\n" + client_block)
        with pytest.raises(ConfigError) as info:
            config.load(path)
        assert not [part for part in PYDANTIC_INTERNALS if part in str(info.value)]


class TestSectionErrors:
    def test_section_of_wrong_type_is_called_a_table(self, tmp_path: Path) -> None:
        """``server = 5`` says the key must be a table, not which Python class was expected."""
        path = _write(tmp_path, "server = 5\n" + MINIMAL)
        with pytest.raises(ConfigError) as info:
            config.load(path)
        assert str(info.value) == f"{path}: server: must be a table"

    def test_missing_client_section_is_named(self, tmp_path: Path) -> None:
        """A file without any ``[[client]]`` names the missing key."""
        path = _write(tmp_path, "[log]\n")
        with pytest.raises(ConfigError) as info:
            config.load(path)
        assert str(info.value) == f"{path}: client: required key missing"

    def test_unknown_profile_is_named_at_the_client_profile_key(self, tmp_path: Path) -> None:
        """The message names ``client[0].profile`` and spells out the missing section."""
        path = _write(tmp_path, MINIMAL + 'profile = "vpm"\n')
        with pytest.raises(ConfigError) as info:
            config.load(path)
        assert str(info.value) == (
            f"{path}: client[0].profile: client 'vpn' names profile 'vpm', "
            "which has no [profile.vpm] section"
        )


def _client(name: str, *networks: str) -> str:
    listed = ", ".join(f'"{n}"' for n in networks)
    return f'[[client]]\nname = "{name}"\nipaddr = [{listed}]\nsecret = "{SECRET}"\n'


class TestClientNetworks:
    def test_refuses_the_same_network_in_two_clients(self, tmp_path: Path) -> None:
        """A network in two clients names both clients, the network and the second listing."""
        path = _write(tmp_path, _client("vpn", "10.0.0.0/8") + _client("vpn2", "10.0.0.0/8"))
        with pytest.raises(ConfigError) as info:
            config.load(path)
        assert str(info.value) == (
            f"{path}: client[1].ipaddr[0]: clients 'vpn' and 'vpn2' both list 10.0.0.0/8; "
            "a network may belong to one client only"
        )

    def test_refuses_an_address_and_its_slash_32_in_two_clients(self, tmp_path: Path) -> None:
        """``10.1.2.3`` and ``10.1.2.3/32`` are the same network."""
        path = _write(
            tmp_path,
            _client("vpn", "192.0.2.0/24", "10.1.2.3") + _client("vpn2", "10.1.2.3/32"),
        )
        with pytest.raises(ConfigError, match=r"client\[1\]\.ipaddr\[0\]: .*10\.1\.2\.3/32"):
            config.load(path)

    def test_refuses_a_network_listed_twice_in_one_client(self, tmp_path: Path) -> None:
        """A client listing a network twice is an error at the second listing."""
        path = _write(tmp_path, _client("vpn", "2001:db8::/32", "2001:db8::/32"))
        with pytest.raises(ConfigError) as info:
            config.load(path)
        assert str(info.value) == (
            f"{path}: client[0].ipaddr[1]: client 'vpn' lists 2001:db8::/32 twice"
        )

    def test_accepts_a_client_network_inside_another_clients(self, tmp_path: Path) -> None:
        """10.1.2.3/32 inside 10.0.0.0/8 loads, and the NAS table gives 10.1.2.3 to its client."""
        path = _write(tmp_path, _client("vpn", "10.0.0.0/8") + _client("vpn2", "10.1.2.3/32"))
        table = app.client_table(config.load(path))
        matched = [table.lookup(ip) for ip in ("10.1.2.3", "10.1.2.4")]
        assert [c.name if c else None for c in matched] == ["vpn2", "vpn"]

    def test_reports_a_client_network_inside_another_clients(self, tmp_path: Path) -> None:
        """The overlap is reported at the more specific network, naming both clients."""
        path = _write(tmp_path, _client("vpn", "10.0.0.0/8") + _client("vpn2", "10.1.2.3/32"))
        notes = config.checks.client_overlaps(config.load(path).config)
        assert notes == [
            "client[1].ipaddr[0]: 10.1.2.3/32 of client 'vpn2' lies inside 10.0.0.0/8 of client "
            "'vpn' (client[0].ipaddr[0]); requests from 10.1.2.3/32 use 'vpn2', the most "
            "specific network"
        ]

    def test_reports_no_overlap_for_disjoint_networks_or_other_families(
        self, tmp_path: Path
    ) -> None:
        """Disjoint networks, IPv4 against IPv6, and one client's own networks are not noted."""
        path = _write(
            tmp_path,
            _client("vpn", "10.0.0.0/8", "10.1.0.0/16", "::/0") + _client("vpn2", "192.0.2.1"),
        )
        assert config.checks.client_overlaps(config.load(path).config) == []


class TestFiles:
    def test_secret_file_is_read_relative_to_the_config(self, tmp_path: Path) -> None:
        """secret_file is relative to the config file's folder; its first line is the secret."""
        _private(tmp_path / "nas.secret", SECRET + "\n# comment\n")
        path = _write(
            tmp_path, MINIMAL.replace(f'secret = "{SECRET}"', 'secret_file = "nas.secret"')
        )
        loaded = config.load(path)
        assert loaded.client_secrets["vpn"].get_secret_value() == SECRET

    def test_key_comes_from_environment_when_no_key_file(self, tmp_path: Path) -> None:
        """MFA_RADIUS_KEYS supplies the key lines."""
        loaded = config.load(_write(tmp_path, MINIMAL), environ={config.KEY_ENV: "k1 abc"})
        assert loaded.key_text is not None
        assert loaded.key_text.get_secret_value() == "k1 abc"

    def test_relative_sqlite_path_is_relative_to_the_config(self, tmp_path: Path) -> None:
        """A relative SQLite path lands beside the config file."""
        path = _write(tmp_path, MINIMAL + '[enrolment]\ndatabase = "sqlite:///db/e.db"\n')
        assert config.load(path).database_path() == tmp_path / "db" / "e.db"


class TestDeadlineWarnings:
    def test_warns_when_fail_over_cannot_fit_in_the_window(self, tmp_path: Path) -> None:
        """Two home servers of 4 s each cannot both be tried within a 5 s window."""
        text = MINIMAL + '[profile.default]\nprimary = "upstream"\nresponse_window = 5.0\n'
        for name in ("nps1", "nps2"):
            text += (
                f'[[home_server]]\nname = "{name}"\nipaddr = "127.0.0.1"\n'
                f'secret = "{SECRET}"\nresponse_window = 4.0\n'
            )
        warnings = config.deadline_warnings(config.load(_write(tmp_path, text)).config)
        assert len(warnings) == 1
        assert warnings[0].startswith("profile.default.response_window: 5 s cannot cover")

    def test_no_warning_when_everything_fits(self, tmp_path: Path) -> None:
        """The defaults fit in the default window."""
        assert config.deadline_warnings(config.load(_write(tmp_path, MINIMAL)).config) == []

    def test_warns_when_ldap_timeouts_exceed_the_window(self, tmp_path: Path) -> None:
        """LDAP connect plus two operations over two servers exceed a 10 s window."""
        _private(tmp_path / "pw", "x\n")
        text = MINIMAL + '[profile.default]\nprimary = "ldap"\n'
        text += (
            '[ldap]\nserver = ["ldaps://a:636", "ldaps://b:636"]\nbind_dn = "cn=svc"\n'
            'bind_password_file = "pw"\nbase_dn = "dc=x"\n'
        )
        warnings = config.deadline_warnings(config.load(_write(tmp_path, text)).config)
        assert any("LDAP deadlines" in w for w in warnings)
