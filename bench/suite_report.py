"""Part of bench/run_suite.py: what the suite measures (servers, scenarios, figures, the
micro-benchmark pairs) and how it reports it (paired statistics, text table, SVG chart).
Python 3 standard library only."""

import math
import re
import statistics

SERVER_CPU, CLIENT_CPU = "1", "0"
BASELINE = "c"

# name -> label; the baseline first. argv is built in server_argv().
SERVERS = {
    "c": "epoll-echo (C)",
    "fibers": "fibers-echo",
    "fibers-uring": "fibers-echo (io_uring)",
    "go": "go-echo",
    "asio": "asio-echo",
}

# Figures: key in echo-load's output -> (short name, unit, True if higher is better).
FIGURES = {
    "rt_per_s": ("rt/s", "", True),
    "MB_per_s": ("MB/s", "", True),
    "p50_us": ("p50", "us", False),
    "p99_us": ("p99", "us", False),
    "srv_us_per_rt": ("srv CPU/rt", "us", False),
}

# The first figure of a scenario is its main figure (the one charted); the others are reported.
SCENARIOS = [
    dict(name="c1_64", desc="1 connection, 64 B messages: latency", conns=1, size=64,
         figures=["p50_us", "p99_us", "rt_per_s"]),
    dict(name="c64_64", desc="64 connections, 64 B: saturated round-trips/s", conns=64, size=64,
         figures=["rt_per_s", "srv_us_per_rt"]),
    dict(name="c1000_64", desc="1,000 connections, 64 B: saturated round-trips/s", conns=1000,
         size=64, figures=["rt_per_s", "srv_us_per_rt"]),
    dict(name="c16_16k", desc="16 connections, 16 KiB messages: streaming MB/s", conns=16,
         size=16384, figures=["MB_per_s", "srv_us_per_rt"], verify_apart=True),
    dict(name="paced50k", desc="paced 50k rt/s, 64 connections, 64 B: server CPU per round-trip",
         conns=64, size=64, rate=50000, figures=["srv_us_per_rt", "p99_us"]),
    dict(name="paced100k", desc="paced 100k rt/s, 64 connections, 64 B: server CPU per round-trip",
         conns=64, size=64, rate=100000, figures=["srv_us_per_rt", "p99_us"]),
    dict(name="t2_c64_64", desc="2 server threads (client 2 threads, nothing pinned), 64 connections, 64 B",
         conns=64, size=64, threads=2, figures=["rt_per_s", "srv_us_per_rt"]),
]

# Micro-benchmarks: libfibers result -> (counterpart, target from issue 5 in the same unit).
MICRO_PAIRS = {
    "BM_yield_switch": ("YieldSwitch", 30),
    "BM_spawn_join": ("SpawnWait", 150),
    "BM_spawn_batch_join": ("SpawnBatchWait", None),
    "BM_channel_same_thread/0": ("Channel/cap=0", 60),
    "BM_channel_same_thread/1": ("Channel/cap=1", None),
    "BM_channel_same_thread/64": ("Channel/cap=64", None),
    "BM_channel_same_thread/1024": ("Channel/cap=1024", None),
}


def micro_pair(name):
    """(counterpart name, target) of a libfibers micro-benchmark result."""
    if name in MICRO_PAIRS:
        return MICRO_PAIRS[name]
    # cpu_bench: BM_fib_fibers_pool/N, BM_fib_tasks_fibers/N, BM_axpy_fibers_range/N (and
    # _index), BM_hash_..., BM_sum_... against the oneTBB run of the same kernel on N threads
    # (BM_fib_tbb/N, BM_fib_tasks_tbb/N, BM_axpy_tbb/N, ...) in the same binary; further
    # arguments (BM_short_hash_fibers_range/N/n) go along.
    m = re.match(r"^(BM_\w+?)_fibers(?:_pool|_range|_index)?/(\d+(?:/\d+)*)$", name)
    if m:
        return f"{m.group(1)}_tbb/{m.group(2)}", None
    if name.startswith("scale_bench/"):                 # N parked fibers vs goroutines
        return ("go-scale/" + name.split("/", 1)[1].replace("~canary", ""),
                (4 if name.endswith("/rss") and "~canary" not in name else None))
    return None, None


# ---------------------------------------------------------------- statistics

def summary(values):
    if not values:
        return None
    return dict(median=statistics.median(values), min=min(values), max=max(values), n=len(values))


