#!/usr/bin/env python3
"""An independent internode peer, written from wire/doc.go only.

Python 3, standard library only. It speaks protocol version 3 on a message
lane (default: the small lane, 1) as the initiator, or answers one
connection as the acceptor.

Usage:
  pypeer.py ADDR ok CLUSTER NODE [--oneway VERB:DATA ...] --request VERB:DATA
          [--lane 0|1] [--ttl SECONDS] [--one-frame] [--caps N]
      Handshake, send the one-way messages (IDs 100, 101, ...) and the
      request (ID 2), each in its own FrameBatch or all in one with
      --one-frame, read the back channel (beats, batch responses, large
      responses: granted, or eager with --caps 2) until the response to the
      request comes, print it; responses to other IDs are printed as
      stray-response. DATA is hex, or @N for N bytes of (7*i) mod 256.
  pypeer.py ADDR MISTAKE CLUSTER NODE --oneway VERB:DATA [--watch SECONDS]
      MISTAKE is one of wrong-cluster, bad-hello-crc, bad-checksum,
      unknown-kind, overrun, response-from-initiator, truncated (a frame
      cut short, connection kept open) and truncated-eof (cut short, then
      FIN). Reports how the node answered: a Reply's reason, or how and
      when it closed the connection.
  pypeer.py LISTEN_ADDR accept CLUSTER NODE
      Act as the acceptor of message lanes until stdin closes: answer each
      Hello, beat every interval, print each message, answer each request
      with an echo of its payload.
  pypeer.py - selftest
      Check the encoders against the examples of wire/doc.go.

Every result is printed as one JSON object per line on stdout.
"""

import argparse
import json
import os
import socket
import struct
import sys
import time

# ---------------------------------------------------------------------------
# Constants (wire/doc.go)

MAGIC = 0x494E4F44
VERSION = 3
MAX_HANDSHAKE_SIZE = 1024
FRAME_HEADER_SIZE = 12
DEFAULT_MAX_FRAME_PAYLOAD = 256 << 10
KEEPALIVE_INTERVAL = 1.0

LANE_URGENT, LANE_SMALL, LANE_LARGE = 0, 1, 2

FRAME_BATCH = 0
FRAME_LARGE_BEGIN = 1
FRAME_LARGE_MORE = 2
FRAME_LARGE_CANCEL = 3
FRAME_PING = 4
FRAME_GRANT = 5
FRAME_REFUSE = 6
FRAME_BEAT = 7
FRAME_BATCH_S2 = 8
KIND_NAMES = {0: "Batch", 1: "LargeBegin", 2: "LargeMore", 3: "LargeCancel",
              4: "Ping", 5: "Grant", 6: "Refuse", 7: "Beat", 8: "BatchS2"}

FLAG_EXPECTS_RESPONSE = 1 << 0
FLAG_RESPONSE = 1 << 1
FLAG_FAILURE = 1 << 2
FLAG_PARAMS = 1 << 3
FLAG_TTL = 1 << 4
FLAG_CANCEL = 1 << 5

CAP_BATCH_S2 = 1 << 0
CAP_EAGER_RESPONSES = 1 << 1

REASONS = {0: "Accepted", 1: "UnsupportedVersion", 2: "WrongCluster",
           3: "UnknownNode", 4: "IdentityMismatch", 5: "BadLane",
           6: "Refused", 7: "Busy"}
FAILURES = {0: "Unknown", 1: "UnknownVerb", 2: "HandlerError", 3: "Expired",
            4: "Overloaded", 5: "TooLarge", 6: "Canceled", 7: "Corrupt",
            8: "Incomplete"}


class ProtocolError(Exception):
    pass


# ---------------------------------------------------------------------------
# CRC32C (Castagnoli), reflected polynomial 0x82F63B78, init and final xor
# 0xFFFFFFFF: the usual CRC-32C.

def _crc_table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _crc_table()


def crc32c(data, crc=0):
    crc ^= 0xFFFFFFFF
    for b in data:
        crc = _TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


# ---------------------------------------------------------------------------
# uvarint (unsigned LEB128, shortest form only)

def uvarint(v):
    if v < 0:
        raise ValueError("negative uvarint")
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def read_uvarint(buf, off):
    v = 0
    shift = 0
    start = off
    while True:
        if off >= len(buf):
            raise ProtocolError("truncated uvarint")
        b = buf[off]
        off += 1
        if shift == 63 and b > 1:
            raise ProtocolError("uvarint overflows 64 bits")
        v |= (b & 0x7F) << shift
        if b < 0x80:
            if b == 0 and off - start > 1:
                raise ProtocolError("non-minimal uvarint")
            return v, off
        shift += 7
        if shift > 63:
            raise ProtocolError("uvarint too long")


