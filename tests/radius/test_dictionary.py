"""Tests for mfa_radius.radius.dictionary and the shipped dictionaries/ files."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pyrad.dictionary import Dictionary

import mfa_radius
from mfa_radius.errors import ConfigError, MalformedPacket
from mfa_radius.radius import dictionary
from mfa_radius.radius.dictionary import AttributeDef, RadiusDictionary

DICTIONARY_DIR = Path(mfa_radius.__file__).parent / "dictionaries"
ROOT = DICTIONARY_DIR / "dictionary"


@pytest.fixture(scope="module")
def radius_dict() -> RadiusDictionary:
    return dictionary.load(ROOT)


class TestShippedFiles:
    """The files under mfa_radius/dictionaries/ are valid and define what we use."""

    def test_loads_with_pyrad_without_skipping_anything(self) -> None:
        """pyrad parses every file and skips no attribute."""
        parsed = Dictionary(str(ROOT))
        assert parsed.skipped_attributes == set()
        assert "Message-Authenticator" in parsed.attributes

    @pytest.mark.parametrize(
        "path", sorted(DICTIONARY_DIR.glob("dictionary*")), ids=lambda p: p.name
    )
    def test_every_file_cites_its_source(self, path: Path) -> None:
        """Each file header names an RFC, the IANA registry or a vendor document."""
        header = path.read_text(encoding="utf-8").split("\n\n")[0]
        assert re.search(r"RFC \d+|IANA|Source:", header), path.name

    def test_defines_each_name_and_code_once(self) -> None:
        """No attribute name or (vendor, code) is defined twice across the files."""
        names: set[str] = set()
        codes: set[tuple[str, int]] = set()
        for path in sorted(DICTIONARY_DIR.glob("dictionary.*")):
            vendor = ""
            for line in path.read_text(encoding="utf-8").splitlines():
                tokens = line.split("#", 1)[0].split()
                if tokens[:1] == ["BEGIN-VENDOR"]:
                    vendor = tokens[1]
                elif tokens[:1] == ["END-VENDOR"]:
                    vendor = ""
                elif tokens[:1] == ["ATTRIBUTE"]:
                    name, code = tokens[1], int(tokens[2])
                    assert name not in names, name
                    assert (vendor, code) not in codes, (vendor, code)
                    names.add(name)
                    codes.add((vendor, code))
        assert ("", 80) in codes

    @pytest.mark.parametrize(
        ("name", "code", "vendor", "data_type"),
        [
            ("User-Name", 1, 0, "string"),
            ("User-Password", 2, 0, "string"),
            ("State", 24, 0, "octets"),
            ("Class", 25, 0, "octets"),
            ("Reply-Message", 18, 0, "string"),
            ("Proxy-State", 33, 0, "octets"),
            ("Message-Authenticator", 80, 0, "octets"),
            ("Event-Timestamp", 55, 0, "date"),
            ("NAS-IPv6-Address", 95, 0, "ipv6addr"),
            ("Acct-Status-Type", 40, 0, "integer"),
            ("MS-Primary-DNS-Server", 28, 311, "ipaddr"),
            ("Cisco-AVPair", 1, 9, "string"),
            ("Fortinet-Group-Name", 1, 12356, "string"),
            ("PaloAlto-User-Group", 5, 25461, "string"),
        ],
    )
    def test_defines_attributes_we_use(
        self, radius_dict: RadiusDictionary, name: str, code: int, vendor: int, data_type: str
    ) -> None:
        """The attributes named in configs and code are present with the RFC's type."""
        defn = radius_dict.by_name(name)
        assert (defn.code, defn.vendor, defn.data_type) == (code, vendor, data_type)
        assert radius_dict.by_code(code, vendor) == defn


