#!/usr/bin/env bash
# Scratch vs transfer with gpt2 on IMDB, across label budgets, on the TPU slice.
# Copies the results (CSV, summaries, plots) back to ./runs/tpu-compare.
set -euo pipefail
source "$(dirname "$0")/config.sh"
PARALLEL="${PARALLEL:-data}"
on_all_hosts "cd ~/$REMOTE_DIR && . .venv/bin/activate && MINITRANSFER_MULTIHOST=1 \
  minitransfer compare --model gpt2 --data tfds:imdb_reviews --budgets 100,1000,10000,all --seeds 3 \
  --max-len 256 --batch-size 64 --parallel $PARALLEL --dtype $DTYPE --out runs/tpu-compare --no-progress"
mkdir -p runs
gcloud compute tpus tpu-vm scp --recurse "$TPU_NAME":~/"$REMOTE_DIR"/runs/tpu-compare runs/ --zone="$ZONE" --worker=0
echo "results in runs/tpu-compare (summary.md, budget.png, curves.png)"