# ---------------------------------------------------------------------------
# Handshake

def hello(cluster, node, lane, min_ver=VERSION, max_ver=VERSION, caps=0):
    body = struct.pack(">BBBI", min_ver, max_ver, lane, caps)
    body += bytes([len(cluster)]) + cluster + bytes([len(node)]) + node
    body_len = len(body) + 4  # counts the checksum too
    msg = struct.pack(">IH", MAGIC, body_len) + body
    return msg + struct.pack(">I", crc32c(msg))


def reply(version, reason, caps=0, message=b""):
    body = struct.pack(">BBI", version, reason, caps)
    body += bytes([len(message)]) + message
    msg = struct.pack(">IH", MAGIC, len(body) + 4) + body
    return msg + struct.pack(">I", crc32c(msg))


def read_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError("connection closed after %d of %d bytes" % (len(buf), n))
        buf += chunk
    return bytes(buf)


def read_handshake(sock):
    head = read_exact(sock, 6)
    magic, body_len = struct.unpack(">IH", head)
    if magic != MAGIC:
        raise ProtocolError("bad magic %08x" % magic)
    if 6 + body_len > MAX_HANDSHAKE_SIZE:
        raise ProtocolError("handshake too large")
    if body_len < 4:
        raise ProtocolError("handshake body too short")
    body = read_exact(sock, body_len)
    msg = head + body
    want = struct.unpack(">I", msg[-4:])[0]
    if crc32c(msg[:-4]) != want:
        raise ProtocolError("handshake checksum")
    return msg[6:-4]


def decode_reply(body):
    if len(body) < 7:
        raise ProtocolError("reply truncated")
    version, reason, caps, mlen = struct.unpack(">BBIB", body[:7])
    if len(body) != 7 + mlen:
        raise ProtocolError("reply length mismatch")
    return {"version": version, "reason": reason,
            "reason_name": REASONS.get(reason, "Refused"),
            "caps": caps, "message": body[7:].decode("utf-8", "replace")}


def decode_hello(body):
    if len(body) < 9:
        raise ProtocolError("hello truncated")
    min_ver, max_ver, lane, caps = struct.unpack(">BBBI", body[:7])
    off = 7
    clen = body[off]
    off += 1
    cluster = body[off:off + clen]
    off += clen
    nlen = body[off]
    off += 1
    node = body[off:off + nlen]
    off += nlen
    if off != len(body) or len(cluster) != clen or len(node) != nlen:
        raise ProtocolError("hello length mismatch")
    return {"min_ver": min_ver, "max_ver": max_ver, "lane": lane,
            "caps": caps, "cluster": cluster, "node": node}


# ---------------------------------------------------------------------------
# Frames

def frame(kind, payload=b"", stream=0, corrupt=False):
    head = struct.pack(">IB", len(payload), kind) + stream.to_bytes(3, "big")
    crc = crc32c(payload, crc32c(head))
    if corrupt:
        crc ^= 0xDEADBEEF
    return head + struct.pack(">I", crc) + payload


def read_frame(sock, limit=DEFAULT_MAX_FRAME_PAYLOAD):
    head = read_exact(sock, FRAME_HEADER_SIZE)
    length, kind = struct.unpack(">IB", head[:5])
    stream = int.from_bytes(head[5:8], "big")
    want = struct.unpack(">I", head[8:12])[0]
    if length > limit:
        raise ProtocolError("frame too large: %d" % length)
    payload = read_exact(sock, length) if length else b""
    if crc32c(payload, crc32c(head[:8])) != want:
        raise ProtocolError("frame checksum")
    return kind, stream, payload


# ---------------------------------------------------------------------------
# Messages

def message(flags, mid, verb, payload, ttl_ns=None, created_at=None, params=None):
    if created_at is None:
        created_at = time.time_ns()
    if ttl_ns is not None:
        flags |= FLAG_TTL
    if params:
        flags |= FLAG_PARAMS
    out = bytearray([flags]) + uvarint(mid) + uvarint(verb)
    out += struct.pack(">q", created_at)
    if ttl_ns is not None:
        out += struct.pack(">Q", ttl_ns)
    if params:
        block = b"".join(uvarint(len(k)) + k + uvarint(len(v)) + v for k, v in params)
        out += uvarint(len(block)) + block
    out += uvarint(len(payload))
    return bytes(out) + payload