class TestLookup:
    """by_name / by_code."""

    def test_unknown_name_raises_value_error_naming_it(self, radius_dict: RadiusDictionary) -> None:
        """An unknown name is a ValueError whose message quotes the name."""
        with pytest.raises(ValueError, match="No-Such-Attr"):
            radius_dict.by_name("No-Such-Attr")

    def test_unknown_code_is_none(self, radius_dict: RadiusDictionary) -> None:
        """An undefined code gives None."""
        assert radius_dict.by_code(254) is None
        assert radius_dict.by_code(1, vendor=99999) is None

    def test_enumerated_values_are_plain_ints(self, radius_dict: RadiusDictionary) -> None:
        """Named values convert from pyrad's encoded form to ints."""
        assert radius_dict.by_name("Service-Type").values["Framed-User"] == 2
        assert radius_dict.vendors["PaloAlto"] == 25461

    def test_rejects_duplicate_definitions(self) -> None:
        """Building tables with a name twice is refused."""
        defn = AttributeDef("X", 1)
        with pytest.raises(ValueError, match="twice"):
            RadiusDictionary([defn, AttributeDef("X", 2)], {})

    def test_load_reports_missing_file_as_config_error(self, tmp_path: Path) -> None:
        """A missing dictionary is a start-up ConfigError naming the path."""
        with pytest.raises(ConfigError, match="nope"):
            dictionary.load(tmp_path / "nope")

    def test_load_reports_syntax_error_as_config_error(self, tmp_path: Path) -> None:
        """A broken dictionary line is a ConfigError."""
        path = tmp_path / "dictionary"
        path.write_text("ATTRIBUTE Broken notanumber string\n", encoding="utf-8")
        with pytest.raises(ConfigError, match="dictionary"):
            dictionary.load(path)


class TestValues:
    """encode_value / decode_value for the supported data types."""

    @pytest.mark.parametrize(
        ("name", "value", "raw"),
        [
            ("Reply-Message", "héllo", "héllo".encode()),
            ("Session-Timeout", 3600, (3600).to_bytes(4, "big")),
            ("Session-Timeout", "3600", (3600).to_bytes(4, "big")),
            ("Service-Type", "Framed-User", (2).to_bytes(4, "big")),
            ("Event-Timestamp", 1_700_000_000, (1_700_000_000).to_bytes(4, "big")),
            ("Framed-IP-Address", "192.0.2.7", bytes((192, 0, 2, 7))),
            ("NAS-IPv6-Address", "2001:db8::1", bytes.fromhex("20010db8" + "00" * 11 + "01")),
            ("Framed-IPv6-Prefix", "2001:db8::/32", bytes.fromhex("002020010db8")),
            ("Class", "0xdeadbeef", bytes.fromhex("deadbeef")),
            ("Class", "group=vpn", b"group=vpn"),
        ],
    )
    def test_encodes_configuration_values(
        self, radius_dict: RadiusDictionary, name: str, value: str | int, raw: bytes
    ) -> None:
        """Each data type converts from its config spelling to wire octets."""
        assert radius_dict.encode_value(radius_dict.by_name(name), value) == raw

    @pytest.mark.parametrize(
        ("name", "raw", "shown"),
        [
            ("Reply-Message", b"hi", "hi"),
            ("Service-Type", (2).to_bytes(4, "big"), "Framed-User"),
            ("Service-Type", (99).to_bytes(4, "big"), 99),
            ("Framed-IP-Address", bytes((10, 0, 0, 1)), "10.0.0.1"),
            ("NAS-IPv6-Address", bytes(15) + b"\x01", "::1"),
            ("Framed-IPv6-Prefix", bytes.fromhex("002020010db8"), "2001:db8::/32"),
            ("Class", b"\x01\x02", "0x0102"),
            ("Session-Timeout", b"\x01", "0x01"),
            ("Framed-IP-Address", b"\x01", "0x01"),
        ],
    )
    def test_decodes_wire_values_for_display(
        self, radius_dict: RadiusDictionary, name: str, raw: bytes, shown: str | int
    ) -> None:
        """Wire octets become readable values; odd lengths fall back to hex."""
        assert radius_dict.decode_value(radius_dict.by_name(name), raw) == shown

    @pytest.mark.parametrize(
        ("name", "value"),
        [
            ("Session-Timeout", "soon"),
            ("Session-Timeout", -1),
            ("Session-Timeout", 2**32),
            ("Framed-IP-Address", "300.1.1.1"),
            ("Framed-IP-Address", 5),
            ("Class", "0xzz"),
            ("Reply-Message", "x" * 254),
            ("Framed-Interface-Id", "1:2:3:4"),
        ],
    )
    def test_refuses_values_that_do_not_fit(
        self, radius_dict: RadiusDictionary, name: str, value: str | int
    ) -> None:
        """A value of the wrong shape is a ValueError."""
        with pytest.raises(ValueError, match=r"\S"):
            radius_dict.encode_value(radius_dict.by_name(name), value)


