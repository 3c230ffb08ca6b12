#!/usr/bin/env bash
# End-to-end test of hpc/submit.sh on a one-node SLURM cluster started here (run as root on
# Debian 12, with bids-glm and bids-glm-demo on PATH, e.g. from .ci/run's virtualenv).
#
# Installs slurm-wlm and munge from Debian if missing, starts munged, slurmctld and slurmd
# on 127.0.0.1 (configs, keys, state and logs in a temporary folder; free ports; 2 CPUs),
# generates the demo dataset, runs the README's SLURM commands (one array task per demo
# participant, then the dependent group job), waits for the jobs and checks: the outputs of
# every participant and of the group level, every job COMPLETED with exit code 0 (SLURM's
# job completion log and the jobs' own logs), the group job started after every array task
# ended, one log per task, --n-cpus taken from the allocation, and the scratch folders
# removed. The daemons are stopped by PID at the end, also on failure or interruption, and
# the temporary folder is removed. Prints PASS or FAIL; exits non-zero on failure.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
timeout_s=${BIDS_GLM_SLURM_TIMEOUT_S:-240}
failures=0

say() { echo "test_slurm: $*"; }
fail() {
    echo "test_slurm: FAIL: $*" >&2
    failures=$((failures + 1))
}
abort() {
    fail "$*"
    exit 1
}

# --- prerequisites -------------------------------------------------------------------------
[[ $(id -u) == 0 ]] || abort "needs root (starts munged, slurmctld and slurmd)"
for tool in bids-glm bids-glm-demo python3; do
    command -v "$tool" >/dev/null || abort "$tool not on PATH (pip install . into the active environment)"
done
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null; then
    say "installing slurm-wlm and munge from Debian"
    export DEBIAN_FRONTEND=noninteractive
    apt_install=(apt-get install -y -q --no-install-recommends slurm-wlm munge)
    "${apt_install[@]}" >/dev/null || { apt-get update -q >/dev/null && "${apt_install[@]}" >/dev/null; }
fi

