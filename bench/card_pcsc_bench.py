"""Card insertion → certificate read + PIN verified + challenge signed, through PC/SC.

pyscard → pcscd → vpcd → emulated My Number card, ``--iterations`` insertions (default 100).
Per insertion, measured from the moment the virtual card connects to vpcd:

* ``detect``: until the terminal's ``PyscardCardMonitor`` reports the card (pcscd polls vpcd
  every 400 ms, so this is most of the total);
* ``card``: connect, read the authentication certificate, verify the PIN, sign a 32-byte nonce;
* ``total``: both.

Prints one JSON object (milliseconds). Usage: ``python bench/card_pcsc_bench.py [--iterations N]``.
"""

from __future__ import annotations

import argparse
import json
import random
import secrets
import sys
import time
from pathlib import Path

from cryptography import x509

from clinic_terminal.card.monitor import CardEventKind, wait_for
from clinic_terminal.card.pyscard_monitor import PyscardCardMonitor
from clinic_terminal.card.pyscard_transport import PyscardTransport
from clinic_terminal.card.reader import MyNumberCard
from shikaku_server.card.verify import verify_pin_signature
from testbed.card_emulator import assert_no_violations, build_card
from testbed.pcscd import ensure_pcscd, wait_for_card_state
from testbed.pki import TestCA
from testbed.vpcd_bridge import DEFAULT_READER, VpcdBridge

try:
    from bench.common import ms_summary
except ModuleNotFoundError:  # run as ``python bench/card_pcsc_bench.py``: the repository is not on the path
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from bench.common import ms_summary


def run(iterations: int, reader_name: str = DEFAULT_READER) -> dict[str, object]:
    ensure_pcscd(reader_name)
    ca = TestCA.create(common_name="JPKI Bench CA")
    card = build_card(ca)
    detect: list[float] = []
    card_ops: list[float] = []
    total: list[float] = []
    with VpcdBridge() as bridge:
        monitor = PyscardCardMonitor(reader_name)
        try:
            wait_for_card_state(reader_name, present=False)
            for _ in range(iterations):
                nonce = secrets.token_bytes(32)
                if monitor.present:
                    wait_for(monitor, CardEventKind.REMOVED, 5.0)
                # pcscd polls every 400 ms: place the card at a random phase of that cycle.
                time.sleep(random.uniform(0.0, 0.4))
                bridge.insert(card, wait_powered=False)
                wait_for(monitor, CardEventKind.INSERTED, 5.0)
                seen = time.perf_counter()
                assert bridge.inserted_at is not None
                started = bridge.inserted_at
                with PyscardTransport(reader_name) as transport:
                    reader = MyNumberCard(transport)
                    der = reader.read_auth_certificate()
                    signature = reader.authenticate("1234", nonce)
                done = time.perf_counter()
                detect.append((seen - started) * 1000)
                card_ops.append((done - seen) * 1000)
                total.append((done - started) * 1000)
                verify_pin_signature(x509.load_der_x509_certificate(der), nonce, signature)
                bridge.remove()
        finally:
            monitor.close()
    assert_no_violations(card)
    return {
        "benchmark": "card_pcsc",
        "iterations": iterations,
        "path": "pyscard -> pcscd -> vpcd -> emulator",
        "unit": "ms",
        "total": ms_summary(total),
        "detect": ms_summary(detect),
        "card": ms_summary(card_ops),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--reader", default=DEFAULT_READER)
    args = parser.parse_args(argv)
    json.dump(run(args.iterations, args.reader), sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