def decode_batch(payload, header_only=False):
    """Decode a FrameBatch payload; with header_only, the payload is one
    FrameLargeBegin's header, which must fill it."""
    msgs = []
    off = 0
    while off < len(payload):
        flags = payload[off]
        off += 1
        if flags & 0xC0:
            raise ProtocolError("reserved flag bits")
        mid, off = read_uvarint(payload, off)
        verb, off = read_uvarint(payload, off)
        if off + 8 > len(payload):
            raise ProtocolError("header truncated")
        created_at = struct.unpack(">q", payload[off:off + 8])[0]
        off += 8
        ttl = None
        if flags & FLAG_TTL:
            ttl = struct.unpack(">Q", payload[off:off + 8])[0]
            off += 8
        params = []
        if flags & FLAG_PARAMS:
            plen, off = read_uvarint(payload, off)
            block = payload[off:off + plen]
            off += plen
            p = 0
            while p < len(block):
                klen, p = read_uvarint(block, p)
                k = block[p:p + klen]
                p += klen
                vlen, p = read_uvarint(block, p)
                v = block[p:p + vlen]
                p += vlen
                params.append((k.decode("ascii", "replace"), v.hex()))
        plen, off = read_uvarint(payload, off)
        if header_only:
            if off != len(payload):
                raise ProtocolError("large header does not fill its frame")
            return {"flags": flags, "id": mid, "verb": verb, "created_at": created_at,
                    "ttl": ttl, "params": params, "payload_len": plen}
        if off + plen > len(payload):
            raise ProtocolError("message overruns frame")
        body = payload[off:off + plen]
        off += plen
        m = {"flags": flags, "id": mid, "verb": verb, "created_at": created_at,
             "ttl": ttl, "params": params, "payload": body.hex()}
        if flags & FLAG_FAILURE:
            code = body[0]
            mlen, p = read_uvarint(body, 1)
            m["failure"] = {"code": code, "name": FAILURES.get(code, "Unknown"),
                            "message": body[p:p + mlen].decode("utf-8", "replace")}
        msgs.append(m)
    return msgs


# ---------------------------------------------------------------------------
# Helpers

def emit(**kw):
    print(json.dumps(kw, sort_keys=True), flush=True)


def parse_vp(s):
    """VERB:HEX, or VERB:@N for N bytes of the pattern (7*i) mod 256."""
    verb, _, hexpayload = s.partition(":")
    if hexpayload.startswith("@"):
        return int(verb), bytes((7 * i) & 0xFF for i in range(int(hexpayload[1:])))
    return int(verb), bytes.fromhex(hexpayload)


def split_addr(addr):
    host, _, port = addr.rpartition(":")
    return host.strip("[]"), int(port)


