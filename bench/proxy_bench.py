#!/usr/bin/env python3
"""fibers-proxy against haproxy and socat, each alone in front of the same upstream (the
referee's C epoll echo server), driven by the referee's echo-load, in one run with ratios.

    python3 bench/proxy_bench.py [--build build-release] [--reps 3] [--secs 4] [--rate 20000[,40000]]
    python3 bench/proxy_bench.py --proxies fibers-proxy,fibers-proxy-splice   # copy vs splice
    python3 bench/proxy_bench.py --proxies fibers-proxy,haproxy,uring-c       # + io_uring floor
    python3 bench/proxy_bench.py --proxies fibers-proxy,fibers-proxy-epoll,haproxy  # --socket-io
    python3 bench/proxy_bench.py --proxies fibers-proxy,haproxy --tls         # TLS termination

Per repetition and proxy, interleaved: saturated round-trips/s (c64, 64 B), then proxy CPU µs
per round-trip at a paced rate (CPU of the proxy's whole process tree, read from /proc, over
the run: socat forks a process per connection), then MB/s streaming (c16, 16 KiB). Then one
paced run per proxy for system calls per round-trip: counted with `perf stat` on the kernel's
syscall tracepoints when perf is usable (counting does not slow the proxy, so the batching of
events per wait is the real one), else under `strace -c -f` at 5k rt/s (which does). Proxy on
CPU 1; the load and the upstream on CPU 0 (2-CPU machine). All proxies run 1 thread with the
same timeouts (connect 5 s, idle 60 s).

Proxies: fibers-proxy (its default --socket-io io_uring: sockets read and write through the
I/O thread's ring), fibers-proxy-epoll (--socket-io epoll), fibers-proxy-splice (--splice),
haproxy, socat, uring-c: the
minimal io_uring C proxy of bench/peers/uring-peer.c (no limits, no timeouts: the floor of
what an io_uring design can cost here, not a product), and uring-c-ms, the same with multishot
receives into provided buffers.

--tls: the proxies (fibers-proxy and haproxy) terminate TLS with the same ECDSA P-256
certificate made by the openssl CLI and forward plain TCP to the upstream; the load is
`fibers-echo load --tls --insecure` (the client's verification is not the proxy's cost).
Python 3 standard library only; needs haproxy and socat (./tools/dev.sh deps bench).
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROXY_CPU, OTHER_CPU = "1", "0"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port, proc, what):
    for _ in range(200):
        if proc.poll() is not None:
            sys.exit(f"proxy_bench: {what} exited at start")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"proxy_bench: {what} does not listen on {port}")


def tree_cpu(pid):
    """utime+stime (s) of `pid` and all its living descendants, plus what their reaped
    children used (cutime+cstime): socat's per-connection processes."""
    kids, cpu = {}, {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        kids.setdefault(int(fields[1]), []).append(int(d))
        cpu[int(d)] = sum(int(x) for x in fields[11:15])
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        total += cpu.get(p, 0)
        todo += kids.get(p, [])
    return total / os.sysconf("SC_CLK_TCK")


class Proxy:
    def __init__(self, kind, exe, upstream_port, tmp, tls=None):
        """`tls`: (certificate, key, both in one file) paths to terminate TLS with, or None."""
        self.kind, self.port = kind, free_port()
        if kind.startswith("fibers-proxy"):
            cmd = [exe, "--listen", f"127.0.0.1:{self.port}", "--upstream",
                   f"127.0.0.1:{upstream_port}", "--threads", "1", "--connect-timeout", "5",
                   "--idle-timeout", "60", "--stats-interval", "0", "--quiet"]
            if kind == "fibers-proxy-splice":
                cmd.append("--splice")
            if kind == "fibers-proxy-epoll":
                cmd += ["--socket-io", "epoll"]
            if tls:
                cmd += ["--tls-cert", tls[0], "--tls-key", tls[1]]
        elif kind == "haproxy":
            cfg = Path(tmp) / "haproxy.cfg"
            cfg.write_text(f"""global
    nbthread 1
    maxconn 4000
defaults
    mode tcp
    timeout connect 5s
    timeout client 60s
    timeout server 60s
listen fwd
    bind 127.0.0.1:{self.port}{" ssl crt " + tls[2] if tls else ""}
    server up 127.0.0.1:{upstream_port}
""")
            cmd = ["haproxy", "-db", "-f", str(cfg)]
        elif kind in ("uring-c", "uring-c-ms"):
            mode = "proxy-ms" if kind == "uring-c-ms" else "proxy"
            cmd = [str(Path(tmp) / "uring-peer"), mode, str(self.port), str(upstream_port)]
        else:
            cmd = ["socat", f"TCP-LISTEN:{self.port},fork,reuseaddr,backlog=1024",
                   f"TCP:127.0.0.1:{upstream_port},nodelay"]
        self.p = subprocess.Popen(["taskset", "-c", PROXY_CPU] + cmd, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        wait_listening(self.port, self.p, kind)

    def stop(self):
        self.p.send_signal(signal.SIGTERM)
        try:
            self.p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()


def echo_load(load, port, secs, rate=0, conns=64, size=64):
    """One run of the load; {"rt", "rt_per_s", "MB_per_s"} or None if it had errors. `load` is
    the referee's echo-load, or ("tls", fibers-echo) for `fibers-echo load --tls`."""
    if isinstance(load, tuple):
        cmd = ["taskset", "-c", OTHER_CPU, load[1], "load", "-p", str(port), "-c", str(conns),
               "-s", str(size), "-d", str(secs), "-w", "0", "--tls", "--insecure", "--json", "-q"]
        if rate:
            cmd += ["-r", str(rate)]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=secs + 60).stdout
        try:
            v = json.loads(out)
        except ValueError:
            return None
        if v.get("errors_total") != 0 or v.get("connected") != conns:
            return None
        return {"rt": str(v["round_trips"]), "rt_per_s": str(v["rt_per_s"]),
                "MB_per_s": str(v["mb_per_s"])}
    cmd = ["taskset", "-c", OTHER_CPU, load, "-p", str(port), "-c", str(conns), "-s", str(size),
           "-d", str(secs), "-w", "0"]
    if rate:
        cmd += ["-r", str(rate)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=secs + 60).stdout
    vals = dict(kv.split("=", 1) for kv in out.split() if "=" in kv)
    if "rt" not in vals or vals.get("errors") != "0":
        return None
    return vals


def measure(proxy, load, secs, rate):
    """One load run; returns (rt/s, proxy CPU µs per round-trip)."""
    c0 = tree_cpu(proxy.p.pid)
    v = echo_load(load, proxy.port, secs, rate)
    time.sleep(0.5)  # let socat's children exit and be reaped (counted in the parent)
    c1 = tree_cpu(proxy.p.pid)
    if v is None:
        return None
    rt = int(v["rt"])
    return float(v["rt_per_s"]), (c1 - c0) * 1e6 / rt if rt else float("nan")


# The system calls counted one by one with perf (the rest are summed in "other").
PERF_CALLS = ["read", "recvfrom", "write", "sendto", "epoll_wait", "epoll_pwait", "epoll_pwait2",
              "clock_gettime", "io_uring_enter", "splice"]


def perf_usable():
    if not shutil.which("perf"):
        return False
    r = subprocess.run(["perf", "stat", "-e", "raw_syscalls:sys_enter", "--", "true"],
                       capture_output=True, text=True)
    return r.returncode == 0


def traced_run(proxy, load, rate, secs, tracer):
    """A paced run with `tracer` (argv; its output file is appended as `-o FILE`, the proxy's
    pid as `-p PID`) attached to the proxy: (the tracer's output, round-trips), or None."""
    with tempfile.NamedTemporaryFile(suffix=".trace") as out:
        st = subprocess.Popen(tracer + ["-o", out.name, "-p", str(proxy.p.pid)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)
        v = echo_load(load, proxy.port, secs, rate)
        st.send_signal(signal.SIGINT)
        st.wait(timeout=30)
        text = Path(out.name).read_text()
    if v is None or int(v["rt"]) == 0:
        return None
    return text, int(v["rt"])


def syscalls_perf(proxy, load, rate, secs=2):
    """`perf stat` on the syscall tracepoints of the proxy's process during a paced run:
    {syscall: calls per round-trip}; counting only, so the proxy runs at full speed."""
    events = ["raw_syscalls:sys_enter"] + [f"syscalls:sys_enter_{c}" for c in PERF_CALLS]
    run = traced_run(proxy, load, rate, secs, ["perf", "stat", "-x", ","] + sum((["-e", e] for e in events), []))
    if run is None:
        return {}
    text, rt = run
    counts = {}
    for line in text.splitlines():
        f = line.split(",")
        if len(f) > 2 and f[0].isdigit():
            counts[f[2]] = int(f[0])
    total = counts.pop("raw_syscalls:sys_enter", 0)
    calls = {e.split("sys_enter_")[1]: n / rt for e, n in counts.items() if n}
    other = total / rt - sum(calls.values())
    if other > 0.005:
        calls["other"] = other
    return calls


def syscalls(proxy, load, rate, secs=2):
    """strace -c -f on the proxy during a paced run: {syscall: calls per round-trip}."""
    run = traced_run(proxy, load, rate, secs, ["strace", "-c", "-f"])
    if run is None:
        return {}
    text, rt = run
    calls = {}
    for line in text.splitlines():
        m = re.match(r"\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)\s*$", line)
        if m and m.group(2) != "total":
            calls[m.group(2)] = int(m.group(1)) / rt
    return calls


def make_certificate(tmp):
    """A self-signed ECDSA P-256 certificate for 127.0.0.1: (cert, key, cert+key) paths."""
    cert, key, both = (str(Path(tmp) / n) for n in ("proxy.crt", "proxy.key", "proxy.pem"))
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert, "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    Path(both).write_text(Path(cert).read_text() + Path(key).read_text())
    return cert, key, both


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default="build-release", help="build dir holding tools/fibers-proxy")
    ap.add_argument("--referee", default=os.environ.get("REFEREE", str(ROOT.parent / "shared" / "referee")))
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--secs", type=float, default=4)
    ap.add_argument("--rate", default="20000",
                    help="paced round-trips/s for the CPU figure; a comma-separated list measures "
                         "each rate in every repetition (issue 18: 20000,40000)")
    ap.add_argument("--proxies", default="fibers-proxy,haproxy,socat",
                    help="comma-separated: fibers-proxy, fibers-proxy-splice (--splice), "
                         "fibers-proxy-epoll (--socket-io epoll), haproxy, "
                         "socat, uring-c (bench/peers/uring-peer.c), uring-c-ms (the same with "
                         "multishot receives)")
    ap.add_argument("--tls", action="store_true",
                    help="the proxies terminate TLS (fibers-proxy and haproxy only); the load is "
                         "fibers-echo load --tls")
    args = ap.parse_args()
    try:
        rates = [int(r) for r in args.rate.split(",") if r]
    except ValueError:
        sys.exit(f"proxy_bench: --rate wants round-trips/s, comma-separated, got {args.rate!r}")
    if not rates or min(rates) <= 0:
        sys.exit("proxy_bench: --rate wants at least one rate > 0")

    exe = str((ROOT / args.build / "tools" / "fibers-proxy" / "fibers-proxy").resolve())
    kinds = [k for k in args.proxies.split(",") if k]
    echo_exe = str((ROOT / args.build / "tools" / "fibers-echo" / "fibers-echo").resolve())
    for k, need in (("fibers-proxy", exe), ("fibers-proxy-splice", exe), ("fibers-proxy-epoll", exe),
                    ("haproxy", "haproxy"),
                    ("socat", "socat"), ("uring-c", "cc"), ("uring-c-ms", "cc")):
        if k in kinds and not shutil.which(need) and not os.access(need, os.X_OK):
            sys.exit(f"proxy_bench: {need} not found")
    if args.tls:
        if any(k not in ("fibers-proxy", "fibers-proxy-epoll", "haproxy") for k in kinds):
            sys.exit("proxy_bench: --tls compares fibers-proxy(-epoll) and haproxy only")
        for need in ("openssl", echo_exe):
            if not shutil.which(need) and not os.access(need, os.X_OK):
                sys.exit(f"proxy_bench: {need} not found (needed by --tls)")
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["bash", str(Path(args.referee) / "build.sh"), tmp], check=True,
                       capture_output=True)
        load, epoll = str(Path(tmp) / "echo-load"), str(Path(tmp) / "epoll-echo")
        if "uring-c" in kinds or "uring-c-ms" in kinds:
            subprocess.run(["cc", "-O2", "-o", str(Path(tmp) / "uring-peer"),
                            str(ROOT / "bench" / "peers" / "uring-peer.c"), "-luring"], check=True)
        tls = None
        if args.tls:
            tls = make_certificate(tmp)
            load = ("tls", echo_exe)
        up_port = free_port()
        upstream = subprocess.Popen(["taskset", "-c", OTHER_CPU, epoll, "-p", str(up_port)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_listening(up_port, upstream, "epoll-echo")
        sat = {k: [] for k in kinds}
        busy = {k: [] for k in kinds}  # share of its CPU the proxy used while saturated
        sat_cpu = {k: [] for k in kinds}  # the proxy's CPU µs per round-trip while saturated
        cpu = {r: {k: [] for k in kinds} for r in rates}
        mbs = {k: [] for k in kinds}
        try:
            for rep in range(args.reps):
                for k in kinds:
                    p = Proxy(k, exe, up_port, tmp, tls)
                    try:
                        s = measure(p, load, args.secs, 0)
                        c = {r: measure(p, load, args.secs, r) for r in rates}
                        m = echo_load(load, p.port, args.secs, conns=16, size=16384)
                    finally:
                        p.stop()
                    if s:
                        sat[k].append(s[0])
                        busy[k].append(s[0] * s[1] / 1e6)
                        sat_cpu[k].append(s[1])
                    for r in rates:
                        if c[r]:
                            cpu[r][k].append(c[r][1])
                    if m:
                        mbs[k].append(float(m["MB_per_s"]))
                    print(f"rep {rep + 1} {k:19s} saturated {s[0] if s else float('nan'):9.0f} rt/s "
                          f"(proxy {100 * s[0] * s[1] / 1e6 if s else float('nan'):3.0f} % busy)   "
                          + "".join(f"paced {r}: got {c[r][0] if c[r] else float('nan'):7.0f} rt/s, "
                                    f"{c[r][1] if c[r] else float('nan'):6.2f} us CPU/rt   " for r in rates) +
                          f"c16 16 KiB: {float(m['MB_per_s']) if m else float('nan'):7.1f} MB/s", flush=True)
            calls = {}
            use_perf = perf_usable()
            calls_rate = rates[0] if use_perf else min(rates[0], 5000)
            if use_perf or shutil.which("strace"):
                for k in kinds:
                    p = Proxy(k, exe, up_port, tmp, tls)
                    try:
                        calls[k] = (syscalls_perf if use_perf else syscalls)(p, load, calls_rate)
                    finally:
                        p.stop()
        finally:
            upstream.send_signal(signal.SIGTERM)
            upstream.wait()

    med = lambda xs: statistics.median(xs) if xs else float("nan")  # noqa: E731
    base = "haproxy" if "haproxy" in kinds else kinds[0]

    def paired(fig, k):
        """Median over repetitions of the ratio to the baseline in the same repetition: the
        proxies of one repetition run back to back, so a load swing between repetitions
        cancels out (the medians of the raw figures mix quiet and loaded repetitions)."""
        return med([x / y for x, y in zip(fig[k], fig[base]) if y])

    print(f"\n{args.reps} reps, c64 64 B{', TLS terminated by the proxy' if args.tls else ''}; "
          f"proxy on CPU {PROXY_CPU}, load+upstream on CPU {OTHER_CPU}; "
          f"medians, and medians of the per-repetition ratios to {base}")
    w = max(13, max(len(k) for k in kinds))
    print(f"{'proxy':{w}s} {'rt/s sat':>10s} {'vs ' + base:>11s} "
          + "".join(f"{'us CPU/rt @' + str(r):>16s} {'vs ' + base:>11s} " for r in rates)
          + f"{'MB/s 16KiB':>11s} {'vs ' + base:>11s}")
    for k in kinds:
        print(f"{k:{w}s} {med(sat[k]):10.0f} {paired(sat, k):10.2f}x "
              + "".join(f"{med(cpu[r][k]):16.2f} {paired(cpu[r], k):10.2f}x " for r in rates)
              + f"{med(mbs[k]):11.1f} {paired(mbs, k):10.2f}x")
    # Below 100 %, the saturated figure is the load's and the upstream's limit (they share the
    # other CPU), not the proxy's: every proxy then shows about the same rate.
    print("proxy CPU busy while saturated (median): "
          + ", ".join(f"{k} {100 * med(busy[k]):.0f} %" for k in kinds))
    # So the proxy's own capacity is compared by its CPU per round-trip at that load: the
    # inverse of that ratio is the rate each proxy would reach with a CPU of its own to spare.
    print("proxy CPU µs per round-trip while saturated (median, vs " + base + "): "
          + ", ".join(f"{k} {med(sat_cpu[k]):.2f} ({paired(sat_cpu, k):.2f}x)" for k in kinds))
    if calls:
        how = "perf stat, syscall tracepoints" if use_perf else "strace -c -f"
        print(f"\nsystem calls per round-trip ({how}, paced {calls_rate} rt/s, 2 s):")
        for k in kinds:
            c = calls.get(k, {})
            top = sorted(c.items(), key=lambda kv: -kv[1])[:8]
            print(f"{k:{w}s} total {sum(c.values()):5.2f}: " + ", ".join(f"{n} {v:.2f}" for n, v in top))


if __name__ == "__main__":
    main()
