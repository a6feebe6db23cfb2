"""An independent SCP03 host for the kessai card: Yubico's yubikit.

yubikit's SmartCardProtocol runs SELECT, INITIALIZE UPDATE and EXTERNAL
AUTHENTICATE (level 33) with its own SCP03 code, then READ BALANCE and a
DEBIT, over a SmartCardConnection that speaks the vsmartcard vpcd socket
protocol. Like vpcd, this script listens; the card connects to it.

Usage: yubikit_host.py KVN ENC MAC DEK TXID AMOUNT  (hex except AMOUNT)
Prints "PORT <n>" once listening, then one JSON line with the results.
"""

import json
import socket
import struct
import sys

from yubikit.core import TRANSPORT
from yubikit.core.smartcard import SmartCardConnection, SmartCardProtocol
from yubikit.core.smartcard.scp import KeyRef, Scp03KeyParams, ScpKid, StaticKeys

AID = bytes.fromhex("f04b455353414901" "01")
CTRL_POWER_ON, CTRL_GET_ATR = 0x01, 0x04


class VpcdConnection(SmartCardConnection):
    """A SmartCardConnection to a virtual card over the vpcd protocol."""

    def __init__(self, sock: socket.socket):
        self._sock = sock
        self._send(bytes([CTRL_POWER_ON]))
        self._send(bytes([CTRL_GET_ATR]))
        self.atr = self._recv()

    def _send(self, payload: bytes) -> None:
        self._sock.sendall(struct.pack(">H", len(payload)) + payload)

    def _recv_exact(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = self._sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("card closed the connection")
            buf += chunk
        return buf

    def _recv(self) -> bytes:
        (n,) = struct.unpack(">H", self._recv_exact(2))
        return self._recv_exact(n)

    @property
    def transport(self) -> TRANSPORT:
        return TRANSPORT.USB

    def send_and_receive(self, apdu: bytes) -> tuple[bytes, int]:
        self._send(apdu)
        response = self._recv()
        return response[:-2], (response[-2] << 8) | response[-1]

    def close(self) -> None:
        self._sock.close()


def main() -> None:
    kvn = int(sys.argv[1], 16)
    enc, mac, dek, tx_id = (bytes.fromhex(a) for a in sys.argv[2:6])
    amount = int(sys.argv[6])

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(30)
    print("PORT", listener.getsockname()[1], flush=True)
    sock, _ = listener.accept()
    sock.settimeout(30)

    connection = VpcdConnection(sock)
    protocol = SmartCardProtocol(connection)
    protocol.select(AID)
    params = Scp03KeyParams(ref=KeyRef(ScpKid.SCP03, kvn), keys=StaticKeys(enc, mac, dek))
    protocol.init_scp(params)

    balance = protocol.send_apdu(0x80, 0x30, 0x00, 0x00)
    debit = (
        tx_id
        + amount.to_bytes(8, "big")
        + b"YUBIKIT!"
        + bytes(16)
        + (1_790_000_000).to_bytes(8, "big")
    )
    result = protocol.send_apdu(0x80, 0x32, 0x00, 0x00, debit)
    after = protocol.send_apdu(0x80, 0x30, 0x00, 0x00)
    print(
        json.dumps(
            {
                "atr": connection.atr.hex(),
                "balance_before": int.from_bytes(balance[:8], "big"),
                "debit_result": result.hex(),
                "balance_after": int.from_bytes(after[:8], "big"),
            }
        ),
        flush=True,
    )
    connection.close()


if __name__ == "__main__":
    main()
