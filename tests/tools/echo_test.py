#!/usr/bin/env python3
"""fibers-echo end to end: real `serve` and `load` processes on loopback, with a CA and a leaf
certificate made here by the openssl CLI and helper servers written here.

    echo_test.py FIBERS_ECHO CASE      one case (meson registers each as its own test)
    echo_test.py FIBERS_ECHO all       every case

Timing is asserted loosely only: the paced rate within 50-150 % of the target, timeouts
between the configured value and many times it."""

import json
import os
import re
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

from tool_test_util import (TIMEOUT, ToolProcess, check_backoff_at_fd_limit, make_ca, make_leaf,
                            pattern, recv_exact)

ECHO = None


def closed_by_peer(s):
    """True when the peer closed (end of stream, or a reset because data was left unread)."""
    try:
        return s.recv(65536) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True


class Server(ToolProcess):
    """fibers-echo serve on 127.0.0.1, a free port; `prefix` runs it under e.g. prlimit."""

    def __init__(self, *args, prefix=()):
        cmd = list(prefix) + [ECHO, "serve", "--port", "0", "--stats-interval", "0"]
        cmd += [str(a) for a in args]
        super().__init__(cmd)
        deadline = time.time() + TIMEOUT
        while True:
            m = re.search(r"serving on 127\.0\.0\.1:(\d+)", self.output())
            if m:
                self.port = int(m.group(1))
                return
            if self.p.poll() is not None:
                raise AssertionError(f"serve exited at start: {self.output()}")
            if time.time() > deadline:
                raise AssertionError(f"serve printed no address: {self.output()}")
            time.sleep(0.05)

    def connect(self):
        return socket.create_connection(("127.0.0.1", self.port), timeout=TIMEOUT)


def load(port, *args, json_out=True, expect_rc=0):
    """Runs fibers-echo load; returns (parsed JSON or stdout, stderr)."""
    cmd = [ECHO, "load", "--port", str(port)] + [str(a) for a in args]
    if json_out:
        cmd.append("--json")
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert r.returncode == expect_rc, f"{cmd}: exit {r.returncode}, wanted {expect_rc}\n{r.stdout}{r.stderr}"
    if not json_out:
        return r.stdout, r.stderr
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 1, f"--json printed more than one line: {r.stdout}"
    return json.loads(lines[0]), r.stderr


def check_summary(j, conns, size):
    """The fields of a clean run, with sane values."""
    for key in ("rt_per_s", "mb_per_s", "p50_us", "p99_us", "p999_us", "max_us", "errors",
                "errors_total", "conns", "connected", "duration_s", "round_trips", "late"):
        assert key in j, f"no '{key}' in {j}"
    assert j["conns"] == conns and j["connected"] == conns and j["size"] == size, j
    assert j["errors_total"] == 0 and sum(j["errors"].values()) == 0, j
    for kind in ("connect", "tls", "timeout", "reset", "eof", "corrupt", "other"):
        assert kind in j["errors"], j
    assert j["round_trips"] > 0 and j["rt_per_s"] > 0, j
    assert 0 < j["p50_us"] <= j["p99_us"] <= j["p999_us"] <= j["max_us"], j
    assert abs(j["mb_per_s"] - j["rt_per_s"] * size / 1e6) < 0.01 * j["mb_per_s"] + 0.01, j


def make_pki(d):
    """A CA and a leaf for localhost / 127.0.0.1 signed by it, and an unrelated CA."""
    for ca in ("ca", "other"):
        make_ca(d, ca, f"echo test {ca} CA")
    make_leaf(d, "leaf", "localhost", "DNS:localhost,IP:127.0.0.1")


# ---------------------------------------------------------------------------------------- cases

