#!/usr/bin/env python3
"""Side-by-side benchmark: vdens-fast against classic vdens / vde_plug / vde_switch.

Every scenario is two endpoints, "a" (10.99.0.1/24) and "b" (10.99.0.2/24), each a network
namespace the harness creates itself (unshare -n, vdens, vdens-fast).  Inside each namespace runs
a small agent (this same file with --agent) that reads one JSON request per line on stdin and
answers one JSON line on stdout: that pipe is the control channel that sequences the tests.

Tests run interleaved: for every round, for every test, each scenario in turn (the scenario order
rotates each round), so drift on the machine hits all scenarios alike.

Python 3.11 standard library only.  See tools/README.md.
"""

import argparse
import csv
import io
import json
import math
import os
import platform
import re
import selectors
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

THIS = os.path.abspath(__file__)
REPO = os.path.dirname(os.path.dirname(THIS))

ADDR_A = "10.99.0.1"
ADDR_B = "10.99.0.2"
PREFIX = 24
IPERF_PORT = 5201
CLK_TCK = os.sysconf("SC_CLK_TCK")

BASELINE = "classic-ptp"
KERNEL = "veth"

# test name -> (label, list of (metric, unit, higher_is_better))
TESTS = {
    "tcp1": ("TCP 1 stream", [("gbps", "Gbit/s", True), ("cpu_s_per_gb", "CPU s/GB", False)]),
    "tcp4": ("TCP 4 streams", [("gbps", "Gbit/s", True), ("cpu_s_per_gb", "CPU s/GB", False)]),
    # iperf3 -R: the server's side sends (on ptp:// the first opener, which sends to the
    # peer's path by name, where the second opener sends on a connected socket)
    "tcp1r": ("TCP 1 stream reverse", [("gbps", "Gbit/s", True), ("cpu_s_per_gb", "CPU s/GB", False)]),
    "udp64": (
        "UDP 64 B",
        [
            ("kpps", "kpps", True),
            ("gbps", "Gbit/s", True),
            ("loss_pct", "loss %", False),
            ("cpu_s_per_gb", "CPU s/GB", False),
        ],
    ),
    "udp1400": (
        "UDP 1400 B",
        [
            ("kpps", "kpps", True),
            ("gbps", "Gbit/s", True),
            ("loss_pct", "loss %", False),
            ("cpu_s_per_gb", "CPU s/GB", False),
        ],
    ),
    "ping": (
        "ping RTT",
        [("rtt_avg_ms", "avg ms", False), ("rtt_p99_ms", "p99 ms", False), ("loss_pct", "loss %", False)],
    ),
}

# NFV-style tests (trafgen, sockperf): frame sizes count the 4-byte FCS, as RFC 2544 does, so a
# "64 B" frame is 60 bytes handed to the interface
RATE_METRICS = [
    ("kpps", "kpps", True),
    ("offered_kpps", "offered kpps", True),
    ("loss_pct", "loss %", False),
    ("cpu_s_per_mframe", "CPU s/Mframe", False),
]
ZEROLOSS_METRICS = [("kpps", "kpps", True), ("overload_kpps", "overload kpps", True)]
LAT_METRICS = [("p50_us", "p50 us", False), ("p99_us", "p99 us", False), ("p999_us", "p99.9 us", False), ("loss_pct", "loss %", False)]
FRAME_SIZES = (64, 512, 1518)
for _size in FRAME_SIZES:
    TESTS["rate%d" % _size] = ("%d B frames, overload" % _size, list(RATE_METRICS))
for _size in FRAME_SIZES:
    TESTS["zeroloss%d" % _size] = ("%d B frames, zero-loss" % _size, list(ZEROLOSS_METRICS))
TESTS["lat"] = ("sockperf RTT idle", list(LAT_METRICS))
TESTS["lat-tcp"] = ("sockperf RTT + TCP", list(LAT_METRICS) + [("tcp_gbps", "TCP Gbit/s", True)])
TESTS["lat-flood"] = ("sockperf RTT + 64 B flood", list(LAT_METRICS) + [("flood_kpps", "flood kpps", True)])

# metrics drawn in the chart: (test, metric)
CHART_METRICS = [
    ("tcp1", "gbps"),
    ("tcp4", "gbps"),
    ("tcp1r", "gbps"),
    ("udp64", "kpps"),
    ("udp1400", "gbps"),
    ("ping", "rtt_avg_ms"),
    ("ping", "rtt_p99_ms"),
    ("tcp1", "cpu_s_per_gb"),
    ("tcp4", "cpu_s_per_gb"),
    ("rate64", "kpps"),
    ("zeroloss64", "kpps"),
    ("rate512", "kpps"),
    ("rate1518", "kpps"),
    ("rate64", "cpu_s_per_mframe"),
    ("lat", "p50_us"),
    ("lat", "p99_us"),
    ("lat-tcp", "p99_us"),
    ("lat-flood", "p99_us"),
]


class BenchError(Exception):
    """A step of a scenario or test failed; the message is one line: what failed: why (hint)."""


class ScenarioDown(BenchError):
    """The scenario cannot run any more tests (an endpoint or forwarder died)."""


# --------------------------------------------------------------------------------------------
# agent: runs inside a namespace, driven over stdin/stdout
# --------------------------------------------------------------------------------------------


def agent_main():
    procs = {}
    out = sys.stdout

    def reply(obj):
        out.write(json.dumps(obj) + "\n")
        out.flush()

    def collect(p):
        outs = []
        for f in (p.bench_out, p.bench_err):
            f.seek(0)
            outs.append(f.read().decode(errors="replace"))
            f.close()
        return outs

    def listening(port, proto="tcp"):
        want = ":%04X" % port
        # a TCP socket listens in state 0A; a bound UDP socket sits in 07 (TCP_CLOSE)
        state = "0A" if proto == "tcp" else "07"
        for name in ("/proc/net/%s" % proto, "/proc/net/%s6" % proto):
            try:
                with open(name) as f:
                    next(f)
                    for line in f:
                        fields = line.split()
                        if fields[1].endswith(want) and fields[3] == state:
                            return True
            except OSError:
                pass
        return False

    def killgroup(p, sig):
        try:
            os.killpg(p.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    # what it spawned lives in process groups of its own (see spawn): on SIGTERM/SIGHUP (the
    # harness stopping the endpoint's group) leave through the clean-up below, which stops them
    def leave(signum, frame):
        raise SystemExit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, leave)

    reply({"ready": True, "pid": os.getpid()})
    try:
        for line in sys.stdin:
            req = json.loads(line)
            op = req.get("op")
            try:
                if op == "run":
                    try:
                        p = subprocess.run(
                            req["argv"],
                            stdin=subprocess.DEVNULL,
                            capture_output=True,
                            timeout=req.get("timeout", 30),
                        )
                        reply(
                            {
                                "rc": p.returncode,
                                "out": p.stdout.decode(errors="replace"),
                                "err": p.stderr.decode(errors="replace"),
                            }
                        )
                    except subprocess.TimeoutExpired as e:
                        reply(
                            {
                                "rc": None,
                                "timed_out": True,
                                "out": (e.stdout or b"").decode(errors="replace"),
                                "err": (e.stderr or b"").decode(errors="replace"),
                            }
                        )
                elif op == "spawn":
                    o, e = tempfile.TemporaryFile(), tempfile.TemporaryFile()
                    # a group of its own: a program that forks workers (trafgen does) is stopped whole
                    p = subprocess.Popen(req["argv"], stdin=subprocess.DEVNULL, stdout=o, stderr=e, start_new_session=True)
                    p.bench_out, p.bench_err = o, e
                    procs[req["tag"]] = p
                    reply({"pid": p.pid})
                elif op in ("wait", "kill"):
                    p = procs.pop(req["tag"])
                    if op == "kill":
                        killgroup(p, signal.SIGTERM)
                    try:
                        rc = p.wait(timeout=req.get("timeout", 10))
                        timed_out = False
                    except subprocess.TimeoutExpired:
                        killgroup(p, signal.SIGKILL)
                        rc = p.wait()
                        timed_out = True
                    killgroup(p, signal.SIGKILL)  # whatever it left behind in its group
                    o, e = collect(p)
                    reply({"rc": rc, "timed_out": timed_out, "out": o, "err": e})
                elif op == "wait_listen":
                    deadline = time.monotonic() + req.get("timeout", 5)
                    proto = req.get("proto", "tcp")
                    ok = listening(req["port"], proto)
                    while not ok and time.monotonic() < deadline:
                        time.sleep(0.02)
                        ok = listening(req["port"], proto)
                    p = procs.get(req.get("tag"))
                    dead = p is not None and p.poll() is not None
                    reply({"ok": ok, "dead": dead})
                elif op == "netdev":
                    # this namespace's interface counters, stamped with the (system-wide) monotonic clock
                    with open("/proc/net/dev") as f:
                        text = f.read()
                    reply({"t": time.monotonic(), "text": text})
                elif op == "exit":
                    reply({"bye": True})
                    break
                else:
                    reply({"error": "unknown op %r" % op})
            except Exception as e:  # report, keep serving
                reply({"error": "%s: %s" % (type(e).__name__, e)})
    finally:
        for p in procs.values():
            try:
                killgroup(p, signal.SIGKILL)
                p.wait(timeout=5)
            except Exception:
                pass


# --------------------------------------------------------------------------------------------
# parsers and statistics (pure; covered by --self-test)
# --------------------------------------------------------------------------------------------


def parse_iperf_tcp(text):
    """iperf3 -J client output of a TCP test -> metrics (receiver side = delivered)."""
    d = _iperf_json(text)
    end = d.get("end", {})
    recv = end.get("sum_received")
    if not recv or not recv.get("seconds"):
        raise BenchError("iperf3 TCP result: no end.sum_received in the JSON (test did not finish)")
    sent = end.get("sum_sent", {})
    return {
        "gbps": recv["bits_per_second"] / 1e9,
        "bytes": recv["bytes"],
        "seconds": recv["seconds"],
        "retransmits": sent.get("retransmits"),
    }


def parse_iperf_udp(text):
    """iperf3 -u -J client output -> delivered pps, Gbit/s (payload), loss % (vs packets sent)."""
    d = _iperf_json(text)
    end = d.get("end", {})
    recv = end.get("sum_received")
    sent = end.get("sum_sent")
    if not recv or not sent or not recv.get("seconds"):
        raise BenchError("iperf3 UDP result: no end.sum_received/sum_sent in the JSON (test did not finish)")
    delivered = recv["packets"] - recv["lost_packets"]
    sent_pk = sent["packets"]
    loss = 100.0 * (1.0 - delivered / sent_pk) if sent_pk else 100.0
    secs = recv["seconds"]
    return {
        "kpps": delivered / secs / 1e3,
        "gbps": recv["bytes"] * 8 / secs / 1e9,
        "loss_pct": max(0.0, loss),
        "bytes": recv["bytes"],
        "seconds": secs,
        "sent_packets": sent_pk,
        "jitter_ms": recv.get("jitter_ms"),
    }


def _iperf_json(text):
    try:
        d = json.loads(text)
    except ValueError:
        raise BenchError("iperf3 result: output is not JSON (%s)" % _last_line(text, "empty output"))
    if not isinstance(d, dict):
        raise BenchError("iperf3 result: output is not a JSON object")
    if d.get("error"):
        raise BenchError("iperf3: %s" % d["error"])
    return d


_PING_TIME = re.compile(r"icmp_seq=\d+ .*time=([0-9.]+) ms")
_PING_SUM = re.compile(r"(\d+) packets transmitted, (\d+) received")


def parse_ping(text):
    """ping output (one line per reply) -> avg, p99, min, max RTT in ms and loss %."""
    rtts = [float(m.group(1)) for m in _PING_TIME.finditer(text)]
    m = _PING_SUM.search(text)
    if not rtts:
        raise BenchError("ping: no replies (%s)" % _last_line(text, "no output"))
    tx = int(m.group(1)) if m else len(rtts)
    rx = int(m.group(2)) if m else len(rtts)
    return {
        "rtt_avg_ms": statistics.fmean(rtts),
        "rtt_p99_ms": percentile(rtts, 99),
        "rtt_min_ms": min(rtts),
        "rtt_max_ms": max(rtts),
        "loss_pct": 100.0 * (tx - rx) / tx if tx else 100.0,
        "replies": len(rtts),
    }


_NETDEV_FIELDS = ("rx_bytes", "rx_packets", "rx_errs", "rx_dropped", "rx_fifo", "rx_frame", "rx_compressed", "rx_multicast", "tx_bytes", "tx_packets", "tx_errs", "tx_dropped", "tx_fifo", "tx_colls", "tx_carrier", "tx_compressed")


def parse_netdev(text):
    """/proc/net/dev -> {iface: {rx_packets, tx_dropped, ...}}."""
    out = {}
    for line in text.splitlines():
        if ":" not in line or "|" in line:
            continue
        name, _, rest = line.partition(":")
        vals = rest.split()
        if len(vals) < len(_NETDEV_FIELDS):
            continue
        out[name.strip()] = {k: int(v) for k, v in zip(_NETDEV_FIELDS, vals)}
    return out


