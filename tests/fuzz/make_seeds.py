#!/usr/bin/env python3
"""Writes the seed corpora of fuzz-server and fuzz-client (corpus/server,
corpus/client) from docs/PROTOCOL.md's layout: each seed is a sequence of
transport messages, each a 2-byte little-endian length and the bytes.
Run it from anywhere after changing the protocol; the output is checked in."""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
HELLO, REQUEST, RESPONSE, CANCEL, GOAWAY = 1, 2, 3, 4, 5
MORE = 1
MAX_FRAME = 64 * 1024


def mid(name):
    h = 2166136261
    for b in name.encode():
        h = ((h ^ b) * 16777619) & 0xFFFFFFFF
    return h


def frame(typ, payload=b"", flags=0, call=0, method=0, status=0, deadline=0, version=1):
    hdr = struct.pack("<IBBHIIIIII", 0x54435544, version, typ, flags, call, method,
                      status, deadline, len(payload), 0)
    return hdr + payload


def hello(max_frame=MAX_FRAME, max_message=4 << 20):
    return frame(HELLO, struct.pack("<HHIII", 1, 1, max_frame, max_message, 0))


def varint(n):
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def field_bytes(num, data):
    return varint(num << 3 | 2) + varint(len(data)) + data


def field_varint(num, v):
    return varint(num << 3) + varint(v)


def blob(data, tag):
    return field_bytes(1, data) + field_varint(2, tag)


def fragments(typ, payload, call, method, max_frame, status=0, deadline=0):
    room = max_frame - 32
    parts = [payload[i:i + room] for i in range(0, len(payload), room)] or [b""]
    return [frame(typ, p, MORE if i + 1 < len(parts) else 0, call, method, status, deadline)
            for i, p in enumerate(parts)]


def write(folder, name, msgs):
    os.makedirs(os.path.join(HERE, "corpus", folder), exist_ok=True)
    with open(os.path.join(HERE, "corpus", folder, name), "wb") as f:
        for m in msgs:
            assert len(m) <= 0xFFFF
            f.write(struct.pack("<H", len(m)) + m)


P = "/duct.test.Probe/"
ECHO, SLEEP, FAIL, STATS, WHO, FORBID = (mid(P + n) for n in
                                         ("Echo", "Sleep", "Fail", "GetStats", "Whoami", "Forbidden"))

# ---- what a client sends: the server's input ----
write("server", "echo", [hello(), frame(REQUEST, blob(b"ping", 7), call=1, method=ECHO)])
write("server", "every-method", [
    hello(),
    frame(REQUEST, blob(b"x", 1), call=1, method=ECHO),
    frame(REQUEST, field_varint(1, 5), call=2, method=SLEEP, deadline=1000),
    frame(REQUEST, field_varint(1, 5) + field_bytes(2, b"nope"), call=3, method=FAIL),
    frame(REQUEST, b"", call=4, method=STATS),
    frame(REQUEST, b"", call=5, method=WHO),
    frame(REQUEST, b"", call=6, method=FORBID),
    frame(REQUEST, b"", call=7, method=0x12345678),
    frame(CANCEL, call=7),
])
# A small max frame in HELLO makes the reply go out as many fragments.
write("server", "fragmented", [hello(max_frame=100)] +
      fragments(REQUEST, blob(bytes(range(256)) * 3, 9), 1, ECHO, 300))
write("server", "oversize", [hello()] +
      fragments(REQUEST, blob(b"\xAA" * 21000, 1), 1, ECHO, MAX_FRAME - 1))
write("server", "bad-protobuf", [hello(), frame(REQUEST, b"\x0a\xff\xff\xff\xff\x0f", call=1, method=ECHO)])
write("server", "goaway", [hello(), frame(GOAWAY, b"bye")])
write("server", "no-hello", [frame(REQUEST, blob(b"ping", 7), call=1, method=ECHO)])

# ---- what a server sends: the client's input (calls are Echo, Whoami,
# GetStats, Echo, ...; the first call on each connection has id 1) ----
write("client", "ok-calls", [
    hello(),
    frame(RESPONSE, blob(b"ping", 7), call=1, method=ECHO),
    frame(RESPONSE, field_varint(1, 77) + field_bytes(4, b"1000"), call=2, method=WHO),
    frame(RESPONSE, field_varint(1, 3) + field_varint(2, 99), call=3, method=STATS),
])
write("client", "fragmented-reply", [hello()] +
      fragments(RESPONSE, blob(bytes(range(256)) * 4, 1), 1, ECHO, 400))
write("client", "error-and-late", [
    hello(),
    frame(RESPONSE, b"key not found", call=1, method=ECHO, status=5),
    frame(RESPONSE, blob(b"late", 1), call=1, method=WHO),
    frame(RESPONSE, b"", call=2, method=WHO),
])
write("client", "goaway", [hello(), frame(GOAWAY, b"the server is stopping", status=14)])
write("client", "refused-hello", [frame(GOAWAY, b"go away", status=7)])
write("client", "reconnect", [
    hello(), frame(RESPONSE, b"\x0a\xff", call=1, method=ECHO),
    hello(max_frame=40), frame(RESPONSE, b"", call=1, method=WHO)])
write("client", "oversize-reply", [hello()] +
      fragments(RESPONSE, blob(b"\x55" * 21000, 1), 1, ECHO, MAX_FRAME - 1))
