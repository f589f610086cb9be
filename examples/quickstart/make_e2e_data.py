"""Documents for the quickstart's end-to-end model: raw sentences with 0-3 CLDR names, gold spans in characters.

Writes ``train.jsonl`` and ``valid.jsonl`` in the anchors JSON-lines format that ``genre-prepare
--end-to-end`` and ``genre-evaluate --end-to-end`` read (``{"id", "lang", "text", "mentions":
[{"start", "end", "entity_id"}]}``, character offsets, end exclusive).

A document is one to three short sentences of one language, each a template of ``templates.tsv``
(of the name's language and type) with a KB name in its slot, so a document mentions one to three
entities; ``--zero`` of the documents mention none: their slots hold ordinary words of the
language's templates (no KB name), so that the model learns to copy text without marking it.
Every name of the KB is mentioned in ``--per-name`` training documents. As for the linking model
(make_data.py), the last template of each (lang, type) is held out: validation documents are built
from held-out templates only (seen names, unseen sentences), with the same mix of 0-3 mentions.
Training sentences' contexts are varied: ``--mix`` of them join halves of two templates, ``--noise``
replace the context by random ordinary words, and ``--insert`` get one to three ordinary words put
at random places. Ordinary words are the training templates' words and (unless
``--no-cldr-words``) CLDR's month, day, unit and city words of the language (make_kb.cldr_words),
never a KB name or a word of one (nor a part of a name word, nor containing one, from 4
characters): without them, every word the model had not seen in a template
was a name, and it marked unseen words of new sentences as mentions. Validation documents use the
held-out templates as written and, in documents without mentions, their words.
Deterministic given ``--seed``.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
from collections import defaultdict
from typing import Dict, List, Sequence, Tuple

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_data import END, START, entity_type, load_inputs, training_source  # noqa: E402
from make_kb import cldr_words  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
#: stripped from the ends of template words taken as ordinary words
PUNCTUATION = ".,;:!?¿¡«»\"'()“”„、。，：！？؟،"
#: shares of documents with 1, 2 and 3 mentions (among those with any)
MENTION_COUNTS = ((1, 0.4), (2, 0.35), (3, 0.25))


def fill(templates: Sequence[str], names: Sequence[str]) -> Tuple[str, List[Tuple[int, int]]]:
    """The sentences joined by spaces, ``names[i]`` in the slot of ``templates[i]`` (``None``: the
    slot was filled by an ordinary word, not a mention); the character spans of the mentions."""
    text, spans = "", []
    for template, (name, is_mention) in zip(templates, names):
        left, right = template.split("{}")
        sentence = " ".join((left + " \0 " + right).split())
        before, after = sentence.split("\0")
        if text:
            text += " "
        start = len(text) + len(before)
        text += before + name + after
        if is_mention:
            spans.append((start, start + len(name)))
    return text, spans


def vary(template: str, others: List[str], words: List[str], rng: random.Random,
         shares: Tuple[float, float, float, float], insert: float = 0.0) -> str:
    """A training sentence's template with its context varied as make_data.py varies it (``{}`` for the
    slot); then, with probability ``insert``, one to three of ``words`` put at random places in it."""
    marked = training_source(template, "\0", others, words, rng, shares)
    tokens = marked.replace(f"{START} \0 {END}", "{}").split()
    if words and rng.random() < insert:
        for _ in range(rng.randint(1, 3)):
            tokens.insert(rng.randint(0, len(tokens)), rng.choice(words))
    return " ".join(tokens)


def ordinary_words(kb: List[Tuple[str, str, str]], templates: Dict[Tuple[str, str], List[str]],
                   pick, filler: bool) -> Dict[str, List[str]]:
    """Per language, the words that are not KB names: those of the (picked) templates (without the
    punctuation at their ends) and, with
    ``filler``, CLDR's month, day, unit and city words (make_kb.cldr_words). A word is left out when
    it is a KB name or a word of one, or contains or is contained in a KB name word (both of 4 or
    more characters)."""
    kb_names: Dict[str, set] = defaultdict(set)
    for _, lang, name in kb:
        kb_names[lang].update([name, *name.split()])
    words: Dict[str, set] = defaultdict(set)
    for (lang, _), group in templates.items():
        words[lang].update(w.strip(PUNCTUATION) for t in pick(group) for w in t.replace("{}", " ").split())
    if filler:
        for lang in list(words):
            words[lang].update(cldr_words(lang))
    pools = {}
    for lang, pool in words.items():
        long_words = [w for w in kb_names[lang] if len(w) >= 4 and " " not in w]
        pools[lang] = sorted(w for w in pool if w not in kb_names[lang] and any(c.isalpha() for c in w)
                             and not any(n in w or (len(w) >= 4 and w in n) for n in long_words))
    return pools


def documents(kb: List[Tuple[str, str, str]], templates: Dict[Tuple[str, str], List[str]], held_out: bool,
              per_name: int, count: int, zero: float, rng: random.Random, prefix: str,
              shares: Tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0), insert: float = 0.0,
              filler: bool = False) -> List[dict]:
    """Documents from the training templates (every name ``per_name`` times; each sentence's context
    varied by ``shares`` and ``insert``, see :func:`vary`; ``filler``: CLDR words among the ordinary
    words) or from the held-out ones (``count`` mentions of random names, templates as written,
    ordinary words of the held-out templates only)."""
    pick = (lambda group: group[-1:]) if held_out else (lambda group: group[:-1])
    words = ordinary_words(kb, templates, pick, filler and not held_out)
    occurrences = [row for row in kb for _ in range(per_name)] if not held_out else \
        [rng.choice(kb) for _ in range(count)]
    rng.shuffle(occurrences)
    by_lang: Dict[str, List[Tuple[str, str, str]]] = defaultdict(list)
    for row in occurrences:
        by_lang[row[1]].append(row)
    groups: List[List[Tuple[str, str, str]]] = []
    sizes, weights = zip(*MENTION_COUNTS)
    for lang in sorted(by_lang):
        rows = by_lang[lang]
        while rows:
            k = rng.choices(sizes, weights)[0]
            groups.append(rows[:k])
            rows = rows[k:]
    langs = sorted(by_lang)
    n_zero = round(len(groups) * zero / (1 - zero)) if zero < 1 else 0
    groups += [[] for _ in range(n_zero)]
    rng.shuffle(groups)
    docs = []
    for i, group in enumerate(groups):
        if group:
            lang = group[0][1]
            chosen = [rng.choice(pick(templates[(lang, entity_type(e))])) for e, _, _ in group]
            if not held_out:
                same_lang = [t for (l2, _t), g in sorted(templates.items()) if l2 == lang for t in pick(g)]
                chosen = [vary(t, same_lang, words[lang], rng, shares, insert) for t in chosen]
            fillers = [(name, True) for _, _, name in group]
            ids = [e for e, _, _ in group]
        else:
            lang = rng.choice(langs)
            types = sorted({t for (l2, t) in templates if l2 == lang})
            chosen = [rng.choice(pick(templates[(lang, rng.choice(types))])) for _ in range(rng.randint(1, 2))]
            fillers = [(rng.choice(words[lang]), False) for _ in chosen]
            ids = []
        text, spans = fill(chosen, fillers)
        docs.append({"id": f"{prefix}{i}", "lang": lang, "text": text,
                     "mentions": [{"start": s, "end": e, "entity_id": entity} for (s, e), entity in zip(spans, ids)]})
    return docs


def write_jsonl(path: str, docs: List[dict]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for doc in docs:
            f.write(json.dumps(doc, ensure_ascii=False) + "\n")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kb", required=True, help="the KB TSV of make_kb.py")
    parser.add_argument("--templates", default=os.path.join(HERE, "templates.tsv"))
    parser.add_argument("--outdir", required=True, help="where to write train.jsonl and valid.jsonl")
    parser.add_argument("--per-name", type=int, default=3, help="training documents mentioning each name (default 3)")
    parser.add_argument("--valid", type=int, default=600, help="mentions in the validation documents (default 600)")
    parser.add_argument("--zero", type=float, default=0.1, help="share of documents without mentions (default 0.1)")
    parser.add_argument("--mix", type=float, default=0.4,
                        help="share of training sentences whose two sides come from two other templates (default 0.4)")
    parser.add_argument("--noise", type=float, default=0.3,
                        help="share of training sentences with random words of the language around the name (default 0.3)")
    parser.add_argument("--insert", type=float, default=0.3,
                        help="share of training sentences with 1-3 ordinary words put at random places (default 0.3)")
    parser.add_argument("--no-cldr-words", action="store_true",
                        help="ordinary words from the templates only (default: also CLDR's month, day, unit and "
                             "city words, make_kb.cldr_words)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    if not 0 <= args.zero < 1 or not 0 <= args.insert <= 1 or args.per_name < 1 or args.valid < 1:
        print("make_e2e_data.py: error: --zero must be in [0, 1), --insert in [0, 1], --per-name and --valid "
              "at least 1", file=sys.stderr)
        return 2
    if min(args.mix, args.noise) < 0 or args.mix + args.noise > 1:
        print("make_e2e_data.py: error: --mix and --noise must be >= 0 and sum to at most 1", file=sys.stderr)
        return 2
    try:
        kb, templates = load_inputs(args.kb, args.templates, args.outdir, ["train.jsonl", "valid.jsonl"])
    except (OSError, ValueError) as e:
        print(f"make_e2e_data.py: error: {e}", file=sys.stderr)
        return 2
    rng = random.Random(args.seed)
    train = documents(kb, templates, False, args.per_name, 0, args.zero, rng, "train-",
                      (0.0, 0.0, args.mix, args.noise), args.insert, not args.no_cldr_words)
    valid = documents(kb, templates, True, 0, args.valid, args.zero, random.Random(args.seed + 1), "valid-")
    os.makedirs(args.outdir, exist_ok=True)
    write_jsonl(os.path.join(args.outdir, "train.jsonl"), train)
    write_jsonl(os.path.join(args.outdir, "valid.jsonl"), valid)
    mentions = lambda docs: sum(len(d["mentions"]) for d in docs)  # noqa: E731
    print(f"{args.outdir}: {len(train):,} training documents ({mentions(train):,} mentions), "
          f"{len(valid):,} validation documents ({mentions(valid):,} mentions, held-out templates)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