_TRAFGEN_PK = re.compile(r"(\d+) packets outgoing")
_TRAFGEN_BY = re.compile(r"(\d+) bytes outgoing")
_TRAFGEN_T = re.compile(r"(\d+) sec, (\d+) usec on CPU")


def parse_trafgen(text):
    """trafgen's exit statistics -> packets and bytes sent, seconds it ran (summed over its CPUs)."""
    pk = [int(x) for x in _TRAFGEN_PK.findall(text)]
    if not pk:
        raise BenchError("trafgen: no statistics in its output (%s)" % _last_line(text, "no output"))
    secs = [int(a) + int(b) / 1e6 for a, b in _TRAFGEN_T.findall(text)]
    return {"packets": sum(pk), "bytes": sum(int(x) for x in _TRAFGEN_BY.findall(text)), "seconds": max(secs) if secs else None}


def trafgen_conf(dst_mac, src_mac, src_ip, dst_ip, size, port=9):
    """A trafgen packet: an Ethernet + IPv4 + UDP frame of SIZE bytes counting the 4-byte FCS."""
    pad = size - 4 - 14 - 20 - 8
    if pad < 0:
        raise BenchError("trafgen: a %d B frame cannot hold Ethernet + IPv4 + UDP headers (use 64 B or more)" % size)
    return "{ eth(da=%s, sa=%s), ipv4(sa=%s, da=%s, ttl=64, df), udp(sp=%d, dp=%d), fill(0x00, %d) }\n" % (dst_mac, src_mac, src_ip, dst_ip, port, port, pad)


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_SP_PCT = re.compile(r"percentile\s+([0-9.]+)\s*=\s*([0-9.]+)")
_SP_AVG = re.compile(r"avg-(?:rtt|lat)=([0-9.]+)")
_SP_RUN = re.compile(r"\[Total Run\].*?SentMessages=(\d+); ReceivedMessages=(\d+)")
_SP_VALID = re.compile(r"\[Valid Duration\].*?SentMessages=(\d+); ReceivedMessages=(\d+)")
_SP_OBS = re.compile(r"Total (\d+) observations")
_SP_MAX = re.compile(r"<MAX> observation\s*=\s*([0-9.]+)")


def parse_sockperf(text):
    """sockperf ping-pong/under-load client output (--full-rtt: round trips) -> p50/p99/p99.9 us, loss %."""
    t = _ANSI.sub("", text or "")
    pct = {float(p): float(v) for p, v in _SP_PCT.findall(t)}
    if "No valid observations" in t or 50.0 not in pct:
        raise BenchError("sockperf: no round trip measured (%s)" % _last_line(t, "no output"))
    valid = _SP_VALID.search(t)
    sent, recv = (int(valid.group(1)), int(valid.group(2))) if valid else (None, None)
    avg = _SP_AVG.search(t)
    obs = _SP_OBS.search(t)
    mx = _SP_MAX.search(t)
    run = _SP_RUN.search(t)
    return {
        "p50_us": pct[50.0],
        "p99_us": pct.get(99.0),
        "p999_us": pct.get(99.9),
        "avg_us": float(avg.group(1)) if avg else None,
        "max_us": float(mx.group(1)) if mx else None,
        "observations": int(obs.group(1)) if obs else None,
        "sent": sent,
        "received": recv,
        "loss_pct": max(0.0, 100.0 * (sent - recv) / sent) if sent else None,
        "total_sent": int(run.group(1)) if run else None,
    }


def zero_loss_search(probe, hi, steps, tolerance=0.0, progress=None):
    """RFC 2544-style search for the highest offered rate with loss <= TOLERANCE %.

    PROBE(rate_pps) offers RATE and returns (achieved offered pps, loss %).  The first step offers
    HI (the delivered rate under overload); on loss the rate is halved towards the last passing
    one, STEPS probes at most.  Returns (best passing achieved rate or 0.0, list of steps)."""
    lo, best, trail = 0.0, 0.0, []
    rate = float(hi)
    for i in range(steps):
        if rate <= 0:
            break
        offered, loss = probe(rate)
        ok = loss is not None and loss <= tolerance
        trail.append({"target_pps": rate, "offered_pps": offered, "loss_pct": loss, "pass": ok})
        if progress:
            progress(i + 1, steps, rate, offered, loss, ok)
        if ok:
            best = max(best, offered)
            lo = rate
            if i == 0:
                break  # no loss at the overload rate: nothing higher to find
        else:
            hi = rate
        rate = (lo + hi) / 2.0
    return best, trail


def parse_proc_stat(text):
    """/proc/PID/stat -> (ppid, utime+stime in ticks).  comm may hold spaces and parens."""
    rest = text[text.rindex(")") + 2 :].split()
    # fields after comm: state(3) ppid(4) ... utime(14) stime(15); rest[0] is field 3
    return int(rest[1]), int(rest[11]) + int(rest[12])


def percentile(values, p):
    """Nearest-rank percentile (p in 0..100)."""
    s = sorted(values)
    if not s:
        return None
    k = max(1, math.ceil(p / 100.0 * len(s)))
    return s[k - 1]


def summarize(values):
    vals = [v for v in values if v is not None]
    if not vals:
        return None
    vals.sort()
    if len(vals) >= 2:
        q1, _, q3 = statistics.quantiles(vals, n=4, method="inclusive")
    else:
        q1 = q3 = vals[0]
    return {
        "n": len(vals),
        "median": statistics.median(vals),
        "min": vals[0],
        "max": vals[-1],
        "q1": q1,
        "q3": q3,
    }


def ratio(x, base):
    if x is None or base is None or base == 0:
        return None
    return x / base


def _last_line(text, default):
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    return lines[-1] if lines else default


# --------------------------------------------------------------------------------------------
# processes: endpoints (agent in a namespace) and forwarders (vde_switch, vde_plug)
# --------------------------------------------------------------------------------------------


class Proc:
    """A process in its own session (so the whole group can be killed), stderr to a log file."""

    def __init__(self, name, argv, workdir, keep_stdin=False):
        self.name = name
        self.argv = argv
        self.log = os.path.join(workdir, "%s.log" % name.replace(" ", "_"))
        self.p = None
        self.keep_stdin = keep_stdin

    def start(self):
        exe = shutil.which(self.argv[0])
        if exe is None:
            raise ScenarioDown("%s: %s not found (install it or fix PATH)" % (self.name, self.argv[0]))
        with open(self.log, "wb") as log:
            self.p = subprocess.Popen(
                self.argv,
                stdin=subprocess.PIPE if self.keep_stdin else subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )

    @property
    def pid(self):
        return self.p.pid

    def alive(self):
        return self.p is not None and self.p.poll() is None

    def why_dead(self):
        try:
            with open(self.log, errors="replace") as f:
                text = f.read()
        except OSError:
            text = ""
        rc = self.p.returncode
        if rc is None:
            how = "closed its control channel but is still running"
        elif rc < 0:
            how = "was killed by signal %d" % -rc
        else:
            how = "exited with status %d" % rc
        return "%s %s: %s" % (self.name, how, _last_line(text, "no message"))

    def stop(self):
        if self.p is None:
            return
        if self.p.stdin:
            try:
                self.p.stdin.close()
            except OSError:
                pass
        for sig, wait in ((signal.SIGTERM, 3), (signal.SIGKILL, 3)):
            try:
                os.killpg(self.p.pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                self.p.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
        # the group may outlive its leader (agent children): make sure it is gone
        try:
            os.killpg(self.p.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


class Endpoint(Proc):
    """LAUNCHER... python3 bench.py --agent: the agent runs inside the namespace LAUNCHER made."""

    def __init__(self, name, launcher, workdir):
        super().__init__(name, launcher + [sys.executable, THIS, "--agent"], workdir)
        self.buf = b""
        self.agent_pid = None
        self.iface = None  # the interface its address is on (the one the NFV tests send/count on)

    def start(self, timeout=15):
        exe = shutil.which(self.argv[0])
        if exe is None:
            raise ScenarioDown("%s: %s not found (build/install it, or pass --vdens/--vdens-fast PATH)" % (self.name, self.argv[0]))
        with open(self.log, "wb") as log:
            self.p = subprocess.Popen(
                self.argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                start_new_session=True,
            )
        os.set_blocking(self.p.stdout.fileno(), False)
        hello = self._read_reply(timeout, "start")
        self.agent_pid = hello["pid"]

    def _read_reply(self, timeout, what):
        deadline = time.monotonic() + timeout
        fd = self.p.stdout.fileno()
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while b"\n" not in self.buf:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ScenarioDown("%s: no answer to %s within %.0f s (agent hung; see %s)" % (self.name, what, timeout, self.log))
                if not sel.select(left):
                    continue
                chunk = os.read(fd, 65536)
                if not chunk:
                    self._settle()
                    raise ScenarioDown(self.why_dead())
                self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        try:
            return json.loads(line)
        except ValueError:
            raise ScenarioDown("%s: garbled agent answer %r" % (self.name, line[:80]))

    def _settle(self):
        """The control channel closed: give the process a moment to exit so its status is known."""
        try:
            self.p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass

    def request(self, req, timeout):
        if not self.alive():
            raise ScenarioDown(self.why_dead())
        try:
            self.p.stdin.write((json.dumps(req) + "\n").encode())
            self.p.stdin.flush()
        except (BrokenPipeError, OSError):
            self._settle()
            raise ScenarioDown(self.why_dead())
        ans = self._read_reply(timeout, req["op"])
        if "error" in ans:
            raise BenchError("%s: agent %s failed: %s" % (self.name, req["op"], ans["error"]))
        return ans

    def run(self, argv, timeout=20, check=True):
        ans = self.request({"op": "run", "argv": argv, "timeout": timeout}, timeout + 10)
        if ans.get("timed_out"):
            raise BenchError("%s: %s: timed out after %s s" % (self.name, " ".join(argv), timeout))
        if check and ans["rc"] != 0:
            raise BenchError(
                "%s: %s: exit status %s: %s" % (self.name, " ".join(argv), ans["rc"], _last_line(ans["err"] or ans["out"], "no message"))
            )
        return ans

    def spawn(self, tag, argv):
        return self.request({"op": "spawn", "tag": tag, "argv": argv}, 10)

    def reap(self, tag, kill=False, timeout=10):
        return self.request({"op": "kill" if kill else "wait", "tag": tag, "timeout": timeout}, timeout + 10)

    def wait_listen(self, port, tag, timeout=5, proto="tcp"):
        return self.request({"op": "wait_listen", "port": port, "tag": tag, "timeout": timeout, "proto": proto}, timeout + 10)

    def netdev(self):
        """(monotonic time, {iface: counters}) of this namespace's interfaces."""
        ans = self.request({"op": "netdev"}, 10)
        return ans["t"], parse_netdev(ans["text"])

    def stop(self):
        if self.alive():
            try:
                self.request({"op": "exit"}, 3)
            except BenchError:
                pass
        super().stop()


def _cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return None


def proc_table():
    """pid -> (ppid, cpu ticks) for every process visible now."""
    table = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name) as f:
                table[int(name)] = parse_proc_stat(f.read())
        except (OSError, ValueError, IndexError):
            pass
    return table


def forwarder_ticks(roots, exclude):
    """CPU ticks (utime+stime, all threads) of the process trees under ROOTS, minus the subtrees
    rooted at EXCLUDE (the agents and the test programs they run)."""
    table = proc_table()
    children = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    total, seen = 0, set()
    stack = [r for r in roots if r in table]
    while stack:
        pid = stack.pop()
        if pid in seen or pid in exclude:
            continue
        seen.add(pid)
        total += table[pid][1]
        stack.extend(children.get(pid, []))
    return total, sorted(seen)


# --------------------------------------------------------------------------------------------
# scenarios
# --------------------------------------------------------------------------------------------


class Scenario:
    def __init__(self, name, label, build=None, na=None, refs=()):
        self.name = name
        self.label = label
        self.build = build  # function(scenario, ctx) that starts a, b, forwarders
        self.na = na  # reason it is not available yet
        self.refs = list(refs)  # scenarios this one is compared with (same clients, classic forwarder)
        self.status = "not available" if na else "pending"
        self.reason = na
        self.a = self.b = None
        # more (server, client, server address) pairs beyond a <- b: throughput tests run on
        # every pair at once and add up (switch scenarios with 4 clients)
        self.more_pairs = []
        self.procs = []  # everything to stop, in order
        self.roots = []  # pids whose trees are forwarders
        self.flows = None  # per pair: where a frame generator sends (learnt once, see _flows)
        self.workdir = None

    def setup(self, ctx):
        self.workdir = tempfile.mkdtemp(prefix="%s." % self.name, dir=ctx.workdir)
        self.build(self, ctx)
        for srv, cli, addr in self.pairs():
            if not srv.alive() or not cli.alive():
                raise ScenarioDown("endpoint died during set-up")
            # first frames: ARP + tap bring-up can take a moment
            last = None
            for _ in range(20):
                ans = cli.run(["ping", "-n", "-c", "1", "-W", "1", addr], timeout=5, check=False)
                if ans["rc"] == 0:
                    break
                last = _last_line(ans["out"] + ans["err"], "no reply")
                self.check_alive()
            else:
                raise ScenarioDown("connectivity check: ping %s -> %s failed 20 times (%s)" % (cli.name, addr, last))
        self.status = "ok"

    def pairs(self):
        return [(self.a, self.b, ADDR_A)] + self.more_pairs

    def endpoints(self):
        return [e for srv, cli, _ in self.pairs() for e in (srv, cli)]

    def check_alive(self):
        for p in self.procs:
            if not p.alive():
                raise ScenarioDown(p.why_dead())

    def cpu_ticks(self):
        if not self.roots:
            return None
        ticks, _ = forwarder_ticks(self.roots, {e.agent_pid for e in self.endpoints()})
        return ticks

    def teardown(self):
        for p in reversed(self.procs):
            try:
                p.stop()
            except Exception:
                pass
        self.procs = []
        if self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)


