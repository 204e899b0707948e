#!/usr/bin/env python3
"""Soak test for vdens-fast (issue 17): N minutes of mixed traffic through a switch while the
clients are killed and restarted at random.

A vdens-fast `switch://` host (its own user and network namespace, vde0 = 10.99.0.1/24, running
the iperf3 servers) and 4 vdens-fast `vde://` clients (10.99.0.11-14), every one started by
this tool as `nobody`, each in the namespaces it creates itself. Traffic: client 1 TCP bulk to
the host, client 3 TCP bulk from the host (iperf3 -R), both capped at --tcp-rate; client 2 a
64-byte UDP flood at --udp-rate (below capacity); every client pings the host every 0.2 s.
Every --kill-min..--kill-max seconds a random client is killed (SIGKILL or SIGTERM, at random)
and started again; its link must answer a ping within --recover-timeout seconds.

Checks (exit status 1 when one fails, 0 when all pass, 2 on a set-up error):
  * every restarted client's link came back (first ping reply) within --recover-timeout;
  * loss below capacity <= --max-loss percent: ping loss of every client outside its own
    restarts, and UDP 64 B loss counted on the 1-s intervals of the iperf3 server in which
    no restart was in progress (from the kill to 2 s after the link is back);
  * no growth without bound: for every vdens-fast process that lived at least 3 * --warmup
    seconds, the largest RSS in the last third of its life (after --warmup) is at most
    the largest of the first third + 10 % + 2 MiB, and its largest descriptor count in the last
    third at most the largest of the first third + 2.

Run as root (vdens-fast then runs as nobody; root reads the non-dumpable processes' /proc
entries). Ctrl-C or SIGTERM: everything is killed and removed. Python 3.11, standard library.
"""

import argparse
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HOST_IP = "10.99.0.1"
NCLIENTS = 4
UDP_PORT = 5202
SETTLE = 2.0  # seconds after a link is back that still count as "restart in progress"


def log(msg):
    print(f"soak: {msg}", file=sys.stderr, flush=True)


class Stop(Exception):
    pass


def on_signal(signum, _frame):
    raise Stop(f"signal {signum}")


def parse_rate(s):
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([KMG]?)", s)
    if not m:
        raise argparse.ArgumentTypeError(f"bad rate {s!r} (e.g. 1M, 500K)")
    return s


class Proc:
    """One vdens-fast instance: its Popen (own session), spawn time, role."""

    def __init__(self, name, popen, spawned):
        self.name = name
        self.p = popen
        self.spawned = spawned
        self.up = None  # time of the first ping reply (clients)
        self.killed = None
        self.samples = []  # (t, rss_kb, fds)

    def sample(self, t):
        pid = self.p.pid
        try:
            with open(f"/proc/{pid}/comm") as f:
                if f.read().strip() != "vdens-fast":
                    return  # still setpriv, before its exec
            with open(f"/proc/{pid}/status") as f:
                rss = next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
            fds = len(os.listdir(f"/proc/{pid}/fd"))
        except (OSError, StopIteration):
            return
        self.samples.append((t, rss, fds))


