#!/usr/bin/env python3
"""fibers-proxy against haproxy and socat, each alone in front of the same upstream (the
referee's C epoll echo server), driven by the referee's echo-load, in one run with ratios.

    python3 bench/proxy_bench.py [--build build-release] [--reps 3] [--secs 4] [--rate 20000]
    python3 bench/proxy_bench.py --proxies fibers-proxy,fibers-proxy-splice   # copy vs splice

Per repetition and proxy, interleaved: saturated round-trips/s (c64, 64 B), then proxy CPU µs
per round-trip at a paced rate (CPU of the proxy's whole process tree, read from /proc, over
the run: socat forks a process per connection). Then one short paced run per proxy under
`strace -c -f` for system calls per round-trip. Proxy on CPU 1; echo-load and the upstream on
CPU 0 (2-CPU machine). All proxies run 1 thread with the same timeouts (connect 5 s, idle 60 s).
Python 3 standard library only; needs haproxy and socat (./tools/dev.sh deps bench).
"""

import argparse
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
    def __init__(self, kind, exe, upstream_port, tmp):
        self.kind, self.port = kind, free_port()
        if kind.startswith("fibers-proxy"):
            cmd = [exe, "--listen", f"127.0.0.1:{self.port}", "--upstream",
                   f"127.0.0.1:{upstream_port}", "--threads", "1", "--connect-timeout", "5",
                   "--idle-timeout", "60", "--stats-interval", "0", "--quiet"]
            if kind == "fibers-proxy-splice":
                cmd.append("--splice")
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
    bind 127.0.0.1:{self.port}
    server up 127.0.0.1:{upstream_port}
""")
            cmd = ["haproxy", "-db", "-f", str(cfg)]
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


def syscalls(proxy, load, rate, secs=2):
    """strace -c -f on the proxy during a paced run: {syscall: calls per round-trip}."""
    with tempfile.NamedTemporaryFile(suffix=".strace") as out:
        st = subprocess.Popen(["strace", "-c", "-f", "-o", out.name, "-p", str(proxy.p.pid)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)
        v = echo_load(load, proxy.port, secs, rate)
        st.send_signal(signal.SIGINT)
        st.wait(timeout=30)
        text = Path(out.name).read_text()
    if v is None or int(v["rt"]) == 0:
        return {}
    rt = int(v["rt"])
    calls = {}
    for line in text.splitlines():
        m = re.match(r"\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)\s*$", line)
        if m and m.group(2) != "total":
            calls[m.group(2)] = int(m.group(1)) / rt
    return calls


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default="build-release", help="build dir holding tools/fibers-proxy")
    ap.add_argument("--referee", default=os.environ.get("REFEREE", str(ROOT.parent / "shared" / "referee")))
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--secs", type=float, default=4)
    ap.add_argument("--rate", type=int, default=20000, help="paced round-trips/s for the CPU figure")
    ap.add_argument("--proxies", default="fibers-proxy,haproxy,socat",
                    help="comma-separated: fibers-proxy, fibers-proxy-splice (--splice), haproxy, socat")
    args = ap.parse_args()

    exe = str((ROOT / args.build / "tools" / "fibers-proxy" / "fibers-proxy").resolve())
    kinds = [k for k in args.proxies.split(",") if k]
    for k, need in (("fibers-proxy", exe), ("fibers-proxy-splice", exe), ("haproxy", "haproxy"), ("socat", "socat")):
        if k in kinds and not shutil.which(need) and not os.access(need, os.X_OK):
            sys.exit(f"proxy_bench: {need} not found")
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["bash", str(Path(args.referee) / "build.sh"), tmp], check=True,
                       capture_output=True)
        load, epoll = str(Path(tmp) / "echo-load"), str(Path(tmp) / "epoll-echo")
        up_port = free_port()
        upstream = subprocess.Popen(["taskset", "-c", OTHER_CPU, epoll, "-p", str(up_port)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_listening(up_port, upstream, "epoll-echo")
        sat = {k: [] for k in kinds}
        cpu = {k: [] for k in kinds}
        mbs = {k: [] for k in kinds}
        try:
            for rep in range(args.reps):
                for k in kinds:
                    p = Proxy(k, exe, up_port, tmp)
                    try:
                        s = measure(p, load, args.secs, 0)
                        c = measure(p, load, args.secs, args.rate)
                        m = echo_load(load, p.port, args.secs, conns=16, size=16384)
                    finally:
                        p.stop()
                    if s:
                        sat[k].append(s[0])
                    if c:
                        cpu[k].append(c[1])
                    if m:
                        mbs[k].append(float(m["MB_per_s"]))
                    print(f"rep {rep + 1} {k:19s} saturated {s[0] if s else float('nan'):9.0f} rt/s   "
                          f"paced {args.rate}: got {c[0] if c else float('nan'):7.0f} rt/s, "
                          f"{c[1] if c else float('nan'):6.2f} us CPU/rt   "
                          f"c16 16 KiB: {float(m['MB_per_s']) if m else float('nan'):7.1f} MB/s", flush=True)
            calls = {}
            if shutil.which("strace"):
                for k in kinds:
                    p = Proxy(k, exe, up_port, tmp)
                    try:
                        calls[k] = syscalls(p, load, min(args.rate, 5000))
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

    print(f"\n{args.reps} reps, c64 64 B; proxy on CPU {PROXY_CPU}, load+upstream on CPU {OTHER_CPU}; "
          f"medians, and medians of the per-repetition ratios to {base}")
    w = max(13, max(len(k) for k in kinds))
    print(f"{'proxy':{w}s} {'rt/s sat':>10s} {'vs ' + base:>11s} {'us CPU/rt @' + str(args.rate):>16s} "
          f"{'vs ' + base:>11s} {'MB/s 16KiB':>11s} {'vs ' + base:>11s}")
    for k in kinds:
        print(f"{k:{w}s} {med(sat[k]):10.0f} {paired(sat, k):10.2f}x "
              f"{med(cpu[k]):16.2f} {paired(cpu, k):10.2f}x "
              f"{med(mbs[k]):11.1f} {paired(mbs, k):10.2f}x")
    if calls:
        print(f"\nsystem calls per round-trip (strace -c -f, paced {min(args.rate, 5000)} rt/s, 2 s):")
        for k in kinds:
            c = calls.get(k, {})
            top = sorted(c.items(), key=lambda kv: -kv[1])[:8]
            print(f"{k:{w}s} total {sum(c.values()):5.2f}: " + ", ".join(f"{n} {v:.2f}" for n, v in top))


if __name__ == "__main__":
    main()
