#!/usr/bin/env python3
"""fibers-proxy end to end: real proxy processes on loopback in front of upstreams written
here (so the test needs nothing outside the repository).

    proxy_test.py PROXY_EXE CASE      one case (meson registers each as its own test)
    proxy_test.py PROXY_EXE all       every case

PROXY_SOCKET_IO=epoll runs every proxy with --socket-io epoll (meson: '<case>_epoll'; the
proxy's default is io_uring).

Timing is never asserted tightly: lower bounds are the configured limits themselves, upper
bounds are many times larger, and the CPU check compares against a busy spin (100 %)."""

import hashlib
import json
import os
import random
import re
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
from tool_test_util import (RUNNING, TIMEOUT, ToolProcess, check_backoff_at_fd_limit, make_ca,  # noqa: E402
                            make_leaf, pattern, recv_exact)

PROXY = None
# --socket-io for every proxy started here (PROXY_SOCKET_IO; the proxy's default when unset).
SOCKET_IO = os.environ.get("PROXY_SOCKET_IO", "")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Upstream:
    """A threaded upstream on 127.0.0.1. mode 'echo': echo every byte, pass the client's end
    of stream on after the echo. mode 'sink': read an 8-byte response size, then everything
    until end of stream; answer sha256(body) + that many pattern bytes; close."""

    def __init__(self, mode="echo", ssl_ctx=None, host="127.0.0.1", port=0):
        self.mode = mode
        self.ssl_ctx = ssl_ctx
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.connections = 0  # accepted so far
        self.open = 0  # being served now
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        with self.lock:
            self.open += 1
        try:
            if self.ssl_ctx:
                c = self.ssl_ctx.wrap_socket(c, server_side=True)
            if self.mode == "echo":
                while True:
                    d = c.recv(65536)
                    if not d:
                        break
                    c.sendall(d)
                if not self.ssl_ctx:
                    c.shutdown(socket.SHUT_WR)
            else:
                head = recv_exact(c, 8)
                want = int.from_bytes(head, "big")
                h = hashlib.sha256()
                while True:
                    d = c.recv(65536)
                    if not d:
                        break
                    h.update(d)
                c.sendall(h.digest() + pattern(want, want))
        except (OSError, EOFError):  # EOFError: the readiness probe of Proxy()
            pass
        finally:
            c.close()
            with self.lock:
                self.open -= 1

    def close(self):
        self.sock.close()


def closed_by_peer(s):
    """True when the peer closed (end of stream, or a reset because data was left unread)."""
    try:
        return s.recv(65536) == b""
    except ConnectionResetError:
        return True


def recv_all(s):
    out = bytearray()
    while True:
        d = s.recv(65536)
        if not d:
            return bytes(out)
        out += d


class DnsServer:
    """A scripted DNS server on 127.0.0.1 (UDP). `answers[name]` is a list of (ipv4, ttl) used
    in turn for its A queries, the last one repeated; ("SERVFAIL", 0) answers SERVFAIL. AAAA
    queries get an empty answer (no data); other names NXDOMAIN. Counts A queries per name."""

    def __init__(self, answers):
        self.answers = answers
        self.queries = {}
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.lock = threading.Lock()
        threading.Thread(target=self._serve, daemon=True).start()

    def a_queries(self, name):
        with self.lock:
            return self.queries.get(name, 0)

    def _serve(self):
        while True:
            try:
                q, peer = self.sock.recvfrom(4096)
            except OSError:
                return
            labels, i = [], 12
            while i < len(q) and q[i]:
                labels.append(q[i + 1:i + 1 + q[i]].decode().lower())
                i += 1 + q[i]
            name, qtype, end = ".".join(labels), int.from_bytes(q[i + 1:i + 3], "big"), i + 5
            rcode, records = 3, []
            script = self.answers.get(name)
            if script is not None:
                rcode = 0
                if qtype == 1:
                    with self.lock:
                        n = self.queries.get(name, 0)
                        self.queries[name] = n + 1
                    addr, ttl = script[min(n, len(script) - 1)]
                    if addr == "SERVFAIL":
                        rcode = 2
                    else:
                        records.append((socket.inet_aton(addr), ttl))
            flags = 0x8000 | (q[2] & 0x79) << 8 | 0x80 | rcode
            out = q[:2] + flags.to_bytes(2, "big") + b"\x00\x01" + len(records).to_bytes(2, "big") + b"\x00" * 4
            out += q[12:end]
            for rdata, ttl in records:
                out += b"\xc0\x0c\x00\x01\x00\x01" + ttl.to_bytes(4, "big") + len(rdata).to_bytes(2, "big") + rdata
            self.sock.sendto(out, peer)


class Proxy(ToolProcess):
    def __init__(self, *args, prefix=(), upstreams=(), stats_interval=0):
        self.port = free_port()
        cmd = list(prefix) + [PROXY, "--listen", f"127.0.0.1:{self.port}",
                              "--stats-interval", str(stats_interval)]
        for u in upstreams:
            cmd += ["--upstream", u]
        cmd += [str(a) for a in args]
        if SOCKET_IO:
            cmd += ["--socket-io", SOCKET_IO]
        super().__init__(cmd)
        deadline = time.time() + TIMEOUT
        while True:  # ready once it accepts
            if self.p.poll() is not None:
                raise AssertionError(f"proxy exited at start: {self.output()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.05)

    def connect(self):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=TIMEOUT)
        return s


def echo_transfer(port_or_sock, size, seed, chunk=65536, pause=0.0):
    """Sends `size` bytes, half-closes, reads the echo to the end; asserts it is exact."""
    echo_exact(port_or_sock, pattern(size, seed), chunk, pause)


def echo_exact(port_or_sock, data, chunk=65536, pause=0.0):
    """Sends `data`, half-closes, reads the echo to the end; asserts it is exact."""
    s = port_or_sock if isinstance(port_or_sock, socket.socket) else socket.create_connection(
        ("127.0.0.1", port_or_sock), timeout=TIMEOUT)
    size = len(data)
    got = bytearray()

    def reader():
        got.extend(recv_all(s))

    t = threading.Thread(target=reader)
    t.start()
    for i in range(0, size, chunk):
        s.sendall(data[i:i + chunk])
        if pause:
            time.sleep(pause)
    s.shutdown(socket.SHUT_WR)
    t.join(TIMEOUT * 3)
    s.close()
    assert bytes(got) == data, f"echo of {size} bytes: got {len(got)} bytes, " \
        f"{'equal prefix' if data.startswith(bytes(got)) else 'different content'}"


def run_parallel(fns):
    errors = []

    def wrap(f):
        try:
            f()
        except BaseException as e:  # noqa: B902 - reported below
            errors.append(e)

    ts = [threading.Thread(target=wrap, args=(f,)) for f in fns]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if errors:
        raise errors[0]


# ---------------------------------------------------------------------------------------- cases

