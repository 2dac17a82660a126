"""Attribute names, codes and data types from FreeRADIUS-format dictionary files.

The dictionary is read once at start-up by the composition root, which passes its path to
:func:`load`: that is the only file this package ever reads, and it is never read on the request
path. pyrad's parser does the reading; its objects are converted on the spot into frozen
:class:`AttributeDef` values held in read-only mappings, so no pyrad object (nor ``Any``) leaves
this module.

The codec does not need the dictionary: packets carry ``(type, raw value)`` pairs. The
dictionary is for people and configuration: turning ``"Filter-Id" = "vpn-users"`` from the
config file into wire bytes, and raw replies into readable text for the test client.

Vendor-Specific attributes (type 26) use the layout RFC 2865 §5.26 recommends: a 4-octet
Vendor-Id followed by sub-attributes of 1-octet type, 1-octet length and the value. The shipped
vendor files (Microsoft, Cisco, Fortinet, Palo Alto) all use that layout.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from pyrad.dictionary import Dictionary, ParseError

from mfa_radius.errors import ConfigError, MalformedPacket
from mfa_radius.radius.packet import Attribute, AttrType

_VSA = int(AttrType.VENDOR_SPECIFIC)
_INTEGER_TYPES = frozenset({"integer", "date"})
_EMPTY_VALUES: Mapping[str, int] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class AttributeDef:
    """One attribute as the dictionary defines it.

    Attributes:
        name: the dictionary spelling, for example ``"Reply-Message"``.
        code: the attribute type, or the vendor type inside a Vendor-Specific attribute.
        vendor: the IANA Private Enterprise Number, 0 for a standard attribute.
        data_type: the FreeRADIUS data type: ``string``, ``octets``, ``ipaddr``, ``integer``,
            ``date``, ``ipv6addr``, ``ipv6prefix``, ``ifid``...
        values: named values of an enumerated integer (``"Framed-User"`` -> 2).
    """

    name: str
    code: int
    vendor: int = 0
    data_type: str = "octets"
    values: Mapping[str, int] = field(default_factory=lambda: _EMPTY_VALUES, compare=False)


class RadiusDictionary:
    """Read-only attribute tables with value conversion for configuration and display.

    Args:
        definitions: the attributes; names and ``(vendor, code)`` pairs must be unique.
        vendors: vendor name -> Private Enterprise Number.

    Raises:
        ValueError: a name or a ``(vendor, code)`` pair is defined twice.
    """

    __slots__ = ("_by_code", "_by_name", "_value_names", "vendors")

    def __init__(self, definitions: list[AttributeDef], vendors: Mapping[str, int]) -> None:
        by_name: dict[str, AttributeDef] = {}
        by_code: dict[tuple[int, int], AttributeDef] = {}
        value_names: dict[tuple[int, int], Mapping[int, str]] = {}
        for defn in definitions:
            key = (defn.vendor, defn.code)
            if defn.name in by_name or key in by_code:
                raise ValueError(f"attribute {defn.name} ({key}) is defined twice")
            by_name[defn.name] = defn
            by_code[key] = defn
            if defn.values:
                value_names[key] = MappingProxyType({v: n for n, v in defn.values.items()})
        self._by_name: Mapping[str, AttributeDef] = MappingProxyType(by_name)
        self._by_code: Mapping[tuple[int, int], AttributeDef] = MappingProxyType(by_code)
        self._value_names: Mapping[tuple[int, int], Mapping[int, str]] = MappingProxyType(
            value_names
        )
        self.vendors: Mapping[str, int] = MappingProxyType(dict(vendors))
        """Vendor name -> IANA Private Enterprise Number."""

    def __len__(self) -> int:
        return len(self._by_name)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def by_name(self, name: str) -> AttributeDef:
        """Return the definition of ``name`` (dictionary spelling, case-sensitive).

        Raises:
            ValueError: the dictionary does not define ``name``; the message names it, so a
                config error can be reported as is.
        """
        try:
            return self._by_name[name]
        except KeyError:
            raise ValueError(f"unknown RADIUS attribute {name!r}") from None

    def by_code(self, code: int, vendor: int = 0) -> AttributeDef | None:
        """Return the definition of attribute ``code`` (of ``vendor``), or None if undefined."""
        return self._by_code.get((vendor, code))

    def encode_value(self, defn: AttributeDef, value: str | int) -> bytes:
        """Convert a configuration value into the attribute's wire value.

        ``integer``/``date`` take an int, a decimal string or a named value; ``ipaddr`` and
        ``ipv6addr`` take an address string; ``string`` is UTF-8; ``octets`` take ``0x``-prefixed
        hex or text (the FreeRADIUS convention).

        Args:
            defn: the attribute, from :meth:`by_name`.
            value: the configured value.

        Returns:
            The raw value (1 to 253 octets for anything a NAS will accept).

        Raises:
            ValueError: the value does not fit the data type, or is over 253 octets.
        """
        raw = _encode(defn, value)
        if len(raw) > 253:
            raise ValueError(f"{defn.name} value is {len(raw)} octets; at most 253 fit")
        return raw

    def decode_value(self, defn: AttributeDef, raw: bytes) -> str | int:
        """Convert a wire value into something printable.

        Enumerated integers come back as their name when the dictionary has one; ``octets``
        and values that do not fit their type come back as ``0x``-prefixed hex, so this never
        fails on remote input.

        Args:
            defn: the attribute.
            raw: the value octets.

        Returns:
            An int for integers and dates, a string otherwise.
        """
        data_type = defn.data_type
        if data_type in _INTEGER_TYPES and len(raw) == 4:
            number = int.from_bytes(raw, "big")
            names = self._value_names.get((defn.vendor, defn.code))
            if names is not None and number in names:
                return names[number]
            return number
        if data_type == "string":
            return raw.decode("utf-8", errors="replace")
        if data_type == "ipaddr" and len(raw) == 4:
            return str(ipaddress.IPv4Address(raw))
        if data_type == "ipv6addr" and len(raw) == 16:
            return str(ipaddress.IPv6Address(raw))
        if data_type == "ipv6prefix" and 2 <= len(raw) <= 18 and raw[1] <= 128:
            address = ipaddress.IPv6Address(raw[2:].ljust(16, b"\x00"))
            return f"{address}/{raw[1]}"
        return "0x" + raw.hex()

    def encode_attribute(self, name: str, value: str | int) -> Attribute:
        """Build a wire attribute from a name and a configuration value, wrapping vendor ones.

        Raises:
            ValueError: unknown name or a value that does not fit.
        """
        defn = self.by_name(name)
        raw = self.encode_value(defn, value)
        if defn.vendor:
            return self.encode_vsa(defn.vendor, defn.code, raw)
        return (defn.code, raw)

    def describe(self, attribute: Attribute) -> list[tuple[str, str | int]]:
        """Name and decode one wire attribute; a VSA yields one entry per sub-attribute.

        Unknown attributes are named ``Attr-<type>`` or ``Vendor-<id>-Attr-<type>`` with a hex
        value; a Vendor-Specific attribute that does not follow RFC 2865 §5.26 is shown raw.
        """
        attr_type, raw = attribute
        if attr_type == _VSA:
            try:
                parts = self.split_vsa(raw)
            except MalformedPacket:
                return [("Vendor-Specific", "0x" + raw.hex())]
            out: list[tuple[str, str | int]] = []
            for vendor, vendor_type, value in parts:
                defn = self.by_code(vendor_type, vendor)
                if defn is None:
                    out.append((f"Vendor-{vendor}-Attr-{vendor_type}", "0x" + value.hex()))
                else:
                    out.append((defn.name, self.decode_value(defn, value)))
            return out
        defn = self.by_code(attr_type)
        if defn is None:
            return [(f"Attr-{attr_type}", "0x" + raw.hex())]
        return [(defn.name, self.decode_value(defn, raw))]

    @staticmethod
    def encode_vsa(vendor: int, code: int, value: bytes) -> Attribute:
        """Wrap one vendor sub-attribute in a Vendor-Specific attribute (RFC 2865 §5.26).

        Args:
            vendor: the Private Enterprise Number (1 to 2**24-1: the high octet must be 0).
            code: the vendor type, 1 to 255.
            value: the sub-attribute value, at most 247 octets (253 - 4 - 2).

        Returns:
            ``(26, Vendor-Id + type + length + value)``.

        Raises:
            ValueError: any argument out of range.
        """
        if not 0 < vendor < 1 << 24:
            raise ValueError(f"vendor id {vendor} is outside 1-16777215")
        if not 0 < code <= 255:
            raise ValueError(f"vendor type {code} is outside 1-255")
        if len(value) > 247:
            raise ValueError(f"vendor attribute value is {len(value)} octets; at most 247 fit")
        return (_VSA, struct.pack("!IBB", vendor, code, len(value) + 2) + value)

    @staticmethod
    def split_vsa(raw: bytes) -> list[tuple[int, int, bytes]]:
        """Split a Vendor-Specific value into ``(vendor, vendor_type, value)`` sub-attributes.

        Several sub-attributes of one vendor may share one attribute (RFC 2865 §5.26 allows
        it, and Cisco and Microsoft gear does it).

        Args:
            raw: the value of a type-26 attribute.

        Returns:
            The sub-attributes in order.

        Raises:
            MalformedPacket: ``bad_vsa`` when the value does not follow the RFC 2865 §5.26
                layout.
        """
        if len(raw) < 6:
            raise MalformedPacket("bad_vsa")
        vendor = int.from_bytes(raw[:4], "big")
        out: list[tuple[int, int, bytes]] = []
        pos = 4
        size = len(raw)
        while pos < size:
            if pos + 2 > size:
                raise MalformedPacket("bad_vsa")
            sub_length = raw[pos + 1]
            if sub_length < 2 or pos + sub_length > size:
                raise MalformedPacket("bad_vsa")
            out.append((vendor, raw[pos], raw[pos + 2 : pos + sub_length]))
            pos += sub_length
        return out


def _encode(defn: AttributeDef, value: str | int) -> bytes:
    data_type = defn.data_type
    if data_type in _INTEGER_TYPES:
        number = _to_int(defn, value)
        if not 0 <= number < 1 << 32:
            raise ValueError(f"{defn.name} value {number} is outside 0-4294967295")
        return number.to_bytes(4, "big")
    # TOML may hand over a bare number for a text value (Filter-Id = 5): use its spelling.
    value = value if isinstance(value, str) else str(value)
    if data_type == "string":
        return value.encode("utf-8")
    if data_type == "octets":
        if value[:2].lower() == "0x":
            try:
                return bytes.fromhex(value[2:])
            except ValueError:
                raise ValueError(f"{defn.name}: {value!r} is not valid hex") from None
        return value.encode("utf-8")
    if data_type == "ipaddr":
        return ipaddress.IPv4Address(value).packed
    if data_type == "ipv6addr":
        return ipaddress.IPv6Address(value).packed
    if data_type == "ipv6prefix":
        network = ipaddress.IPv6Network(value)
        significant = (network.prefixlen + 7) // 8
        return bytes((0, network.prefixlen)) + network.network_address.packed[:significant]
    raise ValueError(f"{defn.name}: data type {data_type} cannot be set from configuration")


def _to_int(defn: AttributeDef, value: str | int) -> int:
    if isinstance(value, int):
        return value
    named = defn.values.get(value)
    if named is not None:
        return named
    try:
        return int(value, 10)
    except ValueError:
        raise ValueError(f"{defn.name}: {value!r} is neither a number nor a named value") from None


def load(path: Path) -> RadiusDictionary:
    """Read a FreeRADIUS-format dictionary (following ``$INCLUDE``) into our own tables.

    Called once by the composition root at start-up; nothing on the request path reads files.

    Args:
        path: the root dictionary file, for example the packaged ``dictionaries/dictionary``.

    Returns:
        The attribute tables.

    Raises:
        ConfigError: the file cannot be read or parsed, or defines an attribute twice; the
            message names the file.
    """
    try:
        parsed = Dictionary(str(path))
    except (OSError, ParseError) as exc:
        raise ConfigError(f"{path}: cannot load the RADIUS dictionary: {exc}") from exc
    vendors: dict[str, int] = {
        str(name): int(number) for name, number in parsed.vendors.forward.items() if name
    }
    definitions: list[AttributeDef] = []
    for name, attr in parsed.attributes.items():
        if attr.is_sub_attribute:
            continue
        vendor = vendors.get(str(attr.vendor), 0) if attr.vendor else 0
        data_type = str(attr.type)
        values: dict[str, int] = {}
        if data_type in _INTEGER_TYPES:
            for value_name, encoded in attr.values.forward.items():
                values[str(value_name)] = int.from_bytes(bytes(encoded), "big")
        definitions.append(
            AttributeDef(
                name=str(name),
                code=int(attr.code),
                vendor=vendor,
                data_type=data_type,
                values=MappingProxyType(values) if values else _EMPTY_VALUES,
            )
        )
    try:
        return RadiusDictionary(definitions, vendors)
    except ValueError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