def _endpoint(scn, name, launcher, iface, addr):
    ep = Endpoint("%s %s" % (scn.name, name), launcher, scn.workdir)
    scn.procs.append(ep)
    ep.start()
    ep.run(["ip", "link", "set", "lo", "up"])
    if iface:
        _addr(ep, iface, addr)
    return ep


def _addr(ep, iface, addr):
    ep.iface = ep.iface or iface
    ep.run(["ip", "addr", "add", "%s/%d" % (addr, PREFIX), "dev", iface])
    ep.run(["ip", "link", "set", iface, "up"])


def _wait_path(proc, path, timeout=10):
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if not proc.alive():
            raise ScenarioDown(proc.why_dead())
        if time.monotonic() > deadline:
            raise ScenarioDown("%s: %s did not appear within %d s" % (proc.name, path, timeout))
        time.sleep(0.05)


def build_veth(scn, ctx):
    scn.a = _endpoint(scn, "a", ["unshare", "-n"], None, None)
    scn.b = _endpoint(scn, "b", ["unshare", "-n"], None, None)
    # created inside a, peer moved straight into b: the host namespace never sees it
    scn.a.run(["ip", "link", "add", "veth0", "type", "veth", "peer", "name", "veth1", "netns", str(scn.b.agent_pid)])
    _addr(scn.a, "veth0", ADDR_A)
    _addr(scn.b, "veth1", ADDR_B)


def _vdens_pair(launcher_a, launcher_b, vnl):
    def build(scn, ctx):
        v = vnl(scn)
        scn.a = _endpoint(scn, "a", ctx.launcher(launcher_a) + [v], "vde0", ADDR_A)
        scn.b = _endpoint(scn, "b", ctx.launcher(launcher_b) + [v], "vde0", ADDR_B)
        scn.roots += [scn.a.pid, scn.b.pid]

    return build


def _ptp(scn):
    return "ptp://" + os.path.join(scn.workdir, "ptp")


def _vde(scn):
    return "vde://" + os.path.join(scn.workdir, "sw")


def build_vdeplug_switch(scn, ctx):
    sw = os.path.join(scn.workdir, "sw")
    p = Proc("%s vde_plug" % scn.name, ["vde_plug", "null://", "switch://" + sw], scn.workdir)
    scn.procs.append(p)
    p.start()
    _wait_path(p, os.path.join(sw, "ctl"))
    scn.roots.append(p.pid)
    _vdens_pair("vdens", "vdens", _vde)(scn, ctx)


def build_vde2_switch(scn, ctx):
    sw = os.path.join(scn.workdir, "sw")
    # vde_switch exits on EOF of its console (stdin): keep a pipe open for its lifetime
    p = Proc("%s vde_switch" % scn.name, ["vde_switch", "-s", sw], scn.workdir, keep_stdin=True)
    scn.procs.append(p)
    p.start()
    _wait_path(p, os.path.join(sw, "ctl"))
    scn.roots.append(p.pid)
    _vdens_pair("vdens", "vdens", _vde)(scn, ctx)


def build_veth_nat(scn, ctx):
    """The NAT router's kernel-only limit: the same router (forwarding, MASQUERADE out of its
    WAN side) joined to a and b by veth pairs instead of vdens links."""
    scn.a = _endpoint(scn, "a", ["unshare", "-n"], None, None)
    r = _endpoint(scn, "router", ["unshare", "-n"], None, None)
    scn.b = _endpoint(scn, "b", ["unshare", "-n"], None, None)
    # created inside the router, peers moved straight into a and b
    r.run(["ip", "link", "add", "wan0", "type", "veth", "peer", "name", "veth0", "netns", str(scn.a.agent_pid)])
    r.run(["ip", "link", "add", "lan0", "type", "veth", "peer", "name", "veth0", "netns", str(scn.b.agent_pid)])
    _addr(scn.a, "veth0", ADDR_A)
    _addr(r, "wan0", WAN_ROUTER)
    _addr(r, "lan0", LAN_ROUTER)
    _addr(scn.b, "veth0", LAN_B)
    r.run(["sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"])
    r.run(["iptables", "-t", "nat", "-A", "POSTROUTING", "-o", "wan0", "-j", "MASQUERADE"])
    scn.b.run(["ip", "route", "add", "default", "via", LAN_ROUTER])


# NAT router: b (LAN 192.168.99.0/24) -> router (vde0 on the LAN via ptp://, vde1 = tap://tap0,
# masquerading) -> a, the "host" namespace owning tap0 with ADDR_A. Two forwarding hops.
LAN_B, LAN_ROUTER, WAN_ROUTER = "192.168.99.2", "192.168.99.1", "10.99.0.254"


def _nat_router(kind):
    def build(scn, ctx):
        scn.a = _endpoint(scn, "a", ["unshare", "-n"], None, None)
        scn.a.run(["ip", "tuntap", "add", "tap0", "mode", "tap"])
        _addr(scn.a, "tap0", ADDR_A)
        ptp = _ptp(scn)
        launcher = ctx.launcher(kind)
        # The router starts in a's network namespace, where tap0 lives (tap:// is opened there).
        nsenter = ["nsenter", "-t", str(scn.a.agent_pid), "-n"]
        r = Endpoint("%s router" % scn.name, nsenter + launcher + ["--multi", ptp, "tap://tap0", "--"], scn.workdir)
        scn.procs.append(r)
        r.start()
        r.run(["ip", "link", "set", "lo", "up"])
        _addr(r, "vde0", LAN_ROUTER)
        _addr(r, "vde1", WAN_ROUTER)
        r.run(["sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"])
        r.run(["iptables", "-t", "nat", "-A", "POSTROUTING", "-o", "vde1", "-j", "MASQUERADE"])
        scn.b = _endpoint(scn, "b", launcher + [ptp], "vde0", LAN_B)
        scn.b.run(["ip", "route", "add", "default", "via", LAN_ROUTER])
        scn.roots += [r.pid, scn.b.pid]

    return build


def _fast_switch(launcher):
    def build(scn, ctx):
        # vdens-fast hosts the switch (its own tap is a port); a vdens-fast client joins it.
        sw = os.path.join(scn.workdir, "sw")
        scn.a = _endpoint(scn, "a", ctx.launcher(launcher) + ["switch://" + sw], "vde0", ADDR_A)
        _wait_path(scn.a, os.path.join(sw, "ctl"))
        scn.b = _endpoint(scn, "b", ctx.launcher(launcher) + ["vde://" + sw], "vde0", ADDR_B)
        scn.roots += [scn.a.pid, scn.b.pid]

    return build


build_fast_switch = _fast_switch("vdens-fast")


def _vdeplug_fast_switch(launcher):
    def build(scn, ctx):
        # vdeplug-fast hosts the switch; two vdens-fast clients.
        sw = os.path.join(scn.workdir, "sw")
        exe = ctx.vdeplug_fast(base=launcher == "base")
        p = Proc("%s vdeplug-fast" % scn.name, [exe, "null://", "switch://" + sw], scn.workdir)
        scn.procs.append(p)
        p.start()
        _wait_path(p, os.path.join(sw, "ctl"))
        scn.roots.append(p.pid)
        _vdens_pair(launcher, launcher, _vde)(scn, ctx)

    return build


build_vdeplug_fast_switch = _vdeplug_fast_switch("vdens-fast")


# 4 clients on one switch: a <- b and c <- d at once
ADDR_C, ADDR_D = "10.99.0.3", "10.99.0.4"


def _four_clients(launcher):
    def attach(scn, ctx, first_is_host=False):
        v = _vde(scn)
        eps = []
        for i, (name, addr) in enumerate((("a", ADDR_A), ("b", ADDR_B), ("c", ADDR_C), ("d", ADDR_D))):
            if i == 0 and first_is_host:
                continue
            eps.append(_endpoint(scn, name, ctx.launcher(launcher) + [v], "vde0", addr))
        return eps

    return attach


def _switch4(host):
    """4 clients on a switch hosted by `host`: vde_plug, vde_switch, vdeplug-fast or vdens-fast."""

    def build(scn, ctx):
        sw = os.path.join(scn.workdir, "sw")
        clients = "vdens" if host in ("vde_plug", "vde_switch") else "vdens-fast"
        if host == "vdens-fast":
            a = _endpoint(scn, "a", ctx.launcher("vdens-fast") + ["switch://" + sw], "vde0", ADDR_A)
            _wait_path(a, os.path.join(sw, "ctl"))
            scn.roots.append(a.pid)
            b, c, d = _four_clients(clients)(scn, ctx, first_is_host=True)
        else:
            if host == "vde_plug":
                p = Proc("%s vde_plug" % scn.name, ["vde_plug", "null://", "switch://" + sw], scn.workdir)
            elif host == "vde_switch":
                p = Proc("%s vde_switch" % scn.name, ["vde_switch", "-s", sw], scn.workdir, keep_stdin=True)
            else:
                exe = ctx.vdeplug_fast()
                p = Proc("%s vdeplug-fast" % scn.name, [exe, "null://", "switch://" + sw], scn.workdir)
            scn.procs.append(p)
            p.start()
            _wait_path(p, os.path.join(sw, "ctl"))
            scn.roots.append(p.pid)
            a, b, c, d = _four_clients(clients)(scn, ctx)
        scn.a, scn.b = a, b
        scn.more_pairs = [(c, d, ADDR_C)]
        scn.roots += [e.pid for e in (a, b, c, d) if e.pid not in scn.roots]

    return build


def _ptp_seq(scn):
    return "ptp://" + os.path.join(scn.workdir, "ptp") + "[seqpacket]"


# vxlan:// / vxvde:// between a and b: each vdens-fast starts in an underlay namespace of its
# own (ua, ub: a veth pair, MTU 1600, 192.168.98.0/24, a multicast route), where its UDP sockets live;
# vde0 is in the namespace vdens-fast makes for its command, as in every other scenario.
UNDER_A, UNDER_B = "192.168.98.1", "192.168.98.2"


def _overlay_pair(launcher, scheme):
    def build(scn, ctx):
        ua = _endpoint(scn, "ua", ["unshare", "-n"], None, None)
        ub = _endpoint(scn, "ub", ["unshare", "-n"], None, None)
        ua.run(["ip", "link", "add", "ux0", "type", "veth", "peer", "name", "ux1", "netns", str(ub.agent_pid)])
        for ep, dev, addr in ((ua, "ux0", UNDER_A), (ub, "ux1", UNDER_B)):
            # room for a 1500-byte frame plus the outer headers (50 bytes over IPv4): no
            # fragmentation in the underlay, as an overlay deployment sets it up
            ep.run(["ip", "link", "set", dev, "mtu", "1600"])
            _addr(ep, dev, addr)
            ep.run(["ip", "route", "add", "224.0.0.0/4", "dev", dev])
        vnl = scheme + ":///vni=77"
        for name, under, addr in (("a", ua, ADDR_A), ("b", ub, ADDR_B)):
            nsenter = ["nsenter", "-t", str(under.agent_pid), "-n"]
            setattr(scn, name, _endpoint(scn, name, nsenter + ctx.launcher(launcher) + [vnl], "vde0", addr))
        scn.roots += [scn.a.pid, scn.b.pid]

    return build


# --busy-poll of the fast-*-busy scenarios (microseconds a data-plane thread spins before it sleeps)
BUSY_POLL_US = 50

# --rt-priority of the fast-*-rt scenarios (SCHED_FIFO priority of the data-plane threads)
RT_PRIORITY = 10

SWITCH_REFS = ("classic-vdeplug-switch", "classic-vde2-switch")
SWITCH4_REFS = ("classic-vdeplug-switch4", "classic-vde2-switch4")


