#!/usr/bin/env bash
# Fine-tune BART-large into GENRE with the hyperparameters of GENRE's public recipe.
# Every setting is an environment variable with a default; arguments are extra fairseq-train
# options, appended last (a later option wins). examples/mgenre/train.sh runs this script with
# mGENRE's settings. Commands and data preparation: docs/training.md.
#
#   DATA=data-bin/kilt PRETRAINED=bart.large/model.pt bash examples/genre/train.sh
#
# DATA must be binarized with the pretrained model's dictionary (fairseq-preprocess
# --srcdict/--tgtdict bart.large/dict.txt). The pretrained weights are loaded with
# --finetune-from-model: fairseq's --restore-file PRETRAINED --reset-optimizer --reset-lr-scheduler
# --reset-meters --reset-dataloader on the first launch, which instead resumes from
# SAVE_DIR/checkpoint_last.pt when a preempted job is started again.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

DATA="${DATA:-data-bin/genre}"                      # fairseq-preprocess output (train/valid, dict.*.txt)
PRETRAINED="${PRETRAINED:-bart.large/model.pt}"     # fairseq's BART-large checkpoint
SAVE_DIR="${SAVE_DIR:-checkpoints/genre}"
USER_DIR="${USER_DIR:-$(cd "$here/../.." && pwd)/genre_fairseq}"
ARCH="${ARCH:-genre_bart_large}"                    # BART-large, shared embeddings, layernorm_embedding
SOURCE_LANG="${SOURCE_LANG:-source}"
TARGET_LANG="${TARGET_LANG:-target}"
# GENRE's published settings
MAX_TOKENS="${MAX_TOKENS:-1024}"                    # per GPU
UPDATE_FREQ="${UPDATE_FREQ:-1}"
LR="${LR:-3e-05}"
WARMUP_UPDATES="${WARMUP_UPDATES:-500}"
TOTAL_NUM_UPDATE="${TOTAL_NUM_UPDATE:-200000}"      # length of the linear (polynomial_decay) schedule
MAX_UPDATE="${MAX_UPDATE:-$TOTAL_NUM_UPDATE}"
LABEL_SMOOTHING="${LABEL_SMOOTHING:-0.1}"
CLIP_NORM="${CLIP_NORM:-0.1}"
WEIGHT_DECAY="${WEIGHT_DECAY:-0.01}"
DROPOUT="${DROPOUT:-0.1}"
ATTENTION_DROPOUT="${ATTENTION_DROPOUT:-0.1}"
DDP_BACKEND="${DDP_BACKEND:-no_c10d}"
# fairseq's defaults, spelled out
ADAM_BETAS="${ADAM_BETAS:-(0.9, 0.999)}"
ADAM_EPS="${ADAM_EPS:-1e-08}"
SEED="${SEED:-1}"
# label_smoothed_cross_entropy, or genre_marginal (marginalizes over the names of a group; reads
# DATA/train.group, see docs/training.md)
CRITERION="${CRITERION:-label_smoothed_cross_entropy}"
# machine
FP16="${FP16:-1}"                                   # 1: --fp16 (V100s); 0: fp32
CPU="${CPU:-0}"                                     # 1: --cpu
LAUNCHER="${LAUNCHER:-}"                            # command prefix, e.g. torchrun ... (examples/distributed/)
# optional: validation accuracy with the constrained search over the knowledge base's prefix tree;
# the best checkpoint is then the one of best accuracy (entity_acc with NAME_TABLE, else identifier_acc)
TRIE="${TRIE:-}"
NAME_TABLE="${NAME_TABLE:-}"
default_eval_args='{"beam": 10, "max_len_b": 32}'
EVAL_ACCURACY_ARGS="${EVAL_ACCURACY_ARGS:-$default_eval_args}"

args=(
    "$DATA" --user-dir "$USER_DIR" --task genre --arch "$ARCH"
    --source-lang "$SOURCE_LANG" --target-lang "$TARGET_LANG" --truncate-source
    --finetune-from-model "$PRETRAINED" --save-dir "$SAVE_DIR"
    --criterion "$CRITERION" --label-smoothing "$LABEL_SMOOTHING"
    --optimizer adam --adam-betas "$ADAM_BETAS" --adam-eps "$ADAM_EPS"
    --lr "$LR" --lr-scheduler polynomial_decay --warmup-updates "$WARMUP_UPDATES"
    --total-num-update "$TOTAL_NUM_UPDATE" --max-update "$MAX_UPDATE"
    --clip-norm "$CLIP_NORM" --weight-decay "$WEIGHT_DECAY"
    --dropout "$DROPOUT" --attention-dropout "$ATTENTION_DROPOUT"
    --max-tokens "$MAX_TOKENS" --update-freq "$UPDATE_FREQ"
    --ddp-backend "$DDP_BACKEND" --seed "$SEED"
)
if [ "$CRITERION" = genre_marginal ]; then args+=(--target-groups); fi
if [ "$FP16" = 1 ]; then args+=(--fp16); fi
if [ "$CPU" = 1 ]; then args+=(--cpu); fi
if [ -n "$TRIE" ]; then
    metric=identifier_acc
    if [ -n "$NAME_TABLE" ]; then metric=entity_acc; args+=(--name-table "$NAME_TABLE"); fi
    args+=(--trie "$TRIE" --eval-accuracy --eval-accuracy-args "$EVAL_ACCURACY_ARGS"
           --best-checkpoint-metric "$metric" --maximize-best-checkpoint-metric)
fi

# LAUNCHER is split into words on purpose: it is a command with its options.
# shellcheck disable=SC2086
exec $LAUNCHER fairseq-train "${args[@]}" "$@"