def aggregate(runs, servers):
    """Per scenario, server and figure: median [min-max] of the undisturbed runs, and the
    median of paired ratios (server / C of the same repetition) over the repetitions where
    both were undisturbed."""
    ok = lambda m: m and "error" not in m and "disturbed" not in m
    by = {}
    for m in runs:
        by.setdefault((m["scenario"], m["rep"], m["server"]), m)
    out = {}
    for sc in SCENARIOS:
        reps = sorted({m["rep"] for m in runs if m["scenario"] == sc["name"]})
        scd = out[sc["name"]] = {}
        for s in servers:
            sd = scd[s] = {}
            for fig in sc["figures"]:
                vals = [by[(sc["name"], r, s)][fig] for r in reps
                        if ok(by.get((sc["name"], r, s))) and fig in by[(sc["name"], r, s)]]
                ratios = []
                for r in reps:
                    a, c = by.get((sc["name"], r, s)), by.get((sc["name"], r, BASELINE))
                    if ok(a) and ok(c) and fig in a and c.get(fig):
                        ratios.append(a[fig] / c[fig])
                sd[fig] = dict(value=summary(vals), ratio=summary(ratios))
                # Every run disturbed: keep their figures visible, flagged, rather than nothing.
                usable = lambda m: m and "error" not in m and fig in m
                all_vals = [by[(sc["name"], r, s)][fig] for r in reps if usable(by.get((sc["name"], r, s)))]
                all_ratios = [by[(sc["name"], r, s)][fig] / by[(sc["name"], r, BASELINE)][fig] for r in reps
                              if usable(by.get((sc["name"], r, s))) and usable(by.get((sc["name"], r, BASELINE)))
                              and by[(sc["name"], r, BASELINE)][fig]]
                if not vals and all_vals:
                    sd[fig]["disturbed_only"] = summary(all_vals)
                if not ratios and all_ratios:
                    sd[fig]["disturbed_ratio"] = summary(all_ratios)
    return out


# ---------------------------------------------------------------- report

def fmt_num(v):
    if v is None:
        return "-"
    a = abs(v)
    if a >= 1000:
        return f"{v:,.0f}"
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def fmt_summary(s, ratio=False):
    if not s:
        return "-"
    if ratio:
        return f"{s['median']:.2f} [{s['min']:.2f}-{s['max']:.2f}]"
    return f"{fmt_num(s['median'])} [{fmt_num(s['min'])}-{fmt_num(s['max'])}]"


def text_report(env, cfg, agg, runs, servers, micro, wall):
    L = []
    L.append("libfibers benchmark suite")
    L.append(f"date {env['date']}  commit {env.get('git_commit', '?')[:12]}"
             f"{' (dirty tree)' if env.get('git_dirty') else ''}  wall time {wall:.0f} s")
    L.append(f"kernel {env['kernel']}  cpu {env.get('cpu_model', '?')} x{env['cpus']}  "
             f"compiler {env.get('compiler', '?')}  boost {env.get('boost', '?')}  {env.get('go', 'go: -')}")
    if env.get("git_modified"):
        L.append("built from the work tree; differs from the commit in: "
                 + ", ".join(env["git_modified"]))
    L.append(f"load average at start {env['loadavg_start'][0]:.2f}, at end {env['loadavg_end'][0]:.2f}")
    L.append(f"{cfg['reps']} interleaved repetitions"
             f"{' + ' + str(cfg['re_runs']) + ' re-runs of disturbed scenarios' if cfg.get('re_runs') else ''}, warm-up {cfg['warmup']} s + measured {cfg['duration']} s "
             f"per run; server on CPU {SERVER_CPU}, echo-load on CPU {CLIENT_CPU} (2-thread variants unpinned)")
    L.append("values: median [min-max] over undisturbed repetitions; ratio: median [min-max] of the "
             "paired ratios server/C per repetition")
    L.append("")
    for sc in SCENARIOS:
        if sc["name"] not in cfg["scenarios"]:
            continue
        L.append(f"== {sc['name']}: {sc['desc']}")
        L.append(f"  {'figure':<30} {'server':<23} {'median [min-max]':<34} {'n':>2}   ratio to C [min-max]")
        for fig in sc["figures"]:
            short, unit, hib = FIGURES[fig]
            label = f"{short}{' ' + unit if unit else ''} ({'higher' if hib else 'lower'} better)"
            for s in servers:
                d = agg[sc["name"]][s][fig]
                val, n = fmt_summary(d["value"]), d["value"]["n"] if d["value"] else 0
                if not d["value"] and d.get("disturbed_only"):
                    val = "!" + fmt_summary(d["disturbed_only"]) + " all disturbed"
                ratio = fmt_summary(d["ratio"], True)
                if not d["ratio"] and d.get("disturbed_ratio"):
                    ratio = "!" + fmt_summary(d["disturbed_ratio"], True) + " all disturbed"
                if s == BASELINE:
                    ratio = "1"
                L.append(f"  {label:<30} {SERVERS[s]:<23} {val:<34} {n:>2}   {ratio}")
                label = ""
        L.append("")
    bad = [m for m in runs if "disturbed" in m or "error" in m]
    L.append(f"disturbed or failed runs (left out of the medians): {len(bad)} of {len(runs)}")
    for m in bad:
        L.append(f"  rep {m['rep']} {m['scenario']} {m['server']}: {m.get('error') or m.get('disturbed')}")
    L.append("")
    if micro:
        L.append("== micro-benchmarks (libfibers: the Google Benchmark binaries in bench/, median of "
                 "repetitions, and scale_bench; counterparts: Go (go test -bench, median; go-scale) "
                 "or oneTBB in the same binary)")
        L.append(f"  {'benchmark':<36} {'unit':<10} {'libfibers':>10} {'counterpart':>12} "
                 f"{'value':>10} {'ratio':>7} {'target':>8}")
        results, used = micro["results"], set()
        for name, f in results.items():
            if f["source"] != "libfibers":
                continue
            peer, target = micro_pair(name)
            p = results.get(peer) if peer else None
            used.add(peer)
            pv = fmt_num(p["value"]) if p else "-"
            ratio = f"{f['value'] / p['value']:.2f}" if p and p["value"] else "-"
            tgt = f"<= {target}" if target else ""
            L.append(f"  {name:<36} {f['unit']:<10} {fmt_num(f['value']):>10} {p['source'] if p else '-':>12} "
                     f"{pv:>10} {ratio:>7} {tgt:>8}")
        for name, p in results.items():
            if p["source"] != "libfibers" and name not in used:
                L.append(f"  {'(' + p['source'] + ' only) ' + name:<36} {p['unit']:<10} {'-':>10} "
                         f"{p['source']:>12} {fmt_num(p['value']):>10}")
        for e in micro["errors"]:
            L.append(f"  error: {e}")
        L.append("")
    return "\n".join(L)