def all_scenarios():
    return [
        Scenario("veth", "veth pair (kernel only)", build_veth),
        Scenario("classic-ptp", "vdens <-> vdens, ptp://", _vdens_pair("vdens", "vdens", _ptp)),
        Scenario("classic-vdeplug-switch", "vdens <-> vdens, vde_plug switch://", build_vdeplug_switch),
        Scenario("classic-vde2-switch", "vdens <-> vdens, vde2 vde_switch", build_vde2_switch),
        Scenario("fast-ptp", "vdens-fast <-> vdens-fast, ptp://", _vdens_pair("vdens-fast", "vdens-fast", _ptp)),
        Scenario("fast-ptp-poll", "vdens-fast --engine poll <-> same, ptp://", _vdens_pair("vdens-fast-poll", "vdens-fast-poll", _ptp)),
        Scenario("fast-ptp-busy", "vdens-fast --busy-poll %d <-> same, ptp://" % BUSY_POLL_US, _vdens_pair("vdens-fast-busy", "vdens-fast-busy", _ptp)),
        Scenario("fast-ptp-rt", "vdens-fast --rt-priority %d <-> same, ptp://" % RT_PRIORITY, _vdens_pair("vdens-fast-rt", "vdens-fast-rt", _ptp)),
        Scenario("mixed-ptp", "vdens-fast <-> vdens, ptp://", _vdens_pair("vdens-fast", "vdens", _ptp)),
        Scenario("fast-switch", "vdens-fast switch:// <-> vdens-fast", build_fast_switch, refs=SWITCH_REFS),
        Scenario("vdeplug-fast-switch", "vdens-fast <-> vdens-fast, vdeplug-fast switch://", build_vdeplug_fast_switch, refs=SWITCH_REFS),
        Scenario("classic-vdeplug-switch4", "4 vdens on a vde_plug switch://, 2 pairs at once", _switch4("vde_plug")),
        Scenario("classic-vde2-switch4", "4 vdens on vde2 vde_switch, 2 pairs at once", _switch4("vde_switch")),
        Scenario("fast-switch4", "vdens-fast switch:// + 3 vdens-fast, 2 pairs at once", _switch4("vdens-fast"), refs=SWITCH4_REFS),
        Scenario("vdeplug-fast-switch4", "4 vdens-fast on a vdeplug-fast switch://, 2 pairs at once", _switch4("vdeplug-fast"), refs=SWITCH4_REFS),
        Scenario("veth-nat", "veth -> NAT router -> veth -> host (kernel only)", build_veth_nat),
        Scenario("classic-nat", "vdens -> vdens NAT router (ptp + tap) -> host", _nat_router("vdens")),
        Scenario("fast-nat", "vdens-fast -> vdens-fast NAT router (ptp + tap) -> host", _nat_router("vdens-fast"), refs=("classic-nat", "veth-nat")),
    ] + NODE_SCENARIOS + BASE_SCENARIOS


# The nodes that ran only on epoll until session 6 (seqpacket ptp, vxlan, vxvde), each on
# io_uring (the default) and with --engine poll. Only run when named.
NODE_SCENARIOS = [
    Scenario("fast-ptpseq", "vdens-fast <-> same, ptp://[seqpacket]", _vdens_pair("vdens-fast", "vdens-fast", _ptp_seq)),
    Scenario("fast-ptpseq-poll", "vdens-fast --engine poll <-> same, ptp://[seqpacket]", _vdens_pair("vdens-fast-poll", "vdens-fast-poll", _ptp_seq)),
    Scenario("fast-vxlan", "vdens-fast <-> same, vxlan:// over a veth", _overlay_pair("vdens-fast", "vxlan")),
    Scenario("fast-vxlan-poll", "vdens-fast --engine poll <-> same, vxlan:// over a veth", _overlay_pair("vdens-fast-poll", "vxlan")),
    Scenario("fast-vxvde", "vdens-fast <-> same, vxvde:// over a veth", _overlay_pair("vdens-fast", "vxvde")),
    Scenario("fast-vxvde-poll", "vdens-fast --engine poll <-> same, vxvde:// over a veth", _overlay_pair("vdens-fast-poll", "vxvde")),
]
NODE_NAMES = [s.name for s in NODE_SCENARIOS]


# A/B against an earlier build (--base BIN): the vdens-fast scenarios again with that binary
# (and the vdeplug-fast beside it), measured in the same rounds. Only run when named.
BASE_SCENARIOS = [
    Scenario("base-fast-ptp", "--base vdens-fast <-> same, ptp://", _vdens_pair("base", "base", _ptp)),
    Scenario("base-fast-ptp-poll", "--base vdens-fast --engine poll <-> same, ptp://", _vdens_pair("base-poll", "base-poll", _ptp)),
    Scenario("base-fast-switch", "--base vdens-fast switch:// <-> same", _fast_switch("base")),
    Scenario("base-vdeplug-fast-switch", "--base vdens-fast <-> same, --base vdeplug-fast switch://", _vdeplug_fast_switch("base")),
    Scenario("base-fast-nat", "--base vdens-fast -> same NAT router (ptp + tap) -> host", _nat_router("base")),
]
BASE_NAMES = [s.name for s in BASE_SCENARIOS]


# --------------------------------------------------------------------------------------------
# tests
# --------------------------------------------------------------------------------------------


def run_iperf(scn, args, client_opts, parse):
    """One iperf3 test on every (server, client) pair of the scenario at once; results add up."""
    pairs = scn.pairs()
    servers, clients = [], []

    def argv(addr):
        return ["iperf3", "-c", addr, "-p", str(IPERF_PORT), "-J", "-t", str(args.duration), "-i", "0", "--connect-timeout", "3000"] + client_opts

    try:
        for srv, _, addr in pairs:
            srv.spawn("srv", ["iperf3", "-s", "-1", "-B", addr, "-p", str(IPERF_PORT)])
            servers.append(srv)
            ready = srv.wait_listen(IPERF_PORT, "srv", timeout=5)
            if not ready["ok"]:
                servers.pop()
                ans = srv.reap("srv", kill=True, timeout=3)
                raise BenchError("iperf3 server in %s: not listening after 5 s (%s)" % (srv.name, _last_line(ans["err"] + ans["out"], "no message")))
        c0, t0 = scn.cpu_ticks(), time.monotonic()
        if len(pairs) == 1:
            answers = [scn.b.run(argv(ADDR_A), timeout=args.duration + 30, check=False)]
        else:
            for _, cli, addr in pairs:
                cli.spawn("cli", argv(addr))
                clients.append(cli)
            answers = []
            while clients:
                answers.append(clients[0].reap("cli", kill=False, timeout=args.duration + 30))
                clients.pop(0)
        c1, t1 = scn.cpu_ticks(), time.monotonic()
    except BaseException:
        for ep, tag in [(c, "cli") for c in clients] + [(s, "srv") for s in servers]:
            try:
                ep.reap(tag, kill=True, timeout=3)
            except BaseException:
                pass
        raise
    for srv in servers:
        srv.reap("srv", kill=False, timeout=10)
    ms = []
    for ans in answers:
        if not ans["out"].strip():
            raise BenchError("iperf3 client: exit status %s, no JSON: %s" % (ans["rc"], _last_line(ans["err"], "no message")))
        ms.append(parse(ans["out"]))  # raises with iperf3's own message when the test failed
    m = combine_pairs(ms)
    if c0 is not None:
        cpu = (c1 - c0) / CLK_TCK
        m["cpu_s"] = cpu
        m["cpu_cores"] = cpu / (t1 - t0)
        m["cpu_s_per_gb"] = cpu / (m["bytes"] / 1e9) if m["bytes"] else None
    if len(ms) > 1:
        m["pairs"] = len(ms)
    return m


def combine_pairs(ms):
    """Metrics of tests run at once on several pairs -> the aggregate (rates add up)."""
    if len(ms) == 1:
        return dict(ms[0])
    out = {"seconds": max(m["seconds"] for m in ms)}
    for k in ("gbps", "kpps", "bytes", "sent_packets", "retransmits"):
        vals = [m.get(k) for m in ms]
        if all(v is not None for v in vals):
            out[k] = sum(vals)
    if "sent_packets" in out:
        delivered = sum(m["kpps"] * 1e3 * m["seconds"] for m in ms)
        out["loss_pct"] = max(0.0, 100.0 * (1.0 - delivered / out["sent_packets"])) if out["sent_packets"] else 100.0
    jit = [m.get("jitter_ms") for m in ms if m.get("jitter_ms") is not None]
    if jit:
        out["jitter_ms"] = max(jit)
    return out


def test_tcp(streams, reverse=False):
    def run(scn, args):
        return run_iperf(scn, args, ["-P", str(streams)] + (["-R"] if reverse else []), parse_iperf_tcp)

    return run


def test_udp(length):
    def run(scn, args):
        return run_iperf(scn, args, ["-u", "-b", "0", "-l", str(length)], parse_iperf_udp)

    return run


def test_ping(scn, args):
    count = args.ping_count
    ans = scn.b.run(["ping", "-n", "-i", "0.01", "-W", "1", "-c", str(count), ADDR_A], timeout=count * 0.05 + 20, check=False)
    return parse_ping(ans["out"] + ans["err"])


# ---- NFV-style tests: trafgen floods, counters on the receiving interface, sockperf ----------

GEN_PORT = 9  # UDP discard; the receiver drops these frames in its raw table (see _flows)
SOCKPERF_PORT = 11111
WARMUP_S = 0.5  # generator running before the measuring window opens
DRAIN_S = 0.3  # after the generator stops, before the totals are read


def _flows(scn):
    """Per (server, client) pair: the frame generator's interface, MACs and addresses, learnt in
    the client's namespace (route to the server's address, then its next hop's neighbour entry:
    the server itself, or the NAT router).  Written once per scenario; trafgen configs per size."""
    if scn.flows is not None:
        return scn.flows
    flows = []
    for i, (srv, cli, addr) in enumerate(scn.pairs()):
        route = json.loads(cli.run(["ip", "-j", "route", "get", addr])["out"])[0]
        dev, src = route["dev"], route["prefsrc"]
        hop = route.get("gateway", addr)
        cli.run(["ping", "-n", "-c", "1", "-W", "1", hop], timeout=5, check=False)
        neigh = json.loads(cli.run(["ip", "-j", "neigh", "show", hop, "dev", dev])["out"] or "[]")
        mac = next((n["lladdr"] for n in neigh if n.get("lladdr")), None)
        if mac is None:
            raise BenchError("%s: no neighbour entry for %s on %s (ARP failed)" % (cli.name, hop, dev))
        # (not /sys/class/net: a namespace's /sys may still show the host's interfaces)
        src_mac = json.loads(cli.run(["ip", "-j", "link", "show", "dev", dev])["out"])[0]["address"]
        if not srv.iface:
            raise BenchError("%s: no interface known to count received frames on" % srv.name)
        # the receiver's stack drops the generated frames early: the forwarders are measured,
        # not the receiver's UDP/ICMP path (best effort: the counters are read before netfilter)
        srv.run(["iptables", "-t", "raw", "-I", "PREROUTING", "-p", "udp", "--dport", str(GEN_PORT), "-j", "DROP"], check=False)
        confs = {}
        for size in FRAME_SIZES:
            path = os.path.join(scn.workdir, "trafgen-%d-%d.cfg" % (i, size))
            with open(path, "w") as f:
                f.write(trafgen_conf(mac, src_mac, src, addr, size, GEN_PORT))
            os.chmod(path, 0o644)
            confs[size] = path
        flows.append({"srv": srv, "cli": cli, "dev": dev, "rx_dev": srv.iface, "confs": confs})
    scn.flows = flows
    return flows


def _trafgen_argv(dev, conf, seconds, rate_pps=None):
    # one process (-P 1), never touch the host's socket memory sysctls or IRQ affinity; the outer
    # timeout bounds it even if the harness never comes back to stop it
    argv = ["timeout", "-s", "INT", "%d" % math.ceil(seconds + 10), "trafgen", "-o", dev, "-i", conf, "-P", "1", "--no-sock-mem", "-Q"]
    if rate_pps:
        argv += ["-b", "%dpps" % max(1, round(rate_pps))]
    return argv


def _counts(flows):
    """Monotonic time and frames delivered (received on the servers' interfaces), summed over the
    flows.  What was offered is what the generators say they sent: a tap's own transmit counters
    do not add up to the frames handed to it (measured: tx_packets + tx_dropped came to about
    twice trafgen's count on a vdens tap)."""
    delivered = 0
    t = None
    for f in flows:
        t_s, srv = f["srv"].netdev()
        r = srv.get(f["rx_dev"])
        if r is None:
            raise BenchError("counters: %s vanished from /proc/net/dev in %s" % (f["rx_dev"], f["srv"].name))
        delivered += r["rx_packets"]
        t = t_s if t is None else t
    return t, delivered


