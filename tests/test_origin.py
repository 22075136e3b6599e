"""Links, origins and transport headers never come from what the client claims.

Mail links and the same-origin check use ``public_url``, else the address the connection
actually reached; X-Forwarded-Host is ignored; CSP allows WebSockets to this server only;
HSTS goes out when meet is served over HTTPS.
"""

from __future__ import annotations

import datetime
import logging
import ssl
from pathlib import Path

import httpx
import pytest
from conftest import PASSWORD, Outbox, User, make_config

from meet.asgi import ForwardedFor
from meet.cli import main
from meet.clock import FakeClock
from meet.errors import ConfigError
from meet.server import RunningServer, open_server

EVIL = {"Host": "evil.example", "Origin": "http://evil.example"}


async def test_reset_link_ignores_a_forged_host(
    client: httpx.AsyncClient, server: RunningServer, outbox: Outbox, alice: User
) -> None:
    r = await client.post(
        "/api/auth/forgot", json={"email": "alice@example.org"}, headers={"Host": "evil.example"}
    )
    assert r.status_code == 202
    link = outbox.link("alice@example.org")
    assert link.startswith(f"{server.url}/reset?token="), link


async def test_loopback_name_is_kept_for_links(
    client: httpx.AsyncClient, server: RunningServer, outbox: Outbox, alice: User
) -> None:
    """A browser on this machine that opened http://localhost:PORT gets links it can follow."""
    port = server.url.rsplit(":", 1)[1]
    r = await client.post(
        "/api/auth/forgot", json={"email": "alice@example.org"}, headers={"Host": f"localhost:{port}"}
    )
    assert r.status_code == 202
    assert outbox.link("alice@example.org").startswith(f"http://localhost:{port}/reset?token=")


async def _sign_in(browser: httpx.AsyncClient) -> None:
    r = await browser.post("/api/auth/login", json={"login": "alice", "password": PASSWORD})
    assert r.status_code == 200 and browser.cookies.get("meet_session")


async def test_forged_host_does_not_pass_the_same_origin_check(server: RunningServer, alice: User) -> None:
    """A DNS-rebinding page: Host and Origin agree, but neither is where meet listens."""
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as browser:
        await _sign_in(browser)
        r = await browser.post("/api/rooms", json={"title": "x"}, headers=EVIL)
        assert (r.status_code, r.json()["error"]["code"]) == (403, "cross_origin")
        port = server.url.rsplit(":", 1)[1]
        for origin in (server.url, f"http://localhost:{port}", f"http://[::1]:{port}"):
            r = await browser.post("/api/rooms", json={"title": "x"}, headers={"Origin": origin})
            assert r.status_code == 201, (origin, r.text)
        r = await browser.post("/api/rooms", json={"title": "x"}, headers={"Origin": "http://localhost:1"})
        assert r.status_code == 403


async def test_public_url_is_the_only_origin(tmp_path: Path, clock: FakeClock) -> None:
    config = make_config(tmp_path, server={"public_url": "https://meet.example.org"})
    async with (
        open_server(config, clock=clock) as server,
        httpx.AsyncClient(base_url=server.url, timeout=10) as c,
    ):
        r = await c.post(
            "/api/auth/login", json={"login": "x", "password": "y"}, headers={"Origin": server.url}
        )
        assert r.status_code == 403
        headers = {"Origin": "https://meet.example.org"}
        r = await c.post("/api/auth/login", json={"login": "x", "password": "y"}, headers=headers)
        assert r.status_code == 401


async def test_forwarded_host_is_ignored_behind_a_proxy(tmp_path: Path, clock: FakeClock) -> None:
    config = make_config(tmp_path, server={"proxy_hops": 1, "public_url": "http://meet.example.org"})
    outbox = Outbox(config.outbox_dir)
    async with (
        open_server(config, clock=clock) as server,
        httpx.AsyncClient(base_url=server.url, timeout=10) as c,
    ):
        forged = {"X-Forwarded-Host": "evil.example", "Origin": "http://evil.example"}
        body = {"username": "alice", "email": "alice@example.org", "password": PASSWORD}
        r = await c.post("/api/auth/signup", json=body, headers=forged)
        assert (r.status_code, r.json()["error"]["code"]) == (403, "cross_origin")
        r = await c.post(
            "/api/auth/signup", json=body, headers={**forged, "Origin": "http://meet.example.org"}
        )
        assert r.status_code in (201, 202), r.text
    assert "http://meet.example.org/verify?token=" in outbox.last("alice@example.org").get_content()


@pytest.mark.parametrize(
    ("sections", "message"),
    [
        ({"mail": {"backend": "smtp"}}, '[server] public_url: must be set when [mail] backend = "smtp"'),
        ({"server": {"proxy_hops": 1}}, "[server] public_url: must be set when proxy_hops > 0"),
    ],
)
async def test_refuses_to_start_without_public_url(
    tmp_path: Path, clock: FakeClock, sections: dict[str, dict[str, object]], message: str
) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        async with open_server(make_config(tmp_path, **sections), clock=clock):
            pass


