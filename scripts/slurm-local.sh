#!/usr/bin/env bash
# A single-node Slurm cluster on this machine, for testing the sweep runner's Slurm executor for real
# (CI runs it; so can you, as root, on a Debian/Ubuntu machine you own).
#
#   bash scripts/slurm-local.sh start    install munge + Slurm if missing, write the config, start the daemons
#   bash scripts/slurm-local.sh stop     stop the daemons this script started
#   bash scripts/slurm-local.sh status   sinfo
#
# It writes /etc/slurm/slurm.conf only when that file is missing or was written by this script (its
# first line says so), so a real cluster's configuration is never overwritten. The node is this
# machine as `slurmd -C` describes it, in one partition "debug"; no accounting database (sacct then
# has nothing to say, and the sweep reads each arm's result files instead).
set -euo pipefail
cmd="${1:-start}"
CONF=/etc/slurm/slurm.conf
MARK="# sslkit single-node test cluster (scripts/slurm-local.sh)"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

stop() {
  $SUDO pkill -x slurmd 2>/dev/null || true
  $SUDO pkill -x slurmctld 2>/dev/null || true
}

case "$cmd" in
  stop) stop; exit 0 ;;
  status) exec sinfo ;;
  start) ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac

missing=()
for p in slurmctld slurmd slurm-client munge; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "slurm-local: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ -f "$CONF" ] && [ "$(head -n 1 "$CONF")" != "$MARK" ]; then
  echo "slurm-local: $CONF exists and was not written by this script; using it as it is" >&2
else
  host="$(hostname -s)"
  node="$(slurmd -C | head -n 1)"   # NodeName=<host> CPUs=... RealMemory=...
  $SUDO mkdir -p /etc/slurm /var/lib/slurm/slurmctld /var/lib/slurm/slurmd /var/log/slurm
  $SUDO tee "$CONF" >/dev/null <<EOF
$MARK
ClusterName=sslkit
SlurmctldHost=$host
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmdSpoolDir=/var/lib/slurm/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
$node State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
fi

# munge: the key and the daemon (it refuses to run as root)
if [ ! -s /etc/munge/munge.key ]; then $SUDO mungekey --create 2>/dev/null || $SUDO /usr/sbin/create-munge-key -f; fi
$SUDO mkdir -p /run/munge /var/log/munge /var/lib/munge
$SUDO chown munge:munge /etc/munge/munge.key /run/munge /var/log/munge /var/lib/munge
$SUDO chmod 0400 /etc/munge/munge.key
if ! pgrep -x munged >/dev/null; then $SUDO runuser -u munge -- /usr/sbin/munged; fi
munge -n | unmunge >/dev/null || { echo "slurm-local: munge does not work" >&2; exit 1; }

pgrep -x slurmctld >/dev/null || $SUDO slurmctld
pgrep -x slurmd >/dev/null || $SUDO slurmd

for _ in $(seq 1 60); do
  state="$(sinfo -h -o '%T' 2>/dev/null | head -n 1 || true)"
  case "$state" in
    idle*|mixed*|allocated*) echo "slurm-local: up ($(sinfo -h -o '%P %D node(s) %c CPUs %T' | head -n 1))"; exit 0 ;;
    down*|drain*) $SUDO scontrol update nodename="$(hostname -s)" state=resume 2>/dev/null || true ;;
  esac
  sleep 1
done
echo "slurm-local: the node did not come up; last state '${state:-none}'. Logs: /var/log/slurm/" >&2
sinfo -R >&2 || true
exit 1
