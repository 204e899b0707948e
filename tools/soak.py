#!/usr/bin/env python3
"""Soak test for vdens-fast (issue 17): N minutes of mixed traffic through a switch while the
clients, and less often the switch host itself, are killed and restarted at random.

A vdens-fast `switch://` host (its own user and network namespace, vde0 = 10.99.0.1/24, running
the iperf3 servers) and 4 vdens-fast `vde://` clients (10.99.0.11-14), every one started by
this tool as `nobody`, each in the namespaces it creates itself. Traffic: client 1 TCP bulk to
the host, client 3 TCP bulk from the host (iperf3 -R), both capped at --tcp-rate; client 2 a
64-byte UDP flood at --udp-rate (below capacity); every client pings the host every 0.2 s.
Every --kill-min..--kill-max seconds a random client is killed (SIGKILL or SIGTERM, at random)
and started again; its link must answer a ping within --recover-timeout seconds. Every
--switch-min..--switch-max seconds the switch host is killed (SIGKILL or SIGTERM, at random),
stays away 0.5..--switch-down-max seconds and is started again at the same path (a SIGKILLed
host leaves its directory: the new one must reclaim it); the clients keep running and must
rejoin it by themselves. The host's vde0 has a fixed MAC address (as a restarted VM would), so
that the clients' ARP caches measure nothing. After a switch restart the clients' iperf3s still
running are killed (their server went with the old host) and start again against the new one.

Checks (exit status 1 when one fails, 0 when all pass, 2 on a set-up error):
  * every restarted client's link came back (first ping reply) within --recover-timeout;
  * after every switch restart, every client's vde0 has its carrier back within
    --rejoin-timeout seconds of the new switch answering on ctl, and answers a ping within
    --rejoin-timeout seconds of the new host's vde0 being up; no client vdens-fast holds more
    descriptors after the rejoin than before the switch went; every traffic flow delivers again
    within --flow-timeout seconds;
  * loss below capacity <= --max-loss percent: ping loss of every client outside its own
    restarts and outside switch restarts, and UDP 64 B loss counted on the 1-s intervals of the
    iperf3 server in which no restart was in progress (from the kill to 2 s after the link is
    back; for a switch restart, to 2 s after the last client is back);
  * no growth without bound: for every vdens-fast process that lived at least 3 * --warmup
    seconds, the largest RSS in the last third of its life (after --warmup) is at most
    the largest of the first third + 10 % + 2 MiB, and its largest descriptor count in the last
    third at most the largest of the first third + 2 (a client whose RSS steps up late but stays
    at most --rss-ceiling MiB, its buffers first touched by a late burst, is noted, not failed).

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
import socket
import subprocess
import sys
import tempfile
import time

HOST_IP = "10.99.0.1"
NCLIENTS = 4
UDP_PORT = 5202
SETTLE = 2.0  # seconds after a link is back that still count as "restart in progress"
HOST_MAC = "02:00:0a:63:00:01"  # the switch host's vde0, the same in every instance
FLOWS = {1: 5201, 2: 5202, 3: 5203}  # client -> iperf3 port (4 only pings)


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

    def now(self):
        """(rss_kb, fds) of this vdens-fast now, or None (gone, or not exec'd yet)."""
        pid = self.p.pid
        try:
            with open(f"/proc/{pid}/comm") as f:
                if f.read().strip() != "vdens-fast":
                    return None  # still setpriv, before its exec
            with open(f"/proc/{pid}/status") as f:
                rss = next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
            fds = len(os.listdir(f"/proc/{pid}/fd"))
        except (OSError, StopIteration):
            return None
        return rss, fds

    def sample(self, t):
        x = self.now()
        if x:
            self.samples.append((t, *x))


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
        self.sw_restarts = []  # dicts: signal, kill, down, ctl_up, ready, per-client rejoin
        self.sw_windows = []  # (start, end) switch restart in progress
        self.hosts = 0  # switch host instances started
        self.failures = []
        self.notes = []

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
            self.hosts += 1
            cmd[1:1] = ["--stats", self.path(f"host-stats-{self.hosts}.json")]
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
        # A SIGKILLed vdens-fast client leaves the data socket it kept for rejoining
        # (README, "Differences from vdens"): vde.PID-N in one of libvdeplug's fallback places.
        left = []
        for pr in self.all:
            for d in ["/var/run", "/var/tmp", "/tmp"]:
                try:
                    names = os.listdir(d)
                except OSError:
                    continue
                for n in names:
                    if n.startswith(f"vde.{pr.p.pid:05}-"):
                        left.append(os.path.join(d, n))
        for f in left:
            try:
                os.unlink(f)
            except OSError:
                pass
        if left:
            log(f"removed {len(left)} data socket(s) left by SIGKILLed clients")
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
            f"set -e\nip link set vde0 address {HOST_MAC}\n"
            "ip addr add 10.99.0.1/24 dev vde0\nip link set vde0 up\nset +e\n"
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
                f"echo $$ > {self.dir}/c{i}.nspid\n"
                f"set -e\nip addr add 10.99.0.1{i}/24 dev vde0\nip link set vde0 up\nset +e\n"
                # The link is back at the first ping reply.
                f"until ping -c 1 -W 1 -q {HOST_IP} > /dev/null 2>&1; do :; done\n"
                f"echo up $(date +%s.%N) >> {self.dir}/c{i}.events\n"
                f"echo start >> {self.dir}/c{i}.ping\n"
                f"setpriv --pdeathsig KILL ping -D -O -i 0.2 {HOST_IP} >> {self.dir}/c{i}.ping 2>&1 &\n"
            )
            if work:
                s += (f"while :; do setpriv --pdeathsig KILL {work} > /dev/null 2>&1 & "
                      f"echo $! > {self.dir}/c{i}.iperf; wait $!; sleep 1; done &\n")
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
        self.start_host()
        for i in range(1, NCLIENTS + 1):
            pr = self.start_client(i)
            up = self.wait_up(i, pr, pr.spawned)
            if up is None:
                raise RuntimeError(f"client {i} never reached the switch host: "
                                   f"see {self.path(f'c{i}.out')}")
            pr.up = up
        log(f"switch host and {NCLIENTS} clients up in {time.time() - self.t0:.1f} s; "
            f"{a.minutes} min of traffic, a client restart every {a.kill_min}-{a.kill_max} s, "
            + (f"a switch restart every {a.switch_min}-{a.switch_max} s" if a.switch_max > 0
               else "no switch restart"))
        end = time.time() + a.minutes * 60
        next_kill = time.time() + self.rng.uniform(a.kill_min, a.kill_max)
        next_sw = (time.time() + self.rng.uniform(a.switch_min, a.switch_max)
                   if a.switch_max > 0 else float("inf"))
        while time.time() < end:
            self.tick()
            for name, pr in self.live.items():
                if pr.p.poll() is not None:
                    self.failures.append(f"{name} (pid {pr.p.pid}) exited by itself "
                                         f"with status {pr.p.returncode}")
                    raise RuntimeError(self.failures[-1])
            if time.time() >= next_sw:
                self.restart_switch()
                next_sw = time.time() + self.rng.uniform(a.switch_min, a.switch_max)
                # A client restart right after the switch's would blur both.
                next_kill = max(next_kill, time.time() + 5)
            elif time.time() >= next_kill:
                self.restart_one()
                next_kill = time.time() + self.rng.uniform(a.kill_min, a.kill_max)
            time.sleep(0.1)
        # The last samples, then stop everything before reading the logs.
        self.last_sample = 0
        self.tick()
        for pr in self.live.values():
            pr.killed = time.time()
        self.t_end = time.time()

    def start_host(self):
        """Starts the switch host; returns (proc, time its ctl answers, time its vde0 is up)."""
        try:
            os.unlink(self.path("host.ready"))
        except FileNotFoundError:
            pass
        host = self.spawn("host", f"switch://{self.path('sw')}", self.host_script)
        deadline = time.time() + 10
        t_ctl = None
        while True:
            if t_ctl is None:
                c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    c.connect(self.path("sw/ctl"))
                    t_ctl = time.time()
                except OSError:
                    pass
                finally:
                    c.close()
            if os.path.exists(self.path("host.ready")):
                t_ready = time.time()
                return host, (t_ctl or t_ready), t_ready
            if host.p.poll() is not None or time.time() > deadline:
                try:
                    out = open(self.path("host.out"), errors="replace").read().strip()
                    out = out.splitlines()[-1] if out else ""
                except OSError:
                    out = ""
                raise RuntimeError(f"the switch host (instance {self.hosts}) did not start"
                                   + (f": {out}" if out else "")
                                   + f" (see {self.path('host.out')})")
            time.sleep(0.02)

    def carrier(self, i, oper=False):
        """True/False: client i's vde0 has its carrier (LOWER_UP; with `oper`, the kernel's
        operational state is no longer DOWN too); None: cannot tell."""
        try:
            nspid = int(open(self.path(f"c{i}.nspid")).read())
            r = subprocess.run(["nsenter", f"--net=/proc/{nspid}/ns/net", "ip", "-o", "link",
                                "show", "vde0"], capture_output=True, text=True, timeout=5)
        except (OSError, ValueError, subprocess.TimeoutExpired):
            return None
        if r.returncode != 0:
            return None
        c = "LOWER_UP" in r.stdout and "NO-CARRIER" not in r.stdout
        # A tap's operational state is UNKNOWN with its carrier, DOWN without.
        return c and (not oper or " state DOWN " not in r.stdout)

    def first_reply(self, i, offset, since):
        """Time of client i's first ping reply at or after `since`, reading its ping log from
        byte `offset`; or None."""
        try:
            with open(self.path(f"c{i}.ping"), "rb") as f:
                f.seek(offset)
                text = f.read().decode(errors="replace")
        except OSError:
            return None
        for m in re.finditer(r"^\[(\d+\.\d+)\] \d+ bytes from ", text, re.M):
            if float(m.group(1)) >= since:
                return float(m.group(1))
        return None

    def restart_switch(self):
        a = self.a
        sig = self.rng.choice([signal.SIGKILL, signal.SIGTERM])
        clients = {i: self.live[f"c{i}"] for i in range(1, NCLIENTS + 1)}
        before = {i: pr.now() for i, pr in clients.items()}
        offsets = {}
        for i in clients:
            try:
                offsets[i] = os.path.getsize(self.path(f"c{i}.ping"))
            except OSError:
                offsets[i] = 0
        old = self.live["host"]
        t_kill = time.time()
        self.kill(old, sig)
        left_dir = os.path.exists(self.path("sw"))
        # Away for a while; meanwhile every client's carrier must go off.
        down = self.rng.uniform(0.5, max(0.5, a.switch_down_max))
        off = {}
        t_back = t_kill + down
        while time.time() < t_back:
            for i in clients:
                if i not in off and self.carrier(i) is False:
                    off[i] = time.time() - t_kill
            self.tick()
            time.sleep(0.05)
        during = {i: pr.now() for i, pr in clients.items()}
        host, t_ctl, t_ready = self.start_host()
        r = {"signal": signal.Signals(sig).name, "kill": round(t_kill - self.t0, 2),
             "down_s": round(down, 2), "left_dir": left_dir,
             "host_start_to_ctl_ms": round((t_ctl - host.spawned) * 1000, 1),
             "host_start_to_ready_ms": round((t_ready - host.spawned) * 1000, 1),
             "clients": {}}
        # Every client: carrier back (from the new ctl answering) and a ping reply (from the new
        # host's vde0 being up).
        carrier_at, oper_at, ping_at = {}, {}, {}
        hard = t_ready + max(30.0, 3 * a.rejoin_timeout)
        while time.time() < hard and (len(carrier_at) < NCLIENTS or len(ping_at) < NCLIENTS
                                      or len(oper_at) < NCLIENTS):
            for i in clients:
                if i not in carrier_at and self.carrier(i):
                    carrier_at[i] = time.time()
                if i in carrier_at and i not in oper_at and self.carrier(i, oper=True):
                    oper_at[i] = time.time()
                if i not in ping_at:
                    t = self.first_reply(i, offsets[i], t_ready)
                    if t is not None:
                        ping_at[i] = t
            for name, pr in self.live.items():
                if pr.p.poll() is not None:
                    self.failures.append(f"{name} (pid {pr.p.pid}) exited by itself with "
                                         f"status {pr.p.returncode} during a switch restart")
                    raise RuntimeError(self.failures[-1])
            self.tick()
            time.sleep(0.05)
        back = []
        for i in clients:
            c = carrier_at.get(i)
            p = ping_at.get(i)
            e = {"carrier_off_ms": round(off[i] * 1000, 1) if i in off else None,
                 "carrier_back_ms": round((c - t_ctl) * 1000, 1) if c else None,
                 "oper_up_ms": round((oper_at[i] - t_ctl) * 1000, 1) if i in oper_at else None,
                 "ping_back_ms": round((p - t_ready) * 1000, 1) if p else None}
            r["clients"][f"c{i}"] = e
            if c is None or p is None:
                self.failures.append(f"switch restart at t={r['kill']:.0f}s: c{i} did not come "
                                     f"back within {hard - t_ready:.0f} s (carrier "
                                     f"{'back' if c else 'off'}, ping "
                                     f"{'answered' if p else 'unanswered'})")
                log(self.failures[-1])
                raise RuntimeError(f"client {i} never rejoined the restarted switch")
            if c - t_ctl > a.rejoin_timeout or p - t_ready > a.rejoin_timeout:
                self.failures.append(f"switch restart at t={r['kill']:.0f}s: c{i} back only "
                                     f"after {e['carrier_back_ms']} ms (carrier) / "
                                     f"{e['ping_back_ms']} ms (ping) > {a.rejoin_timeout} s")
                log(self.failures[-1])
            if i not in off:
                r.setdefault("carrier_off_not_seen", []).append(f"c{i}")
            back.append(max(c, p))
        self.sw_windows.append((t_kill, max(back) + SETTLE))
        # The flows: their iperf3 servers went with the old host; a client still running its
        # test cannot resume it (the -R receiver would wait for ever): kill it, its loop starts
        # a new test against the new host.
        r["flows_still_running"] = []
        for i in FLOWS:
            try:
                pid = int(open(self.path(f"c{i}.iperf")).read())
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if b"iperf3" in f.read():
                        os.kill(pid, signal.SIGKILL)
                        r["flows_still_running"].append(f"c{i}")
            except (OSError, ValueError):
                pass
        r["t_ready"] = t_ready
        # Descriptors and memory of every client: the same after the rejoin as before the
        # switch went (a transient one may still be closing: look again for up to 3 s).
        time.sleep(1.0)
        end = time.time() + 3
        while True:
            after = {i: pr.now() for i, pr in clients.items()}
            grown = [i for i in clients if before[i] and after[i] and after[i][1] > before[i][1]]
            if not grown or time.time() > end:
                break
            time.sleep(0.2)
        for i in clients:
            e = r["clients"][f"c{i}"]
            if before[i] and after[i]:
                e["fds_before_during_after"] = [before[i][1], during[i][1] if during[i] else None,
                                                after[i][1]]
                e["rss_kb_before_after"] = [before[i][0], after[i][0]]
        for i in grown:
            self.failures.append(f"switch restart at t={r['kill']:.0f}s: c{i} (pid "
                                 f"{clients[i].p.pid}) holds {after[i][1]} descriptors after "
                                 f"the rejoin, {before[i][1]} before")
            log(self.failures[-1])
        self.sw_restarts.append(r)
        cb = [e["carrier_back_ms"] for e in r["clients"].values()]
        pb = [e["ping_back_ms"] for e in r["clients"].values()]
        log(f"t={r['kill']:.0f}s restart switch ({r['signal']}, down {down:.1f} s"
            + (", directory left" if left_dir else "") + f"): ctl up "
            f"{r['host_start_to_ctl_ms']:.0f} ms after the start; carrier back "
            f"{min(cb):.0f}-{max(cb):.0f} ms, ping back {min(pb):.0f}-{max(pb):.0f} ms; fds "
            + ("same" if not grown else f"GREW on {grown}")
            + f"; flows killed {r['flows_still_running']}")

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

    def in_switch_restart(self, t0, t1):
        return any(s < t1 and t0 < e for s, e in self.sw_windows)

    def ping_loss(self):
        """Per client: (sent, lost) over every instance, outside its own restarts and the
        switch's; the part of it inside other clients' restarts; and (sent, lost) during
        switch restarts."""
        out = {}
        pat = re.compile(r"^\[(\d+\.\d+)\] (?:\d+ bytes from .*icmp_seq=(\d+)|no answer yet for icmp_seq=(\d+))")
        for i in range(1, NCLIENTS + 1):
            try:
                text = open(self.path(f"c{i}.ping")).read()
            except OSError:
                text = ""
            sent = lost = sent_r = lost_r = sent_sw = lost_sw = 0
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
                    if self.in_switch_restart(t - 1, t):
                        sent_sw += 1
                        lost_sw += not ok
                        continue
                    during = self.in_restart(t - 1, t)
                    sent += 1
                    lost += not ok
                    if during:
                        sent_r += 1
                        lost_r += not ok
            out[f"c{i}"] = {"sent": sent, "lost": lost, "sent_during_restarts": sent_r,
                            "lost_during_restarts": lost_r,
                            "sent_during_switch_restarts": sent_sw,
                            "lost_during_switch_restarts": lost_sw}
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
            if not (self.in_restart(t_end - (b - a) - 0.5, t_end + 0.5)
                    or self.in_switch_restart(t_end - (b - a) - 0.5, t_end + 0.5)):
                quiet[0] += total
                quiet[1] += lost
        return {"quiet_datagrams": quiet[0], "quiet_lost": quiet[1],
                "all_datagrams": every[0], "all_lost": every[1]}

    def flows_resumed(self):
        """After every switch restart: seconds from the new host's vde0 being up to the first
        1-s interval of each flow's new iperf3 server, or None when none came within
        --flow-timeout (not judged when the run ended first)."""
        pat = re.compile(r"^(\d+) \[\s*\d+\]\s+(\d+\.\d+)-(\d+\.\d+)\s+sec\s+"
                         r"(\d+(?:\.\d+)?) (\w?)Bytes")
        ends = {}
        for i, port in FLOWS.items():
            ts = []
            try:
                for line in open(self.path(f"srv-{port}.log"), errors="replace"):
                    m = pat.match(line)
                    if m and "receiver" not in line and "sender" not in line \
                            and float(m.group(4)) > 0:
                        ts.append(int(m.group(1)))
            except OSError:
                pass
            ends[i] = ts
        for r in self.sw_restarts:
            t_ready = r["t_ready"]
            r["flow_back_s"] = {}
            for i in FLOWS:
                nxt = [t for t in ends[i] if t >= t_ready]
                if nxt and nxt[0] - t_ready <= self.a.flow_timeout:
                    r["flow_back_s"][f"c{i}"] = round(nxt[0] - t_ready, 1)
                elif t_ready + self.a.flow_timeout + 2 > self.t_end:
                    r["flow_back_s"][f"c{i}"] = "run ended"
                else:
                    r["flow_back_s"][f"c{i}"] = None
                    self.failures.append(f"switch restart at t={r['kill']:.0f}s: the flow of c{i} "
                                         f"(port {FLOWS[i]}) delivered nothing within "
                                         f"{self.a.flow_timeout} s")

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
                    if pr.name != "host" and r3 <= self.a.rss_ceiling * 1024:
                        # Buffers are touched the first time traffic needs them: a client
                        # that meets a burst late in its life steps up once, to at most
                        # what every buffer of one interface costs.
                        entry["rss_step_under_ceiling"] = True
                        self.notes.append(f"{pr.name} (pid {pr.p.pid}): RSS stepped from {r1} "
                                          f"kB to {r3} kB, under the {self.a.rss_ceiling} MiB "
                                          "of every buffer touched")
                    else:
                        self.failures.append(f"{pr.name} (pid {pr.p.pid}): RSS grew from {r1} "
                                             f"kB to {r3} kB")
                if f3 > f1 + 2:
                    self.failures.append(f"{pr.name} (pid {pr.p.pid}): descriptors grew from "
                                         f"{f1} to {f3}")
            # The RSS every 5 s, to tell a step from a climb.
            entry["rss_kb_every_5s"] = [x[1] for x in pr.samples[::5]]
            res.append(entry)
        return res

    def report(self):
        a = self.a
        ping = self.ping_loss()
        udp = self.udp_loss()
        procs = self.growth()
        self.flows_resumed()
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
        # Every switch host instance's counters (a SIGKILLed one wrote none).
        stats = []
        for k in range(1, self.hosts + 1):
            try:
                with open(self.path(f"host-stats-{k}.json")) as f:
                    stats.append(json.load(f))
            except (OSError, ValueError):
                pass

        def dist(xs):
            xs = sorted(xs)
            if not xs:
                return {"n": 0}
            return {"n": len(xs), "min": xs[0], "median": xs[len(xs) // 2],
                    "p90": xs[min(len(xs) - 1, int(len(xs) * 0.9))], "max": xs[-1]}

        cb = [e["carrier_back_ms"] for r in self.sw_restarts for e in r["clients"].values()
              if e["carrier_back_ms"] is not None]
        pb = [e["ping_back_ms"] for r in self.sw_restarts for e in r["clients"].values()
              if e["ping_back_ms"] is not None]
        co = [e["carrier_off_ms"] for r in self.sw_restarts for e in r["clients"].values()
              if e["carrier_off_ms"] is not None]
        ou = [e["oper_up_ms"] for r in self.sw_restarts for e in r["clients"].values()
              if e["oper_up_ms"] is not None]
        fb = [v for r in self.sw_restarts for v in r.get("flow_back_s", {}).values()
              if isinstance(v, float)]
        fd_pairs = [e["fds_before_during_after"] for r in self.sw_restarts
                    for e in r["clients"].values() if "fds_before_during_after" in e]
        rss_d = [e["rss_kb_before_after"][1] - e["rss_kb_before_after"][0]
                 for r in self.sw_restarts for e in r["clients"].values()
                 if "rss_kb_before_after" in e]
        summary = {
            "minutes": a.minutes, "udp_rate": a.udp_rate, "tcp_rate": a.tcp_rate,
            "kill_interval_s": [a.kill_min, a.kill_max], "seed": a.seed,
            "restarts": self.restarts,
            "recovery_ms": {"n": len(rec),
                            "min": round(min(rec) * 1000, 1) if rec else None,
                            "median": round(sorted(rec)[len(rec) // 2] * 1000, 1) if rec else None,
                            "max": round(max(rec) * 1000, 1) if rec else None},
            "switch_interval_s": [a.switch_min, a.switch_max],
            "switch_restarts": self.sw_restarts,
            "switch_carrier_off_ms": dist(co),
            "switch_carrier_back_ms": dist(cb), "switch_oper_up_ms": dist(ou),
            "switch_ping_back_ms": dist(pb),
            "switch_flow_back_s": dist(fb),
            "switch_client_rss_delta_kb": dist(rss_d),
            "ping": ping, "ping_loss_pct": round(ping_pct, 4),
            "udp": udp, "udp_loss_quiet_pct": round(udp_pct, 4),
            "udp_loss_all_pct": round(100.0 * udp["all_lost"] / udp["all_datagrams"], 4)
            if udp["all_datagrams"] else None,
            "processes": procs,
            "host_stats": stats,
            "failures": self.failures,
            "notes": self.notes,
            "ok": not self.failures,
        }
        print(f"soak: {a.minutes} min, {len(self.restarts)} client restarts "
              f"({sum(r['signal'] == 'SIGKILL' for r in self.restarts)} SIGKILL)")
        if rec:
            print(f"  link back after restart: min {summary['recovery_ms']['min']} ms, median "
                  f"{summary['recovery_ms']['median']} ms, max {summary['recovery_ms']['max']} ms "
                  f"({len(rec)}/{len(self.restarts)} within {a.recover_timeout} s)")
        if self.sw_restarts:
            nk = sum(r["signal"] == "SIGKILL" for r in self.sw_restarts)
            nl = sum(r["left_dir"] for r in self.sw_restarts)
            print(f"  {len(self.sw_restarts)} switch restarts ({nk} SIGKILL; directory left "
                  f"behind {nl} times, reclaimed by the new host every time)")
            for what, d in [("carrier off after the kill", dist(co)),
                            ("carrier back after the new ctl answers", dist(cb)),
                            ("operstate not DOWN (kernel linkwatch) after the new ctl answers",
                             dist(ou)),
                            ("ping back after the new host's vde0 is up", dist(pb))]:
                if d["n"]:
                    print(f"    {what}: min {d['min']} ms, median {d['median']} ms, p90 "
                          f"{d['p90']} ms, max {d['max']} ms (n={d['n']})")
            d = dist(fb)
            if d["n"]:
                print(f"    flows delivering again after the new host is up: min {d['min']} s, "
                      f"median {d['median']} s, max {d['max']} s (n={d['n']})")
            grown = sum(p[2] > p[0] for p in fd_pairs)
            print(f"    client descriptors before/after each rejoin: {len(fd_pairs)} pairs, "
                  f"{grown} grown (before {min(p[0] for p in fd_pairs) if fd_pairs else '-'}.."
                  f"{max(p[0] for p in fd_pairs) if fd_pairs else '-'}, while the switch was "
                  f"away {min((p[1] for p in fd_pairs if p[1] is not None), default='-')}.."
                  f"{max((p[1] for p in fd_pairs if p[1] is not None), default='-')})")
            d = dist(rss_d)
            if d["n"]:
                print(f"    client RSS after minus before a rejoin: min {d['min']} kB, median "
                      f"{d['median']} kB, max {d['max']} kB")
        print(f"  ping: {p_lost} lost of {p_sent} ({ping_pct:.3f} %) outside each client's own "
              f"restarts and the switch's; of them "
              f"{sum(v['lost_during_restarts'] for v in ping.values())} of "
              f"{sum(v['sent_during_restarts'] for v in ping.values())} while another client "
              f"restarted; {sum(v['lost_during_switch_restarts'] for v in ping.values())} of "
              f"{sum(v['sent_during_switch_restarts'] for v in ping.values())} during switch "
              "restarts (not counted)")
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
            for port in [p for st in stats for p in st.get("ports", [])]:
                m = re.search(r"pid=(\d+)", port.get("vnl", ""))
                name = who.get(m.group(1), "?") if m else port.get("name", "?").rsplit(":", 1)[-1]
                for d in ("tap_to_link", "link_to_tap"):
                    for k, v in port.get(d, {}).items():
                        if k.startswith("drop") and v:
                            key = f"{name} {d} {k}"
                            drops[key] = drops.get(key, 0) + v
            summary["host_drops"] = drops
            print(f"  drops of the {len(stats)} switch host instance(s), as last written (port: "
                  "client or `left`, direction, reason): "
                  + (", ".join(f"{k} {v}" for k, v in drops.items()) if drops else "none"))
        if a.json:
            with open(a.json, "w") as f:
                json.dump(summary, f, indent=1)
        for n in self.notes:
            print(f"  note: {n}")
        if self.failures:
            print("  FAILED:")
            for f in self.failures:
                print(f"    {f}")
        else:
            print("  OK: every link came back (after client and switch restarts), loss below the "
                  "threshold, no growth")
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
    ap.add_argument("--switch-min", type=float, default=60,
                    help="seconds between switch restarts, at least (--switch-max 0: none)")
    ap.add_argument("--switch-max", type=float, default=120)
    ap.add_argument("--switch-down-max", type=float, default=3,
                    help="the killed switch host stays away 0.5..this many seconds")
    ap.add_argument("--rejoin-timeout", type=float, default=5,
                    help="seconds for every client's carrier and ping after a switch restart")
    ap.add_argument("--flow-timeout", type=float, default=20,
                    help="seconds for every iperf3 flow to deliver again after a switch restart")
    ap.add_argument("--max-loss", type=float, default=0.1, help="percent")
    ap.add_argument("--warmup", type=float, default=20)
    ap.add_argument("--rss-ceiling", type=float, default=13,
                    help="MiB: a client whose RSS steps up late but stays at most this is noted, "
                    "not failed (every buffer of one interface touched; BENCHMARKS.md, Memory)")
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
    for tool in ["iperf3", "ping", "setpriv", "nsenter"]:
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
