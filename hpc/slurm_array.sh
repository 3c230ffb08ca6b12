#!/usr/bin/env bash
#SBATCH --job-name=bids-glm-participant
#SBATCH --cpus-per-task=2
#SBATCH --mem=8G
#SBATCH --time=4:00:00
#
# SLURM array job: task i runs bids-glm's participant level for the participant on line i of
# LIST_FILE. hpc/submit.sh writes the list and submits this script and the group job; to
# submit it by hand:
#
#   sbatch --array=1-N%M --cpus-per-task=2 --mem=8G -o OUT/logs/slurm/participant-%A_%a.out \
#       hpc/slurm_array.sh [--image bids-glm.sif] LIST_FILE BIDS_DIR OUTPUT_DIR [BIDS-GLM OPTIONS]
#
# Without --image the task runs the bids-glm found on PATH (sbatch passes the submitting
# shell's environment). With --image it runs the Apptainer image (singularity when apptainer
# is absent) with --cleanenv, BIDS_DIR bound read-only at /bids, OUTPUT_DIR at /out and the
# scratch folder at /work; paths in BIDS-GLM OPTIONS must then be container paths.
# --n-cpus is the job's --cpus-per-task; --work-dir is a fresh folder on node-local scratch
# ($SLURM_TMPDIR, else $TMPDIR, else /tmp/$SLURM_JOB_ID), removed when the task ends.
# The log gets "bids-glm-slurm: start ..." / "bids-glm-slurm: end ... exit=N" lines with
# epoch times; the task's exit status is bids-glm's.
set -euo pipefail

usage="usage: sbatch --array=1-N $0 [--image SIF] LIST_FILE BIDS_DIR OUTPUT_DIR [BIDS-GLM OPTIONS]"
image=""
if [[ ${1:-} == --image ]]; then
    image=${2:?$usage}
    shift 2
fi
if (($# < 3)); then
    echo "$usage" >&2
    exit 2
fi
list_file=$1 bids_dir=$2 output_dir=$3
shift 3

task_id=${SLURM_ARRAY_TASK_ID:?not an array task: submit with sbatch --array=1-N}
label=$(sed -n "${task_id}p" "$list_file" | tr -d '[:space:]')
if [[ -z $label ]]; then
    echo "bids-glm-slurm: no participant on line $task_id of $list_file" >&2
    exit 2
fi
n_cpus=${SLURM_CPUS_PER_TASK:-${SLURM_CPUS_ON_NODE:-1}}

# Node-local scratch for --work-dir, removed on exit (also when SLURM sends TERM at the limit).
scratch_base=${SLURM_TMPDIR:-${TMPDIR:-/tmp/${SLURM_JOB_ID:-$$}}}
remove_base=""
if [[ ! -d $scratch_base ]]; then
    mkdir -p "$scratch_base"
    remove_base=$scratch_base
fi
work_dir=$(mktemp -d "$scratch_base/bids-glm-participant-$label.XXXXXX")
trap 'rm -rf "$work_dir" ${remove_base:+"$remove_base"}' EXIT
trap 'exit 143' TERM

if [[ -n $image ]]; then
    runtime=$(command -v apptainer || command -v singularity) || {
        echo "bids-glm-slurm: --image needs apptainer or singularity on PATH" >&2
        exit 2
    }
    cmd=("$runtime" run --cleanenv -B "$bids_dir:/bids:ro" -B "$output_dir:/out"
        -B "$work_dir:/work" "$image" /bids /out participant --work-dir /work)
else
    cmd=(bids-glm "$bids_dir" "$output_dir" participant --work-dir "$work_dir")
fi
cmd+=(--participant-label "$label" --n-cpus "$n_cpus" "$@")

echo "bids-glm-slurm: start epoch=$(date +%s.%N) job=${SLURM_ARRAY_JOB_ID:-?}_$task_id" \
    "participant=$label host=$(hostname) cpus=$n_cpus mem_mb=${SLURM_MEM_PER_NODE:-?}"
echo "bids-glm-slurm: scratch=$work_dir"
echo "bids-glm-slurm: command: $(printf "%q " "${cmd[@]}")"
status=0
"${cmd[@]}" || status=$?
echo "bids-glm-slurm: end epoch=$(date +%s.%N) participant=$label exit=$status"
exit "$status"
