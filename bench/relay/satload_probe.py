#!/usr/bin/env python3
"""Per-step scheduler and socket-queue probe for bench/relay/satload.sh.

Run by the harness alongside every step of a turnd ramp:

    bash bench/relay/satload.sh loopback -sat-probe 'python3 bench/relay/satload_probe.py'

It reads PID (turnd), GEN_PID (the generator), RATE, STEP and SECONDS from
the environment, and for the step prints one line per busy thread of each
process: CPU run time, time runnable but waiting for a CPU (schedstat's
run-queue delay), voluntary and involuntary context switches, and CPU
migrations; then the highest receive queue seen on turnd's listener
sockets and on its other (relay) sockets, sampled every 5 ms from
/proc/net/udp (the harness itself counts their drops). PERF_SCHED_AT=RATE also runs
`perf sched record` for the step at that offered rate (output in
$PROBE_DIR, default /tmp).
"""
import glob
import os
import subprocess
import sys
import time


def threads(pid):
    out = {}
    for t in glob.glob(f"/proc/{pid}/task/*"):
        try:
            comm = open(t + "/comm").read().strip()
            run, wait, slices = (int(x) for x in open(t + "/schedstat").read().split()[:3])
            st = {}
            for line in open(t + "/status"):
                k, _, v = line.partition(":")
                if k in ("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches"):
                    st[k] = int(v)
            mig = 0
            for line in open(t + "/sched"):
                if line.startswith("se.nr_migrations"):
                    mig = int(line.split(":")[1])
            out[os.path.basename(t)] = (comm, run, wait, slices, st.get("voluntary_ctxt_switches", 0),
                                        st.get("nonvoluntary_ctxt_switches", 0), mig)
        except (OSError, ValueError):
            pass
    return out


def inodes(pid):
    s = set()
    for fd in glob.glob(f"/proc/{pid}/fd/*"):
        try:
            l = os.readlink(fd)
        except OSError:
            continue
        if l.startswith("socket:["):
            s.add(l[8:-1])
    return s


def udp_sockets(ino):
    """(port, rx_queue bytes, drops) of the sockets whose inode is in ino."""
    out = []
    with open("/proc/net/udp") as f:
        next(f)
        for line in f:
            p = line.split()
            if len(p) < 13 or p[9] not in ino:
                continue
            port = int(p[1].split(":")[1], 16)
            rxq = int(p[4].split(":")[1], 16)
            out.append((port, rxq, int(p[12])))
    return out


def main():
    pid, gen = int(os.environ["PID"]), int(os.environ["GEN_PID"])
    rate, secs = int(os.environ["RATE"]), float(os.environ.get("SECONDS", "3"))
    lport = int(os.environ.get("LISTEN_PORT", "0"))
    perf = None
    if os.environ.get("PERF_SCHED_AT") == str(rate):
        d = os.environ.get("PROBE_DIR", "/tmp")
        perf = subprocess.Popen(["perf", "sched", "record", "-o", f"{d}/sched-{rate}.data", "--", "sleep", str(secs)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ino = inodes(pid)
    a, g = threads(pid), threads(gen)
    maxq = {}
    end = time.monotonic() + secs
    while time.monotonic() < end:
        for port, rxq, _ in udp_sockets(ino):
            maxq[port] = max(maxq.get(port, 0), rxq)
        time.sleep(0.005)
    b, h = threads(pid), threads(gen)
    socks = udp_sockets(ino)
    if perf:
        perf.wait()

    def show(name, x, y):
        rows = []
        for tid, v in y.items():
            if tid not in x:
                continue
            u = x[tid]
            run, wait = (v[1] - u[1]) / 1e6, (v[2] - u[2]) / 1e6
            if run < 20:
                continue
            rows.append((run, f"  {name} {tid} {v[0]}: run {run:.0f} ms, runnable-waiting {wait:.0f} ms, "
                              f"vol {v[4]-u[4]} invol {v[5]-u[5]} migr {v[6]-u[6]}"))
        for _, r in sorted(rows, reverse=True):
            print(r)

    print(f"probe rate {rate}: turnd threads")
    show("turnd", a, b)
    print(f"probe rate {rate}: generator threads")
    show("gen", g, h)
    # The listener is the port several sockets share (SO_REUSEPORT).
    count = {}
    for port, _, _ in socks:
        count[port] = count.get(port, 0) + 1
    lst = [p for p, c in count.items() if c > 1] or [lport]
    lq = max((maxq.get(p, 0) for p in lst), default=0)
    rq = max((q for p, q in maxq.items() if p not in lst), default=0)
    print(f"probe rate {rate}: highest receive queue: listener sockets {lq} B, relay sockets {rq} B")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
