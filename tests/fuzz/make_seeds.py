#!/usr/bin/env python3
"""Writes the named seeds of fuzz-server and fuzz-client (corpus/server,
corpus/client), and fuzz-frame's stream-frames (corpus/frame), from
docs/PROTOCOL.md's layout: each seed is a sequence of transport messages,
each a 2-byte little-endian length and the bytes. fuzz-client also reads
messages of 1 to 3 bytes as the application's operations (op() below;
fuzz_client.c lists them). Run it from anywhere after changing the
protocol; the output is checked in. The files named by a SHA-1 are not
this script's: a long run's corpus, minimized (docs/TESTING.md)."""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
HELLO, REQUEST, RESPONSE, CANCEL, GOAWAY = 1, 2, 3, 4, 5
STREAM_DATA, HALF_CLOSE, CREDIT = 6, 7, 8  # version 2
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


def hello(max_frame=MAX_FRAME, max_message=4 << 20, versions=(1, 1)):
    return frame(HELLO, struct.pack("<HHIII", versions[0], versions[1], max_frame,
                                    max_message, 0))


def hello2(max_frame=MAX_FRAME, max_message=4 << 20):
    """A HELLO of duct 0.3 and later: versions 1..2."""
    return hello(max_frame, max_message, (1, 2))


# Version 2 frames carry version 2 in their header (docs/PROTOCOL.md).
def data(call, payload, flags=0):
    return frame(STREAM_DATA, payload, flags, call, version=2)


def half_close(call):
    return frame(HALF_CLOSE, call=call, version=2)


def credit(call, n):
    return frame(CREDIT, struct.pack("<I", n), call=call, version=2)


def cancel(call):
    return frame(CANCEL, call=call)


def data_fragments(call, payload, max_frame):
    room = max_frame - 32
    parts = [payload[i:i + room] for i in range(0, len(payload), room)] or [b""]
    return [data(call, p, MORE if i + 1 < len(parts) else 0) for i, p in enumerate(parts)]


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


def seq(n, pad=b""):
    return field_varint(1, n) + (field_bytes(2, pad) if pad else b"")


def range_req(count, size=0, timeout_ms=-1):
    return (field_varint(1, count) + field_varint(2, size) +
            field_varint(3, timeout_ms & 0xFFFFFFFFFFFFFFFF))


def sum_reply(count, total, in_order=True):
    return field_varint(1, count) + field_varint(2, total) + field_varint(3, int(in_order))


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
RANGE, SUBSCRIBE, PUBLISH, SUM, CHAT = (mid(P + n) for n in
                                        ("Range", "Subscribe", "Publish", "Sum", "Chat"))

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

# ---- version 2: streams, many calls at once, flow control, cancel ----

# What a client sends: the server's input. Range's handler waits for
# credit in its send (timeout_ms < 0) or through on_writable; Chat echoes,
# keeps the stream on a message whose padding starts with 'k' and ends
# the call early on 'e' (fuzz_server.c).
write("server", "v2-unary", [
    hello2(),
    frame(REQUEST, blob(b"x", 1), call=1, method=ECHO),
    frame(REQUEST, b"", call=2, method=WHO),
    frame(REQUEST, field_varint(1, 5) + field_varint(2, 1), call=3, method=SLEEP),
    cancel(3),
])
write("server", "v2-range", [
    hello2(),
    frame(REQUEST, range_req(5, 10, -1), call=1, method=RANGE),
    credit(1, 1000),
    frame(REQUEST, range_req(64, 16000, 0), call=2, method=RANGE),
    credit(2, 300000),
    credit(2, 300000),
    cancel(2),
    frame(REQUEST, range_req(3, 0, 5), call=3, method=RANGE),
])
write("server", "v2-sum", [
    hello2(),
    frame(REQUEST, b"", call=1, method=SUM),
    data(1, seq(0)),
] + data_fragments(1, seq(1, b"s" * 300), 100) + [
    data(1, seq(2)),
    half_close(1),
])
write("server", "v2-chat", [
    hello2(),
    frame(REQUEST, b"", call=1, method=CHAT),
    data(1, seq(1, b"a")),
    data(1, seq(2, b"w")),
    credit(1, 100),
    half_close(1),
    frame(REQUEST, b"", call=2, method=CHAT),
    data(2, seq(0, b"e")),
    data(2, seq(1)),
    half_close(2),
])
write("server", "v2-subscribe", [
    hello2(),
    frame(REQUEST, b"", call=1, method=SUBSCRIBE),
    frame(REQUEST, seq(5), call=2, method=PUBLISH),
    frame(REQUEST, b"", call=3, method=CHAT),
    data(3, seq(0, b"k")),
    frame(REQUEST, seq(6), call=4, method=PUBLISH),
    cancel(1),
    frame(REQUEST, seq(7), call=5, method=PUBLISH),
    cancel(3),
])
write("server", "v2-unknown-ids", [
    hello2(),
    data(9, seq(1)), half_close(9), credit(9, 10), cancel(9),
    frame(REQUEST, blob(b"y", 2), call=1, method=ECHO),
    cancel(1), data(1, seq(1)), half_close(1), credit(1, 5),
])
write("server", "v2-data-to-server-stream", [
    hello2(),
    frame(REQUEST, range_req(1000, 0, -1), call=1, method=RANGE),
    data(1, seq(1)),
])
write("server", "v2-data-after-half-close", [
    hello2(),
    frame(REQUEST, b"", call=1, method=SUM),
    half_close(1),
    data(1, seq(1)),
])
write("server", "v2-duplicate-id", [
    hello2(),
    frame(REQUEST, b"", call=1, method=SUM),
    frame(REQUEST, b"", call=1, method=SUM),
])
write("server", "v2-max-calls", [hello2()] +
      [frame(REQUEST, b"", call=i, method=SUBSCRIBE) for i in range(1, 10)] +
      [cancel(1), frame(REQUEST, b"", call=10, method=SUBSCRIBE)])
