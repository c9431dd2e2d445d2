#!/usr/bin/env bash
# The BUSI runs made on a lent GPU machine (see README "Results"), as they were run.
#
# The machine has no copy of the dataset: it trains from the prepared-data cache file
# (made here by load_prepared from ../shared/data/BUSI) and the cached near-duplicate
# groups, copied into .devcarry/mtloca/. The run configs keep the data root of the
# machine that prepared the data, so they are identical to runs made from the raw folder.
#
#   scripts/gpu_runs.sh calibrate     # seconds per epoch, 1 process and N concurrent ones
#   scripts/gpu_runs.sh compare|ablation|seeds   # the cpu profile, in three calls
#   scripts/gpu_runs.sh paper         # the paper profile: MTL-OCA and UNet (ST)
#   scripts/gpu_runs.sh replicas      # k folds in one vmapped step against separate steps
#                                     # (benchmark rows, then 3 epochs of a 5-fold paper run each way)
#   scripts/gpu_runs.sh compile       # one paper-profile fold, 3 epochs, eager against CUDA graphs
#
# Environment: WORKERS (processes sharing the GPU), BUDGET_S (stop launching after
# this; runs resume), PROTOCOLS for the paper stage, OUT (where logs/tarballs go).
set -uo pipefail
cd "$(dirname "$0")/.."
stage=${1:?usage: gpu_runs.sh calibrate|cpu|paper}
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 MTLOCA_CACHE=$PWD/.devcarry/mtloca
DATA=${MTLOCA_DATA:-../shared/data/BUSI/Dataset_BUSI_with_GT}   # recorded in configs as metadata; not read here
PREP=$(ls .devcarry/mtloca/busi-128-*.npz | head -1)
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
WORKERS=${WORKERS:-12}
BUDGET_S=${BUDGET_S:-480}
common=(--dataset busi --data "$DATA" --prepared "$PREP" --threads 1 --split-folds)
py=${PYTHON:-python3}

case "$stage" in
  calibrate)
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
    $py -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
    for n in 1 ${CAL_N:-10}; do
      rm -rf /tmp/cal; t0=$(date +%s)
      timeout 300 $py -m mtloca_lib matrix --profile paper "${common[@]}" --models mtl_oca --protocols image \
        --seeds $(seq -s ' ' 0 $((n > 5 ? n / 5 - 1 : 0))) --workers "$n" --run-root /tmp/cal --log-dir /tmp/cal/logs \
        --set epochs=3 >/dev/null 2>&1
      echo "== $n concurrent process(es): $(( $(date +%s) - t0 )) s wall"
      grep -h "epoch 3/3" /tmp/cal/logs/*.log | head -${n}
    done ;;
  compare|ablation|seeds)
    # The cpu profile, split into calls that each fit a 10-minute device command:
    # compare = Tables 2-3 models, ablation = Table 6 variants (+ seed 1 of MTL-OCA and
    # UNet (ST) under the grouped protocol), seeds = seed 2 of those two.
    case "$stage" in
      compare)  args=(--models unet_st mt_dunet mtl_oca --protocols image grouped --seeds 0) ;;
      ablation) args=(--models ablation_no_oca ablation_oca_cls_from_mask --protocols image grouped --seeds 0) ;;
      seeds)    args=(--models mtl_oca unet_st --protocols grouped --seeds ${SEEDS:-1 2}) ;;
    esac
    timeout "$BUDGET_S" $py -m mtloca_lib matrix --profile cpu "${common[@]}" "${args[@]}" \
      --workers "$WORKERS" 2>&1 | tee "$OUT/matrix_$stage.log"
    if [ "$stage" = ablation ] && [ -n "${EXTRA_SEEDS:-}" ]; then
      timeout "$BUDGET_S" $py -m mtloca_lib matrix --profile cpu "${common[@]}" --models mtl_oca unet_st \
        --protocols grouped --seeds $EXTRA_SEEDS --workers "$WORKERS" 2>&1 | tee -a "$OUT/matrix_$stage.log"
    fi
    sleep 2  # jobs still running after a timeout keep writing; folds count only once metrics.json exists
    tar czf "$OUT/runs_$stage.tgz" --exclude=checkpoint.pt --exclude=model.pt --exclude=.lock runs/busi/cpu runs/logs
    tar czf "$OUT/model_$stage.tgz" runs/busi/cpu/*/mtl_oca-seed0/fold0/model.pt 2>/dev/null || true ;;
  replicas)
    $py benchmarks/bench_replicas.py --replicas 5 --rounds 5 2>&1 | tee "$OUT/bench_replicas.log"
    for mode in separate together; do
      rm -rf /tmp/rep; t0=$(date +%s)
      if [ $mode = together ]; then extra=(--replicas 5); else extra=(--split-folds --workers 5); fi
      timeout 240 $py -m mtloca_lib matrix --profile paper --dataset busi --data "$DATA" --prepared "$PREP" \
        --models mtl_oca --protocols image --seeds 0 "${extra[@]}" --run-root /tmp/rep --log-dir /tmp/rep/logs \
        --set epochs=3 >/dev/null 2>&1
      echo "== 5 folds x 3 epochs, $mode: $(( $(date +%s) - t0 )) s wall" | tee -a "$OUT/bench_replicas.log"
      grep -h "epoch 3/3" /tmp/rep/logs/*.log | cut -c1-60 | tee -a "$OUT/bench_replicas.log"
    done ;;
  compile)
    for mode in off reduce-overhead; do
      rm -rf /tmp/cmp; t0=$(date +%s)
      timeout 240 $py -m mtloca_lib train --model mtl_oca --profile paper --dataset busi --data "$DATA" \
        --prepared "$PREP" --protocol image --run-dir /tmp/cmp --set 'folds=[0]' --set epochs=3 \
        --set compile=$mode > /tmp/cmp.log 2>&1
      echo "== compile=$mode: $(( $(date +%s) - t0 )) s wall" | tee -a "$OUT/compile.log"
      grep -o "epoch [0-9]/3.*" /tmp/cmp.log | grep -o "epoch [0-9]/3\|([0-9.]*s)" | paste - - | tee -a "$OUT/compile.log"
    done ;;
  paper)
    timeout "$BUDGET_S" $py -m mtloca_lib matrix --profile paper "${common[@]}" --protocols ${PROTOCOLS:-grouped} \
      --models mtl_oca unet_st --seeds 0 --workers "$WORKERS" 2>&1 | tee "$OUT/matrix_paper.log"
    tar czf "$OUT/runs_paper.tgz" --exclude=checkpoint.pt --exclude=.lock runs/busi/paper runs/logs ;;
  *) echo "unknown stage $stage" >&2; exit 2 ;;
esac
