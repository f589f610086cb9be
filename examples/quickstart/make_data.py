"""Training and validation pairs for the quickstart model: a CLDR name in a templated sentence -> 'name >> lang'.

Source: a template of the name's language and type (templates.tsv) with the name marked
``[START] name [END]``; target: the name+lang identifier ``name >> lang``. Every name of the KB
appears in training (the KB is closed: linking, not discovery), each in ``--per-name`` of the
training templates of its (lang, type). Shares of the training sentences are varied, so that the
tiny model learns to copy the marked mention whatever surrounds it rather than to memorize
(template, name) pairs: ``--cut-both``: only the marked mention is kept; ``--cut-left``: the
words before it are dropped (mGENRE's inputs, too, are cut around the mention); ``--mix``: the
words before and after the mention come from two other training templates of the same language;
``--noise``: 1-12 words before and 0-6 after, drawn at random from the language's training
templates (word salad: the language shows, the sentence does not). The last template of each (lang, type) is held out: the
validation set puts ``--valid`` names drawn at random into it (seen names, unseen templates) and
writes their gold entity ids to ``valid.ids``. Deterministic given ``--seed``.
"""
from __future__ import annotations

import argparse
import logging
import os
import random
import sys
from collections import defaultdict
from typing import Dict, List, Optional, Sequence, Tuple

logging.getLogger("fairseq").setLevel(logging.WARNING)  # importing the plugin imports fairseq, which logs
from genre_fairseq.identifiers import format_identifier  # noqa: E402

TYPES = {"territory": "place", "region": "place", "language": "language", "currency": "currency"}
START, END = "[START]", "[END]"


def entity_type(entity_id: str) -> str:
    """The template type of a KB id: place (territory, region), language or currency."""
    kind = entity_id.split(":", 1)[0]
    if kind not in TYPES:
        raise ValueError(f"entity id {entity_id!r}: expected one of {', '.join(k + ':' for k in TYPES)}")
    return TYPES[kind]


def read_templates(path: str) -> Dict[Tuple[str, str], List[str]]:
    """``{(lang, type): [template, ...]}`` in file order; each template holds ``{}`` exactly once."""
    groups: Dict[Tuple[str, str], List[str]] = defaultdict(list)
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip() or line.startswith("#"):
                continue
            fields = line.rstrip("\n").split("\t")
            if len(fields) != 3 or fields[1] not in set(TYPES.values()) or fields[2].count("{}") != 1:
                raise ValueError(f"{path}:{lineno}: expected lang<TAB>place|language|currency<TAB>text with one {{}}")
            groups[(fields[0], fields[1])].append(fields[2])
    return dict(groups)


def mark(template: str, name: str) -> str:
    """The template with the marked mention in place of ``{}``."""
    return " ".join(template.replace("{}", f"{START} {name} {END}").split())


def training_source(template: str, name: str, others: List[str], words: List[str], rng: random.Random,
                    shares: Tuple[float, float, float, float]) -> str:
    """The template with the marked name, or with probabilities ``shares`` = (both, left, mix, noise):
    cut to the mention; cut before it; left and right sides from two random templates of ``others``;
    random ``words`` on both sides."""
    left, right = template.split("{}")
    draw = rng.random()
    both, cut_left, mix, noise = shares
    if draw < both:
        left, right = "", ""
    elif draw < both + cut_left:
        left = ""
    elif draw < both + cut_left + mix:
        left, right = rng.choice(others).split("{}")[0], rng.choice(others).split("{}")[1]
    elif draw < both + cut_left + mix + noise:
        left = " ".join(rng.choices(words, k=rng.randint(1, 12)))
        right = " ".join(rng.choices(words, k=rng.randint(0, 6)))
    return mark(left + " {} " + right, name)


def training_sentences(kb: List[Tuple[str, str, str]], templates: Dict[Tuple[str, str], List[str]], per_name: int,
                       shares: Tuple[float, float, float, float], rng: random.Random,
                       skip: frozenset = frozenset()) -> List[Tuple[str, str, str, str]]:
    """``(source, entity, lang, name)`` for every KB row whose entity is not in ``skip``: the name in
    ``per_name`` of the training templates (all but the last) of its (lang, type), varied by ``shares``
    (see :func:`training_source`); shuffled with ``rng``."""
    by_lang: Dict[str, List[str]] = defaultdict(list)
    for (lang, _), group in sorted(templates.items()):
        by_lang[lang].extend(group[:-1])
    words = {lang: sorted({w for t in group for w in t.replace("{}", " ").split()}) for lang, group in by_lang.items()}
    train = []
    for entity, lang, name in kb:
        if entity in skip:
            continue
        group = templates[(lang, entity_type(entity))][:-1]
        for template in rng.sample(group, min(per_name, len(group))):
            train.append((training_source(template, name, by_lang[lang], words[lang], rng, shares), entity, lang, name))
    rng.shuffle(train)
    return train


