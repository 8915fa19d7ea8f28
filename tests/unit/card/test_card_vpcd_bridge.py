"""The vpcd wire protocol, against a fake vpcd listener (no pcscd needed), and the pcscd helper."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

import testbed.pcscd as pcscd_helper
from testbed.card_emulator import MyNumberCardEmulator
from testbed.pcscd import PcscdError, ensure_pcscd
from testbed.vpcd_bridge import VpcdBridge, VpcdBridgeError, reader_name_for_port


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(5.0)
    yield server
    server.close()


def _send(sock: socket.socket, payload: bytes) -> None:
    sock.sendall(len(payload).to_bytes(2, "big") + payload)


def _recv(sock: socket.socket) -> bytes:
    header = sock.recv(2, socket.MSG_WAITALL)
    return sock.recv(int.from_bytes(header, "big"), socket.MSG_WAITALL)


def test_bridge_speaks_the_vpcd_protocol(listener: socket.socket, card: MyNumberCardEmulator, tmp_path: Path) -> None:
    port = listener.getsockname()[1]
    with VpcdBridge(card, port=port, lock_dir=tmp_path) as bridge:
        bridge.insert(wait_powered=False)
        vpcd, _ = listener.accept()
        with vpcd:
            vpcd.settimeout(5.0)
            _send(vpcd, b"\x04")  # get ATR
            assert _recv(vpcd) == card.atr
            _send(vpcd, b"\x01")  # power on: no answer
            _send(vpcd, bytes.fromhex("00A4040C0AD392F000260100000001"))
            assert _recv(vpcd) == b"\x90\x00"
            _send(vpcd, bytes.fromhex("00A4020C02000A"))
            assert _recv(vpcd) == b"\x90\x00"
            _send(vpcd, b"\x02")  # reset: the session starts again
            _send(vpcd, bytes.fromhex("00A4020C02000A"))
            assert _recv(vpcd) == b"\x6a\x82"  # no application selected after the reset
            bridge.remove()
            assert not bridge.inserted
            assert vpcd.recv(2) == b""  # the card left: the socket is closed
        assert bridge.errors == []


def test_insert_waits_for_power_on(listener: socket.socket, card: MyNumberCardEmulator, tmp_path: Path) -> None:
    port = listener.getsockname()[1]
    with VpcdBridge(card, port=port, lock_dir=tmp_path) as bridge:
        with pytest.raises(VpcdBridgeError, match="did not power"):
            bridge.insert(timeout=0.3)  # the fake vpcd never powers the card
        assert not bridge.inserted


def test_insert_fails_when_nothing_listens(card: MyNumberCardEmulator, tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    with VpcdBridge(card, port=port, lock_dir=tmp_path) as bridge, pytest.raises(VpcdBridgeError):
        bridge.insert(timeout=0.2)


def test_slot_lock_excludes_a_second_bridge(
    listener: socket.socket, card: MyNumberCardEmulator, tmp_path: Path
) -> None:
    port = listener.getsockname()[1]
    with VpcdBridge(card, port=port, lock_dir=tmp_path) as first:
        first.insert(wait_powered=False)
        second = VpcdBridge(card, port=port, lock_dir=tmp_path, slot_timeout=0.2)
        with pytest.raises(VpcdBridgeError, match="held by another"):
            second.__enter__()
        with pytest.raises(VpcdBridgeError, match="held by another"):
            second.insert(timeout=0.2)
    with VpcdBridge(card, port=port, lock_dir=tmp_path, slot_timeout=0.2):
        pass  # released when the first bridge closed


def test_reader_names_follow_the_port() -> None:
    assert reader_name_for_port(35963) == "Virtual PCD 00 00"
    assert reader_name_for_port(35964) == "Virtual PCD 00 01"


def test_ensure_pcscd_fails_loudly_without_pcscd(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pcscd_helper, "pcscd_pids", list)
    monkeypatch.setattr("shutil.which", lambda _name: None)
    monkeypatch.setattr(pcscd_helper, "Path", lambda _p: Path("/nonexistent/pcscd"))
    with pytest.raises(PcscdError, match="not installed"):
        ensure_pcscd()