# --- leftovers of an earlier run that was killed before its clean-up ----------------------
alive() { # true while process $1 exists and is not a zombie
    local stat
    { read -r stat <"/proc/$1/stat"; } 2>/dev/null || return 1
    stat=${stat##*) }
    [[ ${stat%% *} != Z ]]
}
any_alive() {
    local pid
    for pid; do alive "$pid" && return 0; done
    return 1
}
stop_pids() { # TERM, then KILL whatever is still running 5 s later
    local pid
    (($#)) || return 0
    kill "$@" 2>/dev/null || true
    for _ in $(seq 50); do
        any_alive "$@" || return 0
        sleep 0.1
    done
    for pid; do
        ! alive "$pid" || kill -9 "$pid" 2>/dev/null || true
    done
}
run_processes() { # live processes whose command line or environment names the folder $1
    local proc
    for proc in /proc/[0-9]*; do
        if [[ ${proc#/proc/} != "$$" ]] && alive "${proc#/proc/}" &&
            grep -qsF "$1/" "$proc/cmdline" "$proc/environ"; then
            echo "${proc#/proc/}"
        fi
    done
}
stop_run() { # the daemons (slurmd, slurmctld, munged), then the job steps of the run in folder $1
    local dir=$1 pid daemons=()
    for pid in $(tac "$dir/slurm/pids" 2>/dev/null); do
        grep -qsF "$dir/" "/proc/$pid/cmdline" "/proc/$pid/environ" && daemons+=("$pid")
    done
    stop_pids "${daemons[@]}"
    # shellcheck disable=SC2046
    stop_pids $(run_processes "$dir")
}
# Each run's folder holds the PID of the test that made it; folders whose test is gone are
# leftovers of a killed run: their daemons and jobs are stopped and the folder removed.
for stale in /tmp/bids-glm-test-slurm.*/; do
    stale=${stale%/}
    [[ -f $stale/owner ]] || continue
    owner=$(<"$stale/owner")
    if alive "$owner" && grep -qsF test_slurm "/proc/$owner/cmdline"; then
        continue
    fi
    say "cleaning up an earlier run left in $stale"
    stop_run "$stale"
    rm -rf "$stale"
done

# --- the cluster ---------------------------------------------------------------------------
array_id="" group_id=""
tmp=$(mktemp -d /tmp/bids-glm-test-slurm.XXXXXX)
echo $$ >"$tmp/owner"
chmod 755 "$tmp"
sl=$tmp/slurm
mkdir -p "$sl"/{state,spool,log}
install -d -o munge -g munge -m 0755 "$sl/munge"
: >"$sl/pids"

show_logs() {
    local f
    for f in "$sl"/log/*.log "$sl"/log/*.out "$sl"/munge/munged.log "$tmp"/demo-slurm/output/logs/slurm/*.out; do
        [[ -f $f ]] || continue
        echo "----- $f (last 30 lines)" >&2
        tail -n 30 "$f" >&2
    done
}
finish() {
    local status=$?
    trap - EXIT INT TERM
    ((status == 0 && failures == 0)) || show_logs
    if [[ -n $array_id$group_id && -n $(squeue -h -o %i 2>/dev/null) ]]; then
        scancel ${array_id:+"$array_id"} ${group_id:+"$group_id"} 2>/dev/null || true
        for _ in $(seq 50); do
            [[ -n $(squeue -h -o %i 2>/dev/null) ]] || break
            sleep 0.2
        done
    fi
    stop_run "$tmp"
    rm -rf "$tmp"
    if ((status == 0 && failures == 0)); then
        echo "test_slurm: PASS ($SECONDS s)"
    else
        echo "test_slurm: FAIL ($failures failed check(s), exit status $status, $SECONDS s)" >&2
        exit 1
    fi
}
trap finish EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

read -r ctld_port slurmd_port < <(python3 -c '
import socket
held = [socket.socket() for _ in range(2)]
for s in held:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in held))')
node=$(hostname -s)
export SLURM_CONF=$sl/slurm.conf
cat >"$SLURM_CONF" <<EOF
ClusterName=bidsglmtest
SlurmctldHost=$node(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$sl/munge/munge.socket
CredType=cred/munge
StateSaveLocation=$sl/state
SlurmdSpoolDir=$sl/spool
SlurmctldPidFile=$sl/slurmctld.pid
SlurmdPidFile=$sl/slurmd.pid
SlurmctldLogFile=$sl/log/slurmctld.log
SlurmdLogFile=$sl/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$sl/log/jobcomp.txt
MailProg=/bin/true
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SlurmdParameters=config_overrides
ReturnToService=2
MpiDefault=none
NodeName=$node NodeAddr=127.0.0.1 CPUs=2 RealMemory=8000 State=UNKNOWN
PartitionName=debug Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF

cp /etc/munge/munge.key "$sl/munge/munge.key" 2>/dev/null ||
    dd if=/dev/urandom of="$sl/munge/munge.key" bs=1 count=1024 status=none
chown munge:munge "$sl/munge/munge.key"
chmod 400 "$sl/munge/munge.key"
setpriv --reuid=munge --regid=munge --init-groups /usr/sbin/munged --foreground \
    --socket="$sl/munge/munge.socket" --key-file="$sl/munge/munge.key" \
    --pid-file="$sl/munge/munged.pid" --seed-file="$sl/munge/munged.seed" \
    --log-file="$sl/munge/munged.log" >"$sl/log/munged.out" 2>&1 &
echo $! >>"$sl/pids"
for _ in $(seq 50); do
    munge -S "$sl/munge/munge.socket" -n 2>/dev/null | unmunge -S "$sl/munge/munge.socket" >/dev/null 2>&1 && break
    sleep 0.1
done
munge -S "$sl/munge/munge.socket" -n | unmunge -S "$sl/munge/munge.socket" | grep 'STATUS: *Success' >/dev/null ||
    abort "munged did not start (see $sl/log/munged.out)"

slurmctld -D -c >"$sl/log/slurmctld.out" 2>&1 &
echo $! >>"$sl/pids"
slurmd -D >"$sl/log/slurmd.out" 2>&1 &
echo $! >>"$sl/pids"
node_state=""
for _ in $(seq 100); do
    node_state=$(sinfo -h -N -o '%t' 2>/dev/null | head -n 1) || true
    [[ $node_state == idle ]] && break
    sleep 0.2
done
[[ $node_state == idle ]] || abort "the SLURM node did not become idle (state '$node_state')"
say "one-node cluster up in $SECONDS s (daemon PIDs $(tr '\n' ' ' <"$sl/pids"))"

# --- the README's commands -------------------------------------------------------------------
cd "$tmp"
ln -s "$repo/hpc" hpc
# The README's SLURM section shows exactly these two lines; they are run as written.
readme_demo='bids-glm-demo ./demo-slurm --no-run'
readme_submit='hpc/submit.sh ./demo-slurm/bids ./demo-slurm/output --cpus 1 --mem 2G --time 0:30:00 -- --task faces'
for line in "$readme_demo" "$readme_submit"; do
    grep -qxF "$line" "$repo/README.md" || fail "README.md lacks the line: $line"
done
say "running: $readme_demo"
eval "$readme_demo" >"$tmp/demo.out"
say "running: $readme_submit"
submit_out=$(eval "$readme_submit")
echo "$submit_out"
array_id=$(sed -n 's/^participant array job: \([0-9]*\) .*/\1/p' <<<"$submit_out")
group_id=$(sed -n 's/^group job: \([0-9]*\) .*/\1/p' <<<"$submit_out")
[[ -n $array_id && -n $group_id ]] || abort "submit.sh did not print both job ids"

# --- wait for the jobs ----------------------------------------------------------------------
jobcomp=$sl/log/jobcomp.txt
n_tasks=3
for ((waited = 0; ; waited++)); do
    queued=$(squeue -h -o '%i %T %r' 2>/dev/null) || true
    n_done=$(grep -c . "$jobcomp" 2>/dev/null) || true
    [[ -z $queued && $n_done -ge $((n_tasks + 1)) ]] && break
    ((waited < timeout_s)) || abort "jobs not finished after $timeout_s s; queue: $(tr "\n" ";" <<<"${queued:-empty}")"
    sleep 1
done
say "jobs finished after $waited s of waiting"

# --- checks ---------------------------------------------------------------------------------
out=$tmp/demo-slurm/output
logs=$out/logs/slurm
list_files=("$logs"/participants-*.txt)
[[ -f ${list_files[0]} && $(cat "${list_files[0]}") == $'01\n02\n03' ]] ||
    fail "participant list ${list_files[0]} should hold 01 02 03"

# jobcomp lines look like "JobId=5 ... JobState=COMPLETED ... StartTime=... EndTime=... ExitCode=0:0"
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<" $2"; }
epoch() { date -d "$1" +%s; }
task_end_max=0 stamp_end_max=0
for task in 1 2 3; do
    label=0$task
    record=$(grep -E "ArrayJobId=$array_id ArrayTaskId=$task( |$)" "$jobcomp" | tail -n 1) || true
    if [[ -z $record ]]; then
        fail "no completion record for array task ${array_id}_$task"
    else
        [[ $(field JobState "$record") == COMPLETED && $(field ExitCode "$record") == 0:0 ]] ||
            fail "task ${array_id}_$task: state $(field JobState "$record"), exit code $(field ExitCode "$record")"
        end=$(epoch "$(field EndTime "$record")")
        ((end > task_end_max)) && task_end_max=$end
    fi

    log=$logs/participant-${array_id}_$task.out
    if [[ ! -f $log ]]; then
        fail "missing task log $log"
        continue
    fi
    grep -q "^bids-glm-slurm: end .* participant=$label exit=0$" "$log" ||
        fail "task log $log has no 'participant=$label exit=0' end line"
    grep -q -- "--participant-label $label --n-cpus 1 --task faces" "$log" ||
        fail "task log $log: command without '--participant-label $label --n-cpus 1 --task faces'"
    grep -q "^bids-glm-slurm: start .* cpus=1 mem_mb=2048$" "$log" ||
        fail "task log $log: allocation is not 1 CPU and 2048 MB"
    stamp=$(sed -n 's/^bids-glm-slurm: end epoch=\([0-9.]*\) .*/\1/p' "$log")
    [[ -n $stamp ]] && stamp_end_max=$(awk -v a="$stamp" -v b="$stamp_end_max" 'BEGIN { print (a > b ? a : b) }')
    scratch=$(sed -n 's/^bids-glm-slurm: scratch=//p' "$log")
    [[ -n $scratch && ! -e $scratch ]] || fail "task $task: scratch folder '$scratch' not removed"

    manifests=("$out/logs/manifests/sub-${label}_task-faces_space-"*.json)
    [[ -f ${manifests[0]} ]] || fail "sub-$label: no manifest in $out/logs/manifests"
    for contrast in face house scrambled; do
        maps=("$out/sub-$label/func/sub-${label}_task-faces_space-"*"_contrast-${contrast}_stat-z_statmap.nii.gz")
        [[ -s ${maps[0]} ]] || fail "sub-$label: no fixed-effects z map for contrast $contrast"
    done
done

group_record=$(grep -E "^JobId=$group_id " "$jobcomp" | tail -n 1) || true
group_log=$logs/group-$group_id.out
if [[ -z $group_record ]]; then
    fail "no completion record for the group job $group_id"
else
    [[ $(field JobState "$group_record") == COMPLETED && $(field ExitCode "$group_record") == 0:0 ]] ||
        fail "group job: state $(field JobState "$group_record"), exit code $(field ExitCode "$group_record")"
    group_start=$(epoch "$(field StartTime "$group_record")")
    ((group_start >= task_end_max)) ||
        fail "group job started at $group_start, before the last array task ended ($task_end_max)"
fi
if [[ -f $group_log ]]; then
    grep -q '^bids-glm-slurm: end .* level=group exit=0$' "$group_log" || fail "group log $group_log has no 'exit=0' end line"
    stamp=$(sed -n 's/^bids-glm-slurm: start epoch=\([0-9.]*\) .*/\1/p' "$group_log")
    if [[ -z $stamp ]] || ! awk -v g="$stamp" -v t="$stamp_end_max" 'BEGIN { exit !(g > t) }'; then
        fail "group job's start stamp ($stamp) is not after the last task's end stamp ($stamp_end_max)"
    fi
else
    fail "missing group log $group_log"
fi
for contrast in face house scrambled; do
    for stat in effect t z p; do
        maps=("$out/group/task-faces_space-"*"_contrast-${contrast}_stat-${stat}_statmap.nii.gz")
        [[ -s ${maps[0]} ]] || fail "group: no $stat map for contrast $contrast"
    done
done
if ((failures == 0)); then
    say "checked: 3 participants' z maps and manifests, group maps, exit codes, job order, logs, --n-cpus/--mem"
fi
