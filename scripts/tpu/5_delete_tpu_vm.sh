#!/usr/bin/env bash
# Delete the TPU VM (it is billed while it exists).
set -euo pipefail
source "$(dirname "$0")/config.sh"
gcloud compute tpus tpu-vm delete "$TPU_NAME" --zone="$ZONE" --quiet
