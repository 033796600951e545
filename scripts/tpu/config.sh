# Settings shared by the TPU scripts; override any of them in the environment.
# A single-host slice (v4-8, v5litepod-8) or a pod slice (v4-32, ...) both work.
export TPU_NAME="${TPU_NAME:-minitransfer}"
export ZONE="${ZONE:-us-central2-b}"
export ACCELERATOR_TYPE="${ACCELERATOR_TYPE:-v4-8}"
export RUNTIME_VERSION="${RUNTIME_VERSION:-tpu-ubuntu2204-base}"
# compute precision: TPUs multiply in bfloat16 natively (weights and optimizer state stay float32)
export DTYPE="${DTYPE:-bfloat16}"
# where the checkout lands on every TPU host
export REMOTE_DIR="${REMOTE_DIR:-minitransfer}"
# run a command on every host of the slice (one host for v4-8, several for pods)
on_all_hosts() {
  gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone="$ZONE" --worker=all --command="$1"
}