class TestVendorSpecific:
    """RFC 2865 §5.26 Vendor-Specific layout."""

    def test_encode_attribute_wraps_vendor_attribute(self, radius_dict: RadiusDictionary) -> None:
        """A vendor attribute by name becomes a type-26 attribute with the vendor header."""
        attr = radius_dict.encode_attribute("Fortinet-Group-Name", "vpn")
        assert attr == (26, bytes.fromhex("00003044") + b"\x01\x05vpn")

    def test_encode_attribute_keeps_standard_attribute(self, radius_dict: RadiusDictionary) -> None:
        """A standard attribute by name stays a plain (type, value)."""
        assert radius_dict.encode_attribute("Filter-Id", "vpn") == (11, b"vpn")

    def test_split_vsa_returns_every_sub_attribute(self) -> None:
        """Several sub-attributes in one VSA are all returned in order."""
        raw = bytes.fromhex("00000009") + b"\x01\x05a=b" + b"\x01\x05c=d"
        assert RadiusDictionary.split_vsa(raw) == [(9, 1, b"a=b"), (9, 1, b"c=d")]

    @pytest.mark.parametrize(
        "raw",
        [
            b"",
            b"\x00\x00\x00\x09",
            b"\x00\x00\x00\x09\x01",
            b"\x00\x00\x00\x09\x01\x01",
            b"\x00\x00\x00\x09\x01\x09ab",
        ],
        ids=["empty", "no-sub", "dangling", "sub-length-1", "sub-overflow"],
    )
    def test_split_vsa_rejects_bad_layout(self, raw: bytes) -> None:
        """A value not following §5.26 raises MalformedPacket('bad_vsa')."""
        with pytest.raises(MalformedPacket) as info:
            RadiusDictionary.split_vsa(raw)
        assert info.value.reason == "bad_vsa"

    @pytest.mark.parametrize(
        ("vendor", "code", "value"),
        [(0, 1, b""), (1 << 24, 1, b""), (9, 0, b""), (9, 256, b""), (9, 1, bytes(248))],
    )
    def test_encode_vsa_refuses_out_of_range(self, vendor: int, code: int, value: bytes) -> None:
        """Vendor ids, types and lengths outside the layout are refused."""
        with pytest.raises(ValueError, match=r"\S"):
            RadiusDictionary.encode_vsa(vendor, code, value)

    def test_describe_names_vendor_and_unknown_attributes(
        self, radius_dict: RadiusDictionary
    ) -> None:
        """describe() names known attributes and labels unknown ones with their numbers."""
        vsa = radius_dict.encode_attribute("PaloAlto-User-Group", "admins")
        assert radius_dict.describe(vsa) == [("PaloAlto-User-Group", "admins")]
        assert radius_dict.describe((26, bytes.fromhex("00000001") + b"\x07\x03z")) == [
            ("Vendor-1-Attr-7", "0x7a")
        ]
        assert radius_dict.describe((26, b"\x00")) == [("Vendor-Specific", "0x00")]
        assert radius_dict.describe((254, b"\x01")) == [("Attr-254", "0x01")]
        assert radius_dict.describe((6, (8).to_bytes(4, "big"))) == [
            ("Service-Type", "Authenticate-Only")
        ]
