#!/usr/bin/env bash
# The quickstart through fairseq's own command line: link a file of sentences with
#   fairseq-generate --user-dir genre_fairseq --task genre --trie ... --name-table ... --marginalize
# and print, per sentence, its S- line and its E- lines (rank, marginal score, entity id, identifiers).
# Usage: bash examples/quickstart/generate.sh [SENTENCES]
#   SENTENCES  one sentence a line, or lang<TAB>expected id<TAB>sentence (default: sentences.tsv)
# QS_MODEL_DIR overrides the model directory (default: examples/quickstart/model).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
plugin="$(cd "$here/../.." && pwd)/genre_fairseq"
model="${QS_MODEL_DIR:-$here/model}"
input="${1:-$here/sentences.tsv}"
work="$(mktemp -d -t genre-quickstart-gen.XXXXXX)"
trap 'rm -rf "$work"' EXIT
export PYTHONWARNINGS=ignore
# one torch thread unless told otherwise (the default, one per core, is slower on a busy machine)
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" MKL_NUM_THREADS="${MKL_NUM_THREADS:-1}"

# The same reading and checks as python -m examples.quickstart (markers present, spaced), then SentencePiece.
python - "$here" "$input" "$model" > "$work/test.txt" <<'PY'
import os, sys
sys.path.insert(0, sys.argv[1])
from link import check_items, check_model_dir, read_items
try:
    check_model_dir(sys.argv[3])
    items = check_items(read_items(sys.argv[2]))
except (ValueError, FileNotFoundError) as e:
    sys.exit(f"generate.sh: error: {e}")
print("\n".join(item.sentence for item in items))
PY
python "$here/spm.py" encode --model "$model/spm.model" < "$work/test.txt" > "$work/test.source"
fairseq-preprocess --only-source --source-lang source --target-lang target --testpref "$work/test" \
    --destdir "$work/bin" --srcdict "$model/dict.source.txt" --workers 1 > "$work/preprocess.log" 2>&1
cp "$model/dict.target.txt" "$work/bin/"
fairseq-generate "$work/bin" --user-dir "$plugin" --task genre --source-lang source --target-lang target \
    --path "$model/model.pt" --trie "$model/cldr.trie" --name-table "$model/cldr.names" --marginalize \
    --bpe sentencepiece --sentencepiece-model "$model/spm.model" --gen-subset test \
    --beam 10 --nbest 10 --max-len-b 32 --cpu --batch-size 32 2> "$work/generate.log" > "$work/generate.out" \
    || { tail -1 "$work/generate.log" >&2; exit 1; }
# fairseq prints sentences in batch order (by length) and a batch's E- lines before its S- lines:
# order by sentence id, S- line first, E- lines in rank order.
grep -E "^(S|E)-" "$work/generate.out" | sed -E 's/^(S|E)-([0-9]+)\t/\2\t\1\t/' \
    | sort -s -t$'\t' -k1,1n -k2,2r | sed -E 's/^([0-9]+)\t(S|E)\t/\2-\1\t/'
