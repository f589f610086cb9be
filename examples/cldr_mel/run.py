"""A miniature of mGENRE's unseen-language experiment (the paper's Table 4) on Unicode CLDR names.

  python examples/cldr_mel/run.py --work /tmp/cldr_mel            # the full run (RESULTS.md)
  python examples/cldr_mel/run.py --work /tmp/t --updates 20 --unseen-per-lang 20 --seen-test 40   # a smoke run

The knowledge base holds the CLDR names (territories, regions, languages, currencies; ids like
``territory:DE``, CLDR codes, not Wikidata ids) in the nine Mewsli-9 languages only. Tiny mGENRE
models (quickstart's ``mgenre_tiny`` at width 128, trained from scratch here, no pre-training) learn
to link a marked name in a templated sentence of those nine languages, one model per target format:

* ``canonical``   one name per entity (the English one when it has one: ``--lang-priority en,...``);
* ``name_lang``   ``name >> lang`` in the sentence's language;
* ``lang_name``   ``lang >> name`` in the sentence's language;
* ``lang_name+M`` ``lang >> name`` trained with the ``genre_marginal`` criterion: each sentence's
  target is the group of the entity's names (the sentence's own and up to ``--group-size - 1``
  others), and the loss is -log of their summed probability (mGENRE's training-time marginalization).

Two test sets, decoded with a beam of 10 under each format's prefix tree:

* ``unseen``: sentences in the seven Wikinews-7 languages (cs fr it pl pt ru zh), which the models
  never saw, naming an entity by its CLDR name *in that language*; the KB has no names in those
  languages, so a model is right only if it generates a name of the right entity in another one;
* ``seen``: held-out entities (``--holdout`` of them, never in training in any language) named in
  the nine seen languages, in held-out templates.

Accuracy is the share of mentions whose top entity is the gold one: micro over all mentions, macro
the mean over languages; with and without inference-time marginalization (log-sum-exp over an
entity's names in the beam of ``log p / L ** 0.5``). The SentencePiece model is trained on the names
of all sixteen languages (standing in for mBART's multilingual vocabulary), so unseen-language text
is tokenized without ``<unk>``. Everything is deterministic given ``--seed`` (up to float arithmetic).
Results: ``WORK/results.json``, ``WORK/results.md``, and each config's predictions in
``WORK/CONFIG/predictions.tsv`` (test set, lang, gold id, top entity marginalized, its best
identifier, top entity by best name, source sentence).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import random
import shutil
import subprocess
import sys
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, List, Sequence, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
QUICKSTART = os.path.join(ROOT, "examples", "quickstart")
PLUGIN = os.path.join(ROOT, "genre_fairseq")
sys.path.insert(0, QUICKSTART)

from make_kb import MEWSLI9 as SEEN, WIKINEWS7  # noqa: E402  (examples/quickstart, on sys.path)

UNSEEN = tuple(sorted(WIKINEWS7))
CONFIGS = {  # name: (identifier format, criterion)
    "canonical": ("canonical", "label_smoothed_cross_entropy"),
    "name_lang": ("name_lang", "label_smoothed_cross_entropy"),
    "lang_name": ("lang_name", "label_smoothed_cross_entropy"),
    "lang_name+M": ("lang_name", "genre_marginal"),
}
MODEL_ARGS = ["--task", "genre", "--arch", "mgenre_tiny", "--encoder-embed-dim", "128", "--encoder-ffn-embed-dim", "512",
              "--encoder-layers", "2", "--decoder-layers", "2", "--encoder-attention-heads", "4",
              "--decoder-attention-heads", "4", "--dropout", "0", "--attention-dropout", "0"]

Row = Tuple[str, str, str]  # (entity id, lang, name)
Example = Tuple[str, str, str]  # (source sentence, gold entity id, lang)


def accuracy(hits: Dict[str, List[bool]]) -> Dict[str, float]:
    """``{"micro", "macro", "n", lang: acc ...}`` from per-language lists of right/wrong."""
    langs = sorted(lang for lang in hits if hits[lang])
    total = sum(len(hits[lang]) for lang in langs)
    if not total:
        raise ValueError("no test mentions")
    result = {lang: sum(hits[lang]) / len(hits[lang]) for lang in langs}
    result["micro"] = sum(sum(hits[lang]) for lang in langs) / total
    result["macro"] = sum(result[lang] for lang in langs) / len(langs)
    result["n"] = total
    return result


def run(cmd: Sequence[str], log: str) -> None:
    """Run a command, its output to ``log``; a one-line error with the log's last line if it fails."""
    with open(log, "w", encoding="utf-8") as f:
        proc = subprocess.run(list(cmd), stdout=f, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        last = open(log, encoding="utf-8").read().strip().splitlines()[-1:] or [""]
        raise RuntimeError(f"{cmd[0]} failed (exit {proc.returncode}, log {log}): {last[0]}")


def split_entities(kb: List[Row], holdout: float, rng: random.Random) -> set:
    """The held-out entities: a ``holdout`` share of the KB's, drawn with ``rng``."""
    entities = sorted({e for e, _, _ in kb})
    return set(rng.sample(entities, round(holdout * len(entities))))


def make_examples(kb: List[Row], unseen_rows: List[Row], templates, held_out: set, args, rng: random.Random):
    """Training sentences (source, entity, lang, name) and the two test sets."""
    import make_data

    shares = (0.15, 0.15, 0.4, 0.3)  # cut both sides, cut the left side, mixed sides, word salad (quickstart's)
    train = make_data.training_sentences(kb, templates, args.per_name, shares, rng, skip=frozenset(held_out))
    seen_rows = [r for r in kb if r[0] in held_out]
    seen = [(make_data.mark(templates[(lang, make_data.entity_type(e))][-1], name), e, lang)
            for e, lang, name in rng.sample(seen_rows, min(args.seen_test, len(seen_rows)))]
    unseen = []
    kb_entities = {e for e, _, _ in kb}
    for lang in UNSEEN:
        rows = [r for r in unseen_rows if r[1] == lang and r[0] in kb_entities]
        for e, _, name in rng.sample(rows, min(args.unseen_per_lang, len(rows))):
            unseen.append((make_data.mark(rng.choice(templates[(lang, make_data.entity_type(e))]), name), e, lang))
    return train, {"unseen": unseen, "seen": seen}


def write_lines(path: str, lines) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(line + "\n" for line in lines)


def build_trees(work: str, spm_model: str, dict_path: str) -> Dict[str, Tuple[str, str]]:
    """genre-trie names/build for each format: {format: (tree path, name table path for decoding)}."""
    run(["genre-trie", "names", "--tsv", f"{work}/kb.tsv", "--output", f"{work}/kb.names", "--quiet"],
        f"{work}/names.log")
    trees = {}
    for fmt in ("canonical", "name_lang", "lang_name"):
        cmd = ["genre-trie", "build", "--names", f"{work}/kb.names", "--format", fmt, "--sentencepiece", spm_model,
               "--dict", dict_path, "--output", f"{work}/{fmt}.trie", "--strict", "--quiet"]
        if fmt == "canonical":
            cmd += ["--lang-priority", ",".join(("en",) + tuple(x for x in SEEN if x != "en"))]
        run(cmd, f"{work}/build.{fmt}.log")
        table = f"{work}/canonical.canonical.names" if fmt == "canonical" else f"{work}/kb.names"
        trees[fmt] = (f"{work}/{fmt}.trie", table)
    return trees


def targets(train, fmt: str, canonical: Dict[str, str], names_of: Dict[str, List[Tuple[str, str]]],
            group_size: int, rng: random.Random):
    """(source, target, group id) lines; a group (group_size > 1) is the sentence's own name first,
    then up to group_size - 1 other names of the entity, in a seeded random order."""
    from genre_fairseq.identifiers import format_identifier

    out = []
    for i, (source, entity, lang, name) in enumerate(train):
        if fmt == "canonical":
            out.append((source, canonical[entity], i))
            continue
        names = [(lang, name)]
        if group_size > 1:
            others = [x for x in names_of[entity] if x != (lang, name)]
            names += rng.sample(others, min(group_size - 1, len(others)))
        out.extend((source, format_identifier(n, lg, fmt), i) for lg, n in names)
    return out


def train_model(work: str, config: str, pairs, spm_model: str, dict_path: str, args) -> float:
    """Binarize, initialize (quickstart's init_model.py) and train one config; returns the training wall time."""
    import spm as qs_spm

    d = f"{work}/{config}"
    os.makedirs(d, exist_ok=True)
    write_lines(f"{d}/train.source", (p[0] for p in pairs))
    write_lines(f"{d}/train.target", (p[1] for p in pairs))
    for side in ("source", "target"):
        with open(f"{d}/train.{side}", encoding="utf-8") as src, open(f"{d}/train.spm.{side}", "w", encoding="utf-8") as out:
            qs_spm.encode(spm_model, src, out)
    bin_dir = f"{d}/bin"
    if os.path.isdir(bin_dir):
        shutil.rmtree(bin_dir)
    run(["fairseq-preprocess", "--source-lang", "source", "--target-lang", "target", "--trainpref", f"{d}/train.spm",
         "--destdir", bin_dir, "--srcdict", dict_path, "--joined-dictionary", "--workers", "1"], f"{d}/preprocess.log")
    criterion = CONFIGS[config][1]
    extra = []
    if criterion == "genre_marginal":
        # group ids: consecutive lines of one sentence share one
        write_lines(f"{bin_dir}/train.group", (str(p[2]) for p in pairs))
        extra = ["--target-groups"]
    model_args = [bin_dir, "--user-dir", PLUGIN, *MODEL_ARGS, "--seed", str(args.seed)]
    run([sys.executable, os.path.join(QUICKSTART, "init_model.py"), "--output", f"{d}/init.pt", "--", *model_args],
        f"{d}/init.log")
    started = time.time()
    run(["fairseq-train", *model_args, *extra, "--restore-file", f"{d}/init.pt", "--reset-optimizer",
         "--reset-lr-scheduler", "--reset-meters", "--reset-dataloader", "--optimizer", "adam",
         "--adam-betas", "(0.9,0.98)", "--lr", "0.002", "--lr-scheduler", "inverse_sqrt", "--warmup-updates", "200",
         "--criterion", criterion, "--label-smoothing", "0.1", "--max-tokens", str(args.max_tokens),
         "--max-update", str(args.updates), "--cpu", "--num-workers", "0", "--save-dir", f"{d}/ckpt",
         "--no-epoch-checkpoints", "--no-progress-bar", "--log-interval", "250", "--disable-validation"],
        f"{d}/train.log")
    return time.time() - started


def _shown(entity) -> str:
    """An entity's id for predictions.tsv ("-" when there is none, or no entity)."""
    return (entity["id"] or "-") if entity else "-"


def evaluate(work: str, config: str, tree_path: str, table_path: str, spm_model: str, tests, batch_size: int,
             candidate_multiple: int = 2, suffix: str = ""):
    """{test set: {"marginalized": accuracy, "best_name": accuracy}} of one trained config."""
    from genre_fairseq.hub import mGENRE
    from genre_fairseq.name_table import NameTable
    from genre_fairseq.prefix_tree import PrefixTree

    ckpt = f"{work}/{config}/ckpt"
    for side in ("source", "target"):
        shutil.copyfile(f"{work}/{config}/bin/dict.{side}.txt", f"{ckpt}/dict.{side}.txt")
    model = mGENRE.from_pretrained(ckpt, "checkpoint_last.pt", sentencepiece_model=spm_model, device="cpu")
    tree, table = PrefixTree.load(tree_path), NameTable.load(table_path)
    result, rows = {}, []
    for name, examples in tests.items():
        result[name] = {}
        # one decoding: an entity's best-name score is the first (highest) of its member scores
        ranked = model.sample([x[0] for x in examples], beam=10, trie=tree, name_table=table,
                              marginalize=True, max_len_b=32, batch_size=batch_size,
                              candidate_multiple=candidate_multiple)
        top = {True: [e[0] if e else None for e in ranked],
               False: [max(e, key=lambda entity: entity["scores"][0]) if e else None for e in ranked]}
        for marginalize, best in top.items():
            hits: Dict[str, List[bool]] = defaultdict(list)
            for (_, gold, lang), entity in zip(examples, best):
                hits[lang].append(entity is not None and entity["id"] == gold)
            result[name]["marginalized" if marginalize else "best_name"] = accuracy(hits)
        rows += [(name, lang, gold, _shown(m), m["texts"][0] if m else "", _shown(b), source)
                 for (source, gold, lang), m, b in zip(examples, top[True], top[False])]
    # test set, lang, gold, top entity (marginalized), its best identifier, top entity (best name), source
    write_lines(f"{work}/{config}/predictions{suffix}.tsv", ("\t".join(r) for r in rows))
    return result


def markdown(results: dict, facts: dict) -> str:
    """The results table: rows = configs, columns = test set x inference marginalization, micro / macro %."""
    head = ("| model (training) | unseen langs, best name | unseen langs, marginalized | "
            "held-out entities, best name | held-out entities, marginalized |")
    lines = [head, "|" + " --- |" * 5]
    for config, r in results.items():
        cells = [f"{100 * r[t][m]['micro']:.1f} / {100 * r[t][m]['macro']:.1f}"
                 for t in ("unseen", "seen") for m in ("best_name", "marginalized")]
        lines.append(f"| {config} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(f"micro / macro accuracy (%), {facts['unseen_mentions']} unseen-language mentions "
                 f"({', '.join(UNSEEN)}), {facts['seen_mentions']} mentions of held-out entities in {', '.join(SEEN)}.")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    try:
        return _main(argv)
    except (RuntimeError, OSError, ValueError) as e:
        print(f"cldr_mel: error: {e}", file=sys.stderr)
        return 2


def _main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", required=True, help="work directory (created; reruns overwrite)")
    parser.add_argument("--configs", default=",".join(CONFIGS), help=f"comma-separated subset of {', '.join(CONFIGS)}")
    parser.add_argument("--updates", type=int, default=3000, help="training updates per model (default 3000)")
    parser.add_argument("--max-tokens", type=int, default=1024, help="tokens per batch (default 1024)")
    parser.add_argument("--per-name", type=int, default=4, help="training sentences per (entity, language) name")
    parser.add_argument("--holdout", type=float, default=0.1, help="share of entities never trained on (default 0.1)")
    parser.add_argument("--seen-test", type=int, default=900, help="test mentions of held-out entities (default 900)")
    parser.add_argument("--unseen-per-lang", type=int, default=200, help="test mentions per unseen language (default 200)")
    parser.add_argument("--group-size", type=int, default=5, help="lang_name+M: names per target group (default 5)")
    parser.add_argument("--vocab-size", type=int, default=2000, help="SentencePiece pieces (default 2000)")
    parser.add_argument("--batch-size", type=int, default=64, help="sentences per decoding batch")
    parser.add_argument("--jobs", type=int, default=1, help="models trained at once, one thread each (default 1)")
    parser.add_argument("--max-entities", type=int, help="keep this many entities, drawn at random (smoke runs)")
    parser.add_argument("--candidate-multiple", default="2", metavar="M[,M...]",
                        help="candidates per search step, in beams: 2 (default) or 1 (the reference GENRE search); "
                             "a list (2,1) evaluates the same models with each, the first giving the main table")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    try:
        multiples = [int(m) for m in args.candidate_multiple.split(",")]
    except ValueError:
        multiples = []
    if not multiples or any(m not in (1, 2) for m in multiples):
        parser.error(f"--candidate-multiple: a comma-separated list of 1 and 2, got {args.candidate_multiple!r}")
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = [c for c in configs if c not in CONFIGS]
    if unknown or not configs:
        parser.error(f"--configs: unknown {', '.join(unknown) or '(none given)'}; choose from {', '.join(CONFIGS)}")
    if args.jobs < 1:
        parser.error("--jobs must be >= 1")
    if not 0 < args.holdout < 1:
        parser.error("--holdout must be between 0 and 1")
    logging.getLogger("fairseq").setLevel(logging.WARNING)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import make_data
    import make_kb
    import spm as qs_spm

    from genre_fairseq.name_table import NameTable

    started = time.time()
    work = os.path.abspath(args.work)
    os.makedirs(work, exist_ok=True)
    rng = random.Random(args.seed)
    kb = list(make_kb.cldr_names(SEEN))
    unseen_rows = list(make_kb.cldr_names(UNSEEN))
    if args.max_entities:
        keep = set(rng.sample(sorted({r[0] for r in kb}), args.max_entities))
        kb, unseen_rows = [r for r in kb if r[0] in keep], [r for r in unseen_rows if r[0] in keep]
    write_lines(f"{work}/kb.tsv", ("\t".join(r) for r in kb))
    templates = make_data.read_templates(os.path.join(QUICKSTART, "templates.tsv"))
    held_out = split_entities(kb, args.holdout, rng)
    train, tests = make_examples(kb, unseen_rows, templates, held_out, args, rng)
    print(f"KB: {len(kb):,} names of {len({r[0] for r in kb}):,} entities in {len(SEEN)} languages; "
          f"{len(held_out):,} entities held out; {len(train):,} training sentences; "
          f"test: {len(tests['unseen']):,} unseen-language and {len(tests['seen']):,} held-out-entity mentions", flush=True)

    # one SentencePiece model for every config, on the names of all 16 languages, the training sentences
    # and the identifiers of both language formats (so that " >> " and the codes are pieces)
    from genre_fairseq.identifiers import format_identifier

    write_lines(f"{work}/spm_input.txt", [r[2] for r in kb + unseen_rows] + [t[0] for t in train]
                + [format_identifier(n, lg, f) for _, lg, n in kb for f in ("name_lang", "lang_name")])
    dict_path = qs_spm.train([f"{work}/spm_input.txt"], f"{work}/spm", args.vocab_size)
    spm_model = f"{work}/spm.model"
    trees = build_trees(work, spm_model, dict_path)
    with NameTable.load(trees["canonical"][1]) as ctable:
        canonical = {e: ctable.names(e)[0][1] for e in {r[0] for r in kb}}
    names_of: Dict[str, List[Tuple[str, str]]] = defaultdict(list)
    for e, lang, name in kb:
        names_of[e].append((lang, name))
    prepared = time.time() - started
    print(f"prepared in {prepared:.0f} s", flush=True)

    results, facts = {}, {"updates": args.updates, "seed": args.seed, "jobs": args.jobs, "train_seconds": {}, "eval_seconds": {},
                          "unseen_mentions": len(tests["unseen"]), "seen_mentions": len(tests["seen"]),
                          "train_sentences": len(train), "kb_names": len(kb), "held_out_entities": len(held_out)}
    def train_config(config: str) -> Tuple[str, float, int]:
        fmt, criterion = CONFIGS[config]
        group = args.group_size if criterion == "genre_marginal" else 1
        pairs = targets(train, fmt, canonical, names_of, group, random.Random(args.seed))
        return config, train_model(work, config, pairs, spm_model, dict_path, args), len(pairs)

    # each training is one single-threaded fairseq-train process: --jobs of them run side by side
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        for config, seconds, lines in pool.map(train_config, configs):
            facts["train_seconds"][config] = round(seconds, 1)
            print(f"{config}: trained {seconds:.0f} s on {lines:,} target lines", flush=True)
    by_multiple: Dict[int, dict] = {m: {} for m in multiples}
    for config in configs:
        fmt = CONFIGS[config][0]
        t = time.time()
        for i, m in enumerate(multiples):
            by_multiple[m][config] = evaluate(work, config, *trees[fmt], spm_model, tests, args.batch_size,
                                              candidate_multiple=m, suffix="" if i == 0 else f".multiple{m}")
            r = by_multiple[m][config]
            print(f"{config} (candidate multiple {m}): unseen {100 * r['unseen']['marginalized']['micro']:.1f}, "
                  f"held-out {100 * r['seen']['marginalized']['micro']:.1f} (micro %, marginalized)", flush=True)
        facts["eval_seconds"][config] = round(time.time() - t, 1)
    results = by_multiple[multiples[0]]
    facts["candidate_multiple"] = multiples[0]
    facts["wall_seconds"] = round(time.time() - started, 1)
    with open(f"{work}/results.json", "w", encoding="utf-8") as f:
        json.dump({"results": results, "facts": facts, "argv": sys.argv[1:] if argv is None else list(argv),
                   "by_candidate_multiple": {str(m): r for m, r in by_multiple.items()}}, f, indent=1)
    table = markdown(results, facts)
    for m in multiples[1:]:
        table += f"\nThe same models, candidate multiple {m} (first table: {multiples[0]}):\n\n" + markdown(by_multiple[m], facts)
    with open(f"{work}/results.md", "w", encoding="utf-8") as f:
        f.write(table)
    print(table + f"\nwall time {facts['wall_seconds']:.0f} s; {work}/results.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
