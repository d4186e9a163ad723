#!/usr/bin/env bash
# Data-parallel training on one machine: N processes, gloo on CPU, NCCL on GPUs.
# Takes the arguments of `textguard train`; NPROC (default: GPUs, else 2) sets the process count.
#   training/torchrun.sh --config configs/xlmr-base.yaml
#   NPROC=2 training/torchrun.sh --config configs/smoke.yaml --output-dir outputs/smoke-ddp
set -euo pipefail
if [[ -z "${NPROC:-}" ]]; then
  NPROC=$(python -c "import torch; print(torch.cuda.device_count() or 2)")
fi
# On CPU each process gets its share of the cores instead of all of them (oversubscription is slow).
if ! python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  export OMP_NUM_THREADS="${OMP_NUM_THREADS:-$(( $(nproc) / NPROC > 0 ? $(nproc) / NPROC : 1 ))}"
fi
exec torchrun --standalone --nproc_per_node "$NPROC" -m textguard train "$@"