def read_kb(path: str) -> List[Tuple[str, str, str]]:
    """(entity_id, lang, name) rows of the KB TSV written by make_kb.py."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if line.strip() and not line.startswith("#"):
                columns = line.rstrip("\n").split("\t")
                if len(columns) != 3:
                    raise ValueError(f"{path}:{number}: expected 3 tab-separated columns (entity_id, lang, name), "
                                     f"got {len(columns)}")
                rows.append((columns[0], columns[1], columns[2]))
    return rows


def load_inputs(kb_path: str, templates_path: str, outdir: Optional[str] = None, outputs: Sequence[str] = ()):
    """The KB rows and the templates, checked: every (lang, type) of the KB needs at least 2 templates
    (the last one is held out for validation). With ``outdir``, first checks that the ``outputs``
    can be written there without replacing an input (genre_fairseq.outputs). Raises OSError or
    ValueError with the file's name."""
    if outdir is not None:
        from genre_fairseq.outputs import check_output_dir

        check_output_dir(outdir, "--outdir", [kb_path, templates_path], files=outputs)
    templates = read_templates(templates_path)
    kb = read_kb(kb_path)
    for entity, lang, _ in kb:
        if len(templates.get((lang, entity_type(entity)), [])) < 2:
            raise ValueError(f"{templates_path}: needs at least 2 templates for ({lang}, {entity_type(entity)})")
    return kb, templates


def write_pairs(prefix: str, pairs: List[Tuple[str, str, str]]) -> None:
    """``prefix.source``, ``prefix.target`` and ``prefix.ids`` (gold entity ids), one pair a line."""
    for ext, column in (("source", 0), ("target", 1), ("ids", 2)):
        with open(f"{prefix}.{ext}", "w", encoding="utf-8") as f:
            f.writelines(p[column] + "\n" for p in pairs)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kb", required=True, help="the KB TSV of make_kb.py")
    parser.add_argument("--templates", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates.tsv"))
    parser.add_argument("--outdir", required=True, help="where to write {train,valid}.{source,target,ids}")
    parser.add_argument("--per-name", type=int, default=4, help="training sentences per name (default 4)")
    parser.add_argument("--cut-both", type=float, default=0.1,
                        help="share of training sentences reduced to the marked mention (default 0.1)")
    parser.add_argument("--cut-left", type=float, default=0.1,
                        help="share of training sentences without the words left of the mention (default 0.1)")
    parser.add_argument("--mix", type=float, default=0.3,
                        help="share of training sentences whose two sides come from other templates (default 0.3)")
    parser.add_argument("--noise", type=float, default=0.3,
                        help="share of training sentences with random template words around the mention (default 0.3)")
    parser.add_argument("--valid", type=int, default=800, help="validation sentences (default 800)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    try:
        kb, templates = load_inputs(args.kb, args.templates, args.outdir,
                                    [f"{part}.{ext}" for part in ("train", "valid") for ext in ("source", "target", "ids")])
    except (OSError, ValueError) as e:
        print(f"make_data.py: error: {e}", file=sys.stderr)
        return 2
    shares = (args.cut_both, args.cut_left, args.mix, args.noise)
    if min(shares) < 0 or sum(shares) > 1:
        print("make_data.py: error: --cut-both, --cut-left, --mix and --noise must be >= 0 and sum to at most 1",
              file=sys.stderr)
        return 2
    rng = random.Random(args.seed)
    train = [(source, format_identifier(name, lang, "name_lang"), entity)
             for source, entity, lang, name in training_sentences(kb, templates, args.per_name, shares, rng)]
    valid = []
    for entity, lang, name in rng.sample(kb, min(args.valid, len(kb))):
        held_out = templates[(lang, entity_type(entity))][-1]
        valid.append((mark(held_out, name), format_identifier(name, lang, "name_lang"), entity))
    os.makedirs(args.outdir, exist_ok=True)
    write_pairs(os.path.join(args.outdir, "train"), train)
    write_pairs(os.path.join(args.outdir, "valid"), valid)
    print(f"{args.outdir}: {len(train):,} training pairs ({len(kb):,} names x {args.per_name} templates), "
          f"{len(valid):,} validation pairs (held-out templates)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
