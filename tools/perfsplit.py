#!/usr/bin/env python3
"""Profile one bench.py scenario/test on the whole machine and split the CPU by who pays it.

    python3 tools/perfsplit.py --scenario fast-switch --test rate64 --out DIR [--seconds 6]
    python3 tools/perfsplit.py --scenario fast-ptp --test lat-tcp --sched --queues --out DIR
    python3 tools/perfsplit.py --analyze DIR          # re-print the split of DIR/perf.data

Runs `tools/bench.py --rounds 1` for the one scenario and test (its --duration long enough to
cover the window), waits for the process that carries the test's load (trafgen, the sockperf
client, the iperf3 client), lets it run `--delay` s, then records `--seconds` s of the whole
machine with `perf record -a -g -e cpu-clock` (no hardware counters needed). Before that it
notes every thread's process (so that forwarder threads are known by their program). Every
sample is then put in a group (who ran: the generator, each forwarder program, the load tools,
kernel threads, idle, other jobs) and a category (what it did, from its call chain: tap read,
tap write and the receiving stack it runs, AF_UNIX send/receive, io_uring, epoll, scheduler,
user-space code, other kernel). With the frames delivered in the window (the test's kpps from
bench.py's JSON), each cell is also given in microseconds of CPU per frame.

`--sched` records `perf sched record` instead (wake-up latencies per task: `perf sched
latency`); `--queues` samples, every 0.5 s during the window, `tc -s qdisc` and `ip -s link` in
every namespace of the run (the agents' network namespaces). As root; standard library only.
"""

import argparse
import collections
import json
import os
import re
import signal
import subprocess
import sys
import time

THIS = os.path.abspath(__file__)
BENCH = os.path.join(os.path.dirname(THIS), "bench.py")

FORWARDERS = ("vdens-fast", "vdeplug-fast", "vdens", "vde_plug", "vde_switch")
LOADS = ("iperf3", "sockperf")

# call-chain frames that name what a sample was doing; checked in this order
TAP_WRITE = ("tun_get_user", "tun_chr_write_iter")
RX_STACK = (
    "__netif_receive_skb_core",
    "__netif_receive_skb",
    "netif_receive_skb",
    "__netif_receive_skb_one_core",
    "process_backlog",
    "net_rx_action",
    "ip_rcv",
    "ip_list_rcv",
    "ipv6_rcv",
    "arp_rcv",
    "tcp_v4_rcv",
    "udp_rcv",
    "ip_forward",
)
TAP_READ = ("tun_do_read", "tun_chr_read_iter", "tun_recvmsg", "tun_ring_recv", "tun_put_user")
UNIX_SEND = ("unix_dgram_sendmsg", "unix_stream_sendmsg", "unix_seqpacket_sendmsg")
UNIX_RECV = ("unix_dgram_recvmsg", "__unix_dgram_recvmsg", "unix_stream_recvmsg", "unix_stream_read_generic", "unix_seqpacket_recvmsg")
PACKET_TX = ("packet_sendmsg", "tpacket_snd", "packet_snd")
OTHER_SOCK = ("udp_sendmsg", "inet_recvmsg", "tcp_sendmsg", "tcp_recvmsg", "udp_recvmsg")
SCHED = ("__schedule", "schedule", "try_to_wake_up", "finish_task_switch", "schedule_hrtimeout_range", "do_nanosleep")
URING = ("io_uring_enter", "__do_sys_io_uring_enter", "io_submit_sqes", "io_issue_sqe", "tctx_task_work", "io_cqring_wait", "io_handle_tw_list", "io_poll_task_func", "io_req_task_complete", "__io_run_local_work", "io_run_task_work")
EPOLL = ("do_epoll_wait", "ep_poll", "__x64_sys_epoll_wait", "do_sys_poll", "__x64_sys_poll", "__x64_sys_ppoll", "do_select", "ep_item_poll", "do_epoll_ctl")

CATEGORIES = [
    "user space (own code, libc)",
    "tap write (copy, skb)",
    "tap write: receiving stack",
    "tap read",
    "AF_UNIX send",
    "AF_UNIX recv",
    "PF_PACKET send",
    "other sockets",
    "receiving stack (softirq)",
    "scheduler, wake-ups",
    "io_uring",
    "epoll/poll",
    "other kernel",
]


