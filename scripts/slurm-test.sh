#!/usr/bin/env bash
# examples/slurm/compare.sbatch on a real one-node Slurm cluster, started here for the test:
#
#   1. a 2-corpus grid (configs A,B x 2 seeds = 8 cells) as a 3-task array plus the report job
#      the sbatch submits: the merged metrics.csv equals a one-process run's byte for byte, and
#      summary.json equals it but for wall times;
#   2. a long one-cell shard cancelled mid-run (scancel: SIGTERM, then SIGKILL after KillWait) is
#      resubmitted and continues from the checkpoint it saved: same metrics.csv as one process.
#
#   scripts/slurm-test.sh [path/to/embgraft] [path/to/fake_gpt2]   (default: target/release/...)
#
# Needs root (CI is): installs Debian's slurm-wlm and munge when missing, runs munged,
# slurmctld and slurmd from a temporary folder with a generated slurm.conf, and stops them by
# pid and removes the folder when it ends, failed or not. Reads nothing outside the repository.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
bin=$(realpath "${1:-target/release/embgraft}")
fake=$(realpath "${2:-target/release/examples/fake_gpt2}")
start_all=$(date +%s)

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    echo "installing slurm-wlm and munge" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
fi

t=$(mktemp -d /tmp/embgraft-slurm.XXXXXX)
chmod 755 "$t"
stop_daemons() {
    for p in "$t/slurmd.pid" "$t/slurmctld.pid" "$t/munge/munged.pid"; do
        if [ -f "$p" ]; then kill "$(cat "$p")" 2>/dev/null || true; fi
    done
    sleep 1
    for p in "$t/slurmd.pid" "$t/slurmctld.pid" "$t/munge/munged.pid"; do
        if [ -f "$p" ]; then kill -9 "$(cat "$p")" 2>/dev/null || true; fi
    done
    rm -rf "$t"
}
trap stop_daemons EXIT

# munge, with its own key, socket and files.
mkdir -p "$t/munge"
chmod 700 "$t/munge"
head -c 1024 /dev/urandom >"$t/munge/munge.key"
chmod 400 "$t/munge/munge.key"
munged --force --key-file="$t/munge/munge.key" --socket="$t/munge/munge.socket" \
    --pid-file="$t/munge/munged.pid" --log-file="$t/munge/munged.log" --seed-file="$t/munge/munge.seed"

host=$(hostname -s)
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
mkdir -p "$t/state" "$t/spool"
export SLURM_CONF=$t/slurm.conf
cat >"$SLURM_CONF" <<EOF
ClusterName=embgraft-test
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$t/munge/munge.socket
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/builtin
StateSaveLocation=$t/state
SlurmdSpoolDir=$t/spool
SlurmctldPidFile=$t/slurmctld.pid
SlurmdPidFile=$t/slurmd.pid
SlurmctldLogFile=$t/slurmctld.log
SlurmdLogFile=$t/slurmd.log
SlurmctldPort=$(free_port)
SlurmdPort=$(free_port)
ReturnToService=2
MpiDefault=none
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
KillWait=20
NodeName=$host CPUs=$(nproc) RealMemory=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 512 )) State=UNKNOWN
PartitionName=test Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
slurmctld -f "$SLURM_CONF"
slurmd -f "$SLURM_CONF"
for _ in $(seq 60); do
    if sinfo -h -o %T 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then break; fi
    sleep 1
done
sinfo -h -o '%P %T %C' | grep -qE 'idle|mixed' || { echo "slurm did not come up:" >&2; tail -5 "$t"/slurm*.log >&2; exit 1; }
echo "slurm up after $(( $(date +%s) - start_all )) s"

# Inputs written here: a GPT-2-layout donor of width 8 and two small corpora.
DIM=8 "$fake" "$t/donor/model.safetensors" >/dev/null
python3 - "$t" <<'PYEOF'
import sys
who = ["The Time Traveller", "The Medical Man", "Weena", "The Psychologist", "I"]
did = ["looked at", "spoke of", "walked towards", "thought about", "laughed at"]
what = ["the machine", "the sphinx", "the dim light", "the Morlocks", "the garden"]
for name, shift in (("one", 0), ("two", 2)):
    with open(f"{sys.argv[1]}/{name}.txt", "w") as f:
        for i in range(900):
            f.write(f"{who[(i + shift) % 5]} {did[(i // 5) % 5]} {what[(i * 7 + i // 25 + shift) % 5]}. ")