def test_serve_names_the_missing_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "meet.toml"
    path.write_text("[server]\nport = 0\n[mail]\nbackend = 'smtp'\n[storage]\ndata_dir = 'data'\n")
    assert main(["serve", "--config", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "[server] public_url" in err, err


async def test_console_mail_on_the_network_is_warned_about(
    tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    config = make_config(tmp_path, server={"host": "0.0.0.0"}, mail={"backend": "console"})
    with caplog.at_level(logging.WARNING, logger="meet.server"):
        async with open_server(config, clock=clock):
            pass
    assert any("console" in r.getMessage() and "0.0.0.0" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="meet.server"):
        async with open_server(make_config(tmp_path, mail={"backend": "console"}), clock=clock):
            pass
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_csp_allows_websockets_to_this_server_only(
    client: httpx.AsyncClient, server: RunningServer
) -> None:
    r = await client.get("/", headers={"Host": "evil.example"})
    csp = r.headers["Content-Security-Policy"]
    connect = next(part.strip() for part in csp.split(";") if part.strip().startswith("connect-src"))
    ws_origin = server.url.replace("http://", "ws://")
    assert connect.split() == ["connect-src", "'self'", ws_origin]
    assert "Strict-Transport-Security" not in r.headers


def _self_signed(folder: Path) -> tuple[Path, Path]:
    """A throwaway certificate for 127.0.0.1."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


async def test_hsts_over_tls(tmp_path: Path, clock: FakeClock) -> None:
    cert, key = _self_signed(tmp_path)
    config = make_config(tmp_path, server={"tls_cert": str(cert), "tls_key": str(key)})
    async with open_server(config, clock=clock) as server:
        assert server.url.startswith("https://")
        context = ssl.create_default_context(cafile=str(cert))
        async with httpx.AsyncClient(base_url=server.url, timeout=10, verify=context) as c:
            r = await c.get("/api/health")
            assert r.status_code == 200
            assert r.headers["Strict-Transport-Security"] == "max-age=31536000"
            csp = r.headers["Content-Security-Policy"]
            assert f"connect-src 'self' {server.url.replace('https://', 'wss://')};" in csp


async def test_hsts_behind_an_https_proxy(tmp_path: Path, clock: FakeClock) -> None:
    config = make_config(tmp_path, server={"public_url": "https://meet.example.org", "proxy_hops": 1})
    async with (
        open_server(config, clock=clock) as server,
        httpx.AsyncClient(base_url=server.url, timeout=10) as c,
    ):
        r = await c.get("/api/health")
        assert r.headers["Strict-Transport-Security"] == "max-age=31536000"
        assert "connect-src 'self' wss://meet.example.org;" in r.headers["Content-Security-Policy"]


async def test_forwarded_for_takes_address_and_scheme_but_never_the_host() -> None:
    """The proxy middleware: the hops-th last X-Forwarded-For/-Proto values; Host untouched."""
    seen: list[dict[str, object]] = []

    async def app(scope: dict[str, object], receive: object, send: object) -> None:
        seen.append(scope)

    headers = [
        (b"host", b"meet.example.org"),
        (b"x-forwarded-for", b"6.6.6.6, 203.0.113.7"),  # the client forged the first one
        (b"x-forwarded-proto", b"https"),
        (b"x-forwarded-host", b"evil.example"),
    ]
    middleware = ForwardedFor(app, 1)
    for kind, scheme in (("http", "https"), ("websocket", "wss")):
        scope = {"type": kind, "headers": headers, "client": ("127.0.0.1", 5000), "scheme": "http"}
        await middleware(scope, None, None)
        assert seen[-1]["client"] == ("203.0.113.7", 0)
        assert seen[-1]["scheme"] == scheme
        assert seen[-1]["headers"] == headers
    await ForwardedFor(app, 3)({"type": "http", "headers": headers, "client": ("10.0.0.1", 1)}, None, None)
    assert seen[-1]["client"] == ("10.0.0.1", 1)  # fewer values than trusted hops: keep the peer


async def test_ipv4_on_a_dual_stack_socket(tmp_path: Path, clock: FakeClock) -> None:
    """Listening on ``::``, an IPv4 client's page origin is http://127.0.0.1:PORT, not [::ffff:…]."""
    config = make_config(tmp_path, server={"host": "::"})
    async with open_server(config, clock=clock) as server:
        port = server.url.rsplit(":", 1)[1]
        url = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=url, timeout=10) as c:
            body = {"username": "alice", "email": "alice@example.org", "password": PASSWORD}
            r = await c.post("/api/auth/signup", json=body, headers={"Origin": url, "Host": "evil.example"})
            assert r.status_code in (201, 202), r.text
    assert f"{url}/verify?token=" in Outbox(config.outbox_dir).last("alice@example.org").get_content()


async def test_early_answer_over_http2(tmp_path: Path, clock: FakeClock) -> None:
    """Browsers speak HTTP/2 to a TLS server: an early 413/404 there needs no Connection header."""
    cert, key = _self_signed(tmp_path)
    config = make_config(tmp_path, server={"tls_cert": str(cert), "tls_key": str(key)})
    context = ssl.create_default_context(cafile=str(cert))
    async with (
        open_server(config, clock=clock) as server,
        httpx.AsyncClient(base_url=server.url, timeout=10, verify=context, http2=True) as c,
    ):
        r = await c.post(
            "/api/auth/login", content=b"x" * (65 * 1024), headers={"Content-Type": "application/json"}
        )
        assert (r.http_version, r.status_code) == ("HTTP/2", 413)
        assert (await c.post("/api/nope", json={"a": 1})).status_code == 404
        assert (await c.get("/api/health")).status_code == 200
