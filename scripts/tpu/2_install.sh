#!/usr/bin/env bash
# Copy this checkout to every TPU host and install minitransfer with JAX for TPU.
# Run from the repository root: bash scripts/tpu/2_install.sh
set -euo pipefail
source "$(dirname "$0")/config.sh"
tar czf /tmp/minitransfer.tgz --exclude=.git --exclude=.venv --exclude=runs .
gcloud compute tpus tpu-vm scp /tmp/minitransfer.tgz "$TPU_NAME":~/minitransfer.tgz --zone="$ZONE" --worker=all
on_all_hosts "set -e; mkdir -p ~/$REMOTE_DIR && tar xzf ~/minitransfer.tgz -C ~/$REMOTE_DIR \
  && cd ~/$REMOTE_DIR && python3 -m venv .venv && . .venv/bin/activate \
  && pip install -q -U pip && pip install -q -U 'jax[tpu]' && pip install -q -e . \
  && python -c 'import jax; print(jax.process_index(), jax.devices())'"