def classify(frames, dsos):
    """frames: symbols leaf first; dsos: their DSOs. One category."""
    if dsos and not dsos[0].startswith("[kernel") and dsos[0] != "[unknown]":
        return "user space (own code, libc)"
    s = set(frames)
    if s & set(TAP_WRITE):
        return "tap write: receiving stack" if s & set(RX_STACK) else "tap write (copy, skb)"
    if s & set(TAP_READ):
        return "tap read"
    if s & set(UNIX_SEND):
        return "AF_UNIX send"
    if s & set(UNIX_RECV):
        return "AF_UNIX recv"
    if s & set(PACKET_TX):
        return "PF_PACKET send"
    if s & set(OTHER_SOCK):
        return "other sockets"
    if s & set(RX_STACK):
        return "receiving stack (softirq)"
    if s & set(SCHED):
        return "scheduler, wake-ups"
    if s & set(URING) or any(f.startswith("io_") for f in frames):
        return "io_uring"
    if s & set(EPOLL):
        return "epoll/poll"
    return "other kernel"


def descendants(root):
    """pids of ROOT and every process under it."""
    kids = collections.defaultdict(list)
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            stat = open("/proc/%s/stat" % pid).read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        kids[ppid].append(int(pid))
    out, todo = set(), [root]
    while todo:
        p = todo.pop()
        out.add(p)
        todo.extend(kids.get(p, []))
    return out


def snapshot_threads(root=None):
    """tid -> (program, thread name, under ROOT) for every thread now."""
    mine = descendants(root) if root else set()
    out = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            exe = os.path.basename(os.readlink("/proc/%s/exe" % pid))
        except OSError:
            exe = None
        try:
            cmd = open("/proc/%s/cmdline" % pid, "rb").read().split(b"\0")
            prog = os.path.basename(cmd[0].decode(errors="replace")) if cmd and cmd[0] else exe
        except OSError:
            prog = exe
        prog = exe or prog or "?"
        try:
            tids = os.listdir("/proc/%s/task" % pid)
        except OSError:
            continue
        for tid in tids:
            try:
                name = open("/proc/%s/task/%s/comm" % (pid, tid)).read().strip()
            except OSError:
                name = "?"
            out[int(tid)] = (prog, name, int(pid) in mine)
    return out


def group_of(comm, tid, threads):
    if tid == 0:
        return "idle"
    if comm.startswith(("ksoftirqd", "kworker", "rcu", "migration")):
        return "kernel threads (%s)" % re.sub(r"/.*", "", comm)
    prog, name, mine = threads.get(tid, (None, comm, False))
    if not mine:
        # another job's process (other builds and tests on the machine), whatever its name
        return "idle" if comm.startswith("swapper") else "other jobs"
    if comm == "trafgen" or prog == "trafgen":
        return "generator (trafgen)"
    if prog in FORWARDERS:
        return "forwarder %s/%s" % (prog, re.sub(r"[-_]?\d+$", "", name))
    if prog in LOADS or comm in LOADS:
        return "load (%s)" % (prog if prog in LOADS else comm)
    if comm.startswith(("ksoftirqd", "kworker", "rcu", "migration")):
        return "kernel threads (%s)" % re.sub(r"/.*", "", comm)
    return "other jobs"


