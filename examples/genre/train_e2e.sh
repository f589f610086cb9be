#!/usr/bin/env bash
# End-to-end GENRE (raw text in, "{ mention } [ identifier ]" markup out): prepare windows with
# markup targets, binarize them, fine-tune with the GENRE recipe (examples/genre/train.sh, or
# examples/mgenre/train.sh with MODEL=mgenre). Every variable has a default; arguments are extra
# fairseq-train options. Commands, data and the two published stages: docs/training.md.
#
#   TRAIN=wiki_abstracts.jsonl VALID_FRACTION=0.001 NAME_TABLE=kb.canonical.names \
#   GPT2_ENCODER_JSON=encoder.json GPT2_VOCAB_BPE=vocab.bpe SRCDICT=bart.large/dict.txt \
#   TGTDICT=bart.large/dict.txt PRETRAINED=bart.large/model.pt WORK=e2e-stage1 \
#   bash examples/genre/train_e2e.sh                     # stage 1: Wikipedia abstracts, every anchor marked
#   TRAIN=AIDA-YAGO2-dataset.tsv:train VALID=AIDA-YAGO2-dataset.tsv:testa ... \
#   PRETRAINED=e2e-stage1/checkpoints/checkpoint_best.pt WORK=e2e-aida bash examples/genre/train_e2e.sh
#
# Published (GENRE paper, ICLR 2021): the end-to-end model is BART-large
# pre-trained on Wikipedia abstracts with all their anchors marked (64 GPUs, 30 hours), then
# fine-tuned on AIDA CoNLL-YAGO; the optimizer settings are those of GENRE's public recipe
# (examples/genre/train.sh: lr 3e-05, 500 warm-up updates, polynomial decay over 200k updates,
# label smoothing 0.1, clip 0.1, weight decay 0.01, dropout 0.1, 1,024 tokens per GPU).
# A guess, not published: that the end-to-end stages use that recipe unchanged; the window of
# WINDOW=128 tokens (give model.link the same window); the number of updates of each stage (set
# TOTAL_NUM_UPDATE / MAX_UPDATE to your budget); and no mention-candidate restriction in training.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

MODEL="${MODEL:-genre}"                    # genre (GPT-2 BPE, canonical titles) or mgenre (SentencePiece)
TRAIN="${TRAIN:?set TRAIN to documents with gold spans (anchors JSON lines, or AIDA FILE:train)}"
VALID="${VALID:-}"                         # validation documents, or VALID_FRACTION of TRAIN
VALID_FRACTION="${VALID_FRACTION:-}"
WORK="${WORK:-e2e}"                        # $WORK/data (text), $WORK/data-bin, $WORK/checkpoints
NAME_TABLE="${NAME_TABLE:-}"               # gold entity ids -> identifiers (not needed for AIDA titles)
WINDOW="${WINDOW:-128}"                    # tokens per window (a guess: see above)
MARKUP_SYMBOLS="${MARKUP_SYMBOLS:-}"       # default: SentencePiece "▁{ ▁} ▁[ ▁]", GPT-2 the ids of " {" ...
SENTENCEPIECE="${SENTENCEPIECE:-}"         # mGENRE: spm_256000.model
GPT2_ENCODER_JSON="${GPT2_ENCODER_JSON:-}" # GENRE: encoder.json and vocab.bpe
GPT2_VOCAB_BPE="${GPT2_VOCAB_BPE:-}"
NO_BPE="${NO_BPE:-0}"                      # 1: the words already are dictionary symbols (tests)
SRCDICT="${SRCDICT:?set SRCDICT to the dict.txt of the pretrained model}"
TGTDICT="${TGTDICT:-$SRCDICT}"
PREPARE="${PREPARE:-1}"                    # 0: reuse $WORK/data-bin

if [ "$PREPARE" = 1 ]; then
    prep=(--end-to-end --model "$MODEL" --window "$WINDOW" --output "$WORK/data" --destdir "$WORK/data-bin"
          --srcdict "$SRCDICT" --tgtdict "$TGTDICT" --quiet)
    # shellcheck disable=SC2206
    prep+=(--train $TRAIN)                 # TRAIN may name several inputs
    if [ -n "$VALID" ]; then
        # shellcheck disable=SC2206
        prep+=(--valid $VALID)
    fi
    if [ -n "$VALID_FRACTION" ]; then prep+=(--valid-fraction "$VALID_FRACTION"); fi
    if [ -n "$NAME_TABLE" ]; then prep+=(--name-table "$NAME_TABLE"); fi
    if [ -n "$MARKUP_SYMBOLS" ]; then prep+=(--markup-symbols "$MARKUP_SYMBOLS"); fi
    if [ -n "$SENTENCEPIECE" ]; then prep+=(--sentencepiece "$SENTENCEPIECE"); fi
    if [ -n "$GPT2_ENCODER_JSON" ]; then
        prep+=(--gpt2-encoder-json "$GPT2_ENCODER_JSON" --gpt2-vocab-bpe "$GPT2_VOCAB_BPE")
    fi
    if [ "$NO_BPE" = 1 ]; then prep+=(--no-bpe); fi
    genre-prepare "${prep[@]}"             # writes the text pairs, then runs fairseq-preprocess
fi

export DATA="$WORK/data-bin"
export SAVE_DIR="${SAVE_DIR:-$WORK/checkpoints}"
case "$MODEL" in
    genre) exec bash "$here/train.sh" "$@" ;;
    mgenre) exec bash "$here/../mgenre/train.sh" "$@" ;;
    *) echo "train_e2e.sh: MODEL must be genre or mgenre, got $MODEL" >&2; exit 2 ;;
esac
