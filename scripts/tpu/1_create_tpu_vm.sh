#!/usr/bin/env bash
# Create a Cloud TPU VM (needs gcloud, a project with the TPU API enabled, and quota).
#   ACCELERATOR_TYPE=v4-8 ZONE=us-central2-b bash scripts/tpu/1_create_tpu_vm.sh
set -euo pipefail
source "$(dirname "$0")/config.sh"
gcloud compute tpus tpu-vm create "$TPU_NAME" \
  --zone="$ZONE" --accelerator-type="$ACCELERATOR_TYPE" --version="$RUNTIME_VERSION"
gcloud compute tpus tpu-vm describe "$TPU_NAME" --zone="$ZONE" --format="value(state,acceleratorType)"
