"""Configuration loading: the example file, every kind of mistake, secret files."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import BaseModel

from mfa_radius import config
from mfa_radius.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parents[1] / "radius.conf.example"
SECRET = "s3cret-s3cret-s3cret"


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
    (tmp_path / "enrolment.key").write_text("k1 " + "A" * 43 + "=\n")
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
        (tmp_path / "nps.secret").write_text(SECRET + "\n")
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


class TestFiles:
    def test_secret_file_is_read_relative_to_the_config(self, tmp_path: Path) -> None:
        """secret_file is relative to the config file's folder; its first line is the secret."""
        (tmp_path / "nas.secret").write_text(SECRET + "\n# comment\n")
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
        (tmp_path / "pw").write_text("x\n")
        text = MINIMAL + '[profile.default]\nprimary = "ldap"\n'
        text += (
            '[ldap]\nserver = ["ldaps://a:636", "ldaps://b:636"]\nbind_dn = "cn=svc"\n'
            'bind_password_file = "pw"\nbase_dn = "dc=x"\n'
        )
        warnings = config.deadline_warnings(config.load(_write(tmp_path, text)).config)
        assert any("LDAP deadlines" in w for w in warnings)
