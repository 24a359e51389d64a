#!/usr/bin/env bash
# Reproduce the bundled model src/napari_hrs/models/compact.pt: generate the synthetic COCO set
# (fixed seed), train the compact preset on its train split (fixed seed, CPU), evaluate on the
# held-out test split. Work files go to ${WORK:-out/train_bundled}.
# Usage: scripts/train_bundled.sh [ITERS]      (default 300)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
ITERS=${1:-300}
WORK=${WORK:-out/train_bundled}
mkdir -p "$WORK"
if [ ! -f "$WORK/coco/train.json" ]; then
  .venv/bin/napari-hrs synth "$WORK/coco" --coco --n-images 400 --image-size 256 --seed 0 --overwrite
fi
.venv/bin/napari-hrs train "$WORK/coco/train.json" --out "$WORK/compact.pt" \
  --preset compact --classes round_spermatid --iters "$ITERS" --batch-size 4 \
  --optimizer adamw --lr 0.001 --warmup 50 --schedule cosine --seed 0 \
  --checkpoint-every 50 --workers 1 --device cpu
.venv/bin/napari-hrs evaluate "$WORK/compact.pt" "$WORK/coco/test.json" --out "$WORK/eval"
cp "$WORK/compact.pt" src/napari_hrs/models/compact.pt
