#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for testing the workflow's SLURM profile:
#
#   bash scripts/slurm_local.sh start    # install (apt) if missing, write slurm.conf, start munged, slurmctld, slurmd
#   bash scripts/slurm_local.sh status   # sinfo + squeue
#   bash scripts/slurm_local.sh stop     # stop the three daemons this script started
#
# Needs root and Debian's packages (slurm-wlm, munge; installed with apt-get when missing).
# The node gets this machine's real cores and memory; no accounting database (job state is
# read with squeue, sacct asks slurmctld); ProctrackType=proctrack/pgid and TaskPlugin=task/none
# (no cgroups needed); SelectType=select/cons_tres with cores and memory as consumables.
# Everything the cluster writes lives under $SLURM_LOCAL_DIR (default /tmp/mtloca-slurm):
# its config, state, spool, logs and the daemons' pid files; `stop` ends only those pids.
set -euo pipefail
cmd=${1:-}
DIR=${SLURM_LOCAL_DIR:-/tmp/mtloca-slurm}
CONF=$DIR/slurm.conf
NODE=$(hostname -s)

need_root() {
    if [ "$(id -u)" != 0 ]; then
        echo "slurm_local: needs root (apt-get, munged as the munge user, slurmd)" >&2
        exit 3
    fi
}

install_packages() {
    if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null \
        && command -v sbatch >/dev/null; then
        return 0
    fi
    if ! command -v apt-get >/dev/null; then
        echo "slurm_local: SLURM is not installed and there is no apt-get to install it" >&2
        exit 4
    fi
    echo "[slurm_local] installing slurm-wlm and munge (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq slurm-wlm munge >/dev/null
}

write_conf() {
    local cpus mem_mb
    cpus=$(nproc)
    # leave 10 % of the memory to the system, as slurmd refuses a node claiming more than it has
    mem_mb=$(awk '/MemTotal/ {printf "%d", $2 / 1024 * 0.9}' /proc/meminfo)
    mkdir -p "$DIR/state" "$DIR/spool" "$DIR/log"
    cat > "$CONF" <<EOF
# written by scripts/slurm_local.sh: one node, this machine's $cpus cores and $mem_mb MB
ClusterName=mtloca-local
SlurmctldHost=$NODE
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
ProctrackType=proctrack/pgid
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
MinJobAge=600
NodeName=$NODE CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=local Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
    # the daemons and the client commands read the config from the standard place too
    mkdir -p /etc/slurm
    if [ -e /etc/slurm/slurm.conf ] && ! grep -q "written by scripts/slurm_local.sh" /etc/slurm/slurm.conf; then
        echo "slurm_local: /etc/slurm/slurm.conf exists and is not ours; not touching it" >&2
        exit 5
    fi
    cp "$CONF" /etc/slurm/slurm.conf
}

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

start() {
    need_root
    install_packages
    write_conf
    # munged, as the munge user, with its key (Debian's package makes one at install)
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge
    if [ ! -s /etc/munge/munge.key ]; then
        mungekey --create --keyfile /etc/munge/munge.key 2>/dev/null \
            || dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 2>/dev/null
        chown munge:munge /etc/munge/munge.key
        chmod 400 /etc/munge/munge.key
    fi
    if ! alive "$DIR/munged.pid"; then
        runuser -u munge -- /usr/sbin/munged --pid-file=/run/munge/munged.pid
        sleep 0.5
        cp /run/munge/munged.pid "$DIR/munged.pid"
    fi
    alive "$DIR/slurmctld.pid" || /usr/sbin/slurmctld -f /etc/slurm/slurm.conf
    alive "$DIR/slurmd.pid" || /usr/sbin/slurmd -f /etc/slurm/slurm.conf
    # ready when the node takes jobs
    for _ in $(seq 1 60); do
        if sinfo -h -N -o "%t" 2>/dev/null | grep -qE "^(idle|mix|alloc)"; then
            echo "[slurm_local] up: node $NODE, $(nproc) cores; config $CONF"
            return 0
        fi
        sleep 1
    done
    echo "slurm_local: the node did not come up; logs in $DIR/log" >&2
    sinfo -N -l >&2 || true
    tail -n 20 "$DIR/log/slurmctld.log" "$DIR/log/slurmd.log" >&2 || true
    exit 6
}

stop() {
    # end only the daemons this script started, by their pid files
    for name in slurmd slurmctld munged; do
        if alive "$DIR/$name.pid"; then
            kill "$(cat "$DIR/$name.pid")" 2>/dev/null || true
            for _ in $(seq 1 20); do alive "$DIR/$name.pid" || break; sleep 0.25; done
        fi
        rm -f "$DIR/$name.pid"
    done
    echo "[slurm_local] stopped"
}

case "$cmd" in
    start) start ;;
    stop) stop ;;
    status) sinfo -N -l; squeue ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
