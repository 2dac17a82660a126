"""A throw-away OpenLDAP slapd on loopback, seeded with a small people-and-groups tree.

The LDAP adapter is tested against the real server, not a fake: a missing ``slapd`` or
``ldapadd`` fails the run with an install hint (it is not a skip). The server uses a static
``slapd.conf`` (``slapd -f``; simpler than a cn=config tree) written into its own directory:

* modules ``back_mdb`` and ``memberof`` from ``/usr/lib/ldap``; schemas core, cosine,
  inetorgperson and nis from ``/etc/ldap/schema``;
* one mdb database ``dc=example,dc=org`` whose rootdn is ``cn=admin,dc=example,dc=org``;
* the ``memberof`` overlay (slapo-memberof(5), deprecated in 2.5 in favour of dynlist but still
  shipped), so adding a ``groupOfNames`` writes ``memberOf`` on its members;
* ACLs that let anonymous clients only authenticate, each user read their own entry, and the
  service account ``cn=svc,dc=example,dc=org`` read everything but passwords;
* TLS from a :class:`tests.support.tls.TestCa` certificate, served as LDAPS on a second port and
  as StartTLS on the plain port.

``slapd -d stats`` keeps the process in the foreground and writes one line per operation
(``conn=1001 op=0 BIND dn=...``) to ``slapd.log``. The database directory survives
:meth:`SlapdServer.stop`, so :meth:`SlapdServer.restart` brings the same entries back on the
same ports; :meth:`SlapdServer.pause` freezes the process to make a hung server.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.ports import LOOPBACK, free_tcp_port
from tests.support.process import ServerProcess
from tests.support.tls import TestCa

INSTALL_HINT = "apt-get install slapd ldap-utils"
MODULE_DIR = Path("/usr/lib/ldap")
SCHEMA_DIR = Path("/etc/ldap/schema")

SUFFIX = "dc=example,dc=org"
PEOPLE = f"ou=people,{SUFFIX}"
GROUPS = f"ou=groups,{SUFFIX}"
ROOT_DN = f"cn=admin,{SUFFIX}"
ROOT_PASSWORD = "root-Pa55word-for-tests"
SERVICE_DN = f"cn=svc,{SUFFIX}"
SERVICE_PASSWORD = "svc-Pa55word-for-tests"


@dataclass(frozen=True)
class Person:
    """A seeded user: ``uid=<uid>,ou=people`` with an inetOrgPerson entry."""

    uid: str
    password: str
    display_name: str = ""
    mail: str = ""
    mobile: str = ""
    telephone: str = ""
    rdn: str = ""  # the escaped RDN when it differs from "uid=<uid>"

    @property
    def dn(self) -> str:
        """The entry's DN as written in the seed LDIF."""
        return f"{self.rdn or 'uid=' + self.uid},{PEOPLE}"


ALICE = Person(
    "alice",
    "alice-Pa55word",
    display_name="Alice Liddell",
    mail="alice@example.org",
    mobile="+15550100",
    telephone="+15550101",
)
BOB = Person("bob", "bob-Pa55word", display_name="Bob", mail="bob@example.org")
OBRIEN = Person("o'brien*(x)", "obrien-Pa55word", display_name="Pat O'Brien")
"""A uid with every RFC 4515 filter special except NUL and backslash."""
DOE = Person("doe,jane+x", "doe-Pa55word", display_name="Jane Doe", rdn=r"uid=doe\,jane\+x")
"""A uid with RFC 4514 DN specials: ``,`` and ``+`` must be escaped in a DN."""
CAROL_1 = Person("carol", "carol1-Pa55word", display_name="Carol One")
CAROL_2 = Person("carol", "carol2-Pa55word", display_name="Carol Two", rdn="cn=Carol Two")
"""Two entries with ``uid: carol``: a lookup by uid is ambiguous."""

PEOPLE_SEED = (ALICE, BOB, OBRIEN, DOE, CAROL_1, CAROL_2)
GROUP_MEMBERS = {"vpn-users": (ALICE, OBRIEN), "admins": (BOB,)}
"""groupOfNames under ou=groups and their members (memberOf is written by the overlay)."""


def ssha(password: str) -> str:
    """Return an RFC 2307-style ``{SSHA}`` userPassword value, as ``slappasswd`` makes."""
    salt = secrets.token_bytes(8)
    digest = hashlib.sha1(password.encode() + salt, usedforsecurity=False).digest()
    return "{SSHA}" + base64.b64encode(digest + salt).decode("ascii")


def _seed_ldif() -> str:
    blocks = [
        f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\ndc: example\n"
        "o: Example\n",
        f"dn: {PEOPLE}\nobjectClass: organizationalUnit\nou: people\n",
        f"dn: {GROUPS}\nobjectClass: organizationalUnit\nou: groups\n",
        f"dn: {SERVICE_DN}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\n"
        f"cn: svc\nuserPassword: {ssha(SERVICE_PASSWORD)}\n",
    ]
    for p in PEOPLE_SEED:
        lines = [
            f"dn: {p.dn}",
            "objectClass: inetOrgPerson",
            f"uid: {p.uid}",
            f"cn: {p.display_name or p.uid}",
            f"sn: {p.uid}",
            f"userPassword: {ssha(p.password)}",
        ]
        lines += [f"displayName: {p.display_name}"] if p.display_name else []
        lines += [f"mail: {p.mail}"] if p.mail else []
        lines += [f"mobile: {p.mobile}"] if p.mobile else []
        lines += [f"telephoneNumber: {p.telephone}"] if p.telephone else []
        blocks.append("\n".join(lines) + "\n")
    for name, members in GROUP_MEMBERS.items():
        lines = [f"dn: cn={name},{GROUPS}", "objectClass: groupOfNames", f"cn: {name}"]
        lines += [f"member: {m.dn}" for m in members]
        blocks.append("\n".join(lines) + "\n")
    return "\n".join(blocks)