def parse_script(path):
    """Yield (comm, tid, period_ns, [sym], [dso]) per sample of `perf script`."""
    p = subprocess.Popen(["perf", "script", "-i", path, "-F", "comm,tid,period,ip,sym,dso"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, errors="replace")
    head, syms, dsos = None, [], []
    for line in p.stdout:
        if not line.strip():
            if head:
                yield head + (syms, dsos)
            head, syms, dsos = None, [], []
            continue
        if not line.startswith("\t"):
            m = re.match(r"^\s*(.*?)\s+(\d+)\s+(\d+)\s*$", line.rstrip())
            if m:
                head = (m.group(1), int(m.group(2)), int(m.group(3)))
            continue
        m = re.match(r"^\s+[0-9a-f]+\s+(.*?)\s+\((.*)\)\s*$", line)
        if m and head:
            sym = re.sub(r"\+0x[0-9a-f]+$", "", m.group(1))
            syms.append(sym)
            dsos.append(m.group(2))
    if head:
        yield head + (syms, dsos)
    p.wait()


def analyze(outdir, frames=None, top=25):
    threads = json.load(open(os.path.join(outdir, "threads.json")))
    threads = {int(k): tuple(v) + (True,) * (3 - len(v)) for k, v in threads.items()}
    meta = json.load(open(os.path.join(outdir, "meta.json")))
    cell = collections.Counter()
    leaf = collections.Counter()
    gleaf = collections.Counter()
    total = 0
    for comm, tid, period, syms, dsos in parse_script(os.path.join(outdir, "perf.data")):
        g = group_of(comm, tid, threads)
        c = classify(syms, dsos) if g != "idle" else "idle"
        cell[(g, c)] += period
        total += period
        if g.startswith("forwarder"):
            leaf[(g.split()[1].split("/")[0], syms[0] if syms else "?", dsos[0] if dsos else "?")] += period
        elif g.startswith("generator"):
            gleaf[(syms[0] if syms else "?", syms[1] if len(syms) > 1 else "")] += period
    if frames is None:
        frames = meta.get("frames")
    secs = meta["seconds"]
    unit = meta.get("unit", "frame")
    lines = []
    lines.append("# %s %s: %.1f s x %d CPUs recorded, %s" % (meta["scenario"], meta["test"], secs, os.cpu_count(), "%ss in window %.0f (%.1f k/s)" % (unit, frames, frames / secs / 1e3) if frames else "frames unknown"))
    lines.append("# load average at start %s, at end %s" % (meta.get("load_start"), meta.get("load_end")))
    groups = sorted({g for g, _ in cell}, key=lambda g: -sum(v for (gg, _), v in cell.items() if gg == g))
    cats = [c for c in CATEGORIES + ["idle"] if any(cc == c for _, cc in cell)]
    lines.append("")
    lines.append("| group | category | %% of all CPU | us per %s |" % unit)
    lines.append("|---|---|---:|---:|")
    for g in groups:
        gsum = sum(v for (gg, _), v in cell.items() if gg == g)
        lines.append("| **%s** | all | **%.1f** | **%s** |" % (g, 100.0 * gsum / total, "%.2f" % (gsum / 1e3 / frames) if frames else "-"))
        for c in cats:
            v = cell.get((g, c), 0)
            if v and 100.0 * v / total >= 0.3:
                lines.append("| | %s | %.1f | %s |" % (c, 100.0 * v / total, "%.2f" % (v / 1e3 / frames) if frames else "-"))
    busy = sum(v for (g, _), v in cell.items() if g not in ("idle", "other jobs"))
    lines.append("")
    lines.append("busy CPU of the test (all but idle and other jobs): %.1f%%, %s" % (100.0 * busy / total, "%.2f us per %s" % (busy / 1e3 / frames, unit) if frames else ""))
    by_cat = collections.Counter()
    for (g, c), v in cell.items():
        if g not in ("idle", "other jobs"):
            by_cat[c] += v
    lines.append("")
    lines.append("| category (every group of the test) | %% of all CPU | us per %s |" % unit)
    lines.append("|---|---:|---:|")
    for c, v in by_cat.most_common():
        lines.append("| %s | %.1f | %s |" % (c, 100.0 * v / total, "%.2f" % (v / 1e3 / frames) if frames else "-"))
    lines.append("")
    lines.append("top leaf symbols of the forwarders (--no-children):")
    for (prog, sym, dso), v in leaf.most_common(top):
        lines.append("  %5.2f%%  %-14s %-44s %s" % (100.0 * v / total, prog, sym[:44], dso))
    lines.append("")
    lines.append("top leaf symbols of the generator (leaf <- caller):")
    for (sym, caller), v in gleaf.most_common(12):
        lines.append("  %5.2f%%  %-40s <- %s" % (100.0 * v / total, sym[:40], caller[:40]))
    text = "\n".join(lines) + "\n"
    open(os.path.join(outdir, "split.md"), "w").write(text)
    summary = {"groups": {}, "categories": {c: v / 1e3 / frames if frames else None for c, v in by_cat.items()}, "total_ns": total, "frames": frames, "seconds": secs}
    for (g, c), v in cell.items():
        summary["groups"].setdefault(g, {})[c] = {"pct": 100.0 * v / total, "us_per_frame": v / 1e3 / frames if frames else None}
    json.dump(summary, open(os.path.join(outdir, "split.json"), "w"), indent=1)
    return text


def agents(root):
    """The bench.py agents under ROOT (one per namespace of the run)."""
    out = []
    for pid in map(str, descendants(root)):
        try:
            cmd = open("/proc/%s/cmdline" % pid, "rb").read()
        except OSError:
            continue
        if b"bench.py\0--agent" in cmd:
            out.append(int(pid))
    return out


def find_proc(pattern):
    rx = re.compile(pattern.encode())
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = open("/proc/%s/cmdline" % pid, "rb").read().replace(b"\0", b" ")
        except OSError:
            continue
        if rx.search(cmd):
            return int(pid)
    return None


TRIGGER = {
    "rate": r"^trafgen ",
    "zeroloss": r"^trafgen ",
    "lat-flood": r"^sockperf under-load",
    "lat-tcp": r"^sockperf ping-pong",
    "lat": r"^sockperf ping-pong",
    "tcp": r"^iperf3 -c",
}


def queues(outdir, seconds, root):
    """tc -s qdisc / ip -s link in the network namespace of every agent of ROOT, every 0.5 s."""
    seen = {}
    for pid in agents(root):
        try:
            ns = os.readlink("/proc/%d/ns/net" % pid)
        except OSError:
            continue
        seen.setdefault(ns, pid)
    with open(os.path.join(outdir, "queues.txt"), "w") as f:
        end = time.time() + seconds
        while time.time() < end:
            f.write("=== %.2f\n" % time.time())
            for ns, pid in seen.items():
                for argv in (["tc", "-s", "qdisc", "show"], ["ip", "-s", "link", "show"]):
                    r = subprocess.run(["nsenter", "--net=/proc/%d/ns/net" % pid] + argv, capture_output=True, text=True, timeout=5)
                    f.write("--- %s %s\n%s" % (ns, " ".join(argv), r.stdout))
            time.sleep(0.5)


def run(args):
    os.makedirs(args.out, exist_ok=True)
    dur = max(args.duration, int(args.delay + args.seconds + 3))
    bargv = [sys.executable, BENCH, "--rounds", "1", "--duration", str(dur), "--scenarios", args.scenario, "--tests", args.test, "--json", os.path.join(args.out, "bench.json")] + args.bench_args
    log = open(os.path.join(args.out, "bench.err"), "w")
    bench = subprocess.Popen(bargv, stdout=log, stderr=log, start_new_session=True)
    key = next(k for k in TRIGGER if args.test.startswith(k) and (k != "lat" or args.test == "lat"))
    pat = args.trigger or TRIGGER[key]
    try:
        deadline = time.time() + 120
        while find_proc(pat) is None:
            if bench.poll() is not None or time.time() > deadline:
                raise SystemExit("profile: no process matching %r appeared (bench.py: see %s/bench.err)" % (pat, args.out))
            time.sleep(0.05)
        time.sleep(args.delay)
        threads = snapshot_threads(bench.pid)
        json.dump({str(k): v for k, v in threads.items()}, open(os.path.join(args.out, "threads.json"), "w"))
        load0 = open("/proc/loadavg").read().split()[:3]
        qp = None
        if args.queues:
            import threading

            qp = threading.Thread(target=queues, args=(args.out, args.seconds, bench.pid))
            qp.start()
        if args.sched:
            rec = ["perf", "sched", "record", "-a", "-o", os.path.join(args.out, "sched.data"), "--", "sleep", str(args.seconds)]
        else:
            rec = ["perf", "record", "-a", "-g", "-e", "cpu-clock", "-F", str(args.freq), "-o", os.path.join(args.out, "perf.data"), "--", "sleep", str(args.seconds)]
        subprocess.run(rec, stdout=subprocess.DEVNULL, stderr=open(os.path.join(args.out, "perf.err"), "w"), timeout=args.seconds + 60)
        if qp:
            qp.join()
        load1 = open("/proc/loadavg").read().split()[:3]
        bench.wait(timeout=dur + 300)
    finally:
        if bench.poll() is None:
            os.killpg(bench.pid, signal.SIGTERM)
            bench.wait()
    res = json.load(open(os.path.join(args.out, "bench.json")))
    metrics = next((s["metrics"] for s in res["samples"] if s.get("metrics")), {}) or {}
    frames = metrics["kpps"] * 1e3 * args.seconds if metrics.get("kpps") else None
    unit = "frame"
    if frames is None and metrics.get("gbps"):
        # a TCP test: per MB of payload instead of per frame
        frames, unit = metrics["gbps"] * 1e9 / 8 * args.seconds / 1e6, "MB"
    meta = {"unit": unit, "scenario": args.scenario, "test": args.test, "seconds": args.seconds, "freq": args.freq, "frames": frames, "metrics": metrics, "load_start": load0, "load_end": load1, "bench_argv": bargv}
    json.dump(meta, open(os.path.join(args.out, "meta.json"), "w"), indent=1)
    if args.sched:
        d = os.path.join(args.out, "sched.data")
        r = subprocess.run(["perf", "sched", "latency", "-i", d, "--sort", "max"], capture_output=True, text=True)
        open(os.path.join(args.out, "sched-latency.txt"), "w").write(r.stdout)
        print(r.stdout[:6000])
    else:
        print(analyze(args.out, frames))


def self_test():
    """The classifier and the grouping on canned call chains (leaf first)."""
    k = ["[kernel.kallsyms]"]
    cases = [
        (["_copy_to_iter", "tun_do_read", "tun_chr_read_iter", "io_read", "io_issue_sqe"], k * 5, "tap read"),
        (["ip_rcv", "__netif_receive_skb_one_core", "netif_receive_skb", "tun_get_user", "tun_chr_write_iter"], k * 5, "tap write: receiving stack"),
        (["_copy_from_iter", "tun_get_user", "tun_chr_write_iter", "do_iter_readv_writev"], k * 4, "tap write (copy, skb)"),
        (["skb_copy_datagram_iter", "unix_dgram_recvmsg", "io_recv"], k * 3, "AF_UNIX recv"),
        (["sock_alloc_send_pskb", "unix_dgram_sendmsg", "io_sendmsg"], k * 3, "AF_UNIX send"),
        (["io_submit_sqes", "__do_sys_io_uring_enter"], k * 2, "io_uring"),
        (["__schedule", "schedule", "io_cqring_wait"], k * 3, "scheduler, wake-ups"),
        (["ep_poll", "do_epoll_wait"], k * 2, "epoll/poll"),
        (["node::run"], ["/usr/bin/vdens-fast"], "user space (own code, libc)"),
        (["tun_net_xmit", "__dev_direct_xmit", "packet_sendmsg"], k * 3, "PF_PACKET send"),
        (["do_syscall_64"], k, "other kernel"),
    ]
    bad = 0
    for syms, dsos, want in cases:
        got = classify(syms, dsos)
        if got != want:
            bad += 1
            print("FAIL classify %s: %s, want %s" % (syms[1] if len(syms) > 1 else syms[0], got, want))
    threads = {10: ("vdens-fast", "vdens-uring0", True), 11: ("trafgen", "trafgen", True), 12: ("vdens-fast", "vdens-uring0", False), 13: ("sockperf", "sockperf", True)}
    for (comm, tid), want in (
        (("vdens-uring0", 10), "forwarder vdens-fast/vdens-uring"),
        (("trafgen", 11), "generator (trafgen)"),
        (("vdens-uring0", 12), "other jobs"),
        (("sockperf", 13), "load (sockperf)"),
        (("swapper/0", 0), "idle"),
        (("ksoftirqd/1", 20), "kernel threads (ksoftirqd)"),
    ):
        got = group_of(comm, tid, threads)
        if got != want:
            bad += 1
            print("FAIL group %s/%d: %s, want %s" % (comm, tid, got, want))
    print("%d failed" % bad if bad else "perfsplit.py self-test: ok")
    return 1 if bad else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenario")
    ap.add_argument("--test")
    ap.add_argument("--out")
    ap.add_argument("--seconds", type=float, default=6)
    ap.add_argument("--delay", type=float, default=1.5, help="s after the load starts before recording")
    ap.add_argument("--duration", type=int, default=0, help="bench.py --duration (default: covers the window)")
    ap.add_argument("--freq", type=int, default=2000)
    ap.add_argument("--trigger", help="regex on a command line that starts the window")
    ap.add_argument("--sched", action="store_true", help="perf sched record instead of cpu-clock")
    ap.add_argument("--queues", action="store_true", help="sample tc -s qdisc / ip -s link in the run's namespaces")
    ap.add_argument("--analyze", metavar="DIR")
    ap.add_argument("--self-test", action="store_true", help="check the classifier on canned call chains")
    ap.add_argument("--frames", type=float)
    ap.add_argument("bench_args", nargs="*", help="after --: more bench.py options (e.g. --vdens-fast PATH)")
    args = ap.parse_args()
    if args.self_test:
        sys.exit(self_test())
    if args.analyze:
        print(analyze(args.analyze, args.frames))
        return
    if not (args.scenario and args.test and args.out):
        ap.error("--scenario, --test and --out are needed")
    run(args)


if __name__ == "__main__":
    main()
