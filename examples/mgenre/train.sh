#!/usr/bin/env bash
# Fine-tune a multilingual mBART-large into mGENRE: examples/genre/train.sh with the settings of the
# mGENRE paper (Adam 0.9/0.98, lr 1e-4, 5k warm-up then linear decay, label smoothing 0.1, weight
# decay 0.01, dropout 0.1, attention dropout 0.1, at most 3,072 tokens per GPU; the paper trained
# on 384 V100s for about 72 h). Every variable of examples/genre/train.sh can be set; arguments are
# extra fairseq-train options. Commands, data and multi-node launching: docs/training.md.
#
#   DATA=data-bin/mgenre PRETRAINED=mbart.cc100/model.pt bash examples/mgenre/train.sh
#   CRITERION=genre_marginal ... bash examples/mgenre/train.sh   # marginalize over an entity's names
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

export DATA="${DATA:-data-bin/mgenre}"
# an mBART-large pre-trained on 125 languages (spm_256000.model); fairseq publishes no such
# checkpoint under this name: point PRETRAINED at yours
export PRETRAINED="${PRETRAINED:-mbart.cc100/model.pt}"
export SAVE_DIR="${SAVE_DIR:-checkpoints/mgenre}"
export ARCH="${ARCH:-mgenre_mbart_large}"           # pre-norm, layernorm_embedding, shared embeddings
export MAX_TOKENS="${MAX_TOKENS:-3072}"             # per GPU
export LR="${LR:-1e-04}"
export ADAM_BETAS="${ADAM_BETAS:-(0.9, 0.98)}"
export WARMUP_UPDATES="${WARMUP_UPDATES:-5000}"
# The paper states the hardware and time, not the number of updates: set it to your budget.
export TOTAL_NUM_UPDATE="${TOTAL_NUM_UPDATE:-200000}"
export LABEL_SMOOTHING="${LABEL_SMOOTHING:-0.1}"
export WEIGHT_DECAY="${WEIGHT_DECAY:-0.01}"
export DROPOUT="${DROPOUT:-0.1}"
export ATTENTION_DROPOUT="${ATTENTION_DROPOUT:-0.1}"
# Not stated by the paper: gradient clipping as GENRE (0.1); PyTorch DDP (fairseq's default backend,
# overlapping the all-reduce with the backward pass); on CPU use DDP_BACKEND=no_c10d.
export CLIP_NORM="${CLIP_NORM:-0.1}"
export DDP_BACKEND="${DDP_BACKEND:-c10d}"

exec bash "$here/../genre/train.sh" "$@"