def flood(scn, size, seconds, rate_pps=None, flows=None):
    """Frames of SIZE from every pair's client to its server for SECONDS (unpaced = overload, or
    at RATE_PPS in total): delivered kpps over a window after a warm-up, offered kpps and loss %
    over the generators' whole run, forwarder CPU per million frames delivered in the window."""
    flows = flows or _flows(scn)
    per = rate_pps / len(flows) if rate_pps else None
    started = []
    try:
        _, d0 = _counts(flows)
        for f in flows:
            f["cli"].spawn("gen", _trafgen_argv(f["dev"], f["confs"][size], WARMUP_S + seconds, per))
            started.append(f["cli"])
        time.sleep(WARMUP_S)
        c0 = scn.cpu_ticks()
        t1, d1 = _counts(flows)
        time.sleep(seconds)
        t2, d2 = _counts(flows)
        c1 = scn.cpu_ticks()
        answers = []
        while started:
            answers.append(started[0].reap("gen", kill=True, timeout=5))
            started.pop(0)
    except BaseException:
        for ep in started:
            try:
                ep.reap("gen", kill=True, timeout=3)
            except BaseException:
                pass
        raise
    time.sleep(DRAIN_S)
    _, d3 = _counts(flows)
    sent, rate = 0, 0.0
    for ans in answers:
        g = parse_trafgen(ans["out"] + ans["err"])  # raises with trafgen's message
        sent += g["packets"]
        rate += g["packets"] / g["seconds"] if g["seconds"] else 0.0
    dt = t2 - t1
    delivered_all = d3 - d0
    m = {
        "kpps": (d2 - d1) / dt / 1e3,
        "offered_kpps": rate / 1e3,
        "loss_pct": max(0.0, 100.0 * (1 - delivered_all / sent)) if sent else None,
        "gbps": (d2 - d1) * size * 8 / dt / 1e9,
        "frames_delivered": delivered_all,
        "generator_sent": sent,
        "seconds": dt,
        "frame_bytes": size,
    }
    if c0 is not None:
        cpu = (c1 - c0) / CLK_TCK
        m["cpu_s"] = cpu
        m["cpu_cores"] = cpu / dt
        m["cpu_s_per_mframe"] = cpu / ((d2 - d1) / 1e6) if d2 > d1 else None
    if rate_pps:
        m["target_kpps"] = rate_pps / 1e3
    if len(flows) > 1:
        m["pairs"] = len(flows)
    return m


def test_rate(size):
    def run(scn, args):
        return flood(scn, size, args.duration)

    return run


def test_zeroloss(size):
    def run(scn, args):
        over = flood(scn, size, args.zl_duration)
        hi = over["kpps"] * 1e3

        def probe(rate):
            m = flood(scn, size, args.zl_duration, rate_pps=rate)
            sent.append(m["generator_sent"])
            return m["offered_kpps"] * 1e3, m["loss_pct"]

        def progress(i, n, rate, offered, loss, ok):
            log("        zeroloss%d %-24s step %d/%d: target %s kpps, offered %s kpps, loss %s%% -> %s" % (size, scn.name, i, n, _fmt(rate / 1e3), _fmt(offered / 1e3), _fmt(loss), "pass" if ok else "loss"))

        sent = []
        best, trail = zero_loss_search(probe, hi, args.zl_steps, args.loss_tolerance, progress)
        for step, n in zip(trail, sent):
            step["generator_sent"] = n
        return {"kpps": best / 1e3, "overload_kpps": over["kpps"], "overload_loss_pct": over["loss_pct"], "steps": trail, "frame_bytes": size}

    return run


def _sockperf(scn, args, mode):
    """sockperf RTT of 64 B UDP messages b -> a (first pair), --full-rtt."""
    a, b = scn.a, scn.b
    a.spawn("sp", ["timeout", "%d" % (args.duration + 60), "sockperf", "server", "-i", ADDR_A, "-p", str(SOCKPERF_PORT)])
    try:
        ready = a.wait_listen(SOCKPERF_PORT, "sp", timeout=5, proto="udp")
        if not ready["ok"]:
            raise BenchError("sockperf server in %s: not bound after 5 s" % a.name)
        if mode == "ping-pong":
            argv = ["sockperf", "ping-pong", "-i", ADDR_A, "-p", str(SOCKPERF_PORT), "-m", "64", "-t", str(args.duration), "--full-rtt"]
        else:
            # a fixed rate, a reply to every message: a lost frame is counted, not waited for
            argv = ["sockperf", "under-load", "-i", ADDR_A, "-p", str(SOCKPERF_PORT), "-m", "64", "-t", str(args.duration), "--full-rtt", "--mps", "10000", "--reply-every", "1"]
        ans = b.run(argv, timeout=args.duration + 20, check=False)
    finally:
        a.reap("sp", kill=True, timeout=5)
    m = parse_sockperf(ans["out"] + ans["err"])
    m["mode"] = mode
    return m


def test_lat(scn, args):
    return _sockperf(scn, args, "ping-pong")


def test_lat_tcp(scn, args):
    """sockperf ping-pong while one iperf3 TCP stream b -> a shares the path. Ping-pong, not
    under-load: under-load's fixed-rate sender competes for the CPUs with the stream, and its
    own wait for a CPU (milliseconds, with veth too) swamps the path's. A forwarder that drops
    a message under the stream (the classic switches, vdeplug-fast's switch) stalls ping-pong:
    "no round trip measured"."""
    a, b = scn.a, scn.b
    a.spawn("srv", ["iperf3", "-s", "-1", "-B", ADDR_A, "-p", str(IPERF_PORT)])
    spawned = [(a, "srv")]
    try:
        ready = a.wait_listen(IPERF_PORT, "srv", timeout=5)
        if not ready["ok"]:
            raise BenchError("iperf3 server in %s: not listening after 5 s" % a.name)
        b.spawn("cli", ["iperf3", "-c", ADDR_A, "-p", str(IPERF_PORT), "-J", "-t", str(args.duration + 4), "-i", "0", "--connect-timeout", "3000"])
        spawned.append((b, "cli"))
        time.sleep(1.0)  # the stream past slow start
        m = _sockperf(scn, args, "ping-pong")
        spawned.pop()
        ans = b.reap("cli", kill=False, timeout=args.duration + 20)
        try:
            m["tcp_gbps"] = parse_iperf_tcp(ans["out"])["gbps"]
        except BenchError:
            m["tcp_gbps"] = None
    finally:
        for ep, tag in reversed(spawned):
            try:
                ep.reap(tag, kill=True, timeout=5)
            except BenchError:
                pass
    return m


def test_lat_flood(scn, args):
    """sockperf (under-load mode: a frame lost in the flood must not stop it) while b floods a
    with 64 B frames (unpaced, first pair only)."""
    f = _flows(scn)[0]
    t0, d0 = _counts([f])
    f["cli"].spawn("gen", _trafgen_argv(f["dev"], f["confs"][64], args.duration + 3))
    try:
        time.sleep(WARMUP_S)
        m = _sockperf(scn, args, "under-load")
        t1, d1 = _counts([f])
    finally:
        ans = f["cli"].reap("gen", kill=True, timeout=5)
    parse_trafgen(ans["out"] + ans["err"])
    m["flood_kpps"] = (d1 - d0) / (t1 - t0) / 1e3
    return m


TEST_FUNCS = {
    "tcp1": test_tcp(1),
    "tcp4": test_tcp(4),
    "tcp1r": test_tcp(1, reverse=True),
    "udp64": test_udp(64),
    "udp1400": test_udp(1400),
    "ping": test_ping,
    "lat": test_lat,
    "lat-tcp": test_lat_tcp,
    "lat-flood": test_lat_flood,
}
for _size in FRAME_SIZES:
    TEST_FUNCS["rate%d" % _size] = test_rate(_size)
    TEST_FUNCS["zeroloss%d" % _size] = test_zeroloss(_size)


# --------------------------------------------------------------------------------------------
# run
# --------------------------------------------------------------------------------------------


class Context:
    def __init__(self, args):
        self.args = args
        self.workdir = tempfile.mkdtemp(prefix="vdens-bench.%d." % os.getpid())

    def launcher(self, which):
        if which == "vdens-fast":
            return [self.args.vdens_fast]
        if which == "vdens-fast-poll":
            return [self.args.vdens_fast, "--engine", "poll"]
        if which == "vdens-fast-busy":
            return [self.args.vdens_fast, "--busy-poll", str(BUSY_POLL_US)]
        if which == "vdens-fast-rt":
            return [self.args.vdens_fast, "--rt-priority", str(RT_PRIORITY)]
        if which == "base":
            return [self.args.base]
        if which == "base-poll":
            return [self.args.base, "--engine", "poll"]
        return [self.args.vdens]

    def vdeplug_fast(self, base=False):
        """vdeplug-fast beside the vdens-fast binary (or beside --base's)."""
        exe = self.args.base if base else self.args.vdens_fast
        return os.path.join(os.path.dirname(os.path.abspath(exe)), "vdeplug-fast")

    def cleanup(self):
        shutil.rmtree(self.workdir, ignore_errors=True)


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def estimate_seconds(args, n_scenarios):
    """About how long a run takes: per test, its measuring time plus what was seen around it on
    the 2-core machine (2026-12-05, 15 scenarios x 9 tests x 3 rounds x 3 s: 37 min measured,
    this says 36); a zero-loss search counts half its probes (it often stops at the first)."""
    d = args.duration
    per = {"rate": d + 1.0, "lat": d + 2.5, "lat-tcp": d + 4.0, "lat-flood": d + 3.0, "tcp": d + 1.5, "udp": d + 1.5}
    total = 0.0
    for t in args.tests:
        if t.startswith("zeroloss"):
            total += (args.zl_duration + 1.0) * (1 + args.zl_steps / 2.0)
        elif t == "ping":
            total += args.ping_count * 0.01 + 1.0
        else:
            total += next(v for k, v in sorted(per.items(), key=lambda kv: -len(kv[0])) if t.startswith(k))
    return n_scenarios * (args.rounds * total + 3.0)


def run_bench(args, scenarios):
    ctx = Context(args)
    samples = []
    try:
        active = []
        for s in scenarios:
            if s.na:
                log("%-24s not available: %s" % (s.name, s.na))
                continue
            log("%-24s setting up ..." % s.name)
            try:
                s.setup(ctx)
                active.append(s)
                log("%-24s ready" % s.name)
            except BenchError as e:
                s.status, s.reason = "failed", str(e)
                log("%-24s failed: %s" % (s.name, e))
                s.teardown()
            except Exception as e:  # a harness bug must not stop the other scenarios
                s.status, s.reason = "failed", "set-up: internal error: %s: %s" % (type(e).__name__, e)
                log("%-24s failed: %s" % (s.name, s.reason))
                s.teardown()
        for rnd in range(args.rounds):
            k = rnd % len(active) if active else 0
            order = active[k:] + active[:k]
            for test in args.tests:
                for s in order:
                    if s.status != "ok":
                        continue
                    rec = {
                        "round": rnd + 1,
                        "scenario": s.name,
                        "test": test,
                        "time": time.time(),
                        "loadavg": _loadavg(),
                        "metrics": None,
                        "error": None,
                    }
                    try:
                        s.check_alive()
                        rec["metrics"] = TEST_FUNCS[test](s, args)
                        log("round %d %-10s %-24s %s" % (rnd + 1, test, s.name, _brief(test, rec["metrics"])))
                    except ScenarioDown as e:
                        rec["error"] = str(e)
                        s.status, s.reason = "failed", "during %s: %s" % (test, e)
                        log("round %d %-10s %-24s failed: %s (scenario stopped)" % (rnd + 1, test, s.name, e))
                        s.teardown()
                    except BenchError as e:
                        rec["error"] = str(e)
                        log("round %d %-10s %-24s failed: %s" % (rnd + 1, test, s.name, e))
                        try:
                            s.check_alive()
                        except ScenarioDown as down:
                            s.status, s.reason = "failed", "after %s: %s" % (test, down)
                            log("%-24s failed: %s (scenario stopped)" % (s.name, down))
                            s.teardown()
                    except Exception as e:  # a harness bug: record it, go on with the others
                        rec["error"] = "internal error: %s: %s" % (type(e).__name__, e)
                        log("round %d %-10s %-24s failed: %s" % (rnd + 1, test, s.name, rec["error"]))
                    samples.append(rec)
    finally:
        # a second Ctrl-C must not cut the clean-up short (it is bounded: a few seconds a process)
        old = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
        try:
            for s in scenarios:
                s.teardown()
            ctx.cleanup()
        finally:
            for sig, handler in old.items():
                signal.signal(sig, handler)
    return samples


def _loadavg():
    try:
        with open("/proc/loadavg") as f:
            return float(f.read().split()[0])
    except (OSError, ValueError):
        return None


def _brief(test, m):
    keys = [k for k, _, _ in TESTS[test][1]]
    return "  ".join("%s=%s" % (k, _fmt(m.get(k))) for k in keys)


def _fmt(v):
    if v is None:
        return "-"
    if isinstance(v, float):
        if v == 0:
            return "0"
        if abs(v) >= 100:
            return "%.0f" % v
        if abs(v) >= 10:
            return "%.1f" % v
        if abs(v) >= 0.01:
            return "%.3g" % v
        return "%.2g" % v
    return str(v)


