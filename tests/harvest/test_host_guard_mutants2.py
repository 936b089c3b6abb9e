"""The private-host guard where hand-made mutants of harvest.host_guard survived: HTTPS connections are guarded as
HTTP ones are, the address judged is the peer's (not this machine's own), and multicast is refused."""

from __future__ import annotations

import pytest
from urllib3.connection import HTTPConnection

from harvest.fetch import fetch_one
from harvest.host_guard import BlockedHostError, _GuardedHTTPConnection, is_blocked_address
from harvest.net import HostRateLimiter, RobotsCache, make_session
from tests.harvest.test_fetch import test_config


def test_the_default_session_refuses_an_https_url_on_loopback(tls_web) -> None:
    # Without the guard on https:// the request would get as far as the TLS handshake (a certificate error).
    with make_session() as session, pytest.raises(BlockedHostError, match="--allow-private-hosts"):
        session.get(tls_web.base_url + "/secret")


def test_an_https_picture_on_loopback_is_a_blocked_host_row(tls_web) -> None:
    config = test_config(allow_private_hosts=False, ignore_robots=True, retries=2)
    limiter = HostRateLimiter(0)
    with make_session(allow_private_hosts=False) as session:
        result = fetch_one(session, tls_web.base_url + "/a.jpg", config, RobotsCache(limiter), limiter)
    assert result.status == "blocked_host" and "--allow-private-hosts" in (result.error or "")


class _FakeSocket:
    """A connected socket as the guard sees it: a peer address and this machine's own address."""

    def __init__(self, peer: str, local: str) -> None:
        self.peer, self.local = peer, local
        self.closed = False

    def getpeername(self) -> tuple[str, int]:
        return (self.peer, 80)

    def getsockname(self) -> tuple[str, int]:
        return (self.local, 50000)

    def close(self) -> None:
        self.closed = True


def _connect(monkeypatch: pytest.MonkeyPatch, sock: _FakeSocket) -> object:
    monkeypatch.setattr(HTTPConnection, "_new_conn", lambda self: sock)
    return _GuardedHTTPConnection("site.example", 80)._new_conn()


def test_a_public_peer_is_reached_from_a_machine_on_a_private_network(monkeypatch: pytest.MonkeyPatch) -> None:
    # Most crawlers sit behind NAT: their own address is private, and that must not refuse every host.
    sock = _FakeSocket(peer="93.184.216.34", local="10.0.0.5")
    assert _connect(monkeypatch, sock) is sock and not sock.closed


def test_a_private_peer_is_refused_whatever_this_machines_own_address_is(monkeypatch: pytest.MonkeyPatch) -> None:
    sock = _FakeSocket(peer="169.254.169.254", local="93.184.216.34")
    with pytest.raises(BlockedHostError, match=r"site\.example \(169\.254\.169\.254\)"):
        _connect(monkeypatch, sock)
    assert sock.closed  # the refused socket is not left open


@pytest.mark.parametrize("address", ["224.0.1.1", "239.255.255.250", "ff0e::1"])
def test_multicast_addresses_are_refused(address: str) -> None:
    # Python counts some multicast blocks as globally reachable: is_global alone would let them through.
    assert is_blocked_address(address) is True


@pytest.mark.parametrize(
    ("address", "blocked"),
    [
        ("::7f00:1", True),  # IPv4-compatible loopback (deprecated): reserved, though Python calls it global
        ("fec0::1", True),  # IPv6 site-local (deprecated): a private range that is_private leaves out
        ("fec0:0:0:1::5", True),
        ("2002:a9fe:a9fe::1", True),  # 6to4 for 169.254.169.254: routed to the metadata service it names
        ("2002:7f00:1::1", True),  # 6to4 for 127.0.0.1
        ("2002:0a00:0001::1", True),  # 6to4 for 10.0.0.1
        ("2002:5db8:d822::1", False),  # 6to4 for a public IPv4 address
        ("64:ff9b::5db8:d822", False),  # NAT64 for a public IPv4 address: how an IPv6-only network reaches it
        ("64:ff9b::a9fe:a9fe", True),  # NAT64 for 169.254.169.254
        ("64:ff9b::7f00:1", True),  # NAT64 for 127.0.0.1
        ("64:ff9b::c0a8:101", True),  # NAT64 for 192.168.1.1
        ("64:ff9b:1::5db8:d822", True),  # the local-use NAT64 prefix (RFC 8215) is not the well-known one
    ],
)
def test_ipv6_addresses_that_stand_for_a_private_one_are_refused(address: str, blocked: bool) -> None:
    assert is_blocked_address(address) is blocked
