# A small DNS client for weft's tests (python3 stdlib only), run inside sandboxes:
#   q SERVER PORT NAME TYPE [tcp]   one query; prints JSON {rcode, tc, answers} or {timeout}
#   fuzz SERVER PORT N              N random and malformed datagrams, no waiting
#   flood SERVER PORT SECONDS       queries as fast as possible for SECONDS, prints the count
#   burst SERVER PORT NAME N        N queries at once, then prints how many distinct ones were
#                                   answered within 3 s
#   serve ADDR PORT                 an upstream resolver: any A query is 203.0.113.7 (TTL 60);
#                                   names starting with "big" are truncated over UDP and 60
#                                   records over TCP; prints "listening", then each query name
import json, random, socket, struct, sys, time

TYPES = {"A": 1, "AAAA": 28, "PTR": 12, "MX": 15, "TXT": 16}

def encode_name(name):
    out = b""
    for label in name.rstrip(".").split("."):
        if label:
            out += bytes([len(label)]) + label.encode()
    return out + b"\0"

def query(qid, name, qtype, edns=None):
    hdr = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 1 if edns else 0)
    q = hdr + encode_name(name) + struct.pack(">HH", TYPES.get(qtype, 1), 1)
    if edns:
        q += b"\0" + struct.pack(">HHIH", 41, edns, 0, 0)
    return q

def read_name(msg, off, depth=0):
    labels = []
    while True:
        if depth > 20:
            raise ValueError("loop")
        n = msg[off]
        if n & 0xC0 == 0xC0:
            ptr = ((n & 0x3F) << 8) | msg[off + 1]
            rest, _ = read_name(msg, ptr, depth + 1)
            labels.append(rest)
            return ".".join(l for l in labels if l), off + 2
        off += 1
        if n == 0:
            return ".".join(labels), off
        labels.append(msg[off:off + n].decode("ascii", "replace"))
        off += n

def parse(msg):
    qid, flags, qd, an, ns, ar = struct.unpack(">HHHHHH", msg[:12])
    off = 12
    for _ in range(qd):
        _, off = read_name(msg, off)
        off += 4
    answers = []
    for _ in range(an):
        name, off = read_name(msg, off)
        rtype, rclass, ttl, rdlen = struct.unpack(">HHIH", msg[off:off + 10])
        off += 10
        rdata = msg[off:off + rdlen]
        if rtype == 1:
            value = socket.inet_ntop(socket.AF_INET, rdata)
        elif rtype == 28:
            value = socket.inet_ntop(socket.AF_INET6, rdata)
        elif rtype == 12:
            value, _ = read_name(msg, off)
        else:
            value = rdata.hex()
        answers.append({"name": name, "type": rtype, "ttl": ttl, "value": value})
        off += rdlen
    return {"id": qid, "rcode": flags & 0xF, "tc": bool(flags & 0x200), "aa": bool(flags & 0x400), "answers": answers}

def family(server):
    return socket.AF_INET6 if ":" in server else socket.AF_INET

def ask(server, port, name, qtype, tcp=False, timeout=2.0):
    qid = random.randrange(65536)
    q = query(qid, name, qtype)
    try:
        if tcp:
            s = socket.socket(family(server), socket.SOCK_STREAM)
            s.settimeout(timeout)
            s.connect((server, port))
            s.sendall(struct.pack(">H", len(q)) + q)
            data = b""
            while len(data) < 2:
                chunk = s.recv(2 - len(data))
                if not chunk:
                    return {"closed": True}
                data += chunk
            n = struct.unpack(">H", data)[0]
            msg = b""
            while len(msg) < n:
                chunk = s.recv(n - len(msg))
                if not chunk:
                    return {"closed": True}
                msg += chunk
        else:
            # Two attempts, as glibc's resolver makes by default.
            s = socket.socket(family(server), socket.SOCK_DGRAM)
            s.settimeout(timeout)
            msg = None
            for attempt in range(2):
                s.sendto(q, (server, port))
                try:
                    while True:
                        msg, _ = s.recvfrom(65535)
                        if len(msg) >= 2 and struct.unpack(">H", msg[:2])[0] == qid:
                            break
                    break
                except socket.timeout:
                    if attempt == 1:
                        raise
    except socket.timeout:
        return {"timeout": True}
    except ConnectionRefusedError:
        return {"refused_port": True}
    r = parse(msg)
    r["id_ok"] = r["id"] == qid
    return r

