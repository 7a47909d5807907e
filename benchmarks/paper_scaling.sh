#!/usr/bin/env bash
# Issue #25's matrix on a host with two GPUs: `paper_run.py trace` of S→T and T→T prompts with each of the
# kernels named in S2T_KERNELS / T2T_KERNELS (torch = the model's own, liger), on one GPU and under torchrun
# on two, then the merged tables against the one-GPU tables. The one-GPU S→T runs (GPU 0) go side by side with
# the one-GPU T→T runs (GPU 1): separate processes and GPUs of one host (32 cores).
# Every trace starts with an empty Triton cache of its own, as a user's first run does.
# Each command's wall time (torchrun's launcher included) goes to ROOT/wall.jsonl; paper_run.py's own timings
# to ROOT/timings.jsonl; ROOT/finished is written last, for a caller that polls from another command (poll
# for that file: `pgrep -f paper_scaling.sh` also matches the polling command's own line). Needs
# `paper_run.py setup --root ROOT` first and the package on PYTHONPATH.
# S2T_ONE_GPU_PROMPTS (default S2T_PROMPTS) runs the one-GPU S→T trace on the first N of the same prompts only:
# `compare` then checks the two-GPU tables of those N, and the one-GPU whole-command time is not comparable.
#   [S2T_KERNELS="liger"] [T2T_KERNELS="torch liger"] bash benchmarks/paper_scaling.sh ROOT [S2T_PROMPTS=48] [T2T_PROMPTS=96] [S2T_ONE_GPU_PROMPTS]
set -uo pipefail
root=$1; rm -f "$root/finished"; s2t=${2:-48}; t2t=${3:-96}; s2t_one_gpu=${4:-$s2t}
S2T_KERNELS=${S2T_KERNELS:-liger}; T2T_KERNELS=${T2T_KERNELS:-torch liger}
here=$(cd "$(dirname "$0")" && pwd)
# NVLink multicast stays off (the lent hosts' rule: it can take a shared host's GPUs out of service)
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 PYTHONUNBUFFERED=1

timed() {  # NAME GPUS MODALITY LIMIT KERNELS: one trace command, its wall time recorded
    local name=$1 gpus=$2 modality=$3 limit=$4 kernels=$5 begun ended status
    local launcher=(python3)
    [ "$gpus" = 2 ] && launcher=(torchrun --nproc-per-node 2)
    begun=$(date +%s.%N)
    TRITON_CACHE_DIR="$root/triton-$name" "${launcher[@]}" "$here/paper_run.py" trace --root "$root" \
        --modality "$modality" --limit "$limit" --kernels "$kernels" > "$root/$name.log" 2>&1
    status=$?
    ended=$(date +%s.%N)
    printf '{"run": "%s", "gpus": %s, "modality": "%s", "prompts": %s, "kernels": "%s", "wall_seconds": %.2f, "exit": %s, "ended": "%s"}\n' \
        "$name" "$gpus" "$modality" "$limit" "$kernels" "$(python3 -c "print($ended - $begun)")" "$status" "$(date -u +%FT%TZ)" \
        | tee -a "$root/wall.jsonl"
}

# one GPU: the S→T runs on GPU 0 beside the T→T runs on GPU 1
(export CUDA_VISIBLE_DEVICES=0; for k in $S2T_KERNELS; do timed "s2t-1gpu-$k" 1 speech "$s2t_one_gpu" "$k"; done) &
(export CUDA_VISIBLE_DEVICES=1; for k in $T2T_KERNELS; do timed "t2t-1gpu-$k" 1 text "$t2t" "$k"; done) &
wait
# two GPUs under torchrun
for k in $S2T_KERNELS; do timed "s2t-2gpu-$k" 2 speech "$s2t" "$k"; done
for k in $T2T_KERNELS; do timed "t2t-2gpu-$k" 2 text "$t2t" "$k"; done
python3 "$here/paper_run.py" compare --root "$root"
date -u +%FT%TZ > "$root/finished"
