#!/usr/bin/env bash
# A real single-node SLURM on this machine, for `make test-cluster`: Debian's slurm-wlm and munge,
# with every file (config, munge key and socket, state, spool, pids, logs) in one scratch folder,
# so nothing outside it is touched and the system's own SLURM or munge (if any) is left alone.
#
#   .ci/slurm.sh start        install if needed, start munged, slurmctld, slurmd; wait until idle
#   .ci/slurm.sh stop         cancel our jobs, stop every daemon started here (by pid file)
#   .ci/slurm.sh run CMD...   start, run CMD with SLURM_CONF set, stop even when CMD fails
#
# Needs root (the daemons run as root, and SLURM runs the jobs as the submitting user).
set -euo pipefail
DIR=${TMU_SLURM_DIR:-/tmp/tmu-slurm}
export SLURM_CONF=$DIR/slurm.conf
SOCKET=$DIR/munge/munge.socket
SUDO=$([ "$(id -u)" = 0 ] || echo sudo)

log() { echo "slurm.sh: $*" >&2; }

install() {
    command -v slurmctld >/dev/null && command -v munged >/dev/null && return
    log "installing slurm-wlm and munge"
    $SUDO apt-get install -y slurm-wlm munge >/dev/null ||
        { $SUDO apt-get update >/dev/null && $SUDO apt-get install -y slurm-wlm munge >/dev/null; }
}

write_config() {
    rm -rf "$DIR/state" "$DIR/spool"  # a fresh cluster: no jobs recovered from an earlier one
    mkdir -p "$DIR"/{munge,state,spool,log}
    chmod 700 "$DIR/munge"
    [ -s "$DIR/munge/munge.key" ] || dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1024 count=1 status=none
    chmod 400 "$DIR/munge/munge.key"
    # The node as slurmd sees it (CPUs, sockets, cores, memory), renamed to localhost.
    local node
    node=$(slurmd -C | head -n 1 | sed 's/^NodeName=[^ ]*/NodeName=localhost NodeAddr=127.0.0.1/')
    cat > "$SLURM_CONF" <<EOF
# Written by .ci/slurm.sh: a one-node cluster for tests. Nothing here is meant for production.
ClusterName=tmu-test
SlurmctldHost=localhost
SlurmUser=$(id -un)
AuthType=auth/munge
AuthInfo=socket=$SOCKET
CredType=cred/munge
MpiDefault=none
# No cgroups in a container: track job processes through /proc and bind no tasks.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
# Cores are the consumable resource; memory is not, so jobs without --mem can share the node.
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
$node
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
}

# pid from a pid file, only when that process is still the daemon we started (pids get reused).
live_pid() {
    local file=$DIR/$1.pid name=$1 pid
    [ -s "$file" ] || return 1
    pid=$(cat "$file")
    [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$name" ] && echo "$pid"
}

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
    local seconds=$1 what=$2
    shift 2
    for _ in $(seq "$seconds"); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 1
    done
    log "gave up after ${seconds}s waiting for $what"
    return 1
}

node_idle() { [ "$(sinfo -h -n localhost -o %t)" = idle ]; }
munge_ok() { munge -n -S "$SOCKET" | unmunge -S "$SOCKET"; }

start() {
    install
    if live_pid slurmctld >/dev/null; then
        log "already running (pid files in $DIR); run '$0 stop' first"
        return 1
    fi
    write_config
    munged --force --socket="$SOCKET" --key-file="$DIR/munge/munge.key" --pid-file="$DIR/munged.pid" \
        --log-file="$DIR/log/munged.log" --seed-file="$DIR/munge/munged.seed"
    wait_for 20 munged munge_ok
    slurmctld
    slurmd -N localhost
    wait_for 60 "the node to be idle" node_idle || { tail -n 20 "$DIR"/log/slurm*.log >&2; return 1; }
    log "up: munged $(live_pid munged), slurmctld $(live_pid slurmctld), slurmd $(live_pid slurmd); SLURM_CONF=$SLURM_CONF"
}

no_jobs() { [ -z "$(squeue -h -o %A)" ]; }

stop() {
    if live_pid slurmctld >/dev/null; then
        squeue -h -o %A | xargs -r scancel || true
        wait_for 30 "the jobs to end" no_jobs || true
    fi
    local name pid stopped=""
    for name in slurmd slurmctld munged; do  # the reverse of the start order
        pid=$(live_pid "$name") || continue
        kill "$pid"
        for _ in $(seq 20); do [ -d "/proc/$pid" ] || break; sleep 0.5; done
        if [ -d "/proc/$pid" ]; then kill -9 "$pid"; fi
        stopped="$stopped $name($pid)"
        rm -f "$DIR/$name.pid"
    done
    log "stopped:${stopped:- nothing was running}"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    run)
        shift
        trap stop EXIT
        trap 'exit 130' INT TERM  # so that an interrupted run still stops the daemons
        start
        "$@"
        ;;
    *) echo "usage: $0 start|stop|run CMD..." >&2; exit 2 ;;
esac
