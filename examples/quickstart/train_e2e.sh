#!/usr/bin/env bash
# Train the quickstart's end-to-end model (raw text in, "{ mention } [ name >> lang ]" out), on CPU,
# starting from the shipped linking model (examples/quickstart/model), as GENRE's starts from BART:
#   CLDR KB -> documents with 0-3 names (make_e2e_data.py) -> the linking model with the markup symbols
#   appended (extend_model.py) -> genre-prepare --end-to-end -> genre-trie build (tree for the new
#   dictionary) -> fairseq-train --restore-file -> pack (fp16) -> genre-evaluate --end-to-end on the
#   held-out documents, with mentions restricted to the KB's names (the mention tree cldr.mtrie, packed
#   into the model directory) and with any span allowed.
# Usage: bash examples/quickstart/train_e2e.sh [WORKDIR] [MODEL_DIR]
#   WORKDIR    scratch directory (default: a new temporary directory)
#   MODEL_DIR  where the model directory goes (default: WORKDIR/model_e2e)
# QS_UPDATES=N training updates (default 12000, the shipped model's), QS_THREADS torch threads (default 1), QS_LOCALES the
# CLDR locales (default all 16), QS_VALID the validation mentions (default 600). Needs babel (pip install -e ".[test]").
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
plugin="$(cd "$here/../.." && pwd)/genre_fairseq"
work="${1:-$(mktemp -d -t genre-quickstart-e2e.XXXXXX)}"
out="${2:-$work/model_e2e}"
updates="${QS_UPDATES:-12000}"
export OMP_NUM_THREADS="${QS_THREADS:-1}" PYTHONWARNINGS=ignore
mkdir -p "$work"
started=$(date +%s)

echo "== 1/6 knowledge base and documents (0-3 names each; held-out templates for validation)"
python "$here/make_kb.py" --output "$work/cldr.tsv" ${QS_LOCALES:+--locales "$QS_LOCALES"}
python "$here/make_e2e_data.py" --kb "$work/cldr.tsv" --outdir "$work" --seed 1 ${QS_VALID:+--valid "$QS_VALID"}

echo "== 2/6 the linking model with the markup symbols appended"
python "$here/extend_model.py" --model-dir "$here/model" --checkpoint-out "$work/init.pt" --dict-out "$work/dict.txt"
cp "$here/model/spm.model" "$work/spm.model"
genre-trie names --tsv "$work/cldr.tsv" --output "$work/cldr.names" --mentions "$work/cldr.mentions" --quiet
genre-trie build --names "$work/cldr.names" --format name_lang --sentencepiece "$work/spm.model" \
    --dict "$work/dict.txt" --output "$work/cldr.trie" --strict --quiet
genre-trie build --mentions "$work/cldr.mentions" --sentencepiece "$work/spm.model" \
    --dict "$work/dict.txt" --output "$work/cldr.mtrie" --quiet

echo "== 3/6 genre-prepare --end-to-end (windows with markup targets) and fairseq-preprocess"
rm -rf "$work/data" "$work/bin" "$work/ckpt"
genre-prepare --end-to-end --train "$work/train.jsonl" --valid "$work/valid.jsonl" --model mgenre \
    --name-table "$work/cldr.names" --sentencepiece "$work/spm.model" --srcdict "$work/dict.txt" \
    --tgtdict "$work/dict.txt" --destdir "$work/bin" --output "$work/data" --quiet

echo "== 4/6 fairseq-train from the linking model ($updates updates)"
fairseq-train "$work/bin" --user-dir "$plugin" --task genre --arch mgenre_tiny \
    --encoder-embed-dim 128 --encoder-ffn-embed-dim 512 --encoder-layers 2 --decoder-layers 2 \
    --encoder-attention-heads 4 --decoder-attention-heads 4 --dropout 0 --attention-dropout 0 --seed 1 \
    --restore-file "$work/init.pt" --reset-optimizer --reset-lr-scheduler --reset-meters --reset-dataloader \
    --optimizer adam --adam-betas '(0.9,0.98)' --lr 0.002 --lr-scheduler inverse_sqrt --warmup-updates 300 \
    --criterion label_smoothed_cross_entropy --label-smoothing 0.1 --max-tokens 2048 \
    --max-update "$updates" --cpu --num-workers 0 --save-dir "$work/ckpt" --no-epoch-checkpoints \
    --save-interval-updates 2000 --keep-interval-updates 3 \
    --no-progress-bar --log-interval 500 --disable-validation > "$work/train.log" 2>&1
{ grep -E "train_inner" "$work/train.log" || true; } | tail -1 | sed -E 's/.*(loss=[0-9.]+).*(num_updates=[0-9]+).*/\1 \2/'

echo "== 5/6 pack the model directory ($out)"
python "$here/pack.py" --checkpoint "$work/ckpt/checkpoint_last.pt" --work "$work" --output "$out" --fp16 \
    --info "{\"updates\": $updates, \"command\": \"bash examples/quickstart/train_e2e.sh\"}"

echo "== 6/6 genre-evaluate --end-to-end on the held-out documents; mentions: the KB's names (the mention tree)"
genre-evaluate --end-to-end --model-dir "$out" --model-type mgenre --trie "$out/cldr.trie" \
    --name-table "$out/cldr.names" --mention-trie "$out/cldr.mtrie" --beam 5 "$work/valid.jsonl" \
    2> "$work/evaluate.log" | tail -4
echo "-- mentions: any span of words (no mention tree)"
genre-evaluate --end-to-end --model-dir "$out" --model-type mgenre --trie "$out/cldr.trie" \
    --name-table "$out/cldr.names" --beam 5 "$work/valid.jsonl" 2> "$work/evaluate_any_span.log" | tail -4
echo "done in $(( $(date +%s) - started )) s"
