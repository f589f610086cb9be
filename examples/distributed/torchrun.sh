#!/usr/bin/env bash
# Train on several nodes with torchrun: run this script once on every node, with the same settings.
# It starts NPROC_PER_NODE processes per node (one per GPU) running a training recipe
# (RECIPE, default examples/mgenre/train.sh), whose variables (DATA, PRETRAINED, SAVE_DIR, MAX_TOKENS,
# UPDATE_FREQ, ...) pass through; arguments are extra fairseq-train options. fairseq reads the world
# size and ranks torchrun sets; tokens per update <= MAX_TOKENS x NNODES x NPROC_PER_NODE x UPDATE_FREQ.
#
# Static rendezvous (default): every node gives NNODES, its NODE_RANK (0 .. NNODES-1), and node 0's
# address and a free port as MASTER_ADDR / MASTER_PORT:
#   NNODES=4 NODE_RANK=0 MASTER_ADDR=node0 DATA=... bash examples/distributed/torchrun.sh   # on node0
#   NNODES=4 NODE_RANK=1 MASTER_ADDR=node0 DATA=... bash examples/distributed/torchrun.sh   # on node1 ...
# Dynamic rendezvous: set RDZV_ENDPOINT=host:port (any node's address) and the same RDZV_ID on every
# node; torchrun then assigns the node ranks and NODE_RANK / MASTER_ADDR are not used. NNODES is a
# fixed number here (not a min:max range): the world size is NNODES x NPROC_PER_NODE.
#
# Without GPUs (tests): CPU=1 FP16=0 DDP_BACKEND=no_c10d and the option --distributed-backend gloo;
# the plugin fixes fairseq's torchrun detection on CPU-only machines (genre_fairseq/distributed.py).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

NNODES="${NNODES:-1}"
NPROC_PER_NODE="${NPROC_PER_NODE:-8}"
NODE_RANK="${NODE_RANK:-0}"
MASTER_ADDR="${MASTER_ADDR:-127.0.0.1}"
MASTER_PORT="${MASTER_PORT:-29500}"
RDZV_ENDPOINT="${RDZV_ENDPOINT:-}"
RDZV_ID="${RDZV_ID:-genre}"
RECIPE="${RECIPE:-$here/../mgenre/train.sh}"

launcher="torchrun --no-python --nnodes $NNODES --nproc-per-node $NPROC_PER_NODE"
if [ -n "$RDZV_ENDPOINT" ]; then
    launcher+=" --rdzv-backend c10d --rdzv-endpoint $RDZV_ENDPOINT --rdzv-id $RDZV_ID"
else
    launcher+=" --node-rank $NODE_RANK --master-addr $MASTER_ADDR --master-port $MASTER_PORT"
fi
# fairseq reads torchrun's WORLD_SIZE only when it expects more than one process, and by default it
# expects one per visible GPU: with one GPU per node it would train each process alone. So say it.
world=$((NNODES * NPROC_PER_NODE))
echo "torchrun.sh: $NNODES node(s) x $NPROC_PER_NODE processes = $world, recipe $RECIPE" >&2
LAUNCHER="$launcher" exec bash "$RECIPE" --distributed-world-size "$world" "$@"
