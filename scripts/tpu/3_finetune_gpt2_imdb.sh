#!/usr/bin/env bash
# Fine-tune OpenAI's gpt2 (124M, from the Hugging Face hub) on IMDB reviews
# (tensorflow-datasets) on every core of the slice, data parallel.
#   MODE=full PARALLEL=data bash scripts/tpu/3_finetune_gpt2_imdb.sh
set -euo pipefail
source "$(dirname "$0")/config.sh"
MODE="${MODE:-full}"
PARALLEL="${PARALLEL:-data}"      # data | fsdp
BATCH="${BATCH:-64}"              # global batch: a multiple of the number of TPU cores
on_all_hosts "cd ~/$REMOTE_DIR && . .venv/bin/activate && MINITRANSFER_MULTIHOST=1 \
  minitransfer finetune --model gpt2 --data tfds:imdb_reviews --mode $MODE --max-len 256 \
  --batch-size $BATCH --epochs 1 --parallel $PARALLEL --dtype $DTYPE --out runs/gpt2-imdb-$MODE --no-progress"