def svg_chart(agg, servers, cfg):
    """Grouped bars of the paired ratios to C on a log scale; whiskers min-max."""
    groups = []
    for sc in SCENARIOS:
        if sc["name"] not in cfg["scenarios"]:
            continue
        figs = sc["figures"][:1]
        if sc.get("rate"):
            figs = sc["figures"][:2]   # CPU per round-trip and p99
        for fig in figs:
            groups.append((sc["name"], fig))
    peers = [s for s in servers if s != BASELINE]
    colours = {"fibers": "#1f77b4", "fibers-uring": "#9467bd", "go": "#2ca02c", "asio": "#d62728"}
    lo, hi = 0.25, 8.0
    W, H, left, top, bottom = max(760, 110 + 95 * len(groups)), 430, 60, 50, 110
    ph = H - top - bottom

    def y(v):
        v = min(max(v, lo), hi)
        return top + ph * (math.log(hi) - math.log(v)) / (math.log(hi) - math.log(lo))

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
           f'font-family="sans-serif" font-size="11">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{W / 2}" y="20" text-anchor="middle" font-size="14">Ratio to the C epoll '
           f'baseline (paired medians, log scale; whiskers: min-max)</text>']
    for t in (0.25, 0.5, 0.75, 1, 1.5, 2, 4, 8):
        out.append(f'<line x1="{left}" x2="{W - 10}" y1="{y(t):.1f}" y2="{y(t):.1f}" '
                   f'stroke="{"#000" if t == 1 else "#ddd"}" stroke-width="{1.5 if t == 1 else 1}"/>')
        out.append(f'<text x="{left - 6}" y="{y(t) + 4:.1f}" text-anchor="end">{t:g}</text>')
    gw = 95
    bw = (gw - 20) / max(1, len(peers))
    for gi, (scn, fig) in enumerate(groups):
        x0 = left + 10 + gi * gw
        for pi, s in enumerate(peers):
            r, opacity = agg[scn][s][fig]["ratio"], 1
            if not r:   # only disturbed pairs: drawn faint
                r, opacity = agg[scn][s][fig].get("disturbed_ratio"), 0.3
            if not r:
                continue
            x = x0 + pi * bw
            y1, yb = y(r["median"]), y(1)
            out.append(f'<rect x="{x:.1f}" y="{min(y1, yb):.1f}" width="{bw - 2:.1f}" '
                       f'height="{max(abs(yb - y1), 1):.1f}" fill="{colours.get(s, "#888")}" fill-opacity="{opacity}">'
                       f'<title>{SERVERS[s]} {scn} {fig}: {r["median"]:.3f} [{r["min"]:.3f}-{r["max"]:.3f}] '
                       f'n={r["n"]}</title></rect>')
            xc = x + (bw - 2) / 2
            out.append(f'<line x1="{xc:.1f}" x2="{xc:.1f}" y1="{y(r["min"]):.1f}" y2="{y(r["max"]):.1f}" '
                       f'stroke="#333"/>')
            out.append(f'<text x="{xc:.1f}" y="{min(y1, yb) - 3:.1f}" text-anchor="middle" '
                       f'font-size="8">{r["median"]:.2f}</text>')
        short, _, hib = FIGURES[fig]
        cx = x0 + (gw - 20) / 2
        out.append(f'<text x="{cx:.1f}" y="{H - bottom + 16}" text-anchor="middle">{scn}</text>')
        out.append(f'<text x="{cx:.1f}" y="{H - bottom + 30}" text-anchor="middle">{short}</text>')
        out.append(f'<text x="{cx:.1f}" y="{H - bottom + 44}" text-anchor="middle" '
                   f'fill="#666">{"higher" if hib else "lower"} better</text>')
    lx = left
    for s in peers:
        out.append(f'<rect x="{lx}" y="{H - 40}" width="12" height="12" fill="{colours.get(s, "#888")}"/>')
        out.append(f'<text x="{lx + 16}" y="{H - 30}">{SERVERS[s]}</text>')
        lx += 130
    out.append(f'<text x="{lx}" y="{H - 30}">C baseline = 1 (black line); faint bars: only disturbed runs</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"