PYEOF

# Waits for every job of ours to leave the queue (bounded); a job the cluster can never run
# fails at once.
wait_queue() {
    for _ in $(seq "${1:-300}"); do
        [ -z "$(squeue -h -o %i)" ] && return 0
        if squeue -h -o %r | grep -qE 'PartitionConfig|ReqNodeNotAvail|Resources.*Invalid'; then break; fi
        sleep 1
    done
    echo "jobs still queued after ${1:-300} s:" >&2
    squeue >&2
    return 1
}
strip_wall() {
    python3 - "$1" <<'PYEOF'
import json, sys
s = json.load(open(sys.argv[1]))
for k in ("wall_seconds", "seconds_to_inputs", "seconds_to_first_step"):
    s.pop(k, None)
for r in s["runs"]:
    r.pop("wall_seconds", None)
print(json.dumps(s, sort_keys=True))
PYEOF
}

export EMBGRAFT=$bin
# This machine's size instead of the example's 8 CPUs and 16G per task.
fit=(--cpus-per-task=1 --mem=1G)
args="--donor $t/donor --corpus $t/one.txt --corpus $t/two.txt --configs A,B --seeds 2 --max-steps 30 --eval-every 10 --batch-size 16 --sample-tokens 5"

echo "== 1. a 3-task array and the report job"
"$bin" compare $args --out "$t/single" >/dev/null 2>"$t/single.log"
cd "$t"
s=$(date +%s)
OUT=$t/sharded EMBGRAFT_ARGS=$args sbatch --parsable "${fit[@]}" --array=0-2 "$root/examples/slurm/compare.sbatch" >/dev/null
wait_queue 300
echo "array and report job done in $(( $(date +%s) - s )) s"
cat "$t"/embgraft-*-report.out
for pair in one two; do
    cmp "$t/single/$pair/metrics.csv" "$t/sharded/$pair/metrics.csv"
    [ "$(strip_wall "$t/single/$pair/summary.json")" = "$(strip_wall "$t/sharded/$pair/summary.json")" ] ||
        { echo "summary.json of $pair differs" >&2; exit 1; }
done
echo "merged metrics.csv identical to the one-process run's; summary.json equal but for wall times"

echo "== 2. a shard cancelled mid-run, resubmitted"
long="--donor $t/donor --corpus $t/one.txt --configs C --seeds 1 --max-steps 1500 --eval-every 100 --batch-size 16 --sample-tokens 5 --checkpoint-every off"
"$bin" compare $long --out "$t/long-single" >/dev/null 2>&1
s=$(date +%s)
job=$(OUT=$t/long EMBGRAFT_ARGS=$long sbatch --parsable "${fit[@]}" --array=0 "$root/examples/slurm/compare.sbatch")
for _ in $(seq 120); do
    grep -q "step 200:" "$t/embgraft-${job}_0.out" 2>/dev/null && break
    sleep 0.5
done
grep -q "step 200:" "$t/embgraft-${job}_0.out" || { echo "the long shard did not start" >&2; cat "$t"/embgraft-"${job}"_0.out >&2; exit 1; }
scancel "$job"
wait_queue 120
[ -f "$t/long/checkpoint-C-0.safetensors" ] && [ ! -f "$t/long/run-C-0.json" ] ||
    { echo "the cancelled shard left no checkpoint" >&2; tail -5 "$t/embgraft-${job}_0.out" >&2; exit 1; }
tail -2 "$t/embgraft-${job}_0.out"
OUT=$t/long EMBGRAFT_ARGS=$long sbatch --parsable "${fit[@]}" --array=0 "$root/examples/slurm/compare.sbatch" >/dev/null
wait_queue 300
grep -h "continues from its checkpoint" "$t"/embgraft-*_0.out
cmp "$t/long-single/metrics.csv" "$t/long/metrics.csv"
echo "cancelled at a checkpoint, resubmitted, finished: metrics.csv identical to the one-process run's ($(( $(date +%s) - s )) s)"
cd "$root"
echo "slurm test passed in $(( $(date +%s) - start_all )) s"