def connect(addr, timeout):
    s = socket.create_connection(split_addr(addr), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def handshake(sock, cluster, node, lane=LANE_SMALL, caps=0, corrupt=False):
    h = bytearray(hello(cluster, node, lane, caps=caps))
    if corrupt:
        h[-1] ^= 0xFF
    sock.sendall(bytes(h))
    return decode_reply(read_handshake(sock))


def watch_close(sock, timeout):
    """Read the back channel until the node closes the connection or timeout
    passes; report the frames seen and how it ended."""
    sock.settimeout(0.2)
    deadline = time.monotonic() + timeout
    kinds = []
    last_ping = time.monotonic()
    pending = bytearray()
    while time.monotonic() < deadline:
        # Keep our side alive, as an initiator must.
        if time.monotonic() - last_ping >= KEEPALIVE_INTERVAL:
            try:
                sock.sendall(frame(FRAME_PING))
            except OSError as e:
                return {"closed": True, "how": "send: %s" % e, "frames": kinds}
            last_ping = time.monotonic()
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            continue
        except ConnectionResetError:
            return {"closed": True, "how": "reset", "frames": kinds}
        except OSError as e:
            return {"closed": True, "how": str(e), "frames": kinds}
        if not chunk:
            return {"closed": True, "how": "eof", "frames": kinds}
        pending += chunk
        while len(pending) >= FRAME_HEADER_SIZE:
            length = struct.unpack(">I", pending[:4])[0]
            if len(pending) < FRAME_HEADER_SIZE + length:
                break
            kinds.append(KIND_NAMES.get(pending[4], str(pending[4])))
            del pending[:FRAME_HEADER_SIZE + length]
    return {"closed": False, "how": "timeout", "frames": kinds}


# ---------------------------------------------------------------------------
# Scenarios

def run_ok(args):
    sock = connect(args.addr, args.timeout)
    r = handshake(sock, args.cluster.encode(), args.node.encode(), lane=args.lane, caps=args.caps)
    emit(event="reply", **r)
    if r["reason"] != 0 or r["version"] != VERSION:
        sys.exit(2)

    frames = []
    for i, ow in enumerate(args.oneway or ["1:"]):
        ow_verb, ow_payload = parse_vp(ow)
        frames.append(message(0, 100 + i, ow_verb, ow_payload))
    rq_verb, rq_payload = parse_vp(args.request)
    req_id = 2
    frames.append(message(FLAG_EXPECTS_RESPONSE, req_id, rq_verb, rq_payload,
                          ttl_ns=int(args.ttl * 1e9) if args.ttl else None))
    if args.one_frame:
        sock.sendall(frame(FRAME_BATCH, b"".join(frames)))
    else:
        sock.sendall(b"".join(frame(FRAME_BATCH, m) for m in frames))
    emit(event="sent", oneway_verb=ow_verb, request_verb=rq_verb, request_id=req_id)

    deadline = time.monotonic() + args.timeout
    last_write = time.monotonic()
    seen = {}
    eager = bool(r["caps"] & CAP_EAGER_RESPONSES)
    large = {}  # stream -> [header dict, bytearray of parts]
    sock.settimeout(0.25)
    while time.monotonic() < deadline:
        if time.monotonic() - last_write >= KEEPALIVE_INTERVAL:
            sock.sendall(frame(FRAME_PING))
            last_write = time.monotonic()
        try:
            sock.settimeout(0.25)
            kind, stream, payload = read_frame(sock)
        except socket.timeout:
            continue
        seen[KIND_NAMES.get(kind, kind)] = seen.get(KIND_NAMES.get(kind, kind), 0) + 1
        if kind == FRAME_BEAT:
            if payload or stream:
                raise ProtocolError("beat with payload or stream")
            continue
        msgs = []
        if kind == FRAME_LARGE_BEGIN:
            # A large response: its header alone, then (once granted, or at
            # once with CapEagerResponses) FrameLargeMore parts.
            if not stream or stream in large:
                raise ProtocolError("bad large stream %d" % stream)
            hdr = decode_batch(payload, header_only=True)
            large[stream] = [hdr, bytearray()]
            if not eager:
                sock.sendall(frame(FRAME_GRANT, stream=stream))
                last_write = time.monotonic()
            if hdr["payload_len"] != 0:
                continue
        elif kind == FRAME_LARGE_MORE:
            if stream not in large:
                raise ProtocolError("part of unknown stream %d" % stream)
            large[stream][1] += payload
            if len(large[stream][1]) > large[stream][0]["payload_len"]:
                raise ProtocolError("part overruns its message")
            if len(large[stream][1]) < large[stream][0]["payload_len"]:
                continue
        elif kind == FRAME_LARGE_CANCEL:
            large.pop(stream, None)
            continue
        elif kind != FRAME_BATCH or stream:
            raise ProtocolError("unexpected frame kind %d stream %d" % (kind, stream))
        if kind in (FRAME_LARGE_BEGIN, FRAME_LARGE_MORE):
            hdr, body = large.pop(stream)
            hdr["payload"] = bytes(body).hex()
            hdr["large_stream"] = stream
            msgs = [hdr]
        else:
            msgs = decode_batch(payload)
        for m in msgs:
            if not m["flags"] & FLAG_RESPONSE:
                raise ProtocolError("acceptor sent a non-response in a batch")
            if m["id"] == req_id:
                emit(event="response", frames_seen=seen, **m)
                sock.close()
                return
            emit(event="stray-response", **m)
    emit(event="timeout", frames_seen=seen)
    sys.exit(3)


def mistake(args):
    sock = connect(args.addr, args.timeout)
    cluster, node = args.cluster.encode(), args.node.encode()
    t0 = time.monotonic()
    if args.scenario == "wrong-cluster":
        try:
            r = handshake(sock, b"not-" + cluster, node)
        except (EOFError, OSError, ProtocolError) as e:
            emit(event="result", error=str(e), elapsed=time.monotonic() - t0)
            return
        w = watch_close(sock, args.watch)
        emit(event="result", elapsed=time.monotonic() - t0, **r, **w)
        return
    if args.scenario == "bad-hello-crc":
        try:
            r = handshake(sock, cluster, node, corrupt=True)
        except (EOFError, OSError, ProtocolError) as e:
            emit(event="result", error=type(e).__name__ + ": " + str(e),
                 elapsed=time.monotonic() - t0)
            return
        emit(event="result", elapsed=time.monotonic() - t0, **r)
        return

    r = handshake(sock, cluster, node)
    if r["reason"] != 0:
        emit(event="result", refused=True, **r)
        sys.exit(2)
    verb, payload = parse_vp((args.oneway or ["1:"])[0])
    msg = message(0, 7, verb, payload)
    if args.scenario == "bad-checksum":
        sock.sendall(frame(FRAME_BATCH, msg, corrupt=True))
    elif args.scenario == "unknown-kind":
        sock.sendall(frame(42, msg))
    elif args.scenario == "truncated":
        # A header promising more payload than ever comes; keep the
        # connection open and see whether (and when) the node gives up.
        f = frame(FRAME_BATCH, msg)
        sock.sendall(f[:-1])
    elif args.scenario == "truncated-eof":
        f = frame(FRAME_BATCH, msg)
        sock.sendall(f[:-1])
        sock.shutdown(socket.SHUT_WR)
    elif args.scenario == "overrun":
        # A message whose payload_len runs past the end of its frame.
        bad = message(0, 7, verb, payload)[:-1]
        sock.sendall(frame(FRAME_BATCH, bad))
    elif args.scenario == "response-from-initiator":
        sock.sendall(frame(FRAME_BATCH, message(FLAG_RESPONSE, 7, verb, payload)))
    else:
        raise SystemExit("unknown scenario " + args.scenario)
    t1 = time.monotonic()
    # In the truncated scenario a ping would be read as the missing byte and
    # the start of the next header; do not send any.
    w = watch_close_quiet(sock, args.watch) if args.scenario.startswith("truncated") \
        else watch_close(sock, args.watch)
    emit(event="result", elapsed=time.monotonic() - t1, **w)


def watch_close_quiet(sock, timeout):
    sock.settimeout(0.2)
    deadline = time.monotonic() + timeout
    kinds = []
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            continue
        except ConnectionResetError:
            return {"closed": True, "how": "reset", "frames": kinds}
        if not chunk:
            return {"closed": True, "how": "eof", "frames": kinds}
        kinds.append(len(chunk))
    return {"closed": False, "how": "timeout", "frames": kinds}


def run_accept(args):
    """Accept connections until stdin closes (or --timeout passes): answer
    each Hello, beat every interval, print each message that arrives and
    answer each request with an echo of its payload."""
    import threading
    host, port = split_addr(args.addr)
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((host, port))
    ls.listen(16)
    emit(event="listening", addr="%s:%d" % ls.getsockname())
    lock = threading.Lock()

    def out(**kw):
        with lock:
            emit(**kw)

    def serve(sock):
        try:
            serve_one(sock, args, out)
        except Exception as e:  # report, never hang
            out(event="conn-error", error="%s: %s" % (type(e).__name__, e))
        finally:
            sock.close()

    def accept_loop():
        while True:
            try:
                sock, _ = ls.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(sock,), daemon=True).start()

    threading.Thread(target=accept_loop, daemon=True).start()
    # Run until the driver closes our stdin.
    t = threading.Thread(target=sys.stdin.read, daemon=True)
    t.start()
    t.join(args.timeout)
    ls.close()


