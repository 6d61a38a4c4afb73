"""The address rule for recording downloads, and `GuardedTransport` against real loopback
servers (plain and TLS) with a resolver of our own (names no DNS server knows)."""

from __future__ import annotations

import datetime
import http.server
import ipaddress
import re
import ssl
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from callhook.netpolicy import AddressRefused, GuardedTransport, IPAddress, Resolver, refusal
from tests.servers import ServerThread
from tests.sinks._s3_support import RecordingServer, Served


@pytest.mark.parametrize(
    ("address", "strict", "relaxed"),
    [
        ("8.8.8.8", None, None),
        ("2606:4700:4700::1111", None, None),
        ("::ffff:8.8.8.8", None, None),
        ("64:ff9b::808:808", None, None),  # NAT64 of a public address (DNS64 answers so)
        ("127.0.0.1", "loopback", None),
        ("127.8.9.10", "loopback", None),
        ("::1", "loopback", None),
        ("::ffff:127.0.0.1", "loopback", None),
        ("2002:7f00:1::", "loopback", None),  # 6to4 of 127.0.0.1
        ("64:ff9b::7f00:1", "loopback", None),  # NAT64 of 127.0.0.1
        ("10.1.2.3", "private", None),
        ("172.16.0.1", "private", None),
        ("192.168.1.1", "private", None),
        ("100.64.0.1", "private", None),
        ("fc00::1", "private", None),
        ("0.0.0.0", "unspecified", "unspecified"),
        ("::", "unspecified", "unspecified"),
        ("169.254.169.254", "link-local or cloud metadata", "link-local or cloud metadata"),
        ("::ffff:169.254.169.254", "link-local or cloud metadata", "link-local or cloud metadata"),
        ("fe80::1", "link-local or cloud metadata", "link-local or cloud metadata"),
        ("fd00:ec2::254", "link-local or cloud metadata", "link-local or cloud metadata"),
        ("100.100.100.200", "link-local or cloud metadata", "link-local or cloud metadata"),
        ("224.0.0.1", "multicast", "multicast"),
        ("ff02::1", "multicast", "multicast"),
        ("240.0.0.1", "reserved", "reserved"),
        ("255.255.255.255", "reserved", "reserved"),
    ],
)
def test_which_addresses_downloads_may_reach(
    address: str, strict: str | None, relaxed: str | None
) -> None:
    ip = ipaddress.ip_address(address)
    assert refusal(ip, allow_private_networks=False) == strict
    assert refusal(ip, allow_private_networks=True) == relaxed


@pytest.fixture
def server() -> Iterator[RecordingServer]:
    recordings = RecordingServer()
    recordings.files["r1.mp3"] = Served(b"ID3 audio")
    with ServerThread(recordings.app()) as thread:
        recordings.url = thread.url
        yield recordings


def resolver(answers: dict[str, list[str]]) -> Resolver:
    async def resolve(host: str, port: int) -> list[IPAddress]:
        return [ipaddress.ip_address(a) for a in answers[host]]

    return resolve


@pytest.fixture
def port(server: RecordingServer) -> int:
    return httpx.URL(server.url).port or 80


async def client(answers: dict[str, list[str]], *, allow: bool) -> httpx.AsyncClient:
    transport = GuardedTransport(
        httpx.AsyncHTTPTransport(), allow_private_networks=allow, resolver=resolver(answers)
    )
    return httpx.AsyncClient(transport=transport, follow_redirects=True)


@pytest.fixture
async def clients() -> AsyncIterator[list[httpx.AsyncClient]]:
    made: list[httpx.AsyncClient] = []
    yield made
    for one in made:
        await one.aclose()


async def test_the_connection_goes_to_the_checked_address_under_the_urls_name(
    server: RecordingServer, port: int, clients: list[httpx.AsyncClient]
) -> None:
    # No DNS server knows recordings.test: the answer can only have come from connecting
    # to the address our resolver gave and the rule allowed.
    http = await client({"recordings.test": ["127.0.0.1"]}, allow=True)
    clients.append(http)

    answer = await http.get(f"http://recordings.test:{port}/files/r1.mp3")

    assert (answer.status_code, answer.content) == (200, b"ID3 audio")
    assert server.hosts == [f"recordings.test:{port}"]
    assert str(answer.url) == f"http://recordings.test:{port}/files/r1.mp3"


async def test_a_host_with_any_forbidden_address_is_refused_before_connecting(
    server: RecordingServer, port: int, clients: list[httpx.AsyncClient]
) -> None:
    # A name answering an allowed and a forbidden address (a rebinding set-up) is refused
    # whole: which one a connection would use is not ours to guess.
    http = await client({"recordings.test": ["127.0.0.1", "169.254.169.254"]}, allow=True)
    clients.append(http)

    with pytest.raises(AddressRefused) as refused:
        await http.get(f"http://recordings.test:{port}/files/r1.mp3")

    assert str(refused.value) == (
        "recordings.test resolves to 169.254.169.254, which is a link-local or cloud "
        "metadata address"
    )
    assert server.downloads == {}


async def test_a_redirect_to_a_name_that_resolves_privately_is_refused_at_the_hop(
    server: RecordingServer, port: int, clients: list[httpx.AsyncClient]
) -> None:
    server.files["r1.mp3"] = Served(location=f"http://internal.test:{port}/files/secret")
    http = await client(
        {"recordings.test": ["127.0.0.1"], "internal.test": ["169.254.169.254"]}, allow=True
    )
    clients.append(http)

    with pytest.raises(
        AddressRefused, match=re.escape("internal.test resolves to 169.254.169.254")
    ):
        await http.get(f"http://recordings.test:{port}/files/r1.mp3")

    assert server.downloads == {"r1.mp3": 1}


async def test_a_name_that_cannot_be_resolved_is_a_connection_error(
    clients: list[httpx.AsyncClient],
) -> None:
    http = await client({"nowhere.test": []}, allow=True)
    clients.append(http)

    with pytest.raises(httpx.ConnectError, match=re.escape("nowhere.test resolves to no address")):
        await http.get("http://nowhere.test/files/r1.mp3")


def self_signed(directory: Path, name: str) -> tuple[Path, Path]:
    """A certificate for `name` that is its own CA, and its key: (cert file, key file)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / f"{name}.pem", directory / f"{name}.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


class _Audio(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = f"audio for {self.headers.get('host')}".encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """An HTTPS server on 127.0.0.1 whose certificate names only recordings.test: (port,
    the certificate to trust)."""
    cert_file, key_file = self_signed(tmp_path, "recordings.test")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Audio)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], cert_file
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


async def test_tls_is_verified_for_the_urls_name_while_connecting_to_the_checked_address(
    tls_server: tuple[int, Path], clients: list[httpx.AsyncClient]
) -> None:
    port, cert_file = tls_server
    trusted = ssl.create_default_context(cafile=str(cert_file))
    answers = {"recordings.test": ["127.0.0.1"], "elsewhere.test": ["127.0.0.1"]}
    transport = GuardedTransport(
        httpx.AsyncHTTPTransport(verify=trusted),
        allow_private_networks=True,
        resolver=resolver(answers),
    )
    http = httpx.AsyncClient(transport=transport)
    clients.append(http)

    answer = await http.get(f"https://recordings.test:{port}/r1.mp3")
    assert answer.content == f"audio for recordings.test:{port}".encode()

    # the same address under a name the certificate does not carry: verification fails
    with pytest.raises(httpx.ConnectError, match="certificate"):
        await http.get(f"https://elsewhere.test:{port}/r1.mp3")
