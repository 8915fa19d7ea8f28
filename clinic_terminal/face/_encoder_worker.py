"""The face-encoding worker process: dlib's ResNet on aligned face chips, on the second core.

Started by :mod:`clinic_terminal.face.encoder` as ``python -I -B <this file> <model path>`` with
its standard input being one end of a socket pair; run as a script, so that it imports numpy and
dlib only (not the face package, whose import loads every face model). Protocol, framed by
:class:`multiprocessing.connection.Connection`:

* worker -> parent, once: ``b"ready"`` when the model is loaded;
* parent -> worker: ``<job id: u32><height: u16><width: u16>`` + the chip's RGB bytes;
* worker -> parent: ``b"R"`` + job id + the 128 float64 of the encoding, or ``b"E"`` + job id
  when the chip could not be encoded (the parent then encodes it itself).

Chips and encodings exist in this process's memory only, for one request: nothing is written,
nothing is logged. End of input (the parent closed its end or died) ends the process.
"""

from __future__ import annotations

import signal
import struct
import sys
from multiprocessing.connection import Connection

import dlib
import numpy as np

_HEADER = struct.Struct("<IHH")
_JOB = struct.Struct("<I")


def serve(connection: Connection, model_path: str) -> None:
    encoder = dlib.face_recognition_model_v1(model_path)
    connection.send_bytes(b"ready")
    while True:
        try:
            message = connection.recv_bytes()
        except (EOFError, OSError):
            return
        job, height, width = _HEADER.unpack_from(message)
        try:
            chip = np.frombuffer(message, dtype=np.uint8, offset=_HEADER.size).reshape(height, width, 3).copy()
            descriptor = np.asarray(encoder.compute_face_descriptor(chip), dtype=np.float64)
            del chip
            reply = b"R" + _JOB.pack(job) + descriptor.tobytes()
        except (ValueError, RuntimeError):
            reply = b"E" + _JOB.pack(job)
        del message
        try:
            connection.send_bytes(reply)
        except OSError:
            return


def main(argv: list[str]) -> int:
    # Ctrl-C in the terminal reaches the whole process group: the parent decides when this ends
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if len(argv) != 2:
        return 2
    serve(Connection(0), argv[1])
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