def case_forward_exact():
    """Random sizes 1 B..10 MB both ways, concurrently, on 2 threads; the end of stream passes
    through each way (half-close) and the other direction goes on."""
    echo, sink = Upstream("echo"), Upstream("sink")
    p = Proxy("--threads", 2, upstreams=[f"127.0.0.1:{echo.port}"])
    q = Proxy("--threads", 1, upstreams=[f"127.0.0.1:{sink.port}"])
    rng = random.Random(18)
    sizes = [1, 2, 1000, 16384, 16385, 10 * 1024 * 1024] + [rng.randint(1, 3_000_000) for _ in range(8)]
    run_parallel([lambda n=n, i=i: echo_transfer(p.port, n, i) for i, n in enumerate(sizes)])

    # Half-close the other way round: the client's end of stream reaches the upstream, which
    # only then answers; the answer (of another size) must arrive whole.
    def sink_transfer(up, down, seed):
        s = q.connect()
        body = pattern(up, seed)
        s.sendall(down.to_bytes(8, "big") + body)
        s.shutdown(socket.SHUT_WR)
        got = recv_all(s)
        s.close()
        assert got[:32] == hashlib.sha256(body).digest(), "upstream saw other bytes"
        assert got[32:] == pattern(down, down), f"answer: {len(got) - 32} of {down} bytes"

    run_parallel([lambda: sink_transfer(1, 10 * 1024 * 1024, 1), lambda: sink_transfer(5_000_000, 1, 2),
                  lambda: sink_transfer(0, 0, 3)])
    for proxy in (p, q):
        summary, out = proxy.summary()
        assert summary["active"] == 0, out
        assert sum(summary["errors"].values()) == 0, out
        # The ring carried the bytes, unless told otherwise (this project's kernels allow it).
        assert (", io_uring" in out) == (SOCKET_IO != "epoll"), out
    total = sum(sizes) + 8 * 3 + 5_000_001
    print(f"forwarded {total} bytes over {len(sizes) + 3} connections exactly")


def refusing_port():
    """A port that refuses connections for as long as the returned socket is open: bound, never
    listening. (A port merely found free can be handed to the next listener that binds port 0,
    another Upstream of the same test included, and then accepts.)"""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    return s, s.getsockname()[1]


def case_failover():
    """First upstream refuses: the second is used (a retry). That the dead one is then skipped
    for the back-off is case_backoff's."""
    dead_sock, dead = refusing_port()  # refuses until the case ends
    echo = Upstream("echo")
    p = Proxy("--retries", 1, "--upstream-backoff", 30,
              upstreams=[f"127.0.0.1:{dead}", f"127.0.0.1:{echo.port}"])
    for i in range(6):
        echo_transfer(p.port, 1000, i)
    summary, out = p.summary()
    assert echo.connections == 6 + 1, f"upstream saw {echo.connections} connections"  # +1: readiness probe
    assert summary["errors"]["connect_failed"] == 0, out
    print("6 clients served through the second upstream while the first refused")

    # An upstream given by name: resolved by the library's DNS (the hosts file), connected
    # with Happy Eyeballs (::1 is tried too; the upstream listens on 127.0.0.1 only).
    p = Proxy(upstreams=[f"localhost:{echo.port}"])
    echo_transfer(p.port, 100_000, 9)
    summary, out = p.summary()
    assert sum(summary["errors"].values()) == 0, out
    print("upstream by name (localhost) connected")

    # leastconn: while one client holds a connection to one upstream, the next clients go to
    # the other; round-robin alternates.
    for mode in ("leastconn", "roundrobin"):
        a, b = Upstream("echo"), Upstream("echo")
        p = Proxy("--balance", mode, upstreams=[f"127.0.0.1:{a.port}", f"127.0.0.1:{b.port}"])
        held = p.connect()
        held.sendall(b"h")
        assert recv_exact(held, 1) == b"h"
        time.sleep(0.1)  # the readiness probe's connection has ended
        assert a.open + b.open == 1, (a.open, b.open)
        busy, other = (a, b) if a.open == 1 else (b, a)
        before = (busy.connections, other.connections)
        for i in range(4):
            echo_transfer(p.port, 10, i)
            time.sleep(0.1)  # the proxy has seen the end of the last one
        after = (busy.connections - before[0], other.connections - before[1])
        held.close()
        p.summary()
        want = (0, 4) if mode == "leastconn" else (2, 2)
        assert after == want, f"{mode}: 4 clients went {after} (busy, other), expected {want}"
    print("leastconn sends new clients to the idle upstream; roundrobin alternates")

    # No retry budget and every upstream dead: the client is closed, counted.
    p = Proxy("--retries", 0, upstreams=[f"127.0.0.1:{dead}"])
    s = p.connect()
    assert recv_all(s) == b""
    summary, out = p.summary()
    assert summary["errors"]["connect_failed"] >= 1, out
    dead_sock.close()


def case_dns_ttl():
    """An upstream name is resolved through --dns-server and its addresses are kept for the
    answer's TTL: no lookup before it runs out, the new address after it. A failed lookup
    keeps the last addresses (logged once) within --dns-grace."""
    port = free_port()
    first, second = Upstream("echo", port=port), Upstream("echo", host="127.0.0.2", port=port)
    dns = DnsServer({"up.test": [("127.0.0.1", 2), ("127.0.0.2", 2), ("SERVFAIL", 0)]})
    p = Proxy("--dns-server", dns.address, "--dns-min-ttl", 1, "--dns-grace", 30,
              upstreams=[f"up.test:{port}"])
    while dns.a_queries("up.test") == 0:  # the readiness probe's connection makes the first
        assert p.p.poll() is None, p.output()
        time.sleep(0.01)
    t0 = time.time()
    time.sleep(0.1)
    echo_transfer(p.port, 1000, 1)
    assert dns.a_queries("up.test") == 1, f"{dns.a_queries('up.test')} lookups"
    time.sleep(0.5)
    echo_transfer(p.port, 1000, 2)
    assert time.time() - t0 < 1.9, "too slow to test 'not before the TTL'"
    assert dns.a_queries("up.test") == 1, "re-resolved before the TTL (2 s)"
    assert second.connections == 0 and first.connections >= 3, (first.connections, second.connections)
    time.sleep(max(0.0, t0 + 2.3 - time.time()))
    echo_transfer(p.port, 1000, 3)
    assert dns.a_queries("up.test") == 2, f"{dns.a_queries('up.test')} lookups after the TTL"
    assert second.connections == 1, "the new address was not used after the TTL"
    # The next answer is SERVFAIL: the last address stays in use (grace), one log line.
    time.sleep(2.3)
    for i in range(3):
        echo_transfer(p.port, 100, 10 + i)
    assert second.connections == 4, f"{second.connections} connections to the last good address"
    summary, out = p.summary()
    assert sum(summary["errors"].values()) == 0, out
    assert out.count("keeping its last 1 address(es)") == 1, out
    print(f"up.test: 1 lookup within its 2 s TTL, the new address after it; "
          f"{dns.a_queries('up.test')} lookups in all; a SERVFAIL kept the last address")

    # Bad --dns-server values are refused at start.
    r = subprocess.run([PROXY, "-l", "127.0.0.1:0", "-u", "up.test:1", "--dns-server", "nonsense"],
                       capture_output=True, text=True, timeout=TIMEOUT)
    assert r.returncode == 2 and "--dns-server 'nonsense'" in r.stderr, (r.returncode, r.stderr)