def build_result(args, scenarios, samples, started, ended):
    summary = {}
    for s in scenarios:
        summary[s.name] = {}
        for test in args.tests:
            summary[s.name][test] = {}
            recs = [r for r in samples if r["scenario"] == s.name and r["test"] == test]
            ok = [r["metrics"] for r in recs if r["metrics"]]
            for metric, _, _ in TESTS[test][1]:
                st = summarize([m.get(metric) for m in ok])
                if st:
                    st["errors"] = sum(1 for r in recs if r["error"])
                summary[s.name][test][metric] = st
    for s in scenarios:
        for test in args.tests:
            for metric, _, _ in TESTS[test][1]:
                st = summary[s.name][test][metric]
                if not st:
                    continue
                for key, base in (("ratio_classic", BASELINE), ("ratio_veth", KERNEL)):
                    b = summary.get(base, {}).get(test, {}).get(metric)
                    st[key] = ratio(st["median"], b["median"]) if b else None
                refs = {}
                for ref in s.refs:
                    b = summary.get(ref, {}).get(test, {}).get(metric)
                    if b:
                        refs[ref] = ratio(st["median"], b["median"])
                if refs:
                    st["ratio_refs"] = refs
    return {
        "meta": {
            "tool": "vdens-fast tools/bench.py",
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
            "ended": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ended)),
            "host": platform.node(),
            "kernel": platform.release(),
            "cpus": os.cpu_count(),
            "rounds": args.rounds,
            "duration_s": args.duration,
            "ping_count": args.ping_count,
            "quick": args.quick,
            "baseline": BASELINE,
            "kernel_reference": KERNEL,
            "vdens": shutil.which(args.vdens) or args.vdens,
            "vdens_fast": args.vdens_fast,
            "iperf3": _version(["iperf3", "--version"]),
            "trafgen": _version(["trafgen", "--version"]),
            "sockperf": _version(["sockperf", "--version"]),
            "zl_steps": getattr(args, "zl_steps", None),
            "zl_duration_s": getattr(args, "zl_duration", None),
            "loss_tolerance_pct": getattr(args, "loss_tolerance", None),
            "loadavg_end": _loadavg(),
        },
        "tests": {t: {"label": TESTS[t][0], "metrics": [{"name": m, "unit": u, "higher_is_better": h} for m, u, h in TESTS[t][1]]} for t in args.tests},
        "scenarios": [{"name": s.name, "label": s.label, "status": s.status, "reason": s.reason, "refs": s.refs} for s in scenarios],
        "samples": samples,
        "summary": summary,
    }


def _version(argv):
    try:
        p = subprocess.run(argv, capture_output=True, timeout=5, text=True)
        return _last_line(p.stdout.splitlines()[0] if p.stdout else "", "?")
    except (OSError, subprocess.TimeoutExpired):
        return None


def _status_text(sc):
    if sc["status"] == "ok":
        return None
    if sc["status"] == "not available":
        return "not available"
    return "failed: %s" % sc["reason"]


def rows(result):
    """Long-form summary rows shared by the text, CSV and Markdown outputs."""
    out = []
    for sc in result["scenarios"]:
        for test, tinfo in result["tests"].items():
            for m in tinfo["metrics"]:
                st = result["summary"].get(sc["name"], {}).get(test, {}).get(m["name"])
                out.append({"scenario": sc["name"], "test": test, "metric": m["name"], "unit": m["unit"], "higher_is_better": m["higher_is_better"], "status": sc["status"], "reason": sc["reason"], "stats": st})
    return out


def text_table(result):
    lines = []
    hdr = "%-24s %-12s %-14s %10s %21s %21s %9s %9s" % ("scenario", "test", "metric", "median", "min..max", "IQR", "x classic", "x veth")
    lines.append(hdr)
    lines.append("-" * len(hdr))
    for sc in result["scenarios"]:
        st_text = _status_text(sc)
        if st_text and not any(r["stats"] for r in rows(result) if r["scenario"] == sc["name"]):
            lines.append("%-24s %s" % (sc["name"], st_text))
            continue
        for r in rows(result):
            if r["scenario"] != sc["name"]:
                continue
            st = r["stats"]
            if not st:
                lines.append("%-24s %-12s %-14s %10s" % (r["scenario"], r["test"], r["unit"], "-"))
                continue
            lines.append(
                "%-24s %-12s %-14s %10s %21s %21s %9s %9s"
                % (
                    r["scenario"],
                    r["test"],
                    r["unit"],
                    _fmt(st["median"]),
                    "%s..%s" % (_fmt(st["min"]), _fmt(st["max"])),
                    "%s..%s" % (_fmt(st["q1"]), _fmt(st["q3"])),
                    _fmt(st.get("ratio_classic")),
                    _fmt(st.get("ratio_veth")),
                )
            )
        if st_text:
            lines.append("%-24s %s" % (sc["name"], st_text))
    refs = ref_rows(result)
    if refs:
        lines.append("")
        lines.append("against the classic forwarder with the same clients (ratio of medians):")
        for r in refs:
            lines.append("%-24s vs %-24s %s" % (r["scenario"], r["ref"], "  ".join("%s=%s" % (k, _fmt(v)) for k, v in r["ratios"])))
    return "\n".join(lines)


def ref_rows(result):
    """Per scenario compared with others (its `refs`): the headline metrics' ratios to each."""
    out = []
    for sc in result["scenarios"]:
        for ref in sc.get("refs") or []:
            ratios = []
            for t, m in CHART_METRICS:
                st = result["summary"].get(sc["name"], {}).get(t, {}).get(m)
                if st and (st.get("ratio_refs") or {}).get(ref) is not None:
                    ratios.append(("%s.%s" % (t, m), st["ratio_refs"][ref]))
            if ratios:
                out.append({"scenario": sc["name"], "ref": ref, "ratios": ratios})
    return out


def write_csv(result, path):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["scenario", "status", "test", "metric", "unit", "higher_is_better", "n", "errors", "median", "min", "max", "q1", "q3", "ratio_classic", "ratio_veth", "reason"])
        for r in rows(result):
            st = r["stats"] or {}
            w.writerow([r["scenario"], r["status"], r["test"], r["metric"], r["unit"], int(r["higher_is_better"])] + [st.get(k, "") if st.get(k) is not None else "" for k in ("n", "errors", "median", "min", "max", "q1", "q3", "ratio_classic", "ratio_veth")] + [r["reason"] or ""])


def markdown(result):
    meta = result["meta"]
    out = io.StringIO()
    out.write(
        "Measured %s on %s (kernel %s, %s CPUs), %s round(s) x %s s per test, interleaved; "
        "median with min..max over rounds; ratios are medians against `%s` and `%s`.\n\n"
        % (meta["started"], meta["host"], meta["kernel"], meta["cpus"], meta["rounds"], meta["duration_s"], BASELINE, KERNEL)
    )
    # compact: one row per scenario, the headline metrics, "median (x classic)"
    cols = [(t, m) for t, m in CHART_METRICS if t in result["tests"]]
    units = {(t, m["name"]): m["unit"] for t, ti in result["tests"].items() for m in ti["metrics"]}
    out.write("| scenario | " + " | ".join("%s %s" % (TESTS[t][0], units[(t, m)]) for t, m in cols) + " |\n")
    out.write("|---|" + "---:|" * len(cols) + "\n")
    for sc in result["scenarios"]:
        cells = []
        for t, m in cols:
            st = result["summary"].get(sc["name"], {}).get(t, {}).get(m)
            if not st:
                cells.append("-")
            elif st.get("ratio_classic") is None:
                cells.append(_fmt(st["median"]))
            else:
                cells.append("%s (%sx)" % (_fmt(st["median"]), _fmt(st["ratio_classic"])))
        if not any(c != "-" for c in cells):
            cells = [(_status_text(sc) or "no data").replace("|", "/")] + [""] * (len(cols) - 1)
        out.write("| %s | %s |\n" % (sc["name"], " | ".join(cells)))
    refs = ref_rows(result)
    if refs:
        out.write("\nAgainst the classic forwarder with the same clients (ratio of medians; > 1 is better for rates, < 1 for RTT and CPU):\n\n")
        heads = [k for k, _ in refs[0]["ratios"]]
        names = {"%s.%s" % (t, m): "%s %s" % (TESTS[t][0], units[(t, m)]) for t, m in cols}
        out.write("| scenario | against | " + " | ".join(names.get(h, h) for h in heads) + " |\n")
        out.write("|---|---|" + "---:|" * len(heads) + "\n")
        for r in refs:
            got = dict(r["ratios"])
            out.write("| %s | %s | %s |\n" % (r["scenario"], r["ref"], " | ".join(("%sx" % _fmt(got[h])) if got.get(h) is not None else "-" for h in heads)))
    out.write("\nAll metrics, with spread:\n\n")
    out.write("| scenario | test | metric | median | min..max | x classic | x veth |\n")
    out.write("|---|---|---|---:|---:|---:|---:|\n")
    for sc in result["scenarios"]:
        st_text = _status_text(sc)
        mine = [r for r in rows(result) if r["scenario"] == sc["name"]]
        if not any(r["stats"] for r in mine):
            out.write("| %s | | | %s | | | |\n" % (sc["name"], (st_text or "no data").replace("|", "/")))
            continue
        for r in mine:
            st = r["stats"]
            if not st:
                continue
            arrow = "higher is better" if r["higher_is_better"] else "lower is better"
            out.write(
                "| %s | %s | %s (%s) | %s | %s..%s | %s | %s |\n"
                % (sc["name"], TESTS[r["test"]][0], r["unit"], arrow, _fmt(st["median"]), _fmt(st["min"]), _fmt(st["max"]), _fmt(st.get("ratio_classic")), _fmt(st.get("ratio_veth")))
            )
    return out.getvalue()


# --------------------------------------------------------------------------------------------
# self-test on canned data
# --------------------------------------------------------------------------------------------

CANNED_TCP = json.dumps(
    {
        "start": {},
        "intervals": [],
        "end": {
            "sum_sent": {"start": 0, "end": 3.0, "seconds": 3.0, "bytes": 503775184, "bits_per_second": 1343400490.6, "retransmits": 7, "sender": True},
            "sum_received": {"start": 0, "end": 3.0024, "seconds": 3.002404, "bytes": 503775184, "bits_per_second": 1342324841.02739, "sender": True},
        },
    }
)
CANNED_UDP = json.dumps(
    {
        "end": {
            "sum": {"seconds": 2.000089, "bytes": 40358400, "lost_packets": 4794, "packets": 630600},
            "sum_sent": {"start": 0, "end": 2.00003, "seconds": 2.00003, "bytes": 40358400, "bits_per_second": 161431178.5, "jitter_ms": 0, "lost_packets": 0, "packets": 630600, "lost_percent": 0, "sender": True},
            "sum_received": {"start": 0, "end": 2.000089, "seconds": 2.000089, "bytes": 40051584, "bits_per_second": 160199207.1, "jitter_ms": 0.0019, "lost_packets": 4794, "packets": 630600, "lost_percent": 0.76, "sender": False},
        }
    }
)
CANNED_IPERF_ERR = '{"start": {}, "intervals": [], "end": {}, "error": "unable to connect to server: Connection refused"}'
CANNED_PING = """PING 10.99.0.1 (10.99.0.1) 56(84) bytes of data.
64 bytes from 10.99.0.1: icmp_seq=1 ttl=64 time=0.554 ms
64 bytes from 10.99.0.1: icmp_seq=2 ttl=64 time=0.178 ms
64 bytes from 10.99.0.1: icmp_seq=4 ttl=64 time=0.290 ms
64 bytes from 10.99.0.1: icmp_seq=5 ttl=64 time=1.50 ms

--- 10.99.0.1 ping statistics ---
5 packets transmitted, 4 received, 20% packet loss, time 407ms
rtt min/avg/max/mdev = 0.178/0.630/1.500/0.527 ms
"""
CANNED_PING_DEAD = """PING 10.99.0.1 (10.99.0.1) 56(84) bytes of data.
From 10.99.0.2 icmp_seq=1 Destination Host Unreachable

--- 10.99.0.1 ping statistics ---
3 packets transmitted, 0 received, +3 errors, 100% packet loss, time 406ms
"""
CANNED_NETDEV = """Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:       0       0    0    0    0     0          0         0        0       0    0    0    0     0       0          0
  vde0: 27556608  459274    0   12    0     0          0         0     1384      17    0    3    0     0       0          0
"""
# trafgen 0.6.8 on SIGINT (stdout)
CANNED_TRAFGEN = """     1 packets to schedule
    60 bytes in total
Running! Hang up with ^C!


      459264 packets outgoing
    27555840 bytes outgoing
           1 sec, 979126 usec on CPU0 (459264 packets)
"""
CANNED_TRAFGEN_ERR = "Syntax error at line 1, char '=': syntax error\n"
# sockperf 3.7 ping-pong --full-rtt, colours as it prints them
CANNED_SOCKPERF = """sockperf: \x1b[2;35m== version #3.7-no.git == \x1b[0m
sockperf[CLIENT] send on:sockperf: using recvfrom() to block on socket(s)

[ 0] IP = 10.99.0.1       PORT = 11111 # UDP
sockperf: Warmup stage (sending a few dummy messages)...
sockperf: Starting test...
sockperf: Test end (interrupted by timer)
sockperf: Test ended
sockperf: [Total Run] RunTime=2.000 sec; Warm up time=400 msec; SentMessages=79846; ReceivedMessages=79845
sockperf: ========= Printing statistics for Server No: 0
sockperf: [Valid Duration] RunTime=1.550 sec; SentMessages=61075; ReceivedMessages=61075
sockperf: \x1b[2;35m====> avg-rtt=25.342 (std-dev=168.096)\x1b[0m
sockperf: # dropped messages = 0; # duplicated messages = 0; # out-of-order messages = 0
sockperf: Summary: Round trip is 25.342 usec
sockperf: \x1b[2;35mTotal 61075 observations\x1b[0m; each percentile contains 610.75 observations
sockperf: ---> <MAX> observation = 5365.682
sockperf: ---> percentile 99.999 = 5342.888
sockperf: ---> percentile 99.990 = 5075.314
sockperf: ---> percentile 99.900 = 3629.251
sockperf: ---> percentile 99.000 =   52.327
sockperf: ---> percentile 90.000 =   18.036
sockperf: ---> percentile 75.000 =   17.165
sockperf: ---> percentile 50.000 =   16.394
sockperf: ---> percentile 25.000 =   15.853
sockperf: ---> <MIN> observation =   12.919
"""
# sockperf under-load with frames lost (a reply to every message)
CANNED_SOCKPERF_LOSS = """sockperf: [Total Run] RunTime=2.000 sec; Warm up time=400 msec; SentMessages=20005; ReceivedMessages=19835
sockperf: ========= Printing statistics for Server No: 0
sockperf: [Valid Duration] RunTime=1.550 sec; SentMessages=15503; ReceivedMessages=15368
sockperf: ====> avg-rtt=934.850 (std-dev=1799.799)
sockperf: # dropped messages = 135; # duplicated messages = 0; # out-of-order messages = 0
sockperf: Total 15368 observations; each percentile contains 153.68 observations
sockperf: ---> <MAX> observation = 9999.000
sockperf: ---> percentile 99.900 = 8888.100
sockperf: ---> percentile 99.000 = 7415.467
sockperf: ---> percentile 50.000 =   15.162
"""
# ping-pong stalled at a lost reply during the warm-up
CANNED_SOCKPERF_DEAD = """sockperf: [Total Run] RunTime=2.000 sec; Warm up time=400 msec; SentMessages=161; ReceivedMessages=160
sockperf: No valid observations found. Try tune parameters: --time/--mps/--reply-every
"""
CANNED_STAT = "4242 (vdens (fast) x) S 4200 4242 4242 0 -1 4194560 120 0 0 0 250 75 3 1 20 0 3 0 1234 1000 100 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 0\n"


