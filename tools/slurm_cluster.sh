#!/usr/bin/env bash
# Bring up / tear down a throw-away single-node Slurm cluster on this machine,
# for integration tests of Parsl's SlurmProvider (sbatch / squeue / scancel).
#
#   tools/slurm_cluster.sh up       # install if needed, start, wait for the node; prints the client env
#   tools/slurm_cluster.sh status   # exit 0 if the cluster answers sinfo
#   tools/slurm_cluster.sh down     # cancel jobs, stop every daemon; idempotent
#
# Use it as:  eval "$(tools/slurm_cluster.sh up)"   (progress goes to stderr, the env line to stdout)
#
# Everything (config, munge key, state, logs, pid files) lives in $PWQ_SLURM_DIR
# (default /tmp/pwq-slurm). /etc/slurm is never read or written: the daemons get
# -f <conf> and every client honours SLURM_CONF. munged gets its own key and socket,
# so a system munged, if any, is left alone.
# Needs root (daemons run as root, munged as user munge) and no systemd or cgroups.
# Debian's packages (tested: Debian 12, Slurm 22.05) are installed when missing.
set -euo pipefail

dir=${PWQ_SLURM_DIR:-/tmp/pwq-slurm}
timeout=${PWQ_SLURM_TIMEOUT:-60}
ctld_port=${PWQ_SLURM_CTLD_PORT:-6817}
slurmd_port=${PWQ_SLURMD_PORT:-6818}
# "localhost" resolves to 127.0.0.1 everywhere; combined with NoInAddrAny below,
# the daemons bind to loopback only and nothing tries to reach another machine.
node=localhost

conf=$dir/slurm.conf
munge_dir=$dir/munge
munge_socket=$munge_dir/munge.socket.2
export SLURM_CONF=$conf

