#!/usr/bin/env bash
# Rebuild the quickstart's shipped model directory from scratch, on CPU:
#   CLDR names (babel) -> KB TSV -> training pairs -> SentencePiece + dict -> name table + prefix tree
#   -> fairseq-preprocess -> fairseq-train --task genre --arch mgenre_tiny -> pack (fp16) -> validation.
# Usage: bash examples/quickstart/train.sh [WORKDIR] [MODEL_DIR]
#   WORKDIR    scratch directory (default: a new temporary directory)
#   MODEL_DIR  where the model directory goes (default: examples/quickstart/model, the shipped one)
# QS_UPDATES=N sets the training updates (default 12000, the shipped model); QS_THREADS the torch threads (default 1: with
# other jobs on the same 2 cores, 2 threads ran 2-4x slower than 1 here); QS_LOCALES=de,en,... the CLDR locales of
# the KB (default: make_kb.py's 16; fewer make a smaller KB and a quicker smoke run, as tests/test_examples.py does).
# Needs babel (pip install -e ".[test]"); the wall time is in docs/quickstart.md.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
plugin="$(cd "$here/../.." && pwd)/genre_fairseq"
work="${1:-$(mktemp -d -t genre-quickstart.XXXXXX)}"
out="${2:-$here/model}"
updates="${QS_UPDATES:-12000}"
export OMP_NUM_THREADS="${QS_THREADS:-1}" PYTHONWARNINGS=ignore
mkdir -p "$work"
started=$(date +%s)

echo "== 1/7 knowledge base: CLDR territories, regions, languages, currencies in ${QS_LOCALES:-16 languages}"
python "$here/make_kb.py" --output "$work/cldr.tsv" ${QS_LOCALES:+--locales "$QS_LOCALES"}

echo "== 2/7 training pairs: names in templated sentences (templates.tsv) -> 'name >> lang'"
python "$here/make_data.py" --kb "$work/cldr.tsv" --outdir "$work" --per-name 4 --valid 800 --seed 1 \
    --cut-both 0.15 --cut-left 0.15 --mix 0.4
grep -v '^#' "$work/cldr.tsv" | cut -f3 > "$work/names.txt"
paste <(sed 's/.* >> //' "$work/valid.target") "$work/valid.ids" "$work/valid.source" > "$work/valid.tsv"

# A small vocabulary: with 8,000 pieces the tiny model had not learned to copy the mention after 1,800
# updates; with 2,000 (mostly characters and short pieces, each seen often) it does within ~1,000.
echo "== 3/7 SentencePiece model (2,000 pieces) and fairseq dictionary, trained on the names and training pairs"
python "$here/spm.py" train --input "$work/names.txt" "$work/train.source" "$work/train.target" \
    --prefix "$work/spm" --vocab-size 2000

echo "== 4/7 genre-trie names / build: name table and prefix tree of every 'name >> lang'"
genre-trie names --tsv "$work/cldr.tsv" --output "$work/cldr.names" --quiet
genre-trie build --names "$work/cldr.names" --format name_lang --sentencepiece "$work/spm.model" \
    --dict "$work/dict.txt" --output "$work/cldr.trie" --strict --quiet

echo "== 5/7 fairseq-preprocess"
rm -rf "$work/bin" "$work/ckpt"  # a re-run in the same WORKDIR starts over
for split in train valid; do
    for side in source target; do
        python "$here/spm.py" encode --model "$work/spm.model" < "$work/$split.$side" > "$work/$split.spm.$side"
    done
done
fairseq-preprocess --source-lang source --target-lang target --trainpref "$work/train.spm" \
    --validpref "$work/valid.spm" --destdir "$work/bin" --srcdict "$work/dict.txt" --joined-dictionary \
    --workers 2 > "$work/preprocess.log" 2>&1

echo "== 6/7 fairseq-train --user-dir genre_fairseq --task genre --arch mgenre_tiny ($updates updates)"
# mgenre_tiny made 128 wide, 2+2 layers; init_model.py writes fairseq's own initialization with
# sinusoidal starting values for the (learned, trainable) position embeddings: see its docstring.
model_args=("$work/bin" --user-dir "$plugin" --task genre --arch mgenre_tiny
    --encoder-embed-dim 128 --encoder-ffn-embed-dim 512 --encoder-layers 2 --decoder-layers 2
    --encoder-attention-heads 4 --decoder-attention-heads 4 --dropout 0 --attention-dropout 0 --seed 1)
python "$here/init_model.py" --output "$work/init.pt" -- "${model_args[@]}"
train_started=$(date +%s)
TIMEFORMAT="%R %U %S"
{ time fairseq-train "${model_args[@]}" \
    --restore-file "$work/init.pt" --reset-optimizer --reset-lr-scheduler --reset-meters --reset-dataloader \
    --optimizer adam --adam-betas '(0.9,0.98)' --lr 0.002 --lr-scheduler inverse_sqrt --warmup-updates 200 \
    --criterion label_smoothed_cross_entropy --label-smoothing 0.1 --max-tokens 1024 \
    --max-update "$updates" --cpu --num-workers 0 --save-dir "$work/ckpt" --no-epoch-checkpoints \
    --no-progress-bar --log-interval 250 --disable-validation > "$work/train.log" 2>&1 ; } 2> "$work/train.time"
read -r train_wall train_user train_sys < "$work/train.time"
{ grep -E "train_inner" "$work/train.log" || true; } | tail -1 | sed -E 's/.*(loss=[0-9.]+).*(num_updates=[0-9]+).*/\1 \2/'

echo "== 7/7 pack the model directory ($out) and link the validation sentences (held-out templates)"
info=$(python - "$work" "$updates" "$train_wall" "$train_user" "$train_sys" "$train_started" "$started" <<'PY'
import json, sys
work, updates, wall, user, sys_, t_train, t0 = sys.argv[1:]
count = lambda p: sum(1 for _ in open(f"{work}/{p}", encoding="utf-8"))
print(json.dumps({"updates": int(updates), "train_pairs": count("train.source"), "valid_pairs": count("valid.source"),
                  "train_wall_seconds": float(wall), "train_cpu_seconds": round(float(user) + float(sys_), 1),
                  "prepare_wall_seconds": int(t_train) - int(t0), "threads": int(__import__("os").environ["OMP_NUM_THREADS"]),
                  "command": "bash examples/quickstart/train.sh"}))
PY
)
python "$here/pack.py" --checkpoint "$work/ckpt/checkpoint_last.pt" --work "$work" --output "$out" --fp16 --info "$info"
python "$here/link.py" --model-dir "$out" --file "$work/valid.tsv" --top 1 > "$work/valid.out"
tail -1 "$work/valid.out"
echo "done in $(( $(date +%s) - started )) s (training: ${train_wall} s wall, $(python -c "print(round($train_user + $train_sys))") s CPU)"
