#!/usr/bin/env bash
#SBATCH --job-name=bids-glm-group
#SBATCH --cpus-per-task=2
#SBATCH --mem=8G
#SBATCH --time=4:00:00
#
# SLURM job for bids-glm's group level, submitted by hpc/submit.sh to start after every task
# of the participant array succeeded; to submit it by hand:
#
#   sbatch --dependency=afterok:ARRAY_JOB_ID --kill-on-invalid-dep=yes \
#       -o OUT/logs/slurm/group-%j.out hpc/group_job.sh [--image bids-glm.sif] BIDS_DIR OUTPUT_DIR [BIDS-GLM OPTIONS]
#
# Runs the bids-glm on PATH, or with --image the Apptainer image (singularity when apptainer
# is absent) with --cleanenv and the same binds as hpc/slurm_array.sh (/bids read-only, /out,
# /work). --n-cpus is the job's --cpus-per-task; --work-dir is a fresh folder on node-local
# scratch ($SLURM_TMPDIR, else $TMPDIR, else /tmp/$SLURM_JOB_ID), removed at the end. The log
# gets "bids-glm-slurm: start ..." / "bids-glm-slurm: end ... exit=N" lines with epoch times.
set -euo pipefail

usage="usage: sbatch $0 [--image SIF] BIDS_DIR OUTPUT_DIR [BIDS-GLM OPTIONS]"
image=""
if [[ ${1:-} == --image ]]; then
    image=${2:?$usage}
    shift 2
fi
if (($# < 2)); then
    echo "$usage" >&2
    exit 2
fi
bids_dir=$1 output_dir=$2
shift 2
n_cpus=${SLURM_CPUS_PER_TASK:-${SLURM_CPUS_ON_NODE:-1}}

scratch_base=${SLURM_TMPDIR:-${TMPDIR:-/tmp/${SLURM_JOB_ID:-$$}}}
remove_base=""
if [[ ! -d $scratch_base ]]; then
    mkdir -p "$scratch_base"
    remove_base=$scratch_base
fi
work_dir=$(mktemp -d "$scratch_base/bids-glm-group.XXXXXX")
trap 'rm -rf "$work_dir" ${remove_base:+"$remove_base"}' EXIT
trap 'exit 143' TERM

if [[ -n $image ]]; then
    runtime=$(command -v apptainer || command -v singularity) || {
        echo "bids-glm-slurm: --image needs apptainer or singularity on PATH" >&2
        exit 2
    }
    cmd=("$runtime" run --cleanenv -B "$bids_dir:/bids:ro" -B "$output_dir:/out"
        -B "$work_dir:/work" "$image" /bids /out group --work-dir /work)
else
    cmd=(bids-glm "$bids_dir" "$output_dir" group --work-dir "$work_dir")
fi
cmd+=(--n-cpus "$n_cpus" "$@")

echo "bids-glm-slurm: start epoch=$(date +%s.%N) job=${SLURM_JOB_ID:-?} level=group" \
    "host=$(hostname) cpus=$n_cpus mem_mb=${SLURM_MEM_PER_NODE:-?}"
echo "bids-glm-slurm: scratch=$work_dir"
echo "bids-glm-slurm: command: $(printf "%q " "${cmd[@]}")"
status=0
"${cmd[@]}" || status=$?
echo "bids-glm-slurm: end epoch=$(date +%s.%N) level=group exit=$status"
exit "$status"