def case_splice():
    """--splice: exact bytes both ways with half-close, byte counts in the stats, the idle
    timeout and a stalled reader, as on the copy path."""
    echo, sink = Upstream("echo"), Upstream("sink")
    p = Proxy("--splice", "--threads", 2, upstreams=[f"127.0.0.1:{echo.port}"])
    q = Proxy("--splice", upstreams=[f"127.0.0.1:{sink.port}"])
    assert "splice" in p.output(), p.output()
    rng = random.Random(19)
    sizes = [1, 2, 1000, 65536, 65537, 10 * 1024 * 1024] + [rng.randint(1, 3_000_000) for _ in range(6)]
    run_parallel([lambda n=n, i=i: echo_transfer(p.port, n, i) for i, n in enumerate(sizes)])
    s = q.connect()
    body = pattern(5_000_000, 4)
    s.sendall((3_000_000).to_bytes(8, "big") + body)
    s.shutdown(socket.SHUT_WR)
    got = recv_all(s)
    s.close()
    assert got[:32] == hashlib.sha256(body).digest() and got[32:] == pattern(3_000_000, 3_000_000)
    summary, out = p.summary()
    assert summary["active"] == 0 and sum(summary["errors"].values()) == 0, out
    assert summary["bytes_up"] == sum(sizes) and summary["bytes_down"] == sum(sizes), out
    summary, out = q.summary()
    assert summary["bytes_up"] == 8 + 5_000_000 and summary["bytes_down"] == 32 + 3_000_000, out
    print(f"splice: {sum(sizes) + 8_000_040} bytes exact over {len(sizes) + 1} connections, counted")

    p = Proxy("--splice", "--idle-timeout", 0.5, upstreams=[f"127.0.0.1:{echo.port}"])
    s = p.connect()
    s.sendall(b"hello")
    assert recv_exact(s, 5) == b"hello"
    t0 = time.time()
    assert closed_by_peer(s)
    took = time.time() - t0
    assert 0.45 <= took < 10, f"idle connection closed after {took:.2f} s"
    summary, out = p.summary()
    assert summary["errors"]["idle_timeout"] == 1, out

    # A client that never reads: the stalled splice out is closed by the idle timeout.
    p = Proxy("--splice", "--idle-timeout", 1, upstreams=[f"127.0.0.1:{sink.port}"])
    s = p.connect()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    s.sendall((40 * 1024 * 1024).to_bytes(8, "big"))
    s.shutdown(socket.SHUT_WR)
    time.sleep(2.5)
    got = 0
    try:
        while True:
            d = s.recv(1 << 20)
            if not d:
                break
            got += len(d)
    except ConnectionResetError:
        pass
    s.close()
    assert got < 40 * 1024 * 1024, "everything arrived: the reader was not slow"
    summary, out = p.summary()
    assert summary["errors"]["idle_timeout"] == 1, out
    print(f"splice: idle client closed after {took:.2f} s; stalled reader closed after {got} bytes")


def blackhole():
    """A listener whose accept queue is full: Linux drops further SYNs (no RST, no SYN-ACK), so
    connects to it hang until their timeout. Returns (listener, fillers)."""
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(0)
    port = lst.getsockname()[1]
    fillers = []
    for _ in range(4):
        c = socket.socket()
        c.setblocking(False)
        c.connect_ex(("127.0.0.1", port))
        fillers.append(c)
    time.sleep(0.2)
    probe = socket.socket()
    probe.settimeout(0.5)
    try:
        probe.connect(("127.0.0.1", port))
        raise AssertionError("blackhole: a connect to a full backlog succeeded")
    except socket.timeout:
        pass
    finally:
        probe.close()
    return lst, fillers


def case_timeouts():
    """Connect timeout against a blackholed upstream; idle timeout on a silent client."""
    lst, fillers = blackhole()
    p = Proxy("--connect-timeout", 0.5, "--retries", 0, upstreams=[f"127.0.0.1:{lst.getsockname()[1]}"])
    s = p.connect()
    t0 = time.time()
    assert recv_all(s) == b""
    took = time.time() - t0
    assert 0.4 <= took < 10, f"closed after {took:.2f} s"
    summary, out = p.summary()
    assert summary["errors"]["connect_timeout"] >= 1, out
    print(f"blackholed upstream: client closed after {took:.2f} s (connect timeout 0.5 s)")

    echo = Upstream("echo")
    p = Proxy("--idle-timeout", 0.5, upstreams=[f"127.0.0.1:{echo.port}"])
    s = p.connect()
    s.sendall(b"hello")
    assert recv_exact(s, 5) == b"hello"
    t0 = time.time()
    try:
        assert recv_all(s) == b""
    except ConnectionResetError:
        pass
    took = time.time() - t0
    assert 0.45 <= took < 10, f"idle connection closed after {took:.2f} s"
    summary, out = p.summary()
    assert summary["errors"]["idle_timeout"] >= 1, out
    print(f"idle client closed after {took:.2f} s (idle timeout 0.5 s)")

    # Lifetime: a busy connection is still closed at --max-lifetime.
    p = Proxy("--max-lifetime", 1, upstreams=[f"127.0.0.1:{echo.port}"])
    s = p.connect()
    t0 = time.time()
    closed = False
    while time.time() - t0 < 10:
        try:
            s.sendall(b"x")
            if s.recv(1) == b"":
                closed = True
                break
        except OSError:
            closed = True
            break
        time.sleep(0.05)
    took = time.time() - t0
    assert closed and took >= 0.9, f"busy connection: closed={closed} after {took:.2f} s"
    summary, out = p.summary()
    assert summary["errors"]["lifetime"] == 1, out
    print(f"busy connection closed at its lifetime after {took:.2f} s (max lifetime 1 s)")


