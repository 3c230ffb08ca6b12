#!/usr/bin/env bash
# Submit bids-glm to SLURM: one array task per participant (hpc/slurm_array.sh), then the
# group level (hpc/group_job.sh) once every task has succeeded.
#
# usage: hpc/submit.sh BIDS_DIR OUTPUT_DIR [options] [-- BIDS-GLM OPTIONS]
#   --image SIF                 run this Apptainer/Singularity image (default: the bids-glm on PATH)
#   --participant-label L ...   participants to submit, with or without 'sub-'
#                               (default: participants.tsv, else the sub-* folders)
#   --cpus N                    CPUs per job, passed on as bids-glm --n-cpus (2)
#   --mem SIZE                  memory per job, sbatch --mem (8G)
#   --time T                    time limit per job, sbatch --time (4:00:00)
#   --partition P               SLURM partition (the cluster's default)
#   --max-running M             at most M participants at once, sbatch --array=1-N%M (20)
#   --logs DIR                  job logs and the participant list (OUTPUT_DIR/logs/slurm)
#   -- BIDS-GLM OPTIONS         passed to both levels, e.g. -- --task faces --smoothing-fwhm 5
#
# Writes the participant list to DIR/participants-<time>.txt, logs to
# DIR/participant-<array job>_<task>.out and DIR/group-<job>.out, and prints both job ids.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
usage() {
    sed -n '4,15s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2
    exit 2
}
die() {
    echo "submit.sh: $*" >&2
    exit 2
}

positional=() labels=() extra=()
image="" cpus=2 mem=8G time_limit=4:00:00 partition="" max_running=20 logs=""
while (($#)); do
    case $1 in
    --image) image=${2:?--image needs a file}; shift 2 ;;
    --cpus) cpus=${2:?--cpus needs a number}; shift 2 ;;
    --mem) mem=${2:?--mem needs a size}; shift 2 ;;
    --time) time_limit=${2:?--time needs a time}; shift 2 ;;
    --partition) partition=${2:?--partition needs a name}; shift 2 ;;
    --max-running) max_running=${2:?--max-running needs a number}; shift 2 ;;
    --logs) logs=${2:?--logs needs a folder}; shift 2 ;;
    --participant-label | --participant_label)
        shift
        while (($#)) && [[ $1 != -* ]]; do
            labels+=("$1")
            shift
        done
        ((${#labels[@]})) || die "--participant-label needs at least one label"
        ;;
    --) shift; extra=("$@"); break ;;
    -h | --help) usage ;;
    -*) die "unknown option $1 (bids-glm options go after --)" ;;
    *) positional+=("$1"); shift ;;
    esac
done
((${#positional[@]} == 2)) || usage
[[ $cpus =~ ^[1-9][0-9]*$ ]] || die "--cpus expects a positive integer, got '$cpus'"
[[ $max_running =~ ^[1-9][0-9]*$ ]] || die "--max-running expects a positive integer, got '$max_running'"
command -v sbatch >/dev/null || die "sbatch not found: run this on a SLURM login node"

bids_dir=$(realpath -e "${positional[0]}" 2>/dev/null) || die "BIDS_DIR ${positional[0]} does not exist"
output_dir=$(realpath -m "${positional[1]}")
logs=$(realpath -m "${logs:-$output_dir/logs/slurm}")
if [[ -n $image ]]; then
    image=$(realpath -e "$image" 2>/dev/null) || die "image $image does not exist"
    command -v apptainer >/dev/null || command -v singularity >/dev/null ||
        echo "submit.sh: warning: neither apptainer nor singularity on PATH here" >&2
else
    command -v bids-glm >/dev/null || die "bids-glm not on PATH: activate its environment or give --image"
fi

# Participants: given labels, else participants.tsv's participant_id column, else sub-* folders;
# only those with a sub-<label> folder in BIDS_DIR, each once, 'sub-' stripped.
if ((${#labels[@]})); then
    candidates=$(printf '%s\n' "${labels[@]}")
elif [[ -f $bids_dir/participants.tsv ]]; then
    candidates=$(awk -F'\t' 'NR == 1 { for (i = 1; i <= NF; i++) if ($i ~ /^participant_id\r?$/) c = i; next }
        c { print $c }' "$bids_dir/participants.tsv")
    [[ -n $candidates ]] || die "$bids_dir/participants.tsv has no participant_id column or no rows"
else
    candidates=$(find "$bids_dir" -mindepth 1 -maxdepth 1 -type d -name 'sub-*' -printf '%f\n' | sort)
fi
participants=()
while read -r label; do
    label=${label%$'\r'}
    label=${label#sub-}
    [[ -n $label ]] || continue
    if [[ -d $bids_dir/sub-$label ]]; then
        participants+=("$label")
    else
        echo "submit.sh: warning: no folder $bids_dir/sub-$label; sub-$label left out" >&2
    fi
done < <(awk '!seen[$0]++' <<<"$candidates")
n=${#participants[@]}
((n)) || die "no participants to submit in $bids_dir"

mkdir -p "$logs" "$output_dir"
list_file=$logs/participants-$(date +%Y%m%dT%H%M%S)-$$.txt
printf '%s\n' "${participants[@]}" >"$list_file"

resources=(--cpus-per-task="$cpus" --mem="$mem" --time="$time_limit" --export=ALL)
[[ -z $partition ]] || resources+=(--partition="$partition")
image_args=()
[[ -z $image ]] || image_args=(--image "$image")

array_id=$(sbatch --parsable --job-name=bids-glm-participant --array="1-$n%$max_running" \
    "${resources[@]}" --output="$logs/participant-%A_%a.out" \
    "$here/slurm_array.sh" "${image_args[@]}" "$list_file" "$bids_dir" "$output_dir" "${extra[@]}")
array_id=${array_id%%;*}
group_id=$(sbatch --parsable --job-name=bids-glm-group \
    --dependency="afterok:$array_id" --kill-on-invalid-dep=yes \
    "${resources[@]}" --output="$logs/group-%j.out" \
    "$here/group_job.sh" "${image_args[@]}" "$bids_dir" "$output_dir" "${extra[@]}") || {
    scancel "$array_id"
    die "the group job was not accepted; participant array $array_id cancelled"
}
group_id=${group_id%%;*}

echo "participant array job: $array_id ($n task(s), at most $max_running at once: ${participants[*]})"
echo "group job: $group_id (starts once every task of $array_id has succeeded)"
echo "participant list: $list_file"
echo "logs: $logs/participant-${array_id}_<task>.out, $logs/group-$group_id.out"