class Soak:
    def __init__(self, a):
        self.a = a
        self.rng = random.Random(a.seed)
        self.dir = tempfile.mkdtemp(prefix="vdens-soak-")
        os.chmod(self.dir, 0o755)
        self.uid = 65534 if os.geteuid() == 0 else os.geteuid()
        if os.geteuid() == 0:
            os.chown(self.dir, self.uid, self.uid)
        self.live = {}  # name -> Proc
        self.all = []  # every Proc ever started
        self.restarts = []  # dicts: client, signal, kill, spawned, up, recovery
        self.windows = []  # (start, end) restart in progress
        self.failures = []

    # --- processes ---------------------------------------------------------------------

    def path(self, name):
        return os.path.join(self.dir, name)

    def write_script(self, name, text):
        p = self.path(name)
        with open(p, "w") as f:
            f.write(text)
        if os.geteuid() == 0:
            os.chown(p, self.uid, self.uid)
        return p

    def spawn(self, name, vnl, script):
        cmd = [self.a.vdens_fast, vnl, "--", "sh", script]
        if name == "host":
            cmd[1:1] = ["--stats", self.path("host-stats.json")]
        if os.geteuid() == 0:
            cmd = ["setpriv", "--reuid", str(self.uid), "--regid", str(self.uid),
                   "--clear-groups", "--"] + cmd
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": self.dir, "SHELL": "/bin/sh"}
        out = open(self.path(f"{name}.out"), "ab")
        p = subprocess.Popen(cmd, cwd=self.dir, env=env, stdin=subprocess.DEVNULL, stdout=out,
                             stderr=subprocess.STDOUT, start_new_session=True)
        out.close()
        pr = Proc(name, p, time.time())
        self.live[name] = pr
        self.all.append(pr)
        return pr

    def kill(self, pr, sig):
        """Kills one vdens-fast instance with `sig`, then whatever is left of its session."""
        try:
            os.kill(pr.p.pid, sig)
        except ProcessLookupError:
            pass
        try:
            pr.p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pr.p.kill()
            pr.p.wait(timeout=5)
        try:
            os.killpg(pr.p.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        pr.killed = time.time()

    def leftovers(self):
        """Pids of processes still running one of this run's scripts or logging into its
        directory (the commands inside the namespaces): started by this tool."""
        pids = []
        for d in os.listdir("/proc"):
            if not d.isdigit() or int(d) == os.getpid():
                continue
            try:
                with open(f"/proc/{d}/cmdline", "rb") as f:
                    if self.dir.encode() in f.read():
                        pids.append(int(d))
            except OSError:
                pass
        return pids

    def stop_all(self):
        """SIGTERM to every live instance, the clients first (the switch host last)."""
        for pr in sorted(self.live.values(), key=lambda pr: pr.name == "host"):
            if pr.p.poll() is None:
                self.kill(pr, signal.SIGTERM)

    def cleanup(self):
        self.stop_all()
        self.live.clear()
        for _ in range(3):
            pids = self.leftovers()
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            time.sleep(0.2)
        if self.a.keep:
            log(f"logs kept in {self.dir}")
        else:
            shutil.rmtree(self.dir, ignore_errors=True)

    # --- scripts ------------------------------------------------------------------------

    def scripts(self):
        a = self.a
        iperf_srv = ("setpriv --pdeathsig KILL iperf3 -s -p {port} -i 1 --forceflush "
                     "--timestamps='%s ' --rcv-timeout 3000 --snd-timeout 3000 "
                     f">> {self.dir}/srv-{{port}}.log 2>&1 &\n")
        host = (
            "set -e\nip addr add 10.99.0.1/24 dev vde0\nip link set vde0 up\nset +e\n"
            + "".join(iperf_srv.format(port=5200 + i) for i in range(1, NCLIENTS + 1))
            + f"echo ready > {self.dir}/host.ready\nwait\n"
        )
        self.host_script = self.write_script("host.sh", host)
        self.client_scripts = {}
        for i in range(1, NCLIENTS + 1):
            port = 5200 + i
            work = {
                1: f"iperf3 -c {HOST_IP} -p {port} -t 86400 -b {a.tcp_rate} --connect-timeout 2000",
                2: f"iperf3 -c {HOST_IP} -p {port} -t 86400 -u -l 64 -b {a.udp_rate} "
                   "--connect-timeout 2000",
                3: f"iperf3 -c {HOST_IP} -p {port} -t 86400 -R -b {a.tcp_rate} "
                   "--connect-timeout 2000",
                4: None,
            }[i]
            s = (
                f"set -e\nip addr add 10.99.0.1{i}/24 dev vde0\nip link set vde0 up\nset +e\n"
                # The link is back at the first ping reply.
                f"until ping -c 1 -W 1 -q {HOST_IP} > /dev/null 2>&1; do :; done\n"
                f"echo up $(date +%s.%N) >> {self.dir}/c{i}.events\n"
                f"echo start >> {self.dir}/c{i}.ping\n"
                f"setpriv --pdeathsig KILL ping -D -O -i 0.2 {HOST_IP} >> {self.dir}/c{i}.ping 2>&1 &\n"
            )
            if work:
                s += (f"while :; do setpriv --pdeathsig KILL {work} > /dev/null 2>&1; "
                      "sleep 1; done &\n")
            s += "wait\n"
            self.client_scripts[i] = self.write_script(f"c{i}.sh", s)

    def start_client(self, i):
        return self.spawn(f"c{i}", f"vde://{self.path('sw')}", self.client_scripts[i])

    def wait_up(self, i, pr, since):
        """Time of the first `up` line of client i written after `since`, or None."""
        deadline = pr.spawned + self.a.recover_timeout
        while time.time() < deadline:
            self.tick()
            try:
                with open(self.path(f"c{i}.events")) as f:
                    ups = [float(l.split()[1]) for l in f if l.startswith("up ")]
            except OSError:
                ups = []
            ups = [u for u in ups if u >= since]
            if ups:
                return ups[0]
            if pr.p.poll() is not None:
                return None
            time.sleep(0.05)
        return None

    # --- sampling -----------------------------------------------------------------------

    last_sample = 0.0
    last_report = 0.0

    def tick(self):
        now = time.time()
        if now - self.last_sample >= 1.0:
            self.last_sample = now
            for pr in self.live.values():
                pr.sample(now)
        if now - self.last_report >= self.a.report_every:
            self.last_report = now
            t = now - self.t0
            parts = [f"t={t:5.0f}s restarts={len(self.restarts)}"]
            for name in ["host"] + [f"c{i}" for i in range(1, NCLIENTS + 1)]:
                pr = self.live.get(name)
                if pr and pr.samples:
                    _, rss, fds = pr.samples[-1]
                    parts.append(f"{name}:{rss // 1024}MB/{fds}fd")
            log(" ".join(parts))

    # --- the run ------------------------------------------------------------------------

    def run(self):
        a = self.a
        self.scripts()
        self.t0 = time.time()
        host = self.spawn("host", f"switch://{self.path('sw')}", self.host_script)
        deadline = time.time() + 10
        while not os.path.exists(self.path("host.ready")):
            if host.p.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"the switch host did not start: see {self.path('host.out')}")
            time.sleep(0.05)
        for i in range(1, NCLIENTS + 1):
            pr = self.start_client(i)
            up = self.wait_up(i, pr, pr.spawned)
            if up is None:
                raise RuntimeError(f"client {i} never reached the switch host: "
                                   f"see {self.path(f'c{i}.out')}")
            pr.up = up
        log(f"switch host and {NCLIENTS} clients up in {time.time() - self.t0:.1f} s; "
            f"{a.minutes} min of traffic, a client restart every {a.kill_min}-{a.kill_max} s")
        end = time.time() + a.minutes * 60
        next_kill = time.time() + self.rng.uniform(a.kill_min, a.kill_max)
        while time.time() < end:
            self.tick()
            for name, pr in self.live.items():
                if pr.p.poll() is not None:
                    self.failures.append(f"{name} (pid {pr.p.pid}) exited by itself "
                                         f"with status {pr.p.returncode}")
                    raise RuntimeError(self.failures[-1])
            if time.time() >= next_kill:
                self.restart_one()
                next_kill = time.time() + self.rng.uniform(a.kill_min, a.kill_max)
            time.sleep(0.1)
        # The last samples, then stop everything before reading the logs.
        self.last_sample = 0
        self.tick()
        for pr in self.live.values():
            pr.killed = time.time()
        self.t_end = time.time()

    def restart_one(self):
        i = self.rng.randint(1, NCLIENTS)
        sig = self.rng.choice([signal.SIGKILL, signal.SIGTERM])
        old = self.live[f"c{i}"]
        t_kill = time.time()
        self.kill(old, sig)
        time.sleep(self.rng.uniform(0, self.a.down_max))
        pr = self.start_client(i)
        up = self.wait_up(i, pr, pr.spawned)
        r = {"client": i, "signal": signal.Signals(sig).name, "kill": t_kill - self.t0,
             "spawned": pr.spawned - self.t0}
        if up is None:
            r["recovery"] = None
            self.failures.append(f"client {i}: no ping reply within {self.a.recover_timeout} s "
                                 f"of its restart at t={r['spawned']:.0f}s")
            log(self.failures[-1])
            self.windows.append((t_kill, time.time() + SETTLE))
            # Try once more, so that the run goes on with four clients.
            self.kill(pr, signal.SIGKILL)
            pr = self.start_client(i)
            up = self.wait_up(i, pr, pr.spawned)
            if up is None:
                raise RuntimeError(f"client {i} does not come back at all")
        else:
            r["recovery"] = up - pr.spawned
            self.windows.append((t_kill, up + SETTLE))
        pr.up = up
        self.restarts.append(r)
        log(f"t={r['kill']:.0f}s restart c{i} ({r['signal']}): link back "
            + (f"{r['recovery'] * 1000:.0f} ms after the start" if r["recovery"] is not None
               else "only after a second restart"))

    # --- analysis -----------------------------------------------------------------------

    def in_restart(self, t0, t1):
        return any(s < t1 and t0 < e for s, e in self.windows)

    def ping_loss(self):
        """Per client: (sent, lost) over every instance, outside its own restarts; and the
        part of it inside other clients' restarts."""
        out = {}
        pat = re.compile(r"^\[(\d+\.\d+)\] (?:\d+ bytes from .*icmp_seq=(\d+)|no answer yet for icmp_seq=(\d+))")
        for i in range(1, NCLIENTS + 1):
            try:
                text = open(self.path(f"c{i}.ping")).read()
            except OSError:
                text = ""
            sent = lost = sent_r = lost_r = 0
            # One ping process per instance, each after a `start` line.
            runs, cur = [], {}
            for line in text.splitlines():
                if line == "start":
                    runs.append(cur)
                    cur = {}
                    continue
                m = pat.match(line)
                if not m:
                    continue
                t = float(m.group(1))
                if m.group(2):
                    seq, ok = int(m.group(2)), True
                else:
                    seq, ok = int(m.group(3)), False
                st = cur.setdefault(seq, [t, False])
                st[1] = st[1] or ok
            runs.append(cur)
            for run in runs:
                if not run:
                    continue
                top = max(run)
                for seq, (t, ok) in run.items():
                    if seq > top - 5:  # in flight when the instance was killed
                        continue
                    during = self.in_restart(t - 1, t)
                    sent += 1
                    lost += not ok
                    if during:
                        sent_r += 1
                        lost_r += not ok
            out[f"c{i}"] = {"sent": sent, "lost": lost, "sent_during_restarts": sent_r,
                            "lost_during_restarts": lost_r}
        return out

    def udp_loss(self):
        """(datagrams, lost) on the iperf3 server's 1-s intervals with no restart in progress,
        and over every interval."""
        pat = re.compile(r"^(\d+) \[\s*\d+\]\s+(\d+\.\d+)-(\d+\.\d+)\s+sec.*?(\d+)/(\d+) \(")
        quiet = [0, 0]
        every = [0, 0]
        try:
            lines = open(self.path(f"srv-{UDP_PORT}.log")).read().splitlines()
        except OSError:
            lines = []
        for line in lines:
            m = pat.match(line)
            if not m or "receiver" in line or "sender" in line:
                continue
            t_end = float(m.group(1))
            a, b = float(m.group(2)), float(m.group(3))
            if b - a < 0.9 or b - a > 1.1 or a < 1.0:
                continue  # a summary line, a partial interval, or the first second of a test
            lost, total = int(m.group(4)), int(m.group(5))
            every[0] += total
            every[1] += lost
            if not self.in_restart(t_end - (b - a) - 0.5, t_end + 0.5):
                quiet[0] += total
                quiet[1] += lost
        return {"quiet_datagrams": quiet[0], "quiet_lost": quiet[1],
                "all_datagrams": every[0], "all_lost": every[1]}

    def growth(self):
        """Per process: RSS and fd ranges, and the no-unbounded-growth verdict."""
        w = self.a.warmup
        res = []
        for pr in self.all:
            s = [x for x in pr.samples if x[0] >= pr.spawned + w]
            entry = {"name": pr.name, "pid": pr.p.pid,
                     "life_s": round((pr.killed or time.time()) - pr.spawned, 1)}
            if pr.samples:
                entry["rss_kb_min"] = min(x[1] for x in pr.samples)
                entry["rss_kb_max"] = max(x[1] for x in pr.samples)
                entry["fds_min"] = min(x[2] for x in pr.samples)
                entry["fds_max"] = max(x[2] for x in pr.samples)
            if len(s) >= 3 and s[-1][0] - s[0][0] >= 2 * w:
                n = len(s) // 3
                first, last = s[:n], s[-n:]
                r1, r3 = max(x[1] for x in first), max(x[1] for x in last)
                f1, f3 = max(x[2] for x in first), max(x[2] for x in last)
                entry["rss_kb_first_third"], entry["rss_kb_last_third"] = r1, r3
                entry["fds_first_third"], entry["fds_last_third"] = f1, f3
                if r3 > r1 * 1.10 + 2048:
                    self.failures.append(f"{pr.name} (pid {pr.p.pid}): RSS grew from {r1} kB "
                                         f"to {r3} kB")
                if f3 > f1 + 2:
                    self.failures.append(f"{pr.name} (pid {pr.p.pid}): descriptors grew from "
                                         f"{f1} to {f3}")
            res.append(entry)
        return res

    def report(self):
        a = self.a
        ping = self.ping_loss()
        udp = self.udp_loss()
        procs = self.growth()
        rec = [r["recovery"] for r in self.restarts if r["recovery"] is not None]
        p_sent = sum(v["sent"] for v in ping.values())
        p_lost = sum(v["lost"] for v in ping.values())
        ping_pct = 100.0 * p_lost / p_sent if p_sent else 0.0
        udp_pct = 100.0 * udp["quiet_lost"] / udp["quiet_datagrams"] if udp["quiet_datagrams"] else 0.0
        if p_sent == 0:
            self.failures.append("no ping was answered at all")
        if udp["quiet_datagrams"] == 0:
            self.failures.append("the UDP flood delivered nothing outside restarts")
        if ping_pct > a.max_loss:
            self.failures.append(f"ping loss {ping_pct:.3f} % > {a.max_loss} %")
        if udp_pct > a.max_loss:
            self.failures.append(f"UDP 64 B loss {udp_pct:.3f} % > {a.max_loss} % "
                                 "(outside restarts)")
        stats = None
        try:
            with open(self.path("host-stats.json")) as f:
                stats = json.load(f)
        except (OSError, ValueError):
            pass
        summary = {
            "minutes": a.minutes, "udp_rate": a.udp_rate, "tcp_rate": a.tcp_rate,
            "kill_interval_s": [a.kill_min, a.kill_max], "seed": a.seed,
            "restarts": self.restarts,
            "recovery_ms": {"n": len(rec),
                            "min": round(min(rec) * 1000, 1) if rec else None,
                            "median": round(sorted(rec)[len(rec) // 2] * 1000, 1) if rec else None,
                            "max": round(max(rec) * 1000, 1) if rec else None},
            "ping": ping, "ping_loss_pct": round(ping_pct, 4),
            "udp": udp, "udp_loss_quiet_pct": round(udp_pct, 4),
            "udp_loss_all_pct": round(100.0 * udp["all_lost"] / udp["all_datagrams"], 4)
            if udp["all_datagrams"] else None,
            "processes": procs,
            "host_stats": stats,
            "failures": self.failures,
            "ok": not self.failures,
        }
        print(f"soak: {a.minutes} min, {len(self.restarts)} client restarts "
              f"({sum(r['signal'] == 'SIGKILL' for r in self.restarts)} SIGKILL)")
        if rec:
            print(f"  link back after restart: min {summary['recovery_ms']['min']} ms, median "
                  f"{summary['recovery_ms']['median']} ms, max {summary['recovery_ms']['max']} ms "
                  f"({len(rec)}/{len(self.restarts)} within {a.recover_timeout} s)")
        print(f"  ping: {p_lost} lost of {p_sent} ({ping_pct:.3f} %) outside each client's own "
              f"restarts; of them {sum(v['lost_during_restarts'] for v in ping.values())} of "
              f"{sum(v['sent_during_restarts'] for v in ping.values())} while another client "
              "restarted")
        print(f"  UDP 64 B at {a.udp_rate}bit/s: {udp['quiet_lost']} lost of "
              f"{udp['quiet_datagrams']} ({udp_pct:.3f} %) with no restart in progress; "
              f"{udp['all_lost']} of {udp['all_datagrams']} over every interval")
        by = {}
        for p in procs:
            by.setdefault(p["name"], []).append(p)
        for name, ps in by.items():
            have = [p for p in ps if "rss_kb_min" in p]
            if not have:
                continue
            print(f"  {name}: {len(ps)} instance(s), RSS {min(p['rss_kb_min'] for p in have)}"
                  f"..{max(p['rss_kb_max'] for p in have)} kB, fds "
                  f"{min(p['fds_min'] for p in have)}..{max(p['fds_max'] for p in have)}, "
                  f"longest life {max(p['life_s'] for p in ps):.0f} s")
        if stats:
            # Which client each switch port was (its vnl names the pid), for the drops.
            who = {str(pr.p.pid): pr.name for pr in self.all}
            drops = {}
            for port in stats.get("ports", []):
                m = re.search(r"pid=(\d+)", port.get("vnl", ""))
                name = who.get(m.group(1), "?") if m else port.get("name", "?").rsplit(":", 1)[-1]
                for d in ("tap_to_link", "link_to_tap"):
                    for k, v in port.get(d, {}).items():
                        if k.startswith("drop") and v:
                            key = f"{name} {d} {k}"
                            drops[key] = drops.get(key, 0) + v
            summary["host_drops"] = drops
            print("  switch host drops at exit (port: client or `left`, direction, reason): "
                  + (", ".join(f"{k} {v}" for k, v in drops.items()) if drops else "none"))
        if a.json:
            with open(a.json, "w") as f:
                json.dump(summary, f, indent=1)
        if self.failures:
            print("  FAILED:")
            for f in self.failures:
                print(f"    {f}")
        else:
            print("  OK: every link came back, loss below the threshold, no growth")
        return 0 if not self.failures else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--udp-rate", type=parse_rate, default="1M",
                    help="iperf3 -b of the 64-byte UDP flood (payload bits/s; 1M = 1950 pps)")
    ap.add_argument("--tcp-rate", type=parse_rate, default="100M",
                    help="iperf3 -b of each TCP bulk flow (0 = unlimited)")
    ap.add_argument("--kill-min", type=float, default=15)
    ap.add_argument("--kill-max", type=float, default=45)
    ap.add_argument("--down-max", type=float, default=2,
                    help="a killed client stays down 0..this many seconds")
    ap.add_argument("--recover-timeout", type=float, default=10)
    ap.add_argument("--max-loss", type=float, default=0.1, help="percent")
    ap.add_argument("--warmup", type=float, default=20)
    ap.add_argument("--report-every", type=float, default=30)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--vdens-fast", default="target/release/vdens-fast")
    ap.add_argument("--json")
    ap.add_argument("--keep", action="store_true", help="keep the logs directory")
    a = ap.parse_args()
    if a.seed is None:
        a.seed = random.randrange(1 << 30)
    a.vdens_fast = os.path.abspath(a.vdens_fast)
    if not os.access(a.vdens_fast, os.X_OK):
        print(f"soak: {a.vdens_fast}: not found (cargo build --release)", file=sys.stderr)
        return 2
    for tool in ["iperf3", "ping", "setpriv"]:
        if not shutil.which(tool):
            print(f"soak: {tool}: not found (apt-get install iperf3 iputils-ping util-linux)",
                  file=sys.stderr)
            return 2
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    s = Soak(a)
    log(f"seed {a.seed}, logs in {s.dir}")
    try:
        s.run()
    except Stop as e:
        log(f"stopped ({e}): cleaning up")
        s.cleanup()
        return 130
    except RuntimeError as e:
        log(f"{e}")
        s.failures.append(str(e))
        s.t_end = time.time()
    finally:
        # Ignore further signals while cleaning up; the report needs the logs.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        s.stop_all()
    try:
        return s.report()
    finally:
        s.cleanup()


if __name__ == "__main__":
    sys.exit(main())
