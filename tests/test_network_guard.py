"""The test run's network guard refuses addresses outside the loopback and lets local ones by."""

from __future__ import annotations

import socket

import pytest

from network_guard import NetworkAccessError, guard, is_loopback


def test_the_guard_is_installed_for_every_test() -> None:
    assert hasattr(socket.socket.connect, "__wrapped__")
    assert hasattr(socket.socket.connect_ex, "__wrapped__")


@pytest.mark.parametrize(
    "address", [("192.0.2.1", 80), ("2001:db8::1", 443, 0, 0), ("example.org", 443)]
)
def test_an_outside_address_fails_before_any_packet(address) -> None:
    calls = []
    guarded = guard(lambda sock, addr, *rest: calls.append(addr))
    family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
    with (
        socket.socket(family, socket.SOCK_STREAM) as sock,
        pytest.raises(NetworkAccessError, match="must not use the network"),
    ):
        guarded(sock, address)
    assert calls == []  # the real connect was never reached


@pytest.mark.parametrize("address", [("127.0.0.1", 9), ("localhost", 9), ("127.8.9.10", 1)])
def test_loopback_addresses_reach_the_real_connect(address) -> None:
    calls = []
    guarded = guard(lambda sock, addr, *rest: calls.append(addr))
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        guarded(sock, address)
    assert calls == [address]
    assert is_loopback(address)


def test_a_real_loopback_server_still_answers() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
            conn, _ = server.accept()
            with conn:
                client.sendall(b"ok")
                assert conn.recv(2) == b"ok"