def case_max_conns():
    """Beyond --max-conns the client is closed at once; when a slot frees, new clients work.
    The limit and the upstream come from a --config file (TOML)."""
    echo = Upstream("echo")
    cfg = tempfile.NamedTemporaryFile("w", suffix=".toml")
    cfg.write(f'# fibers-proxy\nupstream = ["127.0.0.1:{echo.port}"]\nmax-conns = 2\n')
    cfg.flush()
    stats_port = free_port()
    p = Proxy("--config", cfg.name, "--stats-listen", f"127.0.0.1:{stats_port}")
    held = []
    for i in range(2):
        s = p.connect()
        s.sendall(b"ping")
        assert recv_exact(s, 4) == b"ping"
        held.append(s)
    extra = p.connect()
    try:
        got = extra.recv(10)
    except ConnectionResetError:
        got = b""
    assert got == b"", "third connection was served"
    held.pop().close()
    time.sleep(0.3)  # the proxy notices the close
    echo_transfer(p.port, 100, 1)
    for s in held + [extra]:
        s.close()
    # The stats endpoint answers with the stats line and the JSON summary.
    st = socket.create_connection(("127.0.0.1", stats_port), timeout=TIMEOUT)
    text = recv_all(st).decode()
    st.close()
    line, js = text.splitlines()
    assert "refused_max_conns=" in line and json.loads(js)["errors"]["refused_max_conns"] >= 1, text
    summary, out = p.summary()
    assert summary["errors"]["refused_max_conns"] >= 1, out
    print("third connection refused at accept; served again once one closed")


def make_pki(d):
    """A CA and a leaf for localhost / 127.0.0.1, signed by it, with the openssl CLI; a second
    leaf, for SNI: b.test and *.wild.test."""
    make_ca(d, "ca", "proxy test CA")
    make_leaf(d, "leaf", "localhost", "DNS:localhost,IP:127.0.0.1")
    make_leaf(d, "b", "b.test", "DNS:b.test,DNS:*.wild.test")


def leaf_args(d, name="leaf"):
    """The proxy's flags to terminate TLS with make_pki's certificate `name`."""
    return ["--tls-cert", f"{d}/{name}.pem", "--tls-key", f"{d}/{name}.key"]


def case_tls():
    """Termination (a verifying client → proxy A with the leaf → plain echo) and origination
    (plain client → proxy B --upstream-tls --upstream-ca → proxy A); a wrong name fails."""
    with tempfile.TemporaryDirectory() as d:
        make_pki(d)
        echo = Upstream("echo")
        a = Proxy(*leaf_args(d),
                  upstreams=[f"127.0.0.1:{echo.port}"])
        ctx = ssl.create_default_context(cafile=f"{d}/ca.pem")
        for size in (1, 100_000, 3_000_000):
            raw = socket.create_connection(("127.0.0.1", a.port), timeout=TIMEOUT)
            s = ctx.wrap_socket(raw, server_hostname="localhost")
            data = pattern(size, size)
            got = bytearray()
            # One thread only: Python's SSLSocket is not safe to read and write concurrently.
            for i in range(0, size, 16384):
                chunk = data[i:i + 16384]
                s.sendall(chunk)
                got += recv_exact(s, len(chunk))
            assert bytes(got) == data, f"TLS echo of {size}: {len(got)} bytes"
            s.close()
        print("TLS termination: verified handshake, 3 transfers exact")

        # Several certificates: chosen by SNI; the first is the default.
        m = Proxy(*leaf_args(d), *leaf_args(d, "b"),
                  upstreams=[f"127.0.0.1:{echo.port}"])
        for name, want in (("b.test", "b.test"), ("x.wild.test", "b.test"), ("localhost", "localhost")):
            raw = socket.create_connection(("127.0.0.1", m.port), timeout=TIMEOUT)
            s = ctx.wrap_socket(raw, server_hostname=name)  # verifies the name
            cn = dict(x[0] for x in s.getpeercert()["subject"])["commonName"]
            assert cn == want, f"SNI {name}: certificate {cn}"
            s.sendall(b"sni")
            assert recv_exact(s, 3) == b"sni"
            s.close()
        summary, out = m.summary()
        assert "b.test, *.wild.test" in out, out
        print("TLS termination with two certificates: each chosen by SNI, the first by default")

        b = Proxy("--upstream-tls", "--upstream-ca", f"{d}/ca.pem", "--upstream-sni", "localhost",
                  upstreams=[f"127.0.0.1:{a.port}"])
        for size in (1, 2_000_000):
            s = b.connect()
            data = pattern(size, size + 1)
            got = bytearray()
            t = threading.Thread(target=lambda: got.extend(recv_exact(s, size)))
            t.start()
            s.sendall(data)
            t.join(TIMEOUT)
            assert bytes(got) == data, f"TLS origination echo of {size}: {len(got)} bytes"
            s.close()
        # Verification is on: a name the certificate does not carry is refused.
        c = Proxy("--upstream-tls", "--upstream-ca", f"{d}/ca.pem", "--upstream-sni", "other.test",
                  "--retries", 0, upstreams=[f"127.0.0.1:{a.port}"])
        s = c.connect()
        s.sendall(b"x")
        assert closed_by_peer(s), "unverified upstream was used"
        summary, out = c.summary()
        assert summary["errors"]["tls_upstream"] >= 1, out
        for proxy in (b, a):
            summary, out = proxy.summary()
            assert summary["errors"]["other"] == 0, out
        print("TLS origination: verified against the test CA; wrong name refused")


def case_sigterm_drain():
    """SIGTERM mid-transfer: no new connections, the transfer in flight completes whole, the
    proxy then exits 0."""
    echo = Upstream("echo")
    p = Proxy("--drain-timeout", 20, upstreams=[f"127.0.0.1:{echo.port}"])
    s = p.connect()
    size = 4 * 1024 * 1024
    done = []
    t = threading.Thread(target=lambda: (echo_transfer(s, size, 7, chunk=65536, pause=0.02),
                                         done.append(True)))
    t.start()
    time.sleep(0.3)  # transfer under way (~1.3 s in total)
    p.p.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    try:
        socket.create_connection(("127.0.0.1", p.port), timeout=2).close()
        refused = False
    except OSError:
        refused = True
    t.join(TIMEOUT * 3)
    assert done, "transfer did not complete"
    rc = p.p.wait(timeout=TIMEOUT)
    assert rc == 0, f"exit {rc}: {p.output()}"
    assert refused, "a connection was accepted after SIGTERM"
    assert "draining 1 connection" in p.output(), p.output()
    print("SIGTERM: new connections refused, the 4 MiB transfer in flight completed, exit 0")

    # Past the drain deadline, what is left is closed (counted as drained) and the proxy exits.
    p = Proxy("--drain-timeout", 0.3, upstreams=[f"127.0.0.1:{echo.port}"])
    s = p.connect()
    s.sendall(b"hi")
    assert recv_exact(s, 2) == b"hi"
    summary, out = p.summary()
    assert summary["errors"]["drained"] == 1 and summary["active"] == 0, out
    assert closed_by_peer(s), "connection left open after the drain"
    print("an idle connection outliving the drain deadline is closed; exit 0")


