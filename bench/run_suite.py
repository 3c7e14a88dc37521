#!/usr/bin/env python3
"""libfibers benchmark suite: fibers-echo against C epoll, Go and Boost.Asio echo servers,
plus the runtime micro-benchmarks and their Go counterparts, in one run.

Run through `./tools/dev.sh bench` (installs the peers, makes the release build), or directly
after a release build:  python3 bench/run_suite.py [--reps N] [--quick] ...
See bench/README.md for the scenarios and the method. Python 3 standard library only.
"""

import argparse
import datetime
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.dont_write_bytecode = True   # no __pycache__ in the source tree
from suite_report import (BASELINE, CLIENT_CPU, FIGURES, SCENARIOS, SERVER_CPU, SERVERS,  # noqa: E402
                          aggregate, fmt_num, svg_chart, text_report)

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
ON_SERVER_CPU = ["taskset", "-c", SERVER_CPU]   # prefix: run a command pinned to the server CPU


def log(msg=""):
    print(msg, flush=True)


def die(msg):
    print(f"run_suite: {msg}", file=sys.stderr, flush=True)
    sys.exit(1)


def run_text(argv, **kw):
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=60, **kw).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


# ---------------------------------------------------------------- building the peers

def go_env(build):
    """Go's caches under the build tree (works as root in CI, no $HOME needed); stdlib only."""
    gobuild = build / "go"
    return dict(os.environ, GOCACHE=str(gobuild / "cache"), GOPATH=str(gobuild / "path"),
                GOFLAGS="", GOPROXY="off", CGO_ENABLED="0")


def build_peers(args, build):
    """Returns {server name: path} for the servers that can run, and the echo-load path."""
    bins = {}
    fe = build / "tools" / "fibers-echo" / "fibers-echo"
    if not fe.is_file():
        die(f"{fe} missing: build the release tree first (./tools/dev.sh bench)")
    bins["fibers"] = fe
    bins["fibers-uring"] = fe   # the same binary, its sockets on io_uring (Server sets the env)

    referee = Path(args.referee)
    if not (referee / "build.sh").is_file():
        die(f"referee tools not found in {referee} (set --referee or REFEREE)")
    out = run_text(["bash", str(referee / "build.sh"), str(build / "referee")])
    load, epoll = build / "referee" / "echo-load", build / "referee" / "epoll-echo"
    if not load.is_file() or not epoll.is_file():
        die(f"building the referee failed: {out}")
    bins["c"] = epoll

    go = shutil.which("go")
    if go:
        r = subprocess.run([go, "build", "-o", str(build / "go" / "go-echo"), "./go-echo"],
                           cwd=BENCH / "peers", env=go_env(build), capture_output=True, text=True)
        if r.returncode == 0:
            bins["go"] = build / "go" / "go-echo"
        else:
            log(f"run_suite: go build failed, skipping Go:\n{r.stderr}")
    else:
        log("run_suite: go not found (apt-get install golang-go): skipping the Go peer")

    asio = build / "bench" / "asio-echo"
    if asio.is_file():
        bins["asio"] = asio
    else:
        log("run_suite: asio-echo not built (apt-get install libboost-system1.81-dev, then "
            "rebuild): skipping Asio")
    return bins, load


# ---------------------------------------------------------------- one measurement

def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listeners_on(port):
    """Number of sockets listening on 127.0.0.1:port or 0.0.0.0:port (from /proc/net/tcp)."""
    n = 0
    try:
        with open("/proc/net/tcp") as f:
            next(f)
            for line in f:
                parts = line.split()
                addr, st = parts[1], parts[3]
                ip, p = addr.split(":")
                if st == "0A" and int(p, 16) == port and ip in ("0100007F", "00000000"):
                    n += 1
    except OSError:
        pass
    return n


def server_argv(name, binary, port, threads):
    if name == "c":
        return [str(binary), "-p", str(port), "-t", str(threads)]
    if name in ("fibers", "fibers-uring"):
        # No idle deadline, like the C, Go and Asio servers (serve's default is 60 s: one
        # timer push and erase and two clock reads per message more than they do).
        return [str(binary), "serve", "--port", str(port), "--threads", str(threads),
                "--stats-interval", "0", "--idle-timeout", "0"]
    if name == "go":
        return [str(binary), "-port", str(port)]
    if name == "asio":
        return [str(binary), "-p", str(port), "-t", str(threads)]
    raise ValueError(name)