# A kept stream nobody reads: its window fills and the next message
# overruns it (the connection is closed with RESOURCE_EXHAUSTED).
write("server", "v2-window-overrun", [
    hello2(),
    frame(REQUEST, b"", call=1, method=CHAT),
    data(1, seq(0, b"k")),
] + [data(1, seq(i, b"\x00" * 19000)) for i in range(1, 16)])
# Stream messages over the server's 20000-byte limit end their call; the
# second call's stream was kept, and its holder must still hear the end.
write("server", "v2-oversize-stream", [
    hello2(),
    frame(REQUEST, b"", call=1, method=CHAT),
    data(1, seq(0, b"\x01" * 21000)),
    frame(REQUEST, b"", call=2, method=CHAT),
    data(2, seq(0, b"k")),
    data(2, seq(1, b"\x02" * 21000)),
])
write("server", "v1-stream-frames", [
    hello(),
    frame(REQUEST, range_req(2), call=1, method=RANGE),
    data(1, seq(1)),
])
write("server", "v2-deadline", [
    hello2(),
    frame(REQUEST, b"", call=1, method=CHAT, deadline=1),
    frame(REQUEST, range_req(64, 1000, -1), call=2, method=RANGE, deadline=2),
] + [credit(99, 1)] * 8)
# Control frames may come between a message's fragments; another call's
# STREAM_DATA may not.
write("server", "v2-interleaved", [
    hello2(),
    frame(REQUEST, b"", call=1, method=SUM),
    frame(REQUEST, b"", call=2, method=CHAT),
] + [f for i, frag in enumerate(data_fragments(1, seq(1, b"i" * 300), 100))
     for f in ([frag, credit(2, 100)] if i == 1 else [frag, cancel(77)] if i == 2 else [frag])] + [
    data(2, seq(2)),
    half_close(1),
    half_close(2),
])
write("server", "v2-interleaved-bad", [
    hello2(),
    frame(REQUEST, b"", call=1, method=SUM),
    frame(REQUEST, b"", call=2, method=SUM),
    data_fragments(1, seq(1, b"j" * 300), 100)[0],
    data(2, seq(2)),
])
write("server", "v2-stream-request-payload", [
    hello2(),
    frame(REQUEST, seq(1), call=1, method=SUM),
    frame(REQUEST, b"", call=2, method=SUBSCRIBE),
    frame(GOAWAY, b"bye"),
])

# What a server sends, and what the application does: fuzz-client's
# input. Operations are 3 bytes: code, b1, b2 (fuzz_client.c). The first
# HELLO answers duct_channel_open, the second the shared connection of
# async calls and streams, whose call ids count from 1.
OPS = dict(UNARY=0, ASYNC=1, ASYNC_CANCEL=2, ASYNC_RELEASE=3, START=4, SEND=5,
           CLOSE_SEND=6, RECV=7, CANCEL=8, FINISH=9, PUMP=10, FINISH_WAIT=11, DISPATCH=12)