log() { echo "slurm_cluster: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

install_packages() {
    if command -v slurmctld >/dev/null && command -v slurmd >/dev/null &&
        command -v sbatch >/dev/null && command -v munged >/dev/null; then
        return 0
    fi
    command -v apt-get >/dev/null || die "Slurm is missing and apt-get is not available"
    [ "$(id -u)" = 0 ] || die "Slurm is missing; run as root to install it"
    log "installing munge and Slurm from Debian packages (about a minute)..."
    # The packages' postinst would start system daemons through init.d; block that
    # (Docker-style policy-rc.d) unless the machine already has such a policy.
    local policy=/usr/sbin/policy-rc.d added_policy=""
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && added_policy=1
    fi
    local pkgs=(munge slurmctld slurmd slurm-client) rc=0 apt_log=$dir/log/apt.log
    mkdir -p "$dir/log"
    export DEBIAN_FRONTEND=noninteractive
    # Package lists may be missing or stale: refresh only if a plain install fails.
    {
        apt-get install -y -q --no-install-recommends "${pkgs[@]}" ||
            { apt-get update -q && apt-get install -y -q --no-install-recommends "${pkgs[@]}"; }
    } >"$apt_log" 2>&1 || rc=$?
    if [ -n "$added_policy" ]; then rm -f "$policy"; fi
    if [ "$rc" != 0 ]; then
        tail -n 30 "$apt_log" >&2
        die "apt-get install ${pkgs[*]} failed (log: $apt_log)"
    fi
}

# A zombie is not running any more (PID 1 here reaps orphans only every few seconds).
running() {
    local state
    state=$(awk '/^State:/ {print $2}' "/proc/$1/status" 2>/dev/null) && [ -n "$state" ] && [ "$state" != Z ]
}

# Pid from a pid file, only if that process is alive and really is $2 (pid files go stale).
live_pid() {
    local pid
    pid=$(cat "$1" 2>/dev/null) || return 1
    [ -n "$pid" ] && running "$pid" && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$2" ] &&
        echo "$pid"
}

# slurmstepd outlives slurmd by design; ours are recognised by the SLURM_CONF they inherit.
our_stepds() {
    local p
    for p in /proc/[0-9]*; do
        [ "$(cat "$p/comm" 2>/dev/null)" = slurmstepd ] || continue
        if tr '\0' '\n' <"$p/environ" 2>/dev/null | grep -qxF "SLURM_CONF=$conf"; then
            echo "${p#/proc/}"
        fi
    done
}

# A pid and all its descendants, parents first.
with_descendants() {
    ps -e -o pid=,ppid= | awk -v root="$1" '
        { parent[$1] = $2; pids[NR] = $1 }
        END {
            keep[root] = 1; print root
            do { added = 0
                 for (i in pids) { p = pids[i]
                     if (!(p in keep) && (parent[p] in keep)) { keep[p] = 1; print p; added = 1 } }
            } while (added)
        }'
}

# TERM; wait until the processes are gone (reaped, so pgrep sees nothing); KILL after 10s.
stop_pids() {
    [ $# -gt 0 ] || return 0
    kill -TERM "$@" 2>/dev/null || true
    local i p present
    for i in $(seq 50); do
        present=()
        for p in "$@"; do if kill -0 "$p" 2>/dev/null; then present+=("$p"); fi; done
        [ ${#present[@]} -gt 0 ] || return 0
        sleep 0.2
    done
    for p in "${present[@]}"; do
        if running "$p"; then log "force-killing $p"; kill -KILL "$p" 2>/dev/null || true; fi
    done
}

# Without a live slurmctld, sinfo would spend ~10s retrying; the pid file answers at once.
cluster_answers() {
    live_pid "$dir/run/slurmctld.pid" slurmctld >/dev/null && sinfo -h -o %P >/dev/null 2>&1
}

node_state() { sinfo -h -N -n "$node" -o %T 2>/dev/null | head -n1; }

write_config() {
    mkdir -p "$dir"/{state,spool,run,log} "$munge_dir"
    local cpus mem_mb
    cpus=$(nproc)
    # RealMemory above what slurmd measures would drain the node; stay at 90% of it.
    mem_mb=$(awk '/^MemTotal:/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
    cat >"$conf" <<EOF
# Generated by tools/slurm_cluster.sh; rewritten on every 'up'.
ClusterName=pwq
SlurmctldHost=$node
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
# Bind to what the names resolve to (127.0.0.1) instead of 0.0.0.0.
CommunicationParameters=NoCtldInAddrAny,NoInAddrAny
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$munge_socket
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/run/slurmctld.pid
SlurmdPidFile=$dir/run/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# No systemd and no cgroups here: track job processes by parent pid, bind nothing.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
# No slurmdbd, so sacct reports "accounting storage is disabled" (Parsl then uses squeue).
# Finished jobs are still logged, for debugging, in the jobcomp file.
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$dir/log/jobcomp.log
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
MpiDefault=none
# Debian's default mail program is not installed; keeps an error out of the log.
MailProg=/bin/true
ReturnToService=2
# Reject at sbatch time what can never run (e.g. more tasks than CPUs) instead of pending forever.
EnforcePartLimits=ALL
# Quick cancels; finished jobs stay visible to 'squeue -t all -j ID' for 5 minutes.
KillWait=5
MinJobAge=300
NodeName=$node NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
}

start_munge() {
    if live_pid "$munge_dir/munged.pid" munged >/dev/null; then return 0; fi
    # munged refuses to run as root and insists its files belong to it and are not writable by others.
    chown munge:munge "$munge_dir"
    chmod 755 "$munge_dir"
    if [ ! -s "$munge_dir/munge.key" ]; then
        rm -f "$munge_dir/munge.key"
        su munge -s /bin/sh -c "mungekey -c -k '$munge_dir/munge.key'"
    fi
    # A fixed --origin keeps munged from resolving the hostname.
    su munge -s /bin/sh -c "munged --socket='$munge_socket' --key-file='$munge_dir/munge.key' \
        --pid-file='$munge_dir/munged.pid' --log-file='$munge_dir/munged.log' \
        --seed-file='$munge_dir/munged.seed' --origin=127.0.0.1" </dev/null >>"$dir/log/daemons.out" 2>&1
}

show_logs() {
    local f
    for f in "$munge_dir/munged.log" "$dir/log/slurmctld.log" "$dir/log/slurmd.log" "$dir/log/daemons.out"; do
        [ -f "$f" ] || continue
        echo "----- tail of $f" >&2
        tail -n 25 "$f" >&2
    done
}

cmd_up() {
    # Busy counts as up: restarting would kill the jobs of whoever is using it.
    if cluster_answers && [[ "$(node_state)" =~ ^(idle|mixed|allocated|completing)$ ]]; then
        log "already up"
        echo "export SLURM_CONF=$conf"
        return 0
    fi
    [ "$(id -u)" = 0 ] || die "run as root"
    install_packages
    # A half-up cluster (or stale pid files) is easier to restart than to repair.
    cmd_down >/dev/null 2>&1 || true
    # Fresh job state each time: tests should not see jobs from an earlier run.
    rm -rf "$dir/state" "$dir/spool"
    write_config
    start_munge
    # Daemons get /dev/null for stdio: otherwise they hold the caller's $(...) pipe open.
    # -i: start even if the saved state is unreadable.
    slurmctld -i -f "$conf" </dev/null >>"$dir/log/daemons.out" 2>&1 || { show_logs; die "slurmctld failed to start"; }
    slurmd -f "$conf" -N "$node" </dev/null >>"$dir/log/daemons.out" 2>&1 || { show_logs; die "slurmd failed to start"; }

    local deadline=$((SECONDS + timeout)) state=""
    while [ $SECONDS -lt $deadline ]; do
        state=$(node_state) || true
        [ "$state" = idle ] && break
        sleep 1
    done
    if [ "$state" != idle ]; then
        show_logs
        sinfo -N -l >&2 || true
        die "node '$node' not idle after ${timeout}s (state: '${state:-no answer}')"
    fi
    log "up: partition debug, node $node idle ($dir)"
    echo "export SLURM_CONF=$conf"
}

cmd_down() {
    # Cancel jobs while the controller still runs, so slurmstepd kills the job processes.
    if cluster_answers; then
        scancel --partition=debug 2>/dev/null || true
        local i
        for i in $(seq 20); do
            [ -z "$(squeue -h -o %i -p debug -t PD,R,CG,CF,S 2>/dev/null)" ] && break
            sleep 0.5
        done
    fi
    local pids=() p
    p=$(live_pid "$dir/run/slurmd.pid" slurmd) && pids+=("$p")
    p=$(live_pid "$dir/run/slurmctld.pid" slurmctld) && pids+=("$p")
    stop_pids "${pids[@]}"
    # Steps still alive here missed scancel (controller was already gone). slurmstepd
    # ignores TERM, so KILL it together with the job processes it would have killed.
    local stepd tree=()
    for stepd in $(our_stepds); do
        mapfile -t -O "${#tree[@]}" tree < <(with_descendants "$stepd")
    done
    if [ ${#tree[@]} -gt 0 ]; then
        log "killing leftover job steps: ${tree[*]}"
        kill -KILL "${tree[@]}" 2>/dev/null || true
        stop_pids "${tree[@]}"
    fi
    p=$(live_pid "$munge_dir/munged.pid" munged) && stop_pids "$p"
    log "down"
}

cmd_status() {
    if cluster_answers; then
        sinfo
    else
        log "not answering (SLURM_CONF=$conf)"
        return 1
    fi
}

case "${1:-}" in
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    *) echo "usage: $0 up|down|status   (state dir: \$PWQ_SLURM_DIR, default /tmp/pwq-slurm)" >&2; exit 2 ;;
esac
