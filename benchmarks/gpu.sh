#!/usr/bin/env bash
# Every GPU check of crowdrank in one go, for a machine with a CUDA GPU (a lent one has no network: packages it
# lacks come as wheels in .whl/, see BENCHMARKS.md). Prints a summary table last; logs and JSON go to $OUT.
#
#   OUT=gpu-out bash benchmarks/gpu.sh                         # about 9 minutes on one H100
#   OUT=gpu-out SECTIONS="train tests" QUICK=1 bash benchmarks/gpu.sh   # some sections, fewer variants
#
# 1. train_step.py on CUDA (bf16 autocast, channels_last, pinned memory, cudnn autotune): cfcn, vgg16-density and
#    csrnet at 224 px against a hand-written loop in the same run; vgg16-density also multitask (5 ranked sets of
#    5 per step: is the ranked-set loader a bottleneck?), with torch.compile and with more DataLoader workers.
# 2. clip_filter_throughput.py on CUDA: ViT-B-32 (the default filter model, random weights) through the pipeline.
# 3. The quickstart pipeline end to end on CUDA: synth data, rankset build, train fit, train eval, train predict.
# 4. The test suite with the GPU visible.
set -uo pipefail
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
LOG="$OUT/gpu.log"
RESULTS="$OUT/results.jsonl"
: >"$RESULTS"
say() { printf '\n== [%s s] %s\n' "$SECONDS" "$*" | tee -a "$LOG"; }

if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || exit 1
    export PYTHONPATH=/tmp/site
fi
python3 -m pip install -q --no-deps --no-build-isolation -e . >>"$LOG" 2>&1 || exit 1
nvidia-smi -L | tee -a "$LOG"
python3 -c "import torch, open_clip, datasets; print('torch', torch.__version__, 'cuda', torch.version.cuda,
torch.cuda.get_device_name(0), 'open_clip', open_clip.__version__, 'datasets', datasets.__version__)" | tee -a "$LOG"

bench() {  # name, timeout, args...
    local name=$1 limit=$2
    shift 2
    say "train_step $name: $*"
    timeout "$limit" python3 benchmarks/train_step.py --device cuda --json "$OUT/$name.json" "$@" 2>&1 | tee -a "$LOG"
    [ -f "$OUT/$name.json" ] && python3 -c "import json,sys; d=json.load(open('$OUT/$name.json')); d['name']='$name';
print(json.dumps(d))" >>"$RESULTS" && rm "$OUT/$name.json"
}
SECTIONS=${SECTIONS:-train clip quickstart tests}
on() { [[ " $SECTIONS " == *" $1 "* ]]; }
if on train; then
bench cfcn-224-b32 120 --model cfcn --input-size 224 --batch 32 --steps 150 --image-size 1024x768
bench vgg16-224-b32 120 --model vgg16-density --input-size 224 --batch 32 --steps 150 --image-size 1024x768
if [ -z "${QUICK:-}" ]; then
bench vgg16-224-b32-w12 120 --model vgg16-density --input-size 224 --batch 32 --steps 150 --image-size 1024x768 \
    --workers 12
fi
bench csrnet-224-b16 120 --model csrnet --input-size 224 --batch 16 --steps 150 --image-size 1024x768
bench vgg16-224-multitask 150 --model vgg16-density --input-size 224 --batch 32 --steps 150 --image-size 1024x768 \
    --paradigm multitask --sets 5 --k 5
[ -z "${QUICK:-}" ] && bench vgg16-224-b32-compile 240 --model vgg16-density --input-size 224 --batch 32 --steps 150 \
    --image-size 1024x768 --compile
fi

if on clip; then
say "clip_filter_throughput ViT-B-32 on CUDA"
timeout 150 python3 benchmarks/clip_filter_throughput.py --device cuda --model ViT-B-32 --images 16384 \
    --batch-size 256 --workers 14 --repeats 3 --json "$OUT/clip.json" 2>&1 | tee -a "$LOG"
fi

if on quickstart; then
say "quickstart on CUDA: synth, build, fit, eval, predict"
Q=$(mktemp -d)
(
    set -e
    rankset synth --n 200 --size 256x192 --splits train=0.8,validation=0.1,test=0.1 --max-count 150 --num-proc 8 \
        --out "$Q/data/synth"
    rankset synth --n 200 --unlabeled --seed 1 --size 256x192 --max-count 150 --num-proc 8 --out "$Q/data/unl"
    rankset build "$Q/data/unl" --k 5 --s 0.75 --size 64 --num-proc 8 --out "$Q/ranksets/synth"
    sets=(--set "data.labeled=['$Q/data/synth']" --set "data.ranked=['$Q/ranksets/synth']"
        --set "data.eval='$Q/data/synth'" --set "schedule.device='cuda'")
    start=$(date +%s)
    train fit manifests/quickstart.toml "${sets[@]}" --out "$Q/runs/full"
    echo "quickstart fit on CUDA: $(($(date +%s) - start)) s"
    train eval "$Q/runs/full/best.pt" --data "$Q/data/synth" --split test --out "$Q/eval-test"
    start=$(date +%s)
    train predict "$Q/runs/full/best.pt" "$Q/data/unl" --out "$Q/predict"
    echo "train predict, 200 pictures with overlays: $(($(date +%s) - start)) s"
    head -3 "$Q/predict"/*.csv
    cp "$Q/predict/overlays/synth_00000.png" "$OUT/predict-overlay.png"
    for f in loss val_mae density_examples; do cp "$Q/runs/full/plots/$f.png" "$OUT/quickstart-cuda-$f.png"; done
) 2>&1 | tee -a "$LOG"
fi

if on tests; then
say "test suite with the GPU visible"
timeout "${TEST_TIMEOUT:-200}" python3 -m pytest -q -n 8 -p no:cacheprovider 2>&1 | tee "$OUT/pytest.log" | tail -n 25 | tee -a "$LOG"
fi

say "summary"
python3 - "$RESULTS" <<'EOF' | tee -a "$LOG"
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    if "ratio" in r:
        print(f"{r['name']:<24} plain {r['plain_images_per_s']:8.1f} img/s  step {r['train_step_ratio']:.3f}  "
              f"fit {r['library_images_per_s']:8.1f} img/s  ratio {r['ratio']:.3f}  data wait {r['data_wait_share']:.1%}")
    else:
        print(json.dumps(r)[:600])
EOF