def case_slowloris():
    """A client trickling one byte every 0.3 s to an upstream that waits for the whole request
    is closed by the minimum-rate rule (long before the idle timeout it keeps resetting),
    while a normal client is served meanwhile; a light client whose upstream answers (a
    keep-alive ping) is left alone. The proxy's RSS stays bounded while the trickle lasts."""
    sink, echo = Upstream("sink"), Upstream("echo")
    p = Proxy("--min-rate", 100, "--rate-window", 1, "--idle-timeout", 60,
              upstreams=[f"127.0.0.1:{sink.port}"])
    q = Proxy("--min-rate", 100, "--rate-window", 1, "--idle-timeout", 60,
              upstreams=[f"127.0.0.1:{echo.port}"])
    rss0 = rss_peak = rss_kib(p.p.pid)
    slow = p.connect()
    slow.sendall((1).to_bytes(8, "big"))  # the sink's header: then one byte per 0.3 s
    t0 = time.time()
    closed_after = None
    good = q.connect()
    pinger = q.connect()
    rounds = 0
    while time.time() - t0 < 15:
        try:
            slow.sendall(b"x")
        except OSError:
            closed_after = time.time() - t0
            break
        # The normal client: round-trips of 4 KiB meanwhile; the pinger: 2 bytes, answered.
        msg = pattern(4096, rounds)
        good.sendall(msg)
        assert recv_exact(good, 4096) == msg
        pinger.sendall(b"p.")
        assert recv_exact(pinger, 2) == b"p."
        rounds += 1
        rss_peak = max(rss_peak, rss_kib(p.p.pid))
        slow.settimeout(0.3)
        try:
            if slow.recv(4096) == b"":
                closed_after = time.time() - t0
                break
        except socket.timeout:
            pass
        except OSError:
            closed_after = time.time() - t0
            break
        time.sleep(0.3)
    assert closed_after is not None, "slowloris client still open after 15 s"
    assert rss_peak - rss0 < 16 * 1024, f"proxy RSS grew by {rss_peak - rss0} KiB for one trickling client"
    good.settimeout(TIMEOUT)
    msg = pattern(1000, 99)
    good.sendall(msg)
    assert recv_exact(good, 1000) == msg, "normal client not served after the slow one"
    for _ in range(8):  # several more windows of light, answered traffic
        time.sleep(0.3)
        pinger.sendall(b"p.")
        assert recv_exact(pinger, 2) == b"p.", "the answered light client was closed"
    for s in (good, slow, pinger):
        s.close()
    summary, out = p.summary()
    assert summary["errors"]["slow"] == 1, out
    summary, out = q.summary()
    assert summary["errors"]["slow"] == 0, out
    print(f"slowloris closed after {closed_after:.2f} s (window 1 s); "
          f"normal client made {rounds + 1} round-trips meanwhile; proxy RSS +{rss_peak - rss0} KiB")


def case_emfile():
    """RLIMIT_NOFILE lowered: clients beyond the fd table wait in the backlog while the proxy
    backs off (low CPU, one log line per interval); once fds free up they are served."""
    echo = Upstream("echo")
    p = Proxy("--accept-backoff", 0.1, "--max-conns", 100000, prefix=["prlimit", "--nofile=40"],
              upstreams=[f"127.0.0.1:{echo.port}"])
    # 40 clients: far more than 40 fds' worth of proxied connections (2 fds each).
    served, cpu = check_backoff_at_fd_limit(p, p.connect, "proxy")
    time.sleep(0.5)
    echo_transfer(p.port, 100_000, 5)  # served again
    summary, out = p.summary()
    assert summary["errors"]["accept_emfile"] >= 1, out
    logs = out.count("accept: Too many open files")
    assert 1 <= logs <= 3, f"{logs} EMFILE messages: {out}"
    print(f"at the fd limit: {served} connections served, the rest queued; proxy CPU {cpu:.1%}; "
          f"served again after; {logs} log line(s)")


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def case_slow_reader():
    """A client that never reads while its upstream sends 40 MB: the proxy buffers no more
    than the sockets do (RSS stays bounded), closes it after the idle timeout of the stalled
    write, and serves another client meanwhile."""
    sink, echo = Upstream("sink"), Upstream("echo")
    p = Proxy("--idle-timeout", 1.5, upstreams=[f"127.0.0.1:{sink.port}"])
    q = Proxy(upstreams=[f"127.0.0.1:{echo.port}"])
    rss0 = rss_kib(p.p.pid)
    s = p.connect()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    s.sendall((40 * 1024 * 1024).to_bytes(8, "big"))
    s.shutdown(socket.SHUT_WR)
    time.sleep(0.8)  # the upstream writes until every buffer on the way is full
    rss = rss_kib(p.p.pid)
    echo_transfer(q.port, 1_000_000, 3)
    time.sleep(2.0)  # past the idle timeout of the stalled write
    got = 0
    s.settimeout(TIMEOUT)
    try:
        while True:
            d = s.recv(1 << 20)
            if not d:
                break
            got += len(d)
    except ConnectionResetError:
        pass
    s.close()
    assert got < 40 * 1024 * 1024, "everything arrived: the reader was not slow"
    assert rss - rss0 < 16 * 1024, f"proxy RSS grew by {rss - rss0} KiB for one stalled client"
    summary, out = p.summary()
    assert summary["errors"]["idle_timeout"] == 1, out
    print(f"stalled reader: proxy RSS +{rss - rss0} KiB, closed by the idle timeout after "
          f"{got} of {40 << 20} bytes; another client served meanwhile")


def wait_output(proxy, text, timeout=10):
    t0 = time.time()
    while text not in proxy.output():
        assert time.time() - t0 < timeout, f"no '{text}' in: {proxy.output()}"
        time.sleep(0.05)


def case_sighup():
    """SIGHUP re-reads the --config file: new connections follow it, a connection in flight is
    not dropped; a bad file keeps the configuration in force."""
    a, b = Upstream("echo"), Upstream("echo")
    cfg = tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False)
    cfg.write(f'upstream = ["127.0.0.1:{a.port}"]\n')
    cfg.close()
    p = Proxy("--config", cfg.name)
    c1 = p.connect()
    c1.sendall(b"one")
    assert recv_exact(c1, 3) == b"one"
    with open(cfg.name, "w") as f:
        f.write(f'upstream = ["127.0.0.1:{b.port}"]\nidle-timeout = 30\n')
    p.p.send_signal(signal.SIGHUP)
    wait_output(p, "configuration reloaded")
    b_before = b.connections
    echo_transfer(p.port, 5000, 1)
    assert b.connections == b_before + 1, "new connection did not go to the new upstream"
    c1.sendall(b"still")
    assert recv_exact(c1, 5) == b"still", "connection in flight broken by the reload"
    assert a.open == 1
    with open(cfg.name, "w") as f:
        f.write("no-such-option = 1\n")
    p.p.send_signal(signal.SIGHUP)
    wait_output(p, "not reloaded")
    echo_transfer(p.port, 100, 2)
    assert b.connections == b_before + 2, "a bad file changed the configuration"
    c1.close()
    summary, out = p.summary()
    assert sum(summary["errors"].values()) == 0, out
    os.unlink(cfg.name)
    print("SIGHUP: new connections follow the new file, the one in flight stays; a bad file is refused")