def serve_one(sock, args, out):
    sock.settimeout(args.timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    h = decode_hello(read_handshake(sock))
    out(event="hello", min_ver=h["min_ver"], max_ver=h["max_ver"], lane=h["lane"],
        caps=h["caps"], cluster=h["cluster"].decode(), node=h["node"].decode())
    if not (h["min_ver"] <= VERSION <= h["max_ver"]):
        sock.sendall(reply(0, 1, 0, b"need version 3"))
        return
    if h["cluster"] != args.cluster.encode():
        sock.sendall(reply(0, 2, 0, b"wrong cluster"))
        return
    if h["lane"] not in (LANE_URGENT, LANE_SMALL, LANE_LARGE):
        sock.sendall(reply(0, 5, 0, b"this peer takes message lanes only"))
        return
    if not h["node"]:
        sock.sendall(reply(0, 6, 0, b"empty node ID"))
        return
    lane = h["lane"]
    # Accept with no capabilities (no S2, no eager responses), and a beat
    # right behind the reply.
    sock.sendall(reply(VERSION, 0, 0) + frame(FRAME_BEAT))
    wlock = __import__("threading").Lock()
    stop = []

    def beats():
        while not stop:
            time.sleep(KEEPALIVE_INTERVAL)
            try:
                with wlock:
                    sock.sendall(frame(FRAME_BEAT))
            except OSError:
                return

    __import__("threading").Thread(target=beats, daemon=True).start()
    large = {}  # stream -> [header, bytearray]
    try:
        sock.settimeout(None)
        while True:
            try:
                kind, stream, payload = read_frame(sock)
            except EOFError:
                out(event="eof", lane=lane)
                return
            if kind == FRAME_PING:
                continue
            msgs = []
            if kind == FRAME_BATCH and lane != LANE_LARGE:
                msgs = decode_batch(payload)
            elif kind == FRAME_LARGE_BEGIN and lane == LANE_LARGE:
                hdr = decode_batch(payload, header_only=True)
                large[stream] = [hdr, bytearray()]
                with wlock:
                    sock.sendall(frame(FRAME_GRANT, stream=stream))
                if hdr["payload_len"]:
                    continue
                hdr["payload"] = ""
                msgs = [large.pop(stream)[0]]
            elif kind == FRAME_LARGE_MORE and lane == LANE_LARGE and stream in large:
                large[stream][1] += payload
                hdr, body = large[stream]
                if len(body) < hdr["payload_len"]:
                    continue
                del large[stream]
                hdr["payload"] = bytes(body).hex()
                msgs = [hdr]
            elif kind == FRAME_LARGE_CANCEL and lane == LANE_LARGE:
                large.pop(stream, None)
                continue
            else:
                raise ProtocolError("unexpected frame kind %d on lane %d" % (kind, lane))
            answer = bytearray()
            for m in msgs:
                out(event="message", lane=lane, **{k: v for k, v in m.items() if k != "payload_len"})
                if m["flags"] & FLAG_EXPECTS_RESPONSE:
                    answer += message(FLAG_RESPONSE, m["id"], m["verb"], bytes.fromhex(m["payload"]),
                                      ttl_ns=m["ttl"])
            if answer:
                if len(answer) > DEFAULT_MAX_FRAME_PAYLOAD:
                    raise ProtocolError("this peer sends no large responses")
                with wlock:
                    sock.sendall(frame(FRAME_BATCH, bytes(answer)))
                out(event="answered", lane=lane)
    finally:
        stop.append(True)


def selftest():
    # The example Hello from wire/doc.go.
    want = bytes.fromhex("494e4f44 0010 030302 00000000 0163 026e31 4e476665".replace(" ", ""))
    got = hello(b"c", b"n1", LANE_LARGE)
    assert got == want, (got.hex(), want.hex())
    assert crc32c(b"123456789") == 0xE3069283
    for v in (0, 1, 127, 128, 300, 2**63, 2**64 - 1):
        assert read_uvarint(uvarint(v), 0) == (v, len(uvarint(v)))
    try:
        read_uvarint(b"\x80\x00", 0)
        raise AssertionError("non-minimal accepted")
    except ProtocolError:
        pass
    emit(event="selftest", ok=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("addr")
    p.add_argument("scenario")
    p.add_argument("cluster", nargs="?", default="")
    p.add_argument("node", nargs="?", default="pypeer")
    p.add_argument("--oneway", action="append", help="VERB:HEX or VERB:@N; repeatable (ids 100, 101, ...)")
    p.add_argument("--request", default="2:")
    p.add_argument("--lane", type=int, default=LANE_SMALL)
    p.add_argument("--ttl", type=float, default=5.0, help="request ttl in seconds, 0 for none")
    p.add_argument("--one-frame", action="store_true")
    p.add_argument("--caps", type=int, default=0, help="capabilities to offer (2: CapEagerResponses, 8: CapAcceptorID)")
    p.add_argument("--timeout", type=float, default=10.0)
    p.add_argument("--watch", type=float, default=3.0)
    args = p.parse_args()
    if args.scenario == "selftest":
        selftest()
    elif args.scenario == "ok":
        run_ok(args)
    elif args.scenario == "accept":
        run_accept(args)
    else:
        mistake(args)


if __name__ == "__main__":
    main()