def self_test():
    results = []

    def check(name, cond):
        results.append((name, bool(cond)))
        if not cond:
            print("FAIL %s" % name)

    def raises(name, fn, exc=BenchError):
        try:
            fn()
        except exc:
            check(name, True)
        except Exception as e:
            check(name + " (raised %s)" % type(e).__name__, False)
        else:
            check(name + " (no exception)", False)

    near = lambda a, b, eps=1e-9: a is not None and abs(a - b) <= eps * max(1.0, abs(b))

    t = parse_iperf_tcp(CANNED_TCP)
    check("tcp gbps", near(t["gbps"], 1.34232484102739))
    check("tcp bytes", t["bytes"] == 503775184)
    check("tcp retransmits", t["retransmits"] == 7)
    raises("tcp error json", lambda: parse_iperf_tcp(CANNED_IPERF_ERR))
    raises("tcp not json", lambda: parse_iperf_tcp("iperf3: error - unable to connect"))
    raises("tcp empty", lambda: parse_iperf_tcp(""))

    u = parse_iperf_udp(CANNED_UDP)
    check("udp kpps", near(u["kpps"], (630600 - 4794) / 2.000089 / 1e3))
    check("udp gbps", near(u["gbps"], 40051584 * 8 / 2.000089 / 1e9))
    check("udp loss", near(u["loss_pct"], 100.0 * 4794 / 630600))
    raises("udp missing", lambda: parse_iperf_udp('{"end": {}}'))
    raises("udp error json", lambda: parse_iperf_udp(CANNED_IPERF_ERR))

    p = parse_ping(CANNED_PING)
    check("ping avg", near(p["rtt_avg_ms"], (0.554 + 0.178 + 0.290 + 1.50) / 4))
    check("ping p99", near(p["rtt_p99_ms"], 1.50))
    check("ping min", near(p["rtt_min_ms"], 0.178))
    check("ping loss", near(p["loss_pct"], 20.0))
    raises("ping no replies", lambda: parse_ping(CANNED_PING_DEAD))

    ppid, ticks = parse_proc_stat(CANNED_STAT)
    check("stat ppid (comm with spaces/parens)", ppid == 4200)
    check("stat utime+stime", ticks == 325)

    nd = parse_netdev(CANNED_NETDEV)
    check("netdev ifaces", sorted(nd) == ["lo", "vde0"])
    check("netdev rx/tx", nd["vde0"]["rx_packets"] == 459274 and nd["vde0"]["rx_dropped"] == 12 and nd["vde0"]["tx_packets"] == 17 and nd["vde0"]["tx_dropped"] == 3)
    g = parse_trafgen(CANNED_TRAFGEN)
    check("trafgen packets", g["packets"] == 459264 and g["bytes"] == 27555840)
    check("trafgen seconds", near(g["seconds"], 1.979126))
    raises("trafgen error", lambda: parse_trafgen(CANNED_TRAFGEN_ERR))
    conf = trafgen_conf("96:bb:5c:30:87:9e", "02:00:00:00:00:01", "10.99.0.2", "10.99.0.1", 64)
    check("trafgen conf 64 B (60 + FCS)", "fill(0x00, 18)" in conf and "da=96:bb:5c:30:87:9e" in conf and "da=10.99.0.1" in conf and "dp=9" in conf)
    check("trafgen conf 1518 B", "fill(0x00, 1472)" in trafgen_conf("a", "b", "c", "d", 1518))
    raises("trafgen conf too small", lambda: trafgen_conf("a", "b", "c", "d", 40))
    sp = parse_sockperf(CANNED_SOCKPERF)
    check("sockperf p50/p99/p99.9", near(sp["p50_us"], 16.394) and near(sp["p99_us"], 52.327) and near(sp["p999_us"], 3629.251))
    check("sockperf avg max obs", near(sp["avg_us"], 25.342) and near(sp["max_us"], 5365.682) and sp["observations"] == 61075)
    check("sockperf no loss", sp["loss_pct"] == 0.0 and sp["sent"] == 61075)
    sl = parse_sockperf(CANNED_SOCKPERF_LOSS)
    check("sockperf loss", near(sl["loss_pct"], 100.0 * 135 / 15503) and near(sl["p999_us"], 8888.1) and near(sl["p50_us"], 15.162))
    raises("sockperf stalled", lambda: parse_sockperf(CANNED_SOCKPERF_DEAD))
    raises("sockperf empty", lambda: parse_sockperf(""))

    # the zero-loss search against a fake forwarder that loses frames above 70 kpps and a
    # generator that cannot go past 150 kpps
    def fake(cap, gen_max=150e3):
        def probe(rate):
            offered = min(rate, gen_max)
            return offered, 0.0 if offered <= cap else 100.0 * (1 - cap / offered)

        return probe

    seen = []
    best, trail = zero_loss_search(fake(70e3), 100e3, 6, progress=lambda *a: seen.append(a))
    check("zeroloss search bisects", [round(t["target_pps"]) for t in trail] == [100000, 50000, 75000, 62500, 68750, 71875])
    check("zeroloss search best passing", near(best, 68750.0) and len(seen) == 6 and seen[1][5] is True)
    best, trail = zero_loss_search(fake(1e9), 100e3, 6)
    check("zeroloss search stops at a clean overload rate", len(trail) == 1 and near(best, 100e3))
    best, trail = zero_loss_search(fake(0.0), 100e3, 3)
    check("zeroloss search nothing passes", best == 0.0 and len(trail) == 3)
    best, _ = zero_loss_search(lambda r: (r, 0.5), 100e3, 2, tolerance=1.0)
    check("zeroloss search tolerance", near(best, 100e3))
    best, trail = zero_loss_search(lambda r: (r, None), 100e3, 2)
    check("zeroloss search unknown loss fails", best == 0.0 and not trail[0]["pass"])

    check("percentile p99 of 100", percentile(list(range(1, 101)), 99) == 99)
    check("percentile p50 of 4", percentile([4, 1, 3, 2], 50) == 2)
    check("percentile p99 of 1", percentile([7.0], 99) == 7.0)
    s = summarize([3.0, 1.0, 2.0, None, 10.0])
    check("summary n", s["n"] == 4)
    check("summary median", near(s["median"], 2.5))
    check("summary min max", s["min"] == 1.0 and s["max"] == 10.0)
    check("summary iqr", near(s["q1"], 1.75) and near(s["q3"], 4.75))
    check("summary one", summarize([5.0])["q1"] == 5.0)
    check("summary empty", summarize([None]) is None)
    check("ratio", near(ratio(3.0, 1.5), 2.0) and ratio(1.0, 0) is None and ratio(None, 1.0) is None)

    forest = {
        10: (1, 5),
        11: (10, 7),  # forwarder child (clone mode)
        12: (10, 100),  # agent
        13: (12, 1000),  # iperf3 under the agent
        20: (1, 3),
    }
    orig = globals()["proc_table"]
    try:
        globals()["proc_table"] = lambda: forest
        ticks, pids = forwarder_ticks([10, 20, 99], {12})
    finally:
        globals()["proc_table"] = orig
    check("forwarder tree excludes agent subtree", ticks == 15 and pids == [10, 11, 20])

    # a whole fake result through every output
    class A:
        rounds, duration, ping_count, quick = 2, 1, 10, True
        tests = list(TESTS)
        vdens, vdens_fast = "vdens", "target/release/vdens-fast"

    scns = [Scenario("veth", "veth"), Scenario("classic-ptp", "classic"), Scenario("fast-ptp", "fast"), Scenario("nat-router", "nat", na="not implemented yet")]
    scns[0].status = scns[1].status = "ok"
    scns[2].status, scns[2].reason = "failed", "fast-ptp a exited with status 1: unknown VNL scheme 'ptp'"
    samples = []
    for rnd, f in ((1, 1.0), (2, 1.2)):
        for name, k in (("veth", 10.0), ("classic-ptp", 1.0)):
            samples.append({"round": rnd, "scenario": name, "test": "tcp1", "metrics": {"gbps": k * f, "cpu_s_per_gb": (2.0 / k) if name != "veth" else None, "bytes": 1}, "error": None})
            samples.append({"round": rnd, "scenario": name, "test": "ping", "metrics": {"rtt_avg_ms": 0.3 / k * f, "rtt_p99_ms": 0.5 / k, "loss_pct": 0.0}, "error": None})
        for name, k in (("veth", 4.0), ("classic-ptp", 1.0)):
            samples.append({"round": rnd, "scenario": name, "test": "rate64", "metrics": {"kpps": 100.0 * k * f, "offered_kpps": 100.0 * k * f, "loss_pct": 0.0, "cpu_s_per_mframe": (8.0 * f) if name != "veth" else None}, "error": None})
            samples.append({"round": rnd, "scenario": name, "test": "zeroloss64", "metrics": {"kpps": 90.0 * k, "overload_kpps": 100.0 * k}, "error": None})
            samples.append({"round": rnd, "scenario": name, "test": "lat-flood", "metrics": {"p50_us": 50.0 / k, "p99_us": 900.0 / k * f, "p999_us": 2000.0 / k, "loss_pct": 1.0, "flood_kpps": 100.0 * k}, "error": None})
    samples.append({"round": 1, "scenario": "classic-ptp", "test": "udp64", "metrics": None, "error": "iperf3: boom"})
    res = build_result(A, scns, samples, 0, 1)
    st = res["summary"]["veth"]["tcp1"]["gbps"]
    check("result median", near(st["median"], 11.0))
    check("result ratio classic", near(st["ratio_classic"], 10.0))
    check("result ratio veth of veth", near(st["ratio_veth"], 1.0))
    check("result lower-better ratio", near(res["summary"]["veth"]["ping"]["rtt_avg_ms"]["ratio_classic"], 0.1))
    check("result no cpu for veth", res["summary"]["veth"]["tcp1"]["cpu_s_per_gb"] is None)
    check("result rate64", near(res["summary"]["veth"]["rate64"]["kpps"]["median"], 440.0) and near(res["summary"]["veth"]["rate64"]["kpps"]["ratio_classic"], 4.0))
    check("result cpu per Mframe", near(res["summary"]["classic-ptp"]["rate64"]["cpu_s_per_mframe"]["median"], 8.8) and res["summary"]["veth"]["rate64"]["cpu_s_per_mframe"] is None)
    check("result zeroloss", near(res["summary"]["veth"]["zeroloss64"]["kpps"]["ratio_classic"], 4.0))
    check("result latency lower-better", near(res["summary"]["veth"]["lat-flood"]["p99_us"]["ratio_classic"], 0.25))
    est_args = argparse.Namespace(duration=3, tests=["rate64", "zeroloss64", "rate512", "rate1518", "lat", "lat-tcp", "lat-flood", "tcp1", "tcp1r"], zl_duration=2, zl_steps=4, ping_count=200, rounds=3)
    check("estimate of the s12 run (37 min measured)", 30 * 60 <= estimate_seconds(est_args, 15) <= 42 * 60)
    est_args.tests = ["udp64", "ping"]
    check("estimate udp + ping", near(estimate_seconds(est_args, 1), 3 * (4.5 + 3.0) + 3.0))
    check("result new tests in meta", all(t in res["tests"] for t in ("rate64", "rate512", "rate1518", "zeroloss64", "lat", "lat-tcp", "lat-flood")))

    # pairs tested at once add up; a scenario compared with its classic counterpart
    u1, u2 = parse_iperf_udp(CANNED_UDP), parse_iperf_udp(CANNED_UDP)
    u2["kpps"], u2["sent_packets"] = u2["kpps"] / 2, u2["sent_packets"]
    both = combine_pairs([u1, u2])
    check("pairs: rates add", near(both["kpps"], u1["kpps"] * 1.5) and near(both["gbps"], u1["gbps"] * 2))
    want_loss = 100.0 * (1 - (u1["kpps"] * 1.5e3 * u1["seconds"]) / (2 * u1["sent_packets"]))
    check("pairs: loss over all sent", near(both["loss_pct"], want_loss))
    t1 = parse_iperf_tcp(CANNED_TCP)
    check("pairs: one is itself", combine_pairs([t1]) == t1)
    check("pairs: tcp", near(combine_pairs([t1, t1])["gbps"], 2 * t1["gbps"]) and combine_pairs([t1, t1])["retransmits"] == 14)
    sw = [Scenario("classic-vde2-switch4", "c"), Scenario("fast-switch4", "f", refs=("classic-vde2-switch4", "missing"))]
    for x in sw:
        x.status = "ok"
    sams = [
        {"round": 1, "scenario": "classic-vde2-switch4", "test": "tcp1", "metrics": {"gbps": 1.0, "bytes": 1}, "error": None},
        {"round": 1, "scenario": "fast-switch4", "test": "tcp1", "metrics": {"gbps": 4.5, "bytes": 1}, "error": None},
    ]
    r2 = build_result(A, sw, sams, 0, 1)
    check("refs ratio", near(r2["summary"]["fast-switch4"]["tcp1"]["gbps"]["ratio_refs"]["classic-vde2-switch4"], 4.5))
    check("refs missing ref ignored", "missing" not in r2["summary"]["fast-switch4"]["tcp1"]["gbps"]["ratio_refs"])
    check("refs in text", "fast-switch4             vs classic-vde2-switch4" in text_table(r2))
    check("refs in markdown", "| fast-switch4 | classic-vde2-switch4 | 4.5x |" in markdown(r2))
    txt = text_table(res)
    check("text shows failure reason", "failed: fast-ptp a exited" in txt and "not available" in txt)
    md = markdown(res)
    check("markdown has table rows", md.count("\n| veth |") >= 3 and "| fast-ptp | | | failed:" in md)
    check("markdown has the NFV columns", "64 B frames, overload kpps" in md and "sockperf RTT + 64 B flood p99 us" in md and "| classic-ptp | 64 B frames, zero-loss | kpps (higher is better) | 90.0 |" in md and "64 B frames, zero-loss kpps" in md)
    check("text has the NFV rows", "rate64" in txt and "CPU s/Mframe" in txt and "lat-flood" in txt)
    with tempfile.TemporaryDirectory() as d:
        write_csv(res, os.path.join(d, "r.csv"))
        with open(os.path.join(d, "r.csv")) as f:
            rr = list(csv.DictReader(f))
        check("csv rows", any(r["scenario"] == "veth" and r["metric"] == "gbps" and r["test"] == "tcp1" and near(float(r["median"]), 11.0) for r in rr))
        try:
            sys.path.insert(0, os.path.dirname(THIS))
            import chart
            import xml.etree.ElementTree as ET

            svg = chart.render(res)
            root = ET.fromstring(svg)
            check("chart is svg", root.tag.endswith("svg"))
            check("chart has bars and labels", svg.count("<rect") > 4 and "classic-ptp" in svg and "TCP 1 stream" in svg)
            check("chart marks failed", "failed" in svg and "not available" in svg)
            check("chart has the NFV blocks", "64 B frames, overload" in svg and "CPU s/Mframe" in svg and "sockperf RTT + 64 B flood" in svg)
            check("chart escapes text", "<'ptp'>" not in svg)
            # a median of 0 against the baseline (a zero-loss rate no probe reached): ratio 0
            z = json.loads(json.dumps(res))
            zeroed = next(m for sc in z["summary"].values() for t in sc.values() for m in t.values() if isinstance(m, dict) and m.get("ratio_classic"))
            zeroed.update(ratio_classic=0.0, median=0.0, min=0.0)
            check("chart draws a ratio of 0 at the axis' end", ET.fromstring(chart.render(z)).tag.endswith("svg"))
        except ImportError as e:
            check("chart import (%s)" % e, False)

    # the control channel, with the agent run directly (no namespace)
    with tempfile.TemporaryDirectory() as d:
        ep = Endpoint("self-test agent", [], d)
        try:
            ep.start(timeout=10)
            check("agent ready", ep.agent_pid == ep.pid)
            ans = ep.run([sys.executable, "-c", "import sys; print('out'); print('err', file=sys.stderr)"], timeout=10)
            check("agent run", ans["rc"] == 0 and ans["out"] == "out\n" and ans["err"] == "err\n")
            raises("agent run failing", lambda: ep.run(["false"], timeout=5))
            raises("agent run timeout", lambda: ep.run(["sleep", "5"], timeout=0.3))
            ep.spawn("bg", ["sleep", "30"])
            ans = ep.wait_listen(1, "bg", timeout=0.2)
            check("agent wait_listen (nothing listens on port 1)", not ans["ok"] and not ans["dead"])
            ans = ep.reap("bg", kill=True, timeout=5)
            check("agent kill", ans["rc"] == -signal.SIGTERM and not ans["timed_out"])
            raises("agent unknown tag", lambda: ep.reap("nope", timeout=1))
            t0, nd = ep.netdev()
            check("agent netdev", "lo" in nd and t0 > 0)
            # a program that forks (as trafgen does): killing it stops its whole group
            ep.spawn("fork", ["sh", "-c", "sleep 30 & echo $!; wait"])
            time.sleep(0.3)
            ans = ep.reap("fork", kill=True, timeout=5)
            child = int(ans["out"].split()[0])
            time.sleep(0.1)
            check("agent kill stops the group", not os.path.exists("/proc/%d" % child) or open("/proc/%d/stat" % child).read().split(") ")[1][0] == "Z")
            mark = "30.%d" % os.getpid()  # a sleep no one else runs
            ep.spawn("orphan", ["sh", "-c", "sleep %s & wait" % mark])
            time.sleep(0.3)
            os.kill(ep.pid, signal.SIGTERM)  # no "exit" request: the agent is signalled, as by Proc.stop
            ep.p.wait(timeout=10)
            time.sleep(0.1)
            left = [pid for pid in proc_table() if _cmdline(pid) == ["sleep", mark]]
            check("agent on SIGTERM stops what it spawned", not left)
            ep.stop()
            check("agent stopped and reaped", not ep.alive() and ep.p.returncode is not None)
        finally:
            ep.stop()

    passed = sum(1 for _, ok in results if ok)
    failed = len(results) - passed
    print("%d passed, %d failed" % (passed, failed))
    return 0 if failed == 0 else 1