def case_burst():
    """2000 clients connect at once (non-blocking connects in one burst), each sends 64 bytes
    and reads them back through the proxy (2 threads) in front of fibers-echo: every one is
    served, nothing is reset, and the proxy's memory stays bounded."""
    import resource
    import selectors
    n = 2000
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 3 * n + 500  # the proxy needs 2 fds per client, fibers-echo 1 (they inherit this)
    if hard != resource.RLIM_INFINITY and hard < want:
        print(f"skipped: RLIMIT_NOFILE hard limit {hard} < {want}")
        sys.exit(77)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), hard))
    echo_exe = os.path.join(os.path.dirname(os.path.dirname(PROXY)), "fibers-echo", "fibers-echo")
    up_port = free_port()
    echo = subprocess.Popen([echo_exe, "serve", "--port", str(up_port), "--stats-interval", "0"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    RUNNING.append(echo)
    p = Proxy("--threads", 2, upstreams=[f"127.0.0.1:{up_port}"])
    rss0 = rss_kib(p.p.pid)
    sel = selectors.DefaultSelector()
    socks = []
    for i in range(n):
        c = socket.socket()
        c.setblocking(False)
        c.connect_ex(("127.0.0.1", p.port))
        socks.append(c)
        sel.register(c, selectors.EVENT_WRITE, i)
    got = {i: bytearray() for i in range(n)}
    msgs = [pattern(64, i) for i in range(n)]
    done = 0
    deadline = time.time() + 60
    while done < n and time.time() < deadline:
        for key, ev in sel.select(timeout=1):
            i, c = key.data, key.fileobj
            if ev & selectors.EVENT_WRITE:
                c.send(msgs[i])
                sel.modify(c, selectors.EVENT_READ, i)
            else:
                d = c.recv(4096)
                assert d, f"client {i}: closed after {len(got[i])} bytes"
                got[i] += d
                if len(got[i]) == 64:
                    assert bytes(got[i]) == msgs[i], f"client {i}: wrong bytes"
                    sel.unregister(c)
                    done += 1
    assert done == n, f"{done} of {n} clients served within 60 s"
    rss = rss_kib(p.p.pid)
    for c in socks:
        c.close()
    summary, out = p.summary()
    echo.terminate()
    echo.wait()
    assert summary["connections"] == n + 1, out  # + the readiness probe
    assert sum(summary["errors"].values()) == 0, out
    assert rss - rss0 < 64 * n, f"proxy RSS grew {rss - rss0} KiB for {n} connections"
    print(f"{n} clients at once: all served; proxy RSS {rss0} -> {rss} KiB "
          f"({(rss - rss0) / n:.1f} KiB per connection)")


def served(port):
    """One client: sends 4 bytes and half-closes. True if they came back, False if the proxy
    closed it instead."""
    s = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    try:
        s.sendall(b"ping")
        s.shutdown(socket.SHUT_WR)
        return recv_all(s) == b"ping"
    except socket.timeout:
        raise
    except OSError:  # reset, or closed before our send or shutdown (EPIPE, ENOTCONN)
        return False
    finally:
        s.close()


def stats_json(port):
    """The JSON object a --stats-listen port answers with."""
    st = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    text = recv_all(st).decode()
    st.close()
    return json.loads(text.splitlines()[1])


def case_backoff():
    """--retries 0, round-robin over a refusing upstream and a live one: the first pick of the
    dead one (the readiness probe's) fails, then it is skipped for --upstream-backoff, so every
    client within the back-off is served and connect_failed stays 1 (without the back-off every
    other client would be refused). Past the back-off it is tried again: one more failure and
    another back-off; one log line per failure spell."""
    dead_sock, dead = refusing_port()
    echo = Upstream("echo")
    stats_port = free_port()
    backoff = 1.5
    t0 = time.time()
    p = Proxy("--retries", 0, "--upstream-backoff", backoff, "--stats-listen", f"127.0.0.1:{stats_port}",
              upstreams=[f"127.0.0.1:{dead}", f"127.0.0.1:{echo.port}"])
    ready = time.time()
    within = [served(p.port) for _ in range(8)]
    failed = stats_json(stats_port)["errors"]["connect_failed"]
    assert time.time() - t0 < backoff, "too slow to test 'within the back-off'"
    assert all(within) and failed == 1, \
        f"within the back-off: {within.count(False)} of 8 clients refused, connect_failed={failed}"
    # The probe's failure came after `ready` at the latest (by far less than 0.3 s).
    time.sleep(max(0.0, ready + backoff + 0.3 - time.time()))
    # Round-robin: one of two consecutive clients picks the dead upstream, tried again now.
    after = [served(p.port) for _ in range(2)]
    failed = stats_json(stats_port)["errors"]["connect_failed"]
    assert after.count(False) == 1 and failed == 2, \
        f"past the back-off: served {after}, connect_failed={failed}"
    again = [served(p.port) for _ in range(4)]
    assert all(again), f"back-off not renewed after the second failure: served {again}"
    summary, out = p.summary()
    assert summary["errors"]["connect_failed"] == 2, out
    logs = out.count(f"Connection refused; skipping it for {backoff:.1f} s")
    assert logs == 2, f"{logs} back-off messages: {out}"
    dead_sock.close()
    print(f"dead upstream: 1 connect failure for the probe + 8 clients within the back-off "
          f"({backoff} s), 1 more after it; {logs} log lines")


TLS_RECORD_MAX = 48 * 1024  # more than any record or SSLv2 hello length a garbage header can claim


def garbage_client(port, seed):
    """Sends random bytes as if they were a ClientHello; returns the seconds until the proxy
    closed the connection (an alert may come first)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    t0 = time.time()
    try:
        # Enough bytes for any length a random header claims (up to 32 KiB for an SSLv2-style
        # hello), so the handshake fails on the bytes, not on a wait for more of them.
        s.sendall(pattern(TLS_RECORD_MAX, seed))
    except (ConnectionResetError, BrokenPipeError):
        pass  # closed while we were still sending: what we want
    try:
        while s.recv(65536):
            pass
    except ConnectionResetError:
        pass
    except socket.timeout:
        raise AssertionError(f"garbage client {seed} still open after {TIMEOUT} s")
    finally:
        s.close()
    return time.time() - t0


def case_garbage():
    """200 clients (4 waves of 50 at once) send random bytes to a TLS-terminating proxy: each
    handshake fails and the connection is closed at once (the handshake deadline is 10 s),
    counted as tls_client, never reaching the upstream; the proxy's RSS stays bounded and a
    good TLS client is served throughout. A plain proxy forwards every byte value exactly."""
    with tempfile.TemporaryDirectory() as d:
        make_pki(d)
        echo = Upstream("echo")
        p = Proxy(*leaf_args(d), "--connect-timeout", 10,
                  upstreams=[f"127.0.0.1:{echo.port}"])
        ctx = ssl.create_default_context(cafile=f"{d}/ca.pem")
        good = ctx.wrap_socket(socket.create_connection(("127.0.0.1", p.port), timeout=TIMEOUT),
                               server_hostname="localhost")
        rounds, stop, errors = [0], threading.Event(), []

        def keep_serving():
            try:
                while not stop.is_set():
                    msg = pattern(1000, rounds[0])
                    good.sendall(msg)
                    assert recv_exact(good, 1000) == msg, "good client: wrong echo"
                    rounds[0] += 1
            except BaseException as e:  # noqa: B902 - reported below
                errors.append(e)

        t = threading.Thread(target=keep_serving)
        t.start()
        rss0, rss = rss_kib(p.p.pid), []
        waves, per_wave, slowest = 4, 50, 0.0
        for w in range(waves):
            before = rounds[0]
            took = []
            run_parallel([lambda i=i: took.append(garbage_client(p.port, w * per_wave + i))
                          for i in range(per_wave)])
            slowest = max([slowest] + took)
            rss.append(rss_kib(p.p.pid))
            assert not errors and rounds[0] > before, f"wave {w}: good client stalled ({errors})"
        stop.set()
        t.join(TIMEOUT)
        good.close()
        assert not errors, errors
        n = waves * per_wave
        assert slowest < 3, f"a garbage client was closed only after {slowest:.2f} s"
        # A leak per connection would show between the first wave and the last.
        assert rss[-1] - rss[0] < 2 * 1024 and max(rss) - rss0 < 8 * 1024, \
            f"proxy RSS {rss0} KiB, then {rss} KiB after each wave of {per_wave}"
        summary, out = p.summary()
        # + 1: the readiness probe of Proxy() closes without a handshake.
        assert summary["errors"]["tls_client"] == n + 1, out
        assert summary["errors"]["other"] == 0 and summary["active"] == 0, out
        assert echo.connections == 1, f"upstream saw {echo.connections} connections: garbage got through"
        print(f"{n} garbage clients closed (slowest after {slowest:.2f} s), tls_client={n + 1}; "
              f"RSS {rss0} -> {max(rss)} KiB; the good client made {rounds[0]} round-trips meanwhile")

    # Plain TCP: nothing is interpreted. Every byte value, runs of NUL and 0xff, and what looks
    # like a TLS record or an HTTP request, both ways exactly.
    q = Proxy(upstreams=[f"127.0.0.1:{echo.port}"])
    data = (bytes(range(256)) * 64 + b"\x00" * 70_000 + b"\xff" * 70_000 + b"\x16\x03\x01\xff\xff"
            + b"GET / HTTP/1.1\r\n\r\n\x00" + pattern(300_000, 77) + b"\x00")
    echo_exact(q.port, data, chunk=7777)
    summary, out = q.summary()
    assert summary["bytes_up"] == len(data) and summary["bytes_down"] == len(data), out
    assert sum(summary["errors"].values()) == 0, out
    print(f"plain proxy: {len(data)} binary bytes (all 256 values, NUL and 0xff runs) exact both ways")


STATS_LINE = re.compile(r"^fibers-proxy: active=(\d+) total=(\d+) bytes_up=(\d+) bytes_down=(\d+)(.*)$",
                        re.MULTILINE)


def stats_lines(proxy):
    """The stats lines printed so far, as dicts (errors: only the kinds that happened)."""
    out = []
    for m in STATS_LINE.finditer(proxy.output()):
        errors = dict(e.split("=") for e in m.group(5).split())
        out.append({"active": int(m.group(1)), "total": int(m.group(2)), "bytes_up": int(m.group(3)),
                    "bytes_down": int(m.group(4)), "errors": {k: int(v) for k, v in errors.items()}})
    return out


def wait_stats_line(proxy, want, timeout=5):
    """Waits for a stats line with the fields of `want`; returns the lines so far."""
    t0 = time.time()
    while True:
        lines = stats_lines(proxy)
        if any(all(line[k] == v for k, v in want.items()) for line in lines):
            return lines
        assert time.time() - t0 < timeout, f"no stats line with {want}: {proxy.output()}"
        time.sleep(0.05)


def case_stats_line():
    """--stats-interval 0.3: a stats line every interval, changed or not (a heartbeat), with
    active/total connections, bytes each way and errors by kind, its counts moving with the
    traffic."""
    echo = Upstream("echo")
    p = Proxy("--idle-timeout", 0.5, stats_interval=0.3, upstreams=[f"127.0.0.1:{echo.port}"])
    wait_stats_line(p, {"total": 1, "active": 0, "bytes_up": 0, "errors": {}})  # the probe
    echo_transfer(p.port, 1000, 1)
    s = p.connect()  # silent: closed by the idle timeout, open across at least one line
    assert closed_by_peer(s)
    s.close()
    echo_transfer(p.port, 5000, 2)
    final = {"active": 0, "total": 4, "bytes_up": 6000, "bytes_down": 6000, "errors": {"idle_timeout": 1}}
    lines = wait_stats_line(p, final)
    assert any(line["active"] == 1 for line in lines), f"no line showed the silent client: {lines}"
    for a, b in zip(lines, lines[1:]):
        assert b["total"] >= a["total"] and b["bytes_up"] >= a["bytes_up"], f"counts went back: {a} -> {b}"
    # Nothing happens now: the line goes on every interval, the same each time.
    n = len(lines)
    time.sleep(1.0)
    quiet = stats_lines(p)[n:]
    assert len(quiet) >= 2 and all(line == final for line in quiet), \
        f"{len(quiet)} lines in 1 s with nothing happening (interval 0.3 s): {quiet}"
    summary, out = p.summary()
    assert (summary["connections"], summary["bytes_up"], summary["errors"]["idle_timeout"]) == (4, 6000, 1), out
    print(f"{len(lines)} stats lines while the counts moved, then {len(quiet)} in 1 s with nothing happening")


def case_two_listen():
    """Two --listen addresses (127.0.0.1 and 127.0.0.2, port 0: a free one) on 2 threads: both
    accept and are served at once; both named in the start-up line."""
    echo = Upstream("echo")
    p = Proxy("--listen", "127.0.0.2:0", "--threads", 2, upstreams=[f"127.0.0.1:{echo.port}"])
    wait_output(p, "listening on")
    m = re.search(r"listening on 127\.0\.0\.1:(\d+), 127\.0\.0\.2:(\d+) \(2 threads\)", p.output())
    assert m and int(m.group(1)) == p.port, p.output()
    second = int(m.group(2))

    def transfer(host, port, seed):
        echo_exact(socket.create_connection((host, port), timeout=TIMEOUT), pattern(200_000, seed))

    run_parallel([lambda i=i: transfer("127.0.0.1", p.port, i) for i in range(4)]
                 + [lambda i=i: transfer("127.0.0.2", second, 10 + i) for i in range(4)])
    summary, out = p.summary()
    assert summary["connections"] == 8 + 1, out  # + the readiness probe
    assert summary["bytes_up"] == 8 * 200_000 and sum(summary["errors"].values()) == 0, out
    print(f"two listen addresses (ports {p.port} and {second}): 4 clients each served at once")


def still_open(s):
    """True if the peer has neither closed nor reset `s` (nothing to read is fine)."""
    s.setblocking(False)
    try:
        return s.recv(1) != b""
    except BlockingIOError:
        return True
    except ConnectionResetError:
        return False
    finally:
        s.settimeout(TIMEOUT)


def case_silent_clients():
    """Clients that connect and send nothing. Plain: closed by the idle timeout (the upstream is
    connected and silent too), counted, while a client trading messages every 0.1 s across
    that time is left alone. TLS: one that never starts its handshake is closed at the
    handshake deadline (--connect-timeout), counted as tls_client, its upstream never
    contacted, while a TLS client is served."""
    echo = Upstream("echo")
    p = Proxy("--idle-timeout", 0.5, upstreams=[f"127.0.0.1:{echo.port}"])
    silent = [p.connect() for _ in range(3)]
    t0 = time.time()
    busy = p.connect()
    for i in range(10):  # 1 s: past the silent ones' idle timeout
        msg = pattern(100, i)
        busy.sendall(msg)
        assert recv_exact(busy, 100) == msg, "the busy client was not served"
        if i == 2:  # 0.2-0.3 s in: not yet
            assert all(still_open(s) for s in silent), f"a silent client closed after {time.time() - t0:.2f} s"
        time.sleep(0.1)
    for s in silent:
        assert closed_by_peer(s), "a silent client is still open"
        s.close()
    echo_transfer(busy, 1000, 99)  # still served after the silent ones were closed
    summary, out = p.summary()
    assert summary["errors"]["idle_timeout"] == 3 and summary["connections"] == 3 + 1 + 1, out
    print("plain: 3 silent clients closed by the idle timeout (0.5 s) while another was served")

    with tempfile.TemporaryDirectory() as d:
        make_pki(d)
        t = Proxy(*leaf_args(d), "--connect-timeout", 0.5,
                  upstreams=[f"127.0.0.1:{echo.port}"])
        upstream_before = echo.connections
        silent = t.connect()
        t0 = time.time()
        ctx = ssl.create_default_context(cafile=f"{d}/ca.pem")
        good = ctx.wrap_socket(socket.create_connection(("127.0.0.1", t.port), timeout=TIMEOUT),
                               server_hostname="localhost")
        took, last = None, 30
        for i in range(30):  # until two exchanges past the silent client's close (3 s at most)
            good.sendall(b"tls" + bytes([i]))
            assert recv_exact(good, 4) == b"tls" + bytes([i]), "the TLS client was not served"
            if took is None and not still_open(silent):
                took, last = time.time() - t0, i + 2
            if i == last:
                break
            time.sleep(0.1)
        silent.close()
        good.close()
        assert took is not None and 0.4 <= took < 3, f"the client that never handshook: closed after {took} s"
        summary, out = t.summary()
        # + 1: the readiness probe of Proxy() closes without a handshake.
        assert summary["errors"]["tls_client"] == 1 + 1 and summary["errors"]["idle_timeout"] == 0, out
        assert echo.connections == upstream_before + 1, "an upstream was connected for the silent TLS client"
        print(f"TLS: a client that never handshook closed after ~{took:.1f} s (deadline 0.5 s) "
              f"while another was served")


class TlsBioClient:
    """A TLS client over memory BIOs: unlike ssl.SSLSocket it can send close_notify and go on
    reading (a TLS half-close). One thread."""

    def __init__(self, port, ctx, name):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.inc, self.out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = ctx.wrap_bio(self.inc, self.out, server_hostname=name)
        self._until_done(self.tls.do_handshake)

    def _until_done(self, op):
        while True:
            try:
                result = op()
                self._flush()
                return result
            except ssl.SSLWantReadError:
                self._flush()
                d = self.sock.recv(65536)
                if d:
                    self.inc.write(d)
                else:
                    self.inc.write_eof()

    def _flush(self):
        data = self.out.read()
        if data:
            self.sock.sendall(data)

    def send(self, data):
        for i in range(0, len(data), 16384):
            self._until_done(lambda i=i: self.tls.write(data[i:i + 16384]))

    def close_notify(self):
        """Our end of stream; reading goes on."""
        try:
            self.tls.unwrap()  # sends close_notify, then would wait for the peer's
        except ssl.SSLWantReadError:
            pass
        self._flush()

    def read_to_end(self):
        """Everything until the peer's close_notify (a bare TCP close is an SSLEOFError)."""
        got = bytearray()
        while True:
            try:
                d = self._until_done(lambda: self.tls.read(65536))
            except ssl.SSLZeroReturnError:
                return bytes(got)
            if not d:
                return bytes(got)
            got += d

    def close(self):
        self.sock.close()


def case_tls_half_close():
    """Through a TLS-terminating proxy to the sink: the client sends its request and then
    close_notify only (the connection stays open); the upstream sees its end of stream, only
    then answers, and the answer arrives whole, ended by the proxy's close_notify."""
    with tempfile.TemporaryDirectory() as d:
        make_pki(d)
        sink = Upstream("sink")
        p = Proxy(*leaf_args(d),
                  upstreams=[f"127.0.0.1:{sink.port}"])
        ctx = ssl.create_default_context(cafile=f"{d}/ca.pem")
        for up, down in ((0, 1), (100_000, 2_000_000), (1_000_000, 5)):
            c = TlsBioClient(p.port, ctx, "localhost")
            body = pattern(up, up)
            c.send(down.to_bytes(8, "big") + body)
            c.close_notify()
            got = c.read_to_end()
            c.close()
            assert got[:32] == hashlib.sha256(body).digest(), f"{up} B up: the upstream saw other bytes"
            assert got[32:] == pattern(down, down), f"answer: {len(got) - 32} of {down} bytes"
        summary, out = p.summary()
        assert summary["errors"]["other"] == 0 and summary["errors"]["reset"] == 0, out
        print("TLS half-close: 3 requests ended by close_notify, each answer whole after it")


CASES = {name[5:]: fn for name, fn in globals().items() if name.startswith("case_")}


def main():
    global PROXY
    PROXY = os.path.abspath(sys.argv[1])
    which = sys.argv[2] if len(sys.argv) > 2 else "all"
    names = list(CASES) if which == "all" else [which]
    for n in names:
        t0 = time.time()
        CASES[n]()
        print(f"ok {n} ({time.time() - t0:.1f} s)")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