class Server:
    def __init__(self, name, binary, threads, pinned, logdir):
        self.name, self.port = name, free_port()
        argv = server_argv(name, binary, self.port, threads)
        if pinned:
            argv = ON_SERVER_CPU + argv
        env = dict(os.environ)
        if name == "go":
            env["GOMAXPROCS"] = str(threads)
        if name.startswith("fibers"):  # runtime_options::sockets left to the environment
            env["FIBERS_SOCKET_IO"] = "io_uring" if name == "fibers-uring" else "epoll"
        self.logf = tempfile.TemporaryFile(mode="w+", dir=logdir)
        self.proc = subprocess.Popen(argv, stdout=self.logf, stderr=subprocess.STDOUT, env=env,
                                     stdin=subprocess.DEVNULL)
        want = 1 if name == "go" else threads   # one SO_REUSEPORT listener per thread otherwise
        deadline = time.monotonic() + 10
        while listeners_on(self.port) < want:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                out = self.output()
                self.stop()
                raise RuntimeError(f"{name} did not start listening on {self.port}: {out[-500:]}")
            time.sleep(0.01)

    @property
    def pid(self):
        return self.proc.pid

    def output(self):
        self.logf.seek(0)
        return self.logf.read()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.logf.close()


def parse_load(line):
    vals = {}
    for tok in line.split():
        if "=" not in tok:
            continue
        k, v = tok.split("=", 1)
        try:
            vals[k] = float(v)
        except ValueError:
            vals[k] = v
    return vals


def run_load(load, port, sc, args, verify, duration, warmup, server_pid=None):
    threads = sc.get("threads", 1)
    argv = [str(load), "-p", str(port), "-c", str(sc["conns"]), "-s", str(sc["size"]),
            "-d", str(duration), "-w", str(warmup)]
    if threads > 1:
        argv += ["-t", str(threads)]
    else:
        argv = ["taskset", "-c", CLIENT_CPU] + argv
    if sc.get("rate"):
        argv += ["-r", str(sc["rate"])]
    if server_pid:
        argv += ["-S", str(server_pid)]
    if verify:
        argv += ["-V"]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=duration + warmup + 60)
    lines = [l for l in r.stdout.splitlines() if "rt_per_s=" in l]
    vals = parse_load(lines[-1]) if lines else {}
    vals["exit"] = r.returncode
    if r.stderr.strip():
        vals["stderr"] = r.stderr.strip()[-300:]
    return vals


def cpu_list(s):
    try:
        return [float(x) for x in str(s).split("/")]
    except ValueError:
        return []


CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_snapshot(server_pid):
    """CPU accounting at one instant: per CPU (user+nice+system, irq+softirq, steal, total)
    ticks from /proc/stat, the server's utime+stime ticks, this process's waited-for
    children's CPU seconds (the load client, once it has exited) and the time."""
    cpus = []
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu") and line[3].isdigit():
                v = [int(x) for x in line.split()[1:9]]
                cpus.append((v[0] + v[1] + v[2], v[5] + v[6], v[7], sum(v)))
    try:
        with open(f"/proc/{server_pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        srv = int(fields[11]) + int(fields[12])   # utime, stime (fields 14 and 15)
    except (OSError, IndexError, ValueError):
        srv = None
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return dict(cpus=cpus, srv=srv, children=ru.ru_utime + ru.ru_stime, t=time.monotonic())


def other_load(a, b):
    """Between two snapshots around one load run: % of one CPU used by processes other than
    the server and the load client (other engineers' builds, say), the maximum steal % of a
    CPU, and the irq+softirq % (the loopback traffic itself)."""
    secs = b["t"] - a["t"]
    if secs <= 0 or a["srv"] is None or b["srv"] is None or len(a["cpus"]) != len(b["cpus"]):
        return None
    proc = sum(y[0] - x[0] for x, y in zip(a["cpus"], b["cpus"])) / CLK_TCK
    irq = sum(y[1] - x[1] for x, y in zip(a["cpus"], b["cpus"])) / CLK_TCK
    steal = max((y[2] - x[2]) / max(1, y[3] - x[3]) * 100 for x, y in zip(a["cpus"], b["cpus"]))
    ours = (b["srv"] - a["srv"]) / CLK_TCK + (b["children"] - a["children"])
    return dict(other_cpu=round(max(0.0, proc - ours) / secs * 100, 1), steal_max=round(steal, 2),
                irq_cpu=round(irq / secs * 100, 1))


def measure(name, binary, sc, load, args, logdir):
    """Fresh server, wait for its port, (verify pass), warm-up + measured window, stop."""
    threads = sc.get("threads", 1)
    m = dict(server=name, scenario=sc["name"], t=time.time(), loadavg=os.getloadavg()[0])
    try:
        srv = Server(name, binary, threads, pinned=threads == 1, logdir=logdir)
    except RuntimeError as e:
        m["error"] = str(e)
        return m
    try:
        if sc.get("verify_apart"):
            # -V costs the client ~2 ns per byte, which would make large messages client-bound:
            # check every byte in a short pass on the same server process, then measure unchecked.
            v = run_load(load, srv.port, sc, args, True, args.verify_secs, 0)
            if v.get("errors", 1) or v.get("corrupt", 1) or v.get("exit", 1):
                m["error"] = f"verification pass failed: {v}"
                m["verify_failed"] = True
                return m
        before = cpu_snapshot(srv.pid)
        vals = run_load(load, srv.port, sc, args, not sc.get("verify_apart"), args.duration,
                        args.warmup, server_pid=srv.pid)
        load_info = other_load(before, cpu_snapshot(srv.pid))
        if srv.proc.poll() is not None:
            m["error"] = f"server exited during the run: {srv.output()[-300:]}"
            return m
    finally:
        srv.stop()
    m.update({k: vals[k] for k in list(FIGURES) + ["errors", "corrupt", "failed", "exit", "cli_cpu",
                                                   "srv_cpu", "cpu_busy", "steal", "rt", "stderr"]
              if k in vals})
    if "rt_per_s" not in vals:
        m["error"] = f"echo-load printed no result (exit {vals.get('exit')}): {vals.get('stderr', '')}"
        return m
    if vals.get("errors") or vals.get("corrupt") or vals.get("failed") or vals.get("exit"):
        m["error"] = (f"errors={vals.get('errors')} corrupt={vals.get('corrupt')} "
                      f"failed={vals.get('failed')} exit={vals.get('exit')}")
        m["verify_failed"] = bool(vals.get("corrupt"))
        return m
    # Disturbances: hypervisor steal, a paced rate not reached, CPU used by other processes.
    reasons = []
    if load_info:
        m.update(load_info)
    steal = max(cpu_list(vals.get("steal", "")) + [m.get("steal_max", 0)])
    if steal > args.max_steal:
        reasons.append(f"steal {steal:.1f}%")
    if sc.get("rate") and vals["rt_per_s"] < sc["rate"] * (1 - args.rate_tolerance / 100):
        why = f"paced rate {vals['rt_per_s']:.0f} < {sc['rate']}"
        # Say which side ran out of CPU, if one did: a server that cannot sustain the rate on
        # its core is a result, not noise (it is still left out: its CPU/rt is at another rate).
        if vals.get("srv_cpu", 0) >= 90:
            why += f" (server CPU {vals['srv_cpu']:.0f}%: saturated)"
            m["saturated"] = True
        elif vals.get("cli_cpu", 0) >= 90:
            why += f" (client CPU {vals['cli_cpu']:.0f}%)"
        reasons.append(why)
    if args.max_other_cpu > 0 and m.get("other_cpu", 0) > args.max_other_cpu:
        reasons.append(f"other processes used {m['other_cpu']:.0f}% of a CPU")
    if reasons:
        m["disturbed"] = ", ".join(reasons)
    return m


# ---------------------------------------------------------------- micro-benchmarks

def is_google_benchmark(path):
    """A Google Benchmark binary references benchmark::Initialize (static or shared)."""
    try:
        return b"benchmark10Initialize" in path.read_bytes()
    except OSError:
        return False


# Single-threaded micro-benchmarks run pinned to the server CPU, ours and Go's alike: on these
# VMs the two vCPUs can differ by 30-50 % at the same moment, and an unpinned run lands on
# either. The cross-thread ones need both CPUs and run unpinned.
PINNED_LIBFIBERS = "BM_bare_switch|BM_spin_lock|BM_yield_switch|BM_spawn_join|BM_spawn_batch_join|BM_channel_same_thread"
PINNED_GO = "^Benchmark(YieldSwitch|SpawnWait|SpawnBatchWait|Channel)$"


def google_benchmarks(args, binary, res, pinned=None):
    """Runs a Google Benchmark binary; `pinned` (a filter regex): those benchmarks pinned to
    SERVER_CPU, then the others unpinned."""
    if pinned is not None:
        google_benchmarks_run(args, binary, res, ON_SERVER_CPU, f"--benchmark_filter={pinned}")
        google_benchmarks_run(args, binary, res, [], f"--benchmark_filter=-({pinned})")
    else:
        google_benchmarks_run(args, binary, res, [], None)


def google_benchmarks_run(args, binary, res, prefix, bm_filter):
    argv = prefix + [str(binary), "--benchmark_format=json"]
    if bm_filter:
        argv.append(bm_filter)
    if args.quick:
        argv += ["--benchmark_min_time=0.05"]
    else:
        # Random interleaving: the repetitions of all benchmarks run in a shuffled order, so a
        # host that changes speed meanwhile moves ours and the counterpart in the same binary
        # (cpu_bench's oneTBB runs) alike, instead of whichever ran later.
        argv += [f"--benchmark_repetitions={args.micro_reps}", "--benchmark_report_aggregates_only=true",
                 "--benchmark_enable_random_interleaving=true"]
    log(f"  {binary.name}{' (pinned: ' + bm_filter.split('=', 1)[1] + ')' if prefix else ''} ...")
    r = subprocess.run(argv, capture_output=True, text=True, timeout=900)
    try:
        data = json.loads(r.stdout) if r.returncode == 0 else None
    except json.JSONDecodeError as e:
        data, r.stderr = None, f"bad JSON: {e}"
    if data is None:
        res["errors"].append(f"{binary.name} exit {r.returncode}: {r.stderr[-300:]}")
        return
    to_ns = dict(ns=1, us=1e3, ms=1e6, s=1e9)
    for bm in data.get("benchmarks", []):
        if bm.get("run_type") == "aggregate" and bm.get("aggregate_name") != "median":
            continue
        name = re.sub(r"/real_time$", "", bm.get("run_name", bm["name"]))
        # The per-item counter (s_per_switch, s_per_msg, ...) when there is one, else the time
        # per iteration.
        per = [(k, v) for k, v in bm.items() if k.startswith("s_per_") and isinstance(v, (int, float))]
        if per:
            unit, ns = per[0][0].replace("s_per_", "ns/"), per[0][1] * 1e9
        else:
            unit, ns = "ns/op", bm["real_time"] * to_ns.get(bm.get("time_unit", "ns"), 1)
        source = "oneTBB" if "tbb" in name.lower() else "libfibers"
        res["results"][name] = dict(value=ns, unit=unit, source=source, binary=binary.name)


SCALE_LINE = re.compile(r"([\d.]+) KiB resident per \w+, spawn\+park ([\d.]+) ns/\w+ .*"
                        r"wake-all\+finish ([\d.]+) ns/")


def scale_run(argv, name, source, res, **kw):
    """scale_bench / go-scale: N parked fibers or goroutines, one text line."""
    log(f"  {name} ...")
    r = subprocess.run(argv, capture_output=True, text=True, timeout=900, **kw)
    m = SCALE_LINE.search(r.stdout)
    if r.returncode != 0 or not m:
        res["errors"].append(f"{name} exit {r.returncode}: {(r.stdout + r.stderr)[-300:]}")
        return
    for key, unit, v in zip(("rss", "spawn_park", "wake_all"), ("KiB/each", "ns/each", "ns/each"),
                            m.groups()):
        res["results"][f"{name}/{key}"] = dict(value=float(v), unit=unit, source=source)


def go_micro(args, build, res):
    """go test -bench: the single-threaded benchmarks pinned to SERVER_CPU, the others not."""
    log("  go test -bench (bench/peers/go-micro) ...")
    out = ""
    for prefix, pattern in ((ON_SERVER_CPU, PINNED_GO), ([], "ChannelPingPong2Procs")):
        argv = prefix + [shutil.which("go"), "test", "-run", "^$", "-bench", pattern, "-benchtime",
                         "0.1s" if args.quick else "0.5s", "-count",
                         "1" if args.quick else str(args.micro_reps), "./go-micro"]
        r = subprocess.run(argv, cwd=BENCH / "peers", env=go_env(build), capture_output=True,
                           text=True, timeout=600)
        if r.returncode != 0:
            res["errors"].append(f"go test exit {r.returncode}: {(r.stdout + r.stderr)[-500:]}")
        out += r.stdout
    samples = {}
    for line in out.splitlines():
        mm = re.match(r"^Benchmark(\S+?)(?:-\d+)?\s+\d+\s+(.*)$", line)
        if not mm:
            continue
        metrics = dict((u, float(v)) for v, u in re.findall(r"([\d.]+) (\S+)", mm.group(2)))
        unit = next((u for u in metrics if u.startswith("ns/") and u != "ns/op"), "ns/op")
        samples.setdefault(mm.group(1), (unit, []))[1].append(metrics[unit])
    for name, (unit, vs) in samples.items():
        res["results"][name] = dict(value=statistics.median(vs), unit=unit, source="Go", n=len(vs))


def run_micro(args, build, have_go):
    """Every Google Benchmark *_bench binary of the build (JSON), scale_bench with its Go
    counterpart, and the Go micro-benchmarks."""
    res = dict(results={}, errors=[])
    bins = sorted(p for p in (build / "bench").glob("*_bench") if p.is_file() and os.access(p, os.X_OK))
    for b in bins:
        if is_google_benchmark(b):
            google_benchmarks(args, b, res, PINNED_LIBFIBERS if b.name == "runtime_bench" else None)
    scale = build / "bench" / "scale_bench"
    go_scale = None
    if have_go and (BENCH / "scale" / "go-scale" / "main.go").is_file():
        go_scale = build / "go" / "go-scale"
        r = subprocess.run([shutil.which("go"), "build", "-o", str(go_scale), "main.go"],
                           cwd=BENCH / "scale" / "go-scale", env=go_env(build), capture_output=True, text=True)
        if r.returncode != 0:
            res["errors"].append(f"go build go-scale: {r.stderr[-300:]}")
            go_scale = None
    for n in args.scale:
        if scale.is_file():
            # 16 KiB stacks; canary off is the mass-parking configuration (runtime_options::
            # stack_canary: beyond the guard-page cap a canary costs a second page per fiber),
            # canary on is the default one.
            # Pinned like the other single-threaded micro-benchmarks (go-scale too).
            scale_run(ON_SERVER_CPU + [str(scale), str(n), "16", "0"], f"scale_bench/{n}", "libfibers", res)
            scale_run(ON_SERVER_CPU + [str(scale), str(n), "16", "1"], f"scale_bench/{n}~canary", "libfibers",
                      res)
        if go_scale:
            scale_run(ON_SERVER_CPU + [str(go_scale), str(n)], f"go-scale/{n}", "Go", res, env=go_env(build))
    if have_go:
        go_micro(args, build, res)
    return res


# ---------------------------------------------------------------- environment

def environment(build, bins):
    env = dict(date=datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
               kernel=platform.release(), machine=platform.machine(), cpus=os.cpu_count(),
               python=platform.python_version())
    try:
        with open("/proc/cpuinfo") as f:
            env["cpu_model"] = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), "")
    except OSError:
        pass
    meson_log = build / "meson-logs" / "meson-log.txt"
    if meson_log.is_file():
        m = re.search(r"C\+\+ compiler for the host machine: (.*)", meson_log.read_text(errors="replace"))
        if m:   # e.g. c++ (gcc 12.2.0 "c++ (Debian 12.2.0-14+deb12u1) 12.2.0")
            quoted = re.search(r'"(.*)"', m.group(1))
            env["compiler"] = (quoted.group(1) if quoted else m.group(1)).strip()
    if "compiler" not in env:
        env["compiler"] = (run_text(["c++", "--version"]).splitlines() or ["?"])[0]
    deps = build / "meson-info" / "intro-dependencies.json"
    if deps.is_file():
        for d in json.loads(deps.read_text()):
            if d.get("name") == "boost":
                env["boost"] = d.get("version")
    if "go" in bins:
        env["go"] = run_text(["go", "version"])
    env["git_commit"] = run_text(["git", "-C", str(ROOT), "rev-parse", "HEAD"])
    # The build is of the work tree: name the files that differ from the commit.
    env["git_modified"] = [l.split(None, 1)[-1] for l in run_text(
        ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"]).splitlines()]
    env["git_dirty"] = bool(env["git_modified"])
    env["buildtype"] = "release"
    env["loadavg_start"] = os.getloadavg()
    return env


# ---------------------------------------------------------------- main

def clean_groups(runs, scenario, servers):
    """Repetitions of a scenario in which every server ran undisturbed (or saturated) and
    without error."""
    reps = {}
    for m in runs:
        if m["scenario"] == scenario:
            # A server that cannot sustain a paced rate will not do better on a re-run.
            only_saturated = m.get("saturated") and "other processes" not in m.get("disturbed", "")
            reps.setdefault(m["rep"], []).append("error" not in m and ("disturbed" not in m or only_saturated))
    return sum(1 for ok in reps.values() if len(ok) == len(servers) and all(ok))


def run_echo(args, bins, load, servers, scenarios, outdir):
    """All echo measurements, interleaved, then (within --time-budget) extra repetitions of the
    scenarios that have fewer than --reps undisturbed repetitions. Returns (runs, failed
    (scenario, server) pairs, interrupted): Ctrl-C stops and the suite reports what it has."""
    runs, failed = [], set()   # failed: (scenario, server) that failed the byte check
    total = args.reps * len(scenarios) * len(servers)
    done = 0
    peers = [s for s in servers if s != BASELINE]
    t_loop = time.monotonic()

    def one_rep(rep, sc, label):
        nonlocal done
        # Peers in an order rotated every repetition, C second: every peer runs next to C as
        # often as the others, and each paired ratio compares runs seconds apart.
        k = (rep - 1) % max(1, len(peers))
        order = peers[k:] + peers[:k]
        for s in order[:1] + [BASELINE] + order[1:]:
            done += 1
            if (sc["name"], s) in failed:
                continue
            m = measure(s, bins[s], sc, load, args, outdir)
            m["rep"] = rep
            runs.append(m)
            el = time.monotonic() - t_loop
            where = (f"{done:3}/{total} {el:4.0f}s eta {el / done * (total - done):3.0f}s" if done <= total
                     else f"re-run {el:4.0f}s of {args.time_budget:.0f}s")
            figs = " ".join(f"{FIGURES[f][0]}={fmt_num(m[f])}" for f in sc["figures"] if f in m)
            note = m.get("error") or m.get("disturbed") or ""
            log(f"[{where} load {m['loadavg']:.1f}] {label} "
                f"{sc['name']:<10} {s:<7} {figs}{'  !! ' + note if note else ''}")
            if m.get("verify_failed") or ("error" in m and "errors=" in m["error"]):
                log(f"run_suite: {s} failed in {sc['name']}: not measured further in this scenario")
                failed.add((sc["name"], s))

    try:
        for rep in range(1, args.reps + 1):
            for sc in scenarios:
                one_rep(rep, sc, f"rep {rep}")
        # Re-run disturbed scenarios while the time budget lasts (one repetition costs about
        # servers x (warm-up + measured + 0.4 s)).
        rep, per_rep = args.reps, len(servers) * (args.warmup + args.duration + 0.4)
        while True:
            short = [sc for sc in scenarios if clean_groups(runs, sc["name"], servers) < args.reps]
            if not short or time.monotonic() - t_loop + per_rep > args.time_budget:
                break
            rep += 1
            for sc in short:
                if time.monotonic() - t_loop + per_rep > args.time_budget:
                    break
                one_rep(rep, sc, f"rep {rep}")
    except KeyboardInterrupt:
        log("run_suite: interrupted; reporting what was measured")
        return runs, failed, True
    return runs, failed, False


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=str(ROOT / "build-release"), help="release build directory")
    ap.add_argument("--referee", default=os.environ.get("REFEREE", str(ROOT.parent / "shared" / "referee")),
                    help="folder of the referee tools (echo-load, epoll-echo, build.sh)")
    ap.add_argument("--reps", type=int, default=5, help="interleaved repetitions (default 5)")
    ap.add_argument("--time-budget", type=float, default=450,
                    help="seconds for the echo measurements; time left after the repetitions "
                         "re-runs disturbed scenarios (default 450: the whole suite stays under 10 minutes)")
    ap.add_argument("--duration", type=float, default=2.0, help="measured seconds per run")
    ap.add_argument("--warmup", type=float, default=0.5, help="warm-up seconds per run")
    ap.add_argument("--verify-secs", type=float, default=0.5,
                    help="length of the separate -V pass for large messages")
    ap.add_argument("--quick", action="store_true", help="short smoke run (2 reps, 0.5 s runs)")
    ap.add_argument("--servers", default=",".join(SERVERS), help="comma-separated subset")
    ap.add_argument("--scenarios", default=",".join(s["name"] for s in SCENARIOS), help="comma-separated subset")
    ap.add_argument("--no-micro", action="store_true", help="skip the micro-benchmarks")
    ap.add_argument("--micro-reps", type=int, default=3)
    ap.add_argument("--scale", default="100000",
                    help="parked-fiber counts for scale_bench and go-scale, comma-separated "
                         "(1000000 takes ~70 s and ~12 GB here)")
    ap.add_argument("--max-steal", type=float, default=2.0, help="disturbed above this steal %% on a CPU")
    ap.add_argument("--rate-tolerance", type=float, default=3.0, help="disturbed if a paced rate is missed by more %%")
    ap.add_argument("--max-other-cpu", type=float, default=25.0,
                    help="disturbed if other processes used more than this %% of a CPU (0: off)")
    ap.add_argument("--out", default=str(BENCH / "results"), help="results folder")
    args = ap.parse_args()
    if args.quick:
        args.reps, args.duration, args.warmup, args.verify_secs = 2, 0.5, 0.2, 0.2
        args.time_budget = 0   # no re-runs
        args.scale = "10000"
    args.scale = [int(n) for n in args.scale.split(",") if n]
    t_start = time.monotonic()

    build = Path(args.build).resolve()
    if not shutil.which("taskset"):
        die("taskset not found (util-linux)")
    if (os.cpu_count() or 1) < 2:
        die("needs at least 2 CPUs (server and client pinned apart)")
    bins, load = build_peers(args, build)
    servers = [s for s in SERVERS if s in args.servers.split(",") and s in bins]
    if BASELINE not in servers:
        die("the C baseline must be among the servers")
    scenarios = [s for s in SCENARIOS if s["name"] in args.scenarios.split(",")]

    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    outdir = Path(args.out) / stamp
    outdir.mkdir(parents=True, exist_ok=True)
    env = environment(build, bins)
    log(f"run_suite: servers {', '.join(servers)}; {len(scenarios)} scenarios x {args.reps} reps; "
        f"load average {env['loadavg_start'][0]:.2f}; results in {outdir}")

    runs, failed, interrupted = run_echo(args, bins, load, servers, scenarios, outdir)

    micro = None
    if not args.no_micro and not interrupted:
        log("run_suite: micro-benchmarks")
        micro = run_micro(args, build, "go" in bins)

    env["loadavg_end"] = os.getloadavg()
    wall = time.monotonic() - t_start
    re_runs = len({(m["scenario"], m["rep"]) for m in runs if m["rep"] > args.reps})
    cfg = dict(reps=args.reps, re_runs=re_runs, time_budget=args.time_budget,
               duration=args.duration, warmup=args.warmup, quick=args.quick,
               scenarios=[s["name"] for s in scenarios], servers=servers,
               max_steal=args.max_steal, rate_tolerance=args.rate_tolerance,
               max_other_cpu=args.max_other_cpu, server_cpu=SERVER_CPU, client_cpu=CLIENT_CPU)
    agg = aggregate(runs, servers)
    text = text_report(env, cfg, agg, runs, servers, micro, wall)
    (outdir / "report.txt").write_text(text + "\n")
    (outdir / "results.json").write_text(json.dumps(dict(
        environment=env, config=cfg, wall_time_s=round(wall, 1),
        scenarios={s["name"]: dict(desc=s["desc"], conns=s["conns"], size=s["size"],
                                   rate=s.get("rate"), server_threads=s.get("threads", 1),
                                   figures=s["figures"]) for s in scenarios},
        summary=agg, runs=runs, micro=micro), indent=1) + "\n")
    (outdir / "ratios.svg").write_text(svg_chart(agg, servers, cfg))
    log("")
    log(text)
    log(f"run_suite: wrote {outdir}/report.txt, results.json, ratios.svg (wall time {wall:.0f} s)")
    bad_verify = [f"{sc}/{s}" for sc, s in sorted(failed)]
    if bad_verify:
        die(f"servers that failed the byte check: {', '.join(bad_verify)}")


if __name__ == "__main__":
    main()