# --------------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------------


def parse_args(argv):
    names = [s.name for s in all_scenarios()]
    ap = argparse.ArgumentParser(
        description="Side-by-side benchmark of vdens-fast against classic vdens/vde_plug/vde_switch, "
        "each scenario in network namespaces of its own.",
        epilog="scenarios: %s; tests: %s" % (", ".join(names), ", ".join(TESTS)),
    )
    ap.add_argument("--quick", action="store_true", help="short run: 1 round, 2 s per test, 50 pings")
    ap.add_argument("--rounds", type=int, help="rounds (default 3)")
    ap.add_argument("--duration", type=int, help="seconds per throughput test (default 5)")
    ap.add_argument("--ping-count", type=int, help="pings per RTT test (default 200)")
    ap.add_argument("--zl-steps", type=int, default=5, help="probes of the zero-loss search (default 5)")
    ap.add_argument("--zl-duration", type=int, default=2, help="seconds per probe of the zero-loss search (default 2)")
    ap.add_argument("--loss-tolerance", type=float, default=0.0, help="loss %% a zero-loss probe may show and still pass (default 0)")
    ap.add_argument("--scenarios", help="comma list (default: all)")
    ap.add_argument("--tests", help="comma list (default: all)")
    ap.add_argument("--vdens", default="vdens", help="classic vdens (default: vdens from PATH)")
    ap.add_argument("--vdens-fast", default=os.path.join(REPO, "target", "release", "vdens-fast"), help="vdens-fast binary (default: target/release/vdens-fast)")
    ap.add_argument("--base", metavar="BIN", help="an earlier vdens-fast build for an A/B in the same rounds: adds the base-* scenarios (%s) unless --scenarios names others" % ", ".join(BASE_NAMES))
    ap.add_argument("--json", metavar="FILE", help="write all samples + summary as JSON")
    ap.add_argument("--csv", metavar="FILE", help="write the summary as CSV")
    ap.add_argument("--markdown", metavar="FILE", help="write the summary as a Markdown table")
    ap.add_argument("--chart", metavar="FILE", help="draw the SVG chart of tools/chart.py to FILE")
    ap.add_argument("--report", metavar="JSON", help="do not measure: re-print (and --csv/--markdown) the results in JSON")
    ap.add_argument("--self-test", action="store_true", help="check parsers/statistics/outputs on canned data")
    ap.add_argument("--agent", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    q = args.quick
    args.rounds = args.rounds if args.rounds is not None else (1 if q else 3)
    args.duration = args.duration if args.duration is not None else (2 if q else 5)
    args.ping_count = args.ping_count if args.ping_count is not None else (50 if q else 200)
    if args.rounds < 1 or args.duration < 1 or args.ping_count < 1 or args.zl_steps < 1 or args.zl_duration < 1:
        ap.error("--rounds, --duration, --ping-count, --zl-steps and --zl-duration must be at least 1")
    if args.loss_tolerance < 0:
        ap.error("--loss-tolerance must not be negative")
    args.tests = args.tests.split(",") if args.tests else list(TESTS)
    bad = [t for t in args.tests if t not in TESTS]
    if bad:
        ap.error("unknown test(s) %s (known: %s)" % (", ".join(bad), ", ".join(TESTS)))
    default = [n for n in names if n not in NODE_NAMES and (n not in BASE_NAMES or args.base)]
    args.scenarios = args.scenarios.split(",") if args.scenarios else default
    bad = [s for s in args.scenarios if s not in names]
    if bad:
        ap.error("unknown scenario(s) %s (known: %s)" % (", ".join(bad), ", ".join(names)))
    if not args.base and any(s in BASE_NAMES for s in args.scenarios):
        ap.error("the base-* scenarios need --base BIN (an earlier vdens-fast build)")
    if os.sep in args.vdens_fast:
        args.vdens_fast = os.path.abspath(args.vdens_fast)
    if args.base and os.sep in args.base:
        args.base = os.path.abspath(args.base)
    return args


def _on_signal(signum, frame):
    raise KeyboardInterrupt("signal %d" % signum)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if "--agent" in argv:
        agent_main()
        return 0
    args = parse_args(argv)
    if args.self_test:
        return self_test()
    if args.report:
        try:
            with open(args.report) as f:
                res = json.load(f)
        except (OSError, ValueError) as e:
            why = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
            log("bench: reading %s: %s (pass a file written by --json)" % (args.report, why))
            return 1
        return emit(res, args)
    if os.geteuid() != 0:
        log("note: not root; veth needs CAP_SYS_ADMIN for unshare -n (vdens scenarios work unprivileged)")
    # SIGINT too: a shell starts background jobs with SIGINT ignored, and Python then never
    # raises KeyboardInterrupt; clean-up on interrupt must not depend on how we were started
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _on_signal)
    scenarios = [s for s in all_scenarios() if s.name in args.scenarios]
    est = estimate_seconds(args, sum(1 for s in scenarios if not s.na))
    log("bench: %d scenarios x %d tests x %d rounds: about %d min (on the 2-core reference machine)" % (len(scenarios), len(args.tests), args.rounds, math.ceil(est / 60)))
    started = time.time()
    try:
        samples = run_bench(args, scenarios)
    except KeyboardInterrupt:
        log("interrupted: everything started was stopped and removed")
        return 130
    res = build_result(args, scenarios, samples, started, time.time())
    return emit(res, args)


def emit(res, args):
    print(text_table(res))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)
    if args.csv:
        write_csv(res, args.csv)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(markdown(res))
    if getattr(args, "chart", None):
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import chart

        with open(args.chart, "w") as f:
            f.write(chart.render(res))
        log("chart: wrote %s" % args.chart)
    return 0


if __name__ == "__main__":
    sys.exit(main())
