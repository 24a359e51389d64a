#!/usr/bin/env bash
# Reproduce the bundled model src/napari_hrs/models/compact.pt: generate the synthetic COCO set
# (fixed seed), train the compact preset on its train split (fixed seed, CPU), evaluate on the
# held-out test split. Work files go to ${WORK:-out/train_bundled}.
# The classes are the target (round_spermatid) and its two named confounders (lymphocyte,
# red_blood_cell): learning them explicitly keeps look-alikes from being called hRS.
# Usage: scripts/train_bundled.sh [ITERS]            (default 1500; ~25 min on 2 cores)
#        scripts/train_bundled.sh [ITERS] --resume   (continue an interrupted run; the last
#        checkpoint keeps the optimizer state, the final one drops it: a smaller shipped file)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
ITERS=${1:-1500}
shift || true
WORK=${WORK:-out/train_bundled}
mkdir -p "$WORK"
if [ ! -f "$WORK/coco/test.json" ]; then
  .venv/bin/napari-hrs synth "$WORK/coco" --coco --n-images 600 --image-size 256 --seed 0 \
    --density-jitter 0.1,1.5 \
    --splits 0.8,0.1,0.1 --overwrite
fi
.venv/bin/napari-hrs train "$WORK/coco/train.json" --val "$WORK/coco/val.json" \
  --out "$WORK/compact.pt" --preset compact --classes round_spermatid,lymphocyte,red_blood_cell \
  --iters "$ITERS" --batch-size 4 --optimizer adamw --lr 0.001 --warmup 100 --schedule cosine \
  --seed 0 --checkpoint-every 250 --workers 1 --device cpu --no-train-state "$@"
.venv/bin/napari-hrs evaluate "$WORK/compact.pt" "$WORK/coco/test.json" --out "$WORK/eval"
cp "$WORK/compact.pt" src/napari_hrs/models/compact.pt