def case_tls():
    """serve --tls-cert/--tls-key: a verifying Python client gets every byte back exactly; load
    --tls --tls-ca round-trips without error (it checks every echoed byte) by IP and by name,
    with and without pipelining; a wrong CA fails verification with a clear error and exit 1;
    a certificate that cannot be loaded is named."""
    with tempfile.TemporaryDirectory() as d:
        make_pki(d)
        srv = Server("--tls-cert", f"{d}/leaf.pem", "--tls-key", f"{d}/leaf.key", "--threads", 2)
        ctx = ssl.create_default_context(cafile=f"{d}/ca.pem")
        for size in (1, 16385, 1_000_000):
            s = ctx.wrap_socket(srv.connect(), server_hostname="localhost")
            data = pattern(size, size)
            got = bytearray()
            for i in range(0, size, 16384):  # one thread: SSLSocket is not safe to share
                chunk = data[i:i + 16384]
                s.sendall(chunk)
                got += recv_exact(s, len(chunk))
            assert bytes(got) == data, f"TLS echo of {size} B differs"
            s.close()

        j, _ = load(srv.port, "--tls", "--tls-ca", f"{d}/ca.pem", "-c", 4, "-s", 1000, "-d", 1,
                    "-w", 0)
        check_summary(j, 4, 1000)
        assert j["tls"] is True, j
        j, _ = load(srv.port, "--host", "localhost", "--tls", "--tls-ca", f"{d}/ca.pem", "-c", 2,
                    "-s", 20000, "-d", 1, "-w", 0, "--pipeline", 4)
        check_summary(j, 2, 20000)

        j, err = load(srv.port, "--tls", "--tls-ca", f"{d}/other.pem", "-c", 3, "-s", 10, "-d", 1,
                      expect_rc=1)
        assert j["connected"] == 0 and j["errors"]["tls"] == 3, j
        assert "certificate verify failed" in err and "no connection could be opened" in err, err
        summary, out = srv.summary()
        assert summary["errors"]["tls"] == 3, out  # the refused handshakes, seen by the server
        assert summary["active"] == 0, out

        r = subprocess.run([ECHO, "serve", "--port", "0", "--tls-cert", f"{d}/nosuch.pem",
                            "--tls-key", f"{d}/leaf.key"], capture_output=True, text=True,
                           timeout=TIMEOUT)
        assert r.returncode == 1 and f"{d}/nosuch.pem" in r.stderr, r.stderr
        assert "No such file" in r.stderr, r.stderr
    print("TLS: exact bytes 1 B..1 MB; load verified by IP and name; wrong CA refused; bad file named")


def case_json():
    """load --json: one JSON object with the fields, sane values; the human summary has the
    same figures; --progress prints a line each second on stderr."""
    srv = Server()
    j, err = load(srv.port, "-c", 8, "-s", 64, "-d", 2.2, "-w", 0.3, "--progress")
    check_summary(j, 8, 64)
    assert 2.0 <= j["duration_s"] <= 2.5, j
    assert j["rate"] == 0 and j["pipeline"] == 1 and j["tls"] is False, j
    progress = [line for line in err.splitlines() if re.search(r"\d rt/s .* MB/s errors=0", line)]
    assert len(progress) >= 2, f"progress lines: {err}"
    assert "(warm-up)" not in progress[-1], err

    out, err = load(srv.port, "-c", 2, "-s", 100, "-d", 0.5, "-w", 0, "--quiet", json_out=False)
    first = out.splitlines()[0]
    for key in ("rt/s=", "MB/s=", "p50_us=", "p99_us=", "p999_us=", "errors=0"):
        assert key in first, out
    assert "errors: none" in out and "closed loop" in out, out
    assert "rt/s" not in err, f"--quiet printed progress: {err}"
    summary, out = srv.summary()
    assert summary["connections"] == 10 and summary["bytes"] > 0, out
    print(f"--json: {j['rt_per_s']:.0f} rt/s, p50 {j['p50_us']} us <= p99 {j['p99_us']} us "
          f"<= p99.9 {j['p999_us']} us; {len(progress)} progress lines")