def fuzz(server, port, n):
    s = socket.socket(family(server), socket.SOCK_DGRAM)
    rnd = random.Random(8)
    valid = query(1, "a.b.example", "A", 1232)
    sent = 0
    for i in range(n):
        kind = i % 6
        if kind == 0:
            p = bytes(rnd.randrange(256) for _ in range(rnd.randrange(0, 600)))
        elif kind == 1:
            p = bytearray(valid)
            for _ in range(rnd.randrange(1, 6)):
                p[rnd.randrange(len(p))] = rnd.randrange(256)
            p = bytes(p)
        elif kind == 2:
            p = valid[: rnd.randrange(0, len(valid))]
        elif kind == 3:
            # A compression loop in the question.
            p = struct.pack(">HHHHHH", i, 0x0100, 1, 0, 0, 0) + b"\xc0\x0c\x00\x01\x00\x01"
        elif kind == 4:
            # Huge counts.
            p = struct.pack(">HHHHHH", i, 0x0100, 0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF) + valid[12:]
        else:
            # A label running past the end; a response (QR); a wrong opcode.
            p = rnd.choice([valid[:12] + b"\x3fabc", struct.pack(">H", i) + b"\x81\x00" + valid[4:],
                            struct.pack(">H", i) + b"\x10\x00" + valid[4:]])
        try:
            s.sendto(p, (server, port))
            sent += 1
        except OSError:
            time.sleep(0.001)
    print(sent)

def burst(server, port, name, n):
    s = socket.socket(family(server), socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
    for i in range(n):
        s.sendto(query(i, name, "A"), (server, port))
    seen = set()
    s.settimeout(0.2)
    end = time.time() + 3
    while len(seen) < n and time.time() < end:
        try:
            msg = s.recv(65535)
        except socket.timeout:
            continue
        seen.add(struct.unpack(">H", msg[:2])[0])
    print(len(seen))

def flood(server, port, seconds):
    s = socket.socket(family(server), socket.SOCK_DGRAM)
    s.setblocking(False)
    q = query(7, "flood.example", "A")
    end = time.time() + seconds
    n = 0
    while time.time() < end:
        try:
            s.sendto(q, (server, port))
            n += 1
        except OSError:
            pass
        try:
            while True:
                s.recv(65535)
        except OSError:
            pass
    print(n)

def answer_for(msg, tcp):
    qid, flags, qd, an, ns, ar = struct.unpack(">HHHHHH", msg[:12])
    name, off = read_name(msg, 12)
    qtype = struct.unpack(">H", msg[off:off + 2])[0]
    question = msg[12:off + 4]
    print(name, flush=True)
    big = name.startswith("big")
    records = b""
    count = 0
    tc = 0
    if qtype == 1:
        if big and not tcp:
            tc = 0x200
        else:
            for i in range(60 if big else 1):
                records += b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 60, 4) + bytes([203, 0, 113, 7 if not big else i])
                count += 1
    hdr = struct.pack(">HHHHHH", qid, 0x8180 | tc, 1, count, 0, 0)
    return hdr + question + records

def serve(addr, port):
    import threading
    fam = family(addr)
    u = socket.socket(fam, socket.SOCK_DGRAM)
    u.bind((addr, port))
    t = socket.socket(fam, socket.SOCK_STREAM)
    t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    t.bind((addr, port))
    t.listen(16)
    def tcp_loop():
        while True:
            c, _ = t.accept()
            try:
                n = struct.unpack(">H", c.recv(2))[0]
                msg = b""
                while len(msg) < n:
                    msg += c.recv(n - len(msg))
                r = answer_for(msg, True)
                c.sendall(struct.pack(">H", len(r)) + r)
            except Exception:
                pass
            c.close()
    threading.Thread(target=tcp_loop, daemon=True).start()
    print("listening", flush=True)
    while True:
        msg, peer = u.recvfrom(65535)
        try:
            u.sendto(answer_for(msg, False), peer)
        except Exception:
            pass

if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "q":
        print(json.dumps(ask(sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5], len(sys.argv) > 6 and sys.argv[6] == "tcp")))
    elif mode == "fuzz":
        fuzz(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    elif mode == "serve":
        serve(sys.argv[2], int(sys.argv[3]))
    elif mode == "burst":
        burst(sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5]))
    elif mode == "flood":
        flood(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))