def _config(directory: Path, tls_cert: Path, tls_key: Path, ca_file: Path) -> str:
    schemas = "\n".join(
        f"include {SCHEMA_DIR / name}.schema" for name in ("core", "cosine", "inetorgperson", "nis")
    )
    return f"""\
{schemas}
modulepath {MODULE_DIR}
moduleload back_mdb
moduleload memberof
pidfile {directory / "slapd.pid"}
argsfile {directory / "slapd.args"}
TLSCACertificateFile {ca_file}
TLSCertificateFile {tls_cert}
TLSCertificateKeyFile {tls_key}

database mdb
maxsize 16777216
suffix "{SUFFIX}"
rootdn "{ROOT_DN}"
rootpw {ssha(ROOT_PASSWORD)}
directory {directory / "data"}

overlay memberof
memberof-group-oc groupOfNames
memberof-member-ad member
memberof-memberof-ad memberOf
memberof-refint TRUE

access to dn.base="" by * read
access to attrs=userPassword
    by anonymous auth
    by * none
access to *
    by dn.exact="{SERVICE_DN}" read
    by self read
    by anonymous auth
    by * none
"""


class SlapdServer(ServerProcess):
    """One slapd subprocess on 127.0.0.1: ``ldap://`` (with StartTLS) and ``ldaps://``.

    Args:
        directory: where the config, the database, the certificates and the log live.
        ca: the CA that issues the server certificate; a fresh one by default.
        tls_names: the names in the server certificate (IP or DNS).
    """

    def __init__(
        self,
        directory: Path,
        *,
        ca: TestCa | None = None,
        tls_names: tuple[str, ...] = (LOOPBACK, "localhost"),
    ) -> None:
        self._exe = shutil.which("slapd") or shutil.which("slapd", path="/usr/sbin")
        self._ldapadd = shutil.which("ldapadd")
        self._ldapsearch = shutil.which("ldapsearch")
        if self._exe is None or self._ldapadd is None or self._ldapsearch is None:
            pytest.fail(f"slapd, ldapadd or ldapsearch not found: {INSTALL_HINT}")
        if not (MODULE_DIR / "back_mdb.la").exists():
            pytest.fail(f"slapd modules missing in {MODULE_DIR}: {INSTALL_HINT}")
        self._dir = directory
        self.ca = ca or TestCa()
        self.ca_file = self.ca.write_ca(directory / "ca.pem")
        files = self.ca.issue(directory, tls_names)
        (directory / "data").mkdir(exist_ok=True)
        self.config_path = directory / "slapd.conf"
        self.config_path.write_text(_config(directory, files.cert, files.key, self.ca_file))
        self.host = LOOPBACK
        self.port = free_tcp_port()
        self.tls_port = free_tcp_port()
        self._proc: subprocess.Popen[bytes] | None = None
        self._seeded = False

    @property
    def url(self) -> str:
        """The plain ``ldap://`` URL (StartTLS is offered on it)."""
        return f"ldap://{self.host}:{self.port}"

    @property
    def tls_url(self) -> str:
        """The ``ldaps://`` URL (TLS from the first byte)."""
        return f"ldaps://{self.host}:{self.tls_port}"

    @property
    def log_path(self) -> Path:
        """The server's ``-d stats`` output: one line per connection event and operation."""
        return self._dir / "slapd.log"

    def log_text(self) -> str:
        """The server's log so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def start(self) -> None:
        """Start slapd, wait until it answers a root DSE search (5 s), seed it the first time."""
        if self._proc is not None:
            raise RuntimeError("slapd already running")
        assert self._exe is not None
        urls = f"{self.url}/ {self.tls_url}/"
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                [self._exe, "-f", str(self.config_path), "-h", urls, "-d", "stats"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            self._wait_ready(deadline_s=5.0)
            if not self._seeded:
                self._seed()
                self._seeded = True
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, deadline_s: float) -> None:
        assert self._proc is not None
        assert self._ldapsearch is not None
        deadline = time.monotonic() + deadline_s
        argv = [
            self._ldapsearch, "-x", "-LLL", "-H", self.url, "-o", "nettimeout=1",
            "-b", "", "-s", "base", "(objectClass=*)", "namingContexts",
        ]  # fmt: skip
        while True:
            done = subprocess.run(argv, capture_output=True, check=False, timeout=5)
            if done.returncode == 0:
                return
            if self._proc.poll() is not None:
                pytest.fail(
                    f"slapd exited with status {self._proc.returncode} before answering\n"
                    + self.log_text()[-3000:]
                )
            if time.monotonic() >= deadline:
                pytest.fail(f"slapd on {self.url} did not answer in {deadline_s} s")
            time.sleep(0.02)

    def _seed(self) -> None:
        assert self._ldapadd is not None
        ldif = self._dir / "seed.ldif"
        ldif.write_text(_seed_ldif())
        secret = self._dir / "rootpw"
        secret.write_text(ROOT_PASSWORD)  # -y reads the whole file: no trailing newline
        secret.chmod(0o600)
        argv = [
            self._ldapadd,
            "-x",
            "-H",
            self.url,
            "-D",
            ROOT_DN,
            "-y",
            str(secret),
            "-f",
            str(ldif),
        ]
        done = subprocess.run(argv, capture_output=True, check=False, timeout=10)
        if done.returncode != 0:
            pytest.fail(
                f"ldapadd failed ({done.returncode}): {done.stderr.decode(errors='replace')}"
            )