# START's kinds and ASYNC's methods (b1); ASYNC keeps a handle with b1 | 4.
K_RANGE, K_SUBSCRIBE, K_SUM, K_CHAT = 0, 1, 2, 3
A_ECHO, A_WHO, A_STATS, A_SLEEP, A_HANDLE = 0, 1, 2, 3, 4


def op(name, b1=0, b2=0, manual=False):
    return bytes([OPS[name] | (0x80 if manual else 0), b1, b2])


def pump(n):
    """Hands n frames to the reader."""
    return op("PUMP", n - 1)


write("client", "async-calls", [
    hello2(), hello2(),
    op("ASYNC", A_ECHO | A_HANDLE), op("ASYNC", A_WHO), op("ASYNC", A_STATS | A_HANDLE, 1),
    op("ASYNC", A_ECHO | A_HANDLE),
    frame(RESPONSE, field_varint(1, 7) + field_bytes(4, b"0"), call=2, method=WHO),
    frame(RESPONSE, blob(b"ping", 7), call=1, method=ECHO),
    frame(RESPONSE, b"no stats", call=3, method=STATS, status=9),
    pump(3),
    op("ASYNC_CANCEL", 3),
    frame(RESPONSE, blob(b"late", 1), call=4, method=ECHO),
    cancel(4),
    pump(2),
    op("ASYNC_CANCEL", 0), op("ASYNC_RELEASE", 0),
])
write("client", "async-manual", [
    hello2(), hello2(),
    op("ASYNC", A_ECHO | A_HANDLE, manual=True),
    frame(RESPONSE, blob(b"ping", 7), call=1, method=ECHO),
    pump(1), op("DISPATCH"),
    op("ASYNC", A_SLEEP),
    frame(RESPONSE, field_varint(1, 3), call=2, method=SLEEP),
    pump(1), op("DISPATCH"),
    op("ASYNC", A_WHO),
])
write("client", "async-unknown-ids", [
    hello2(), hello2(),
    op("ASYNC", A_ECHO),
    credit(9, 1), cancel(9), frame(RESPONSE, b"", call=9, method=ECHO), data(9, seq(1)),
    frame(RESPONSE, b"gone", call=9, method=ECHO, status=5),
    frame(RESPONSE, blob(b"ping", 7), call=1, method=ECHO),
    data(1, seq(1)), credit(1, 10),
    pump(8),
])
# STREAM_DATA for an async unary call is a violation: the connection
# ends and the next call opens another (ids count from 1 again).
write("client", "async-stream-data", [
    hello2(), hello2(),
    op("ASYNC", A_ECHO), data(1, seq(1)), pump(1),
    op("ASYNC", A_ECHO), hello2(), frame(RESPONSE, blob(b"ping", 7), call=1, method=ECHO),
    pump(1),
])
write("client", "range-stream", [
    hello2(), hello2(),
    op("START", K_RANGE),
    data(1, seq(0)),
] + [f for i, frag in enumerate(data_fragments(1, seq(1, b"r" * 300), 100))
     for f in ([frag, credit(1, 5000)] if i == 1 else [frag])] + [
    data(1, seq(2)),
    frame(RESPONSE, b"", call=1, method=RANGE),
    pump(9),
    op("RECV", 0, 3),
    op("FINISH", 0),
])
write("client", "sum-stream", [
    hello2(), hello2(max_frame=4096),
    op("START", K_SUM),
    op("SEND", 0, 1), op("SEND", 0, 20), op("SEND", 0, 0), op("CLOSE_SEND", 0),
    credit(1, 70000),
    frame(RESPONSE, sum_reply(3, 21), call=1, method=SUM),
    pump(2),
    op("FINISH", 0),
])
write("client", "sum-window", [
    hello2(), hello2(),
    op("START", K_SUM, 1),
] + [op("SEND", 0, 255)] * 5 + [
    credit(1, 300000), pump(1),
    op("SEND", 0, 255), op("CLOSE_SEND", 0),
    frame(RESPONSE, b"too much", call=1, method=SUM, status=8), pump(1),
    op("FINISH", 0),
])
write("client", "chat-stream", [
    hello2(), hello2(),
    op("START", K_CHAT),
    op("SEND", 0, 2), data(1, seq(2, b"c")), pump(1), op("RECV", 0, 0),
    op("SEND", 0, 3), op("CLOSE_SEND", 0),
    data(1, seq(3)), frame(RESPONSE, b"", call=1, method=CHAT),
    op("FINISH_WAIT", 0),
])
write("client", "goaway-mid-stream", [
    hello2(), hello2(),
    op("START", K_RANGE), op("START", K_CHAT), op("ASYNC", A_ECHO | A_HANDLE),
    data(1, seq(0)), data(2, seq(0)),
    frame(GOAWAY, b"the server is stopping", status=14),
    pump(3),
    op("RECV", 0, 1), op("SEND", 1, 1), op("FINISH", 0), op("FINISH", 1),
    op("START", K_SUBSCRIBE), hello2(), data(1, seq(5)), pump(1), op("RECV", 0, 0),
])
write("client", "server-cancel", [
    hello2(), hello2(),
    op("START", K_CHAT), op("START", K_SUBSCRIBE),
    cancel(1), cancel(2), pump(2),
    op("SEND", 0, 1), op("RECV", 1, 0), op("FINISH", 0), op("FINISH", 1),
])
write("client", "client-cancel-late", [
    hello2(), hello2(),
    op("START", K_SUBSCRIBE),
    data(1, seq(1)), pump(1),
    op("CANCEL", 0),
    data(1, seq(2)), frame(RESPONSE, b"", call=1, method=SUBSCRIBE), cancel(1), pump(3),
    op("RECV", 0, 3), op("FINISH", 0),
])
# The client's window for a stream is 256 KiB: the 15th message of
# 19000 bytes overruns it while nobody reads.
write("client", "window-overrun", [
    hello2(), hello2(),
    op("START", K_RANGE),
] + [data(1, seq(i, b"\x00" * 19000)) for i in range(15)] + [
    pump(15), op("FINISH", 0),
])
write("client", "oversize-stream-message", [
    hello2(), hello2(),
    op("START", K_RANGE), op("START", K_CHAT),
    data(1, seq(0, b"\x03" * 21000)), data(2, seq(1)), pump(2),
    op("RECV", 0, 1), op("RECV", 1, 1), op("FINISH", 0), op("FINISH", 1),
])
write("client", "stream-data-to-client-stream", [
    hello2(), hello2(),
    op("START", K_SUM), data(1, seq(1)), pump(1), op("FINISH", 0),
])
write("client", "frame-a-client-never-receives", [
    hello2(), hello2(),
    op("START", K_RANGE), hello2(), pump(1), op("FINISH", 0),
])
write("client", "interleaved-fragments", [
    hello2(), hello2(),
    op("START", K_RANGE), op("START", K_CHAT),
    data_fragments(1, seq(1, b"f" * 300), 100)[0], data(2, seq(2)), pump(2),
    op("FINISH", 0), op("FINISH", 1),
])
write("client", "v1-server", [
    hello(), hello(), hello(),
    op("ASYNC", A_ECHO), op("START", K_RANGE),
])
write("client", "unary-then-async", [
    hello2(),
    op("UNARY", 0), frame(RESPONSE, blob(b"ping", 7), call=1, method=ECHO),
    op("ASYNC", A_ECHO), hello2(), frame(RESPONSE, blob(b"ping", 7), call=1, method=ECHO),
    pump(1),
    op("UNARY", 1), frame(RESPONSE, field_varint(1, 77), call=2, method=WHO),
])
# The server hangs up while streams are open: the pump past the script's
# end is the connection's end.
write("client", "eof-mid-stream", [
    hello2(), hello2(),
    op("START", K_RANGE), op("START", K_SUM, 1), op("SEND", 1, 1),
    data(1, seq(0)), pump(3),
    op("RECV", 0, 3), op("FINISH", 0), op("FINISH", 1),
])
# finish() waits on a thread of its own while the frames arrive: it drops
# what is still queued and gives its credit back.
write("client", "finish-wait-credit", [
    hello2(), hello2(),
    op("START", K_RANGE),
] + [data(1, seq(i, b"\x04" * 19000)) for i in range(4)] + [
    pump(4),
    frame(RESPONSE, b"", call=1, method=RANGE),
    op("FINISH_WAIT", 0),
])

# ---- fuzz-frame: version 2 frames through the decoder and reassembly ----
write("frame", "stream-frames", [hello2()] +
      data_fragments(1, seq(1, b"q" * 200), 64) +
      [credit(1, 65536), half_close(1), cancel(1), frame(CREDIT, b"\0\0\0\0", call=1, version=2)])