def case_rate():
    """--rate: the paced run achieves roughly the rate (50-150 %), latency counted from the
    intended send times; with a server that stalls, latency shows the stall (no coordinated
    omission) and the sends it held up are counted late."""
    srv = Server()
    j, _ = load(srv.port, "--rate", 400, "-c", 4, "-s", 100, "-d", 2, "-w", 0.2)
    check_summary(j, 4, 100)
    assert 200 <= j["rt_per_s"] <= 600, f"paced 400 rt/s, got {j['rt_per_s']}"
    assert j["rate"] == 400, j
    paced = j["rt_per_s"]
    j, _ = load(srv.port, "--rate", 300, "-c", 2, "-s", 100, "-d", 1.5, "-w", 0, "--pipeline", 4)
    check_summary(j, 2, 100)
    assert 150 <= j["rt_per_s"] <= 450, f"paced 300 rt/s, pipeline 4: got {j['rt_per_s']}"
    srv.summary()

    # A server that answers every echo but stops for 0.5 s once: a closed-loop client would
    # see one slow round-trip per connection; the paced client sees every message scheduled
    # during the stall as late as it was held up.
    stall = StallingEcho(stall_after=0.5, stall_for=0.5)
    j, _ = load(stall.port, "--rate", 200, "-c", 1, "-s", 50, "-d", 1.5, "-w", 0)
    assert j["errors_total"] == 0, j
    assert j["late"] >= 50, f"sends held up by the 0.5 s stall not counted late: {j}"
    assert j["max_us"] >= 300_000 and j["p99_us"] >= 100_000, j
    assert j["unsent"] == 0 and j["round_trips"] == 300, j  # caught up: every message sent
    stalled = j

    # A stall that outlasts the window: the run ends on time and says how many messages it
    # could not send (rt/s is what was achieved, not the schedule).
    stall = StallingEcho(stall_after=0.5, stall_for=1.3)
    j, _ = load(stall.port, "--rate", 200, "-c", 1, "-s", 50, "-d", 1.5, "-w", 0)
    assert j["errors_total"] == 0, j
    assert j["unsent"] >= 100 and abs(j["round_trips"] + j["unsent"] - 300) <= 2, j
    assert j["rt_per_s"] < 150, j
    print(f"paced 400 rt/s: got {paced:.0f}; a 0.5 s stall: {stalled['late']} late sends, "
          f"p99 {stalled['p99_us'] / 1000:.0f} ms; a stall past the end: {j['unsent']} unsent, "
          f"{j['rt_per_s']:.0f} rt/s achieved")


class StallingEcho:
    """A one-connection echo server that stops answering for `stall_for` seconds once,
    `stall_after` seconds after the connection came."""

    def __init__(self, stall_after, stall_for):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.stall_after, self.stall_for = stall_after, stall_for
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        c, _ = self.sock.accept()
        t0 = time.time()
        stalled = False
        while True:
            d = c.recv(65536)
            if not d:
                return
            if not stalled and time.time() - t0 >= self.stall_after:
                stalled = True
                time.sleep(self.stall_for)
            c.sendall(d)


class HoldingEcho:
    """An echo server that holds what it receives for `hold` seconds before echoing it, and
    records the most bytes it held unanswered on one connection: with --pipeline N that is
    N messages (the client never has more in flight), with N = 1 one message."""

    def __init__(self, hold=0.02):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.hold = hold
        self.max_pending = 0
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            c, _ = self.sock.accept()
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        pending, since = bytearray(), None
        c.settimeout(0.002)
        try:
            while True:
                try:
                    d = c.recv(65536)
                    if not d:
                        return
                    pending += d
                    since = since or time.time()
                    with self.lock:
                        self.max_pending = max(self.max_pending, len(pending))
                except socket.timeout:
                    pass
                if pending and time.time() - since >= self.hold:
                    c.sendall(pending)
                    pending.clear()
                    since = None
        except OSError:
            pass
        finally:
            c.close()


def case_pipeline():
    """--pipeline N keeps exactly N messages in flight per connection (seen by a server that
    holds what it gets for a moment), every echo verified; closed and paced."""
    for n in (1, 8):
        h = HoldingEcho()
        j, _ = load(h.port, "--pipeline", n, "-c", 2, "-s", 100, "-d", 1, "-w", 0)
        check_summary(j, 2, 100)
        assert h.max_pending == 100 * n, f"--pipeline {n}: server held {h.max_pending} bytes"
    srv = Server()
    j, _ = load(srv.port, "--pipeline", 16, "-c", 4, "-s", 3000, "-d", 1, "-w", 0)
    check_summary(j, 4, 3000)
    summary, out = srv.summary()
    assert summary["bytes"] >= j["bytes"] and sum(summary["errors"].values()) <= 4, out
    print(f"pipeline 8: 8 messages in flight; pipeline 16 x 3000 B: {j['rt_per_s']:.0f} rt/s")


