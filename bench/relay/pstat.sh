#!/usr/bin/env bash
# Counts a running server's context switches and system calls by kind for a
# few seconds (perf stat on tracepoints), then prints each thread's CPU
# ticks. Start it just before a bench phase (e.g. run.sh -servers turnd
# -loads 10): it waits for the process, lets the phase's traffic start,
# then attaches. Needs perf and root (tracepoints).
#
#   bash bench/relay/pstat.sh turnd 5 &      # or turnserver (coturn)
#   bash bench/relay/run.sh -servers turnd -loads 10 -rtt-loads "" -idle 0
set -euo pipefail
name=${1:?usage: pstat.sh PROCESS-NAME [SECONDS]}
secs=${2:-5}
pid=
for _ in $(seq 1 300); do
	pid=$(pgrep -n -x "$name") && break
	sleep 0.1
done
[ -n "$pid" ] || { echo "pstat.sh: no process $name" >&2; exit 1; }
sleep 4 # past the phase's set-up; the newest process of that name is the phase's server
pid=$(pgrep -n -x "$name")
echo "pid $pid threads $(ls /proc/"$pid"/task | wc -l)"
perf stat -e 'sched:sched_switch,sched:sched_wakeup,raw_syscalls:sys_enter,syscalls:sys_enter_futex,syscalls:sys_enter_epoll_pwait,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_nanosleep,syscalls:sys_enter_recvmmsg,syscalls:sys_enter_recvmsg,syscalls:sys_enter_recvfrom,syscalls:sys_enter_sendto,syscalls:sys_enter_sendmmsg,syscalls:sys_enter_sendmsg,task-clock' \
	-p "$pid" -- sleep "$secs" 2>&1 | grep -v '^$'
for t in /proc/"$pid"/task/*; do
	echo "$(basename "$t") $(cat "$t"/comm) $(awk '{print $14+$15}' "$t"/stat) ticks"
done
