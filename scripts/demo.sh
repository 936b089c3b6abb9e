#!/usr/bin/env bash
# The whole crowdrank pipeline on built-in synthetic data, offline, on a CPU (`make demo`; 3-5 minutes on
# 2 cores). Every step is a real command a user would type; each is printed, quoted to paste, before it runs.
#
#   synthetic "web" photos + a labeled synthetic benchmark (its test split guards dedup against leaks)
#   -> harvest local -> harvest dedup (+ leakage guard) -> harvest report -> rankset build + preview
#   -> train study: counting alone vs ranking + counting -> train compare (table + PNG report) -> train eval --ranked
#
# With internet, the first step is the real thing instead (see README):
#   harvest keywords --terms crowded,demonstration,"train station",mall,studio,beach --out OUT/pool
#   harvest filter OUT/pool --model ViT-B-32 --pretrained laion2b_s34b_b79k
set -euo pipefail
OUT=${1:-demo-out}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
START=$(date +%s)

step() { printf '\n\033[1;34m== %s\033[0m\n' "$*"; }
run() {  # printed with shell quoting (%q), so a printed line pastes back as the same command
    printf '\033[2m$'
    printf ' %q' "$@"
    printf '\033[0m\n'
    "$@"
}

step "1/9 synthetic 'web' photos: 260 unlabeled crowd scenes (stand-ins for harvest keywords)"
run rankset synth --n 260 --unlabeled --seed 1 --size 256x192 --max-count 300 --num-proc 2 --out "$OUT/web"

step "2/9 a labeled synthetic benchmark: 500 scenes, train/validation/test"
run rankset synth --n 500 --size 256x192 --max-count 300 --splits train=0.7,validation=0.1,test=0.2 --seed 0 \
    --num-proc 2 --out "$OUT/data/synth"

step "3/9 the web repeats itself: add resized/re-compressed copies, and copies of three benchmark TEST images"
run python "$ROOT/scripts/demo_copies.py" --web "$OUT/web" --benchmark "$OUT/data/synth"

step "4/9 harvest local: ingest the folder into a pool (magic bytes, full decode, size checks)"
run harvest local "$OUT/web" --out "$OUT/pool" --min-side 64 --workers 2

step "5/9 harvest dedup: near-duplicates (pHash + dHash) and leaks of the benchmark's test split"
run harvest dedup "$OUT/pool" --exclude-like "$OUT/data/synth" --workers 1
run harvest report "$OUT/pool" --out "$OUT/pool-report"

step "6/9 rankset build: nested ranked sets (Algorithm 1: k=5, s=0.75, r=8) from the kept pictures"
run rankset build "$OUT/pool" --k 5 --s 0.75 --r 8 --size 64 --sets-per-image 2 --num-proc 2 --out "$OUT/ranksets/web"
run rankset preview "$OUT/ranksets/web" --out "$OUT/ranksets-preview.png" --n 3

step "7/9 train: counting alone vs ranking + counting, with 10% of the labels (35 pictures), both at once, about two to three minutes"
cat > "$OUT/demo-study.toml" <<EOF
name = "demo"
description = "make demo: one seed, so expect noise; manifests/studies/ has the three-seed studies."
manifest = "$ROOT/manifests/synthetic.toml"
seeds = [0]
[grid]
"schedule.paradigm" = ["count-only", "multitask"]
[set]
"data.labeled" = ["$OUT/data/synth"]
"data.ranked" = ["$OUT/ranksets/web"]
"data.eval" = "$OUT/data/synth"
"data.labeled_fraction" = 0.1
EOF
run train study "$OUT/demo-study.toml" --out "$OUT/study" --jobs 2

step "8/9 compare the two runs (test metrics, PNG report) and check the ranked sets against counting alone"
run train compare "$OUT/study/runs/paradigm=count-only__seed=0" "$OUT/study/runs/paradigm=multitask__seed=0" \
    --label "counting alone" --label "ranking + counting" --out "$OUT/report.png"

# How much ranking signal the harvested pictures still hold for the counting-alone model: the share of nested pairs
# it orders wrongly is all the ranking loss can learn from (README "Reproducing the paper").
run train eval "$OUT/study/runs/paradigm=count-only__seed=0/best.pt" --data "$OUT/data/synth" --split validation \
    --ranked "$OUT/ranksets/web" --out "$OUT/ranking-check"

step "9/9 done in $(( $(date +%s) - START )) s"
cat <<EOF
Look at:
  $OUT/report.png               counting alone vs ranking + counting (curves, scatter, density maps)
  $OUT/ranksets-preview.png     ranked sets: nested boxes and their patches
  $OUT/pool-report/             pool contact sheets, duplicate groups, leaks
  $OUT/study/results.md         the table above
  $OUT/ranking-check/eval.json  nested ranked pairs the counting-alone model already orders wrongly
For the three-seed synthetic studies (the paper's Table 2 and labeled-fraction curve), see README "Reproducing".
EOF