def case_slow_clients():
    """A client that sends nothing is closed after --idle-timeout while another client is
    served meanwhile; one that never reads is closed (write stalled, nothing buffered beyond
    the socket buffers); one that trickles is closed by --min-rate; a TLS client that never
    handshakes is closed after --handshake-timeout."""
    srv = Server("--idle-timeout", 1, "--min-rate", 100, "--rate-window", 1)
    silent = srv.connect()
    trickle = srv.connect()
    good = srv.connect()
    t0 = time.time()
    silent_closed = trickle_closed = None
    rounds = 0
    while time.time() - t0 < 10 and (silent_closed is None or trickle_closed is None):
        msg = pattern(1000, rounds)
        good.sendall(msg)
        assert recv_exact(good, 1000) == msg, "the good client was not served"
        rounds += 1
        if trickle_closed is None:
            try:
                trickle.sendall(b"t")  # 1 byte per 0.1 s: ~10 B/s < 100 B/s
                trickle.settimeout(0.05)
                if trickle.recv(1) == b"":
                    trickle_closed = time.time() - t0
            except socket.timeout:
                pass
            except OSError:
                trickle_closed = time.time() - t0
        if silent_closed is None:
            silent.settimeout(0.05)
            try:
                if silent.recv(1) == b"":
                    silent_closed = time.time() - t0
            except socket.timeout:
                pass
        time.sleep(0.05)
    assert silent_closed is not None, "a silent client still open after 10 s (idle timeout 1 s)"
    assert 0.9 <= silent_closed <= 5, f"silent client closed after {silent_closed:.2f} s"
    assert trickle_closed is not None, "a trickling client still open after 10 s"
    good.settimeout(TIMEOUT)
    msg = pattern(5000, 7)
    good.sendall(msg)
    assert recv_exact(good, 5000) == msg, "the good client was not served after"

    # A client that never reads: the server's write stalls and it closes the connection after
    # the idle timeout instead of buffering; the sender then sees the connection end.
    reader_less = socket.socket()
    reader_less.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    reader_less.connect(("127.0.0.1", srv.port))
    reader_less.settimeout(TIMEOUT)
    sent = 0
    block = b"w" * 65536
    t1 = time.time()
    try:
        while time.time() - t1 < 15:
            sent += reader_less.send(block)
    except OSError:
        pass
    stalled_closed = time.time() - t1
    assert stalled_closed < 15, f"a client that does not read was not closed ({sent} B sent)"
    assert sent < 64 * 1024 * 1024, f"{sent} B accepted from a client that does not read"
    for s in (silent, trickle, good, reader_less):
        s.close()
    summary, out = srv.summary()
    e = summary["errors"]
    assert e["idle_timeout"] >= 1 and e["slow"] == 1 and e["write_timeout"] == 1, out

    with tempfile.TemporaryDirectory() as d:
        make_pki(d)
        tls_srv = Server("--tls-cert", f"{d}/leaf.pem", "--tls-key", f"{d}/leaf.key",
                         "--handshake-timeout", 1)
        mute = tls_srv.connect()
        t2 = time.time()
        assert closed_by_peer(mute), "a client that never handshakes was not closed"
        waited = time.time() - t2
        assert 0.9 <= waited <= 5, f"closed after {waited:.2f} s (handshake timeout 1 s)"
        summary, out = tls_srv.summary()
        assert summary["errors"]["handshake_timeout"] == 1, out
    print(f"silent client closed after {silent_closed:.1f} s, trickler after {trickle_closed:.1f} s "
          f"({rounds} round-trips served meanwhile); non-reader closed after {stalled_closed:.1f} s "
          f"having sent {sent // 1024} KiB; mute TLS client closed after {waited:.1f} s")


def case_emfile():
    """RLIMIT_NOFILE lowered: clients beyond the fd table wait in the backlog while serve backs
    off (low CPU, one log line per interval); once fds free up they are served."""
    srv = Server("--accept-backoff", 0.1, prefix=["prlimit", "--nofile=30"])
    served, cpu = check_backoff_at_fd_limit(srv, srv.connect, "serve")
    time.sleep(0.5)
    j, _ = load(srv.port, "-c", 2, "-s", 1000, "-d", 0.5, "-w", 0)  # served again
    check_summary(j, 2, 1000)
    summary, out = srv.summary()
    assert summary["errors"]["accept_emfile"] >= 1, out
    logs = out.count("accept: Too many open files")
    assert 1 <= logs <= 3, f"{logs} EMFILE messages: {out}"
    print(f"at the fd limit: {served} connections served, the rest queued; serve CPU {cpu:.1%}; "
          f"served again after; {logs} log line(s)")


def case_bad_input():
    """Bad flags exit 2 with a message naming the flag; a refused connection is error kind
    'connect' (exit 1); a server that closes is 'eof', one that resets is 'reset'; a silent one
    is 'timeout'."""
    for args, needle in ((["--rate", "abc"], "--rate: 'abc' is not a rate"),
                         (["--rate", "-5"], "--rate: '-5' is not a rate"),
                         (["--pipeline", "0"], "--pipeline"),
                         (["--tls-ca", "x.pem"], "--tls-ca requires --tls"),
                         (["--tls", "--insecure", "--tls-ca", "x.pem"], "excludes")):
        r = subprocess.run([ECHO, "load", "-p", "1", "-c", "1", "-s", "1", "-d", "1"] + args,
                           capture_output=True, text=True, timeout=TIMEOUT)
        assert r.returncode == 2 and needle in r.stderr, f"{args}: exit {r.returncode}: {r.stderr}"
    r = subprocess.run([ECHO, "load", "-p", "1", "-c", "1", "-s", "1", "-d", "1", "--tls",
                        "--tls-ca", "/nonexistent/ca.pem"], capture_output=True, text=True,
                       timeout=TIMEOUT)
    assert r.returncode == 1 and "--tls-ca /nonexistent/ca.pem: No such file" in r.stderr, r.stderr

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    j, err = load(port, "-c", 3, "-s", 10, "-d", 1, expect_rc=1)
    assert j["errors"]["connect"] == 3 and j["connected"] == 0, j
    assert "Connection refused" in err, err

    def behave(how):
        lst = socket.socket()
        lst.bind(("127.0.0.1", 0))
        lst.listen(8)

        def run():
            c, _ = lst.accept()
            d = c.recv(10)
            if how == "close":
                c.sendall(d[:5])
                c.close()
            elif how == "reset":
                c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                c.close()
            else:  # silent: keep it open, answer nothing
                time.sleep(5)
                c.close()
        threading.Thread(target=run, daemon=True).start()
        return lst

    for how, kind in (("close", "eof"), ("reset", "reset"), ("silent", "timeout")):
        lst = behave(how)
        j, _ = load(lst.getsockname()[1], "-c", 1, "-s", 10, "-d", 1, "-w", 0, "--timeout", 0.5,
                    expect_rc=1)
        assert j["errors"][kind] == 1 and j["errors_total"] == 1, f"{how}: {j}"
        lst.close()
    print("bad flags exit 2 with the flag named; refused = connect, closed = eof, reset = reset, "
          "silent = timeout")


def ring_expected():
    """True where io_uring can drive the I/O threads: Linux >= 6.1 (DEFER_TASKRUN)."""
    m = re.match(r"(\d+)\.(\d+)", os.uname().release)
    return m is not None and (int(m.group(1)), int(m.group(2))) >= (6, 1)


def case_socket_io():
    """--socket-io picks the sockets' I/O path for serve and load; the start-up line names it;
    without the flag FIBERS_SOCKET_IO decides; a bad value is refused by name."""
    ring_line = ", io_uring)" if ring_expected() else ", epoll (io_uring cannot drive the threads here)"
    for args, env, wanted in ((["--socket-io", "io_uring"], None, ring_line),
                              (["--socket-io", "epoll"], "io_uring", None),
                              ([], "io_uring", ", io_uring)" if ring_expected() else None),
                              ([], None, None)):
        saved = os.environ.pop("FIBERS_SOCKET_IO", None)
        if env is not None:
            os.environ["FIBERS_SOCKET_IO"] = env
        try:
            srv = Server(*args)
            for client_io in ("io_uring", "epoll"):
                j, _ = load(srv.port, "-c", 4, "-s", 3000, "-d", 0.4, "-w", 0, "--socket-io", client_io)
                check_summary(j, 4, 3000)
        finally:
            os.environ.pop("FIBERS_SOCKET_IO", None)
            if saved is not None:
                os.environ["FIBERS_SOCKET_IO"] = saved
        first = srv.output().splitlines()[0]
        if wanted is None:
            assert "io_uring" not in first, (args, env, first)
        else:
            assert first.endswith(wanted), (args, env, first)
        summary, out = srv.summary()
        assert summary["connections"] == 8, out
    for cmd in (["serve", "--port", "0"], ["load", "--port", "1", "-c", "1", "-s", "1", "-d", "1"]):
        r = subprocess.run([ECHO] + cmd + ["--socket-io", "kqueue"], capture_output=True, text=True,
                           timeout=TIMEOUT)
        assert r.returncode != 0 and "--socket-io" in r.stderr, (cmd, r.returncode, r.stderr)
    print("--socket-io: io_uring and epoll on both ends, the environment's default, bad value refused")


CASES = {name[5:]: fn for name, fn in globals().items() if name.startswith("case_")}


def main():
    global ECHO
    ECHO = os.path.abspath(sys.argv[1])
    which = sys.argv[2] if len(sys.argv) > 2 else "all"
    names = list(CASES) if which == "all" else [which]
    for n in names:
        t0 = time.time()
        CASES[n]()
        print(f"ok {n} ({time.time() - t0:.1f} s)")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
