"""EndToEndSearch: allowed sets against a brute-force oracle, exact hand-set decoding, bad input."""

import math
import random

import pytest
import torch

from genre_fairseq.candidates import CandidateSet
from genre_fairseq.e2e_search import (
    EndToEndSearch, EndToEndSequenceGenerator, LinkedSpan, MarkupTokens, mention_tree, parse_output,
)
from genre_fairseq.prefix_tree import PrefixTree, dictionary_fingerprint
from genre_fairseq.search import DEAD_SCORE
from tests.toy import make_dictionary

D = make_dictionary(6)  # w0..w5 = ids 4..9
for _s in ("{", "}", "[", "]"):
    D.add_symbol(_s)
EOS, PAD = D.eos(), D.pad()
MK = MarkupTokens.from_dictionary(D, ["{", "}", "[", "]"])
O, C, B, E = MK.as_tuple()
W = [D.index(f"w{i}") for i in range(6)]
# identifiers: [w3], [w3 w4], [w5]
IDENTS = [(W[3],), (W[3], W[4]), (W[5],)]
ENTITY_TREE = PrefixTree.from_sequences([[EOS, *i, EOS] for i in IDENTS], start_token=EOS,
                                        dictionary_fingerprint=dictionary_fingerprint(D))
MENTIONS = [(W[0],), (W[0], W[1]), (W[1], W[2], W[0]), (W[2],)]


def oracle(src, mentions=None, cands=None, max_len=3):
    """Every valid output (ending with EOS), by brute force; cands: {(start, end): [identifier, ...]}."""
    out = []

    def rec(p, acc):
        if p == len(src):
            out.append(tuple(acc) + (EOS,))
            return
        rec(p + 1, acc + [src[p]])
        for q in range(p + 1, len(src) + 1):
            span = tuple(src[p:q])
            if (mentions is not None and span not in mentions) or (mentions is None and q - p > max_len):
                continue
            idents = IDENTS if cands is None or (p, q) not in cands else cands[(p, q)]
            for ident in idents:
                rec(q, acc + [O, *span, C, B, *ident, E])

    rec(0, [])
    return set(out)


def allowed_along(search, src, prefix):
    """The search's allowed set after each prefix of ``prefix``, driving its own transitions."""
    states = search.initial_states(1)
    rows = torch.zeros(1, dtype=torch.long)
    sets = []
    for t in list(prefix) + [None]:
        tokens, valid, ent_next = search.expand(states, rows)
        allowed = [int(x) for x, v in zip(tokens[0].tolist(), valid[0].tolist()) if v]
        sets.append(set(allowed))
        assert len(allowed) == len(set(allowed)), "a token offered twice"
        if t is None:
            break
        col = [i for i, (x, v) in enumerate(zip(tokens[0].tolist(), valid[0].tolist())) if v and x == t]
        assert col, f"token {t} not allowed"
        states = search.transition(states, rows, torch.tensor(col[:1]), torch.tensor([t]), ent_next)
    return sets


def oracle_allowed(valid, prefix):
    n = len(prefix)
    return {s[n] for s in valid if len(s) > n and s[:n] == tuple(prefix)}


SOURCES = [[W[0]], [W[0], W[1]], [W[1], W[2], W[0]], [W[0], W[1], W[2], W[0]], [W[2], W[2], W[0], W[1]]]


def _check_oracle(search, src, valid, rng, n_prefixes=25):
    search.set_batch([src], span_candidates=getattr(search, "_test_cands", None))
    seqs = sorted(valid)
    for seq in rng.sample(seqs, min(n_prefixes, len(seqs))):
        cut = rng.randrange(len(seq))
        prefix = seq[:cut]
        got = allowed_along(search, src, prefix)
        for i, g in enumerate(got):
            assert g == oracle_allowed(valid, prefix[:i]), (src, prefix[:i])


@pytest.mark.parametrize("src", SOURCES)
def test_allowed_sets_equal_the_oracle_without_mention_tree(src):
    search = EndToEndSearch(D, ENTITY_TREE, MK, max_mention_len=3)
    _check_oracle(search, src, oracle(src, max_len=3), random.Random(len(src)))


@pytest.mark.parametrize("src", SOURCES)
def test_allowed_sets_equal_the_oracle_with_mention_tree(src):
    search = EndToEndSearch(D, ENTITY_TREE, MK, mention_tree=mention_tree(MENTIONS, D), max_mention_len=3)
    _check_oracle(search, src, oracle(src, mentions=set(MENTIONS)), random.Random(1 + len(src)))


@pytest.mark.parametrize("src", SOURCES)
def test_allowed_sets_equal_the_oracle_with_candidates(src):
    search = EndToEndSearch(D, ENTITY_TREE, MK, mention_tree=mention_tree(MENTIONS, D), max_mention_len=3)
    # every allowed span of this source gets its own candidates, some none (the full tree)
    cands, sets = {}, {}
    for p in range(len(src)):
        for q in range(p + 1, len(src) + 1):
            if tuple(src[p:q]) in MENTIONS and (p + q) % 3:
                idents = [IDENTS[(p + q) % 3]] + ([IDENTS[1]] if q - p > 1 else [])
                cands[(p, q)] = idents
                sets[(0, p, q)] = CandidateSet("given", ["x"], [[EOS, *i, EOS] for i in idents])
    search._test_cands = sets
    _check_oracle(search, src, oracle(src, mentions=set(MENTIONS), cands=cands), random.Random(2 + len(src)))


def test_every_oracle_sequence_is_accepted_and_parsed():
    src = [W[0], W[1], W[2], W[0]]
    search = EndToEndSearch(D, ENTITY_TREE, MK, mention_tree=mention_tree(MENTIONS, D), max_mention_len=3)
    search.set_batch([src])
    valid = oracle(src, mentions=set(MENTIONS))
    assert len(valid) > 50
    for seq in valid:
        allowed_along(search, src, seq)  # raises if a token is not allowed
        spans = parse_output(src, seq, MK, EOS)
        assert spans is not None
        for s in spans:
            assert tuple(src[s.start:s.end]) in MENTIONS and tuple(s.entity_tokens) in IDENTS


def test_parse_output_hand_example_and_invalid():
    src = [W[0], W[1], W[2]]
    out = [O, W[0], C, B, W[3], W[4], E, W[1], O, W[2], C, B, W[5], E, EOS]
    assert parse_output(src, out, MK, EOS) == [LinkedSpan(0, 1, [W[3], W[4]]), LinkedSpan(2, 3, [W[5]])]
    assert parse_output(src, [W[0], W[1], EOS], MK, EOS) is None  # the source is not all copied
    assert parse_output(src, [W[0], W[2], W[1], EOS], MK, EOS) is None


def _gen_setup(tables, src_rows, **kw):
    from tests.toy import TableModel

    model = TableModel(D, tables).eval()
    gen = EndToEndSequenceGenerator([model], D, entity_tree=ENTITY_TREE, markup=MK, beam_size=2,
                                    max_len_b=20, **kw)
    src = torch.tensor(src_rows)
    sample = {"id": torch.arange(len(src_rows)),
              "net_input": {"src_tokens": src, "src_lengths": torch.full((len(src_rows),), src.size(1))}}
    return gen, sample


def _dist(probs):
    row = [1e-6] * len(D)
    for tok, p in probs.items():
        row[tok] = p
    return row


def test_hand_set_probabilities_give_the_expected_spans_and_scores():
    # source [w0 w1]: the model prefers "{ w0 } [ w5 ] w1"
    # The toy decoder reads the example from the first source token: example 0 = source starting with w0.
    steps = [
        {O: 0.6, W[0]: 0.4},
        {W[0]: 0.9, C: 0.1},
        {C: 0.8, W[1]: 0.2},
        {B: 1.0},
        {W[5]: 0.7, W[3]: 0.3},
        {E: 0.9, W[4]: 0.1},
        {W[1]: 0.5, O: 0.5},
        {EOS: 1.0},
    ] + [{EOS: 1.0}] * 12
    gen, sample = _gen_setup([[_dist(s) for s in steps]], [[W[0], W[1], EOS]])
    hypos = gen.generate([gen.model.single_model], sample)[0]
    best = hypos[0]
    assert best["tokens"].tolist() == [O, W[0], C, B, W[5], E, W[1], EOS]
    assert best["spans"] == [LinkedSpan(0, 1, [W[5]])]
    # every token's probability, renormalized by nothing: the search only masks
    expected = [0.6, 0.9, 0.8, 1.0, 0.7, 0.9, 0.5, 1.0]
    got = best["positional_scores"].tolist()
    assert got == pytest.approx([math.log(p) for p in expected], abs=1e-4)
    assert float(best["score"]) == pytest.approx(sum(math.log(p) for p in expected) / 8, abs=1e-4)
    for h in hypos:
        assert float(h["score"]) > DEAD_SCORE / 2 and parse_output([W[0], W[1]], h["tokens"].tolist(), MK, EOS) is not None


def test_no_mention_when_the_model_copies():
    steps = [{W[0]: 0.9, O: 0.1}, {W[1]: 0.9, O: 0.1}, {EOS: 0.9, W[2]: 0.1}] + [{EOS: 1.0}] * 17
    gen, sample = _gen_setup([[_dist(s) for s in steps]], [[W[0], W[1], EOS]])
    best = gen.generate([gen.model.single_model], sample)[0][0]
    assert best["tokens"].tolist() == [W[0], W[1], EOS] and best["spans"] == []


def test_bad_input():
    search = EndToEndSearch(D, ENTITY_TREE, MK)
    with pytest.raises(ValueError, match="source 0 is empty"):
        search.set_batch([[]])
    with pytest.raises(ValueError, match="empty batch"):
        search.set_batch([])
    with pytest.raises(ValueError, match="need a mention tree"):
        search.set_batch([[W[0]]], span_candidates={(0, 0, 1): CandidateSet("given", ["x"], [[EOS, W[3], EOS]])})
    other = make_dictionary(7)
    foreign = PrefixTree.from_sequences([[W[0], EOS]], dictionary_fingerprint=dictionary_fingerprint(other))
    with pytest.raises(ValueError, match="mention tree was built for another dictionary"):
        EndToEndSearch(D, ENTITY_TREE, MK, mention_tree=foreign)
    with pytest.raises(ValueError, match="must differ"):
        EndToEndSearch(D, ENTITY_TREE, MarkupTokens(O, O, B, E))
    with pytest.raises(ValueError, match="not in the target dictionary"):
        MarkupTokens.from_dictionary(D, ["<<", "}", "[", "]"])
    with pytest.raises(RuntimeError, match="set_batch"):
        EndToEndSearch(D, ENTITY_TREE, MK).step(0, torch.zeros(1, 1, len(D)), None)


def test_batch_of_two_with_candidates_and_a_sentence_finishing_first():
    # sentence 0 = [w0 w1] copies; sentence 1 = [w2] links w2, its candidates only [w3] (the model prefers w5)
    copy = [{W[0]: 0.9, O: 0.1}, {W[1]: 0.9, O: 0.1}, {EOS: 1.0}] + [{EOS: 1.0}] * 17
    link = [{O: 0.9, W[2]: 0.1}, {W[2]: 1.0}, {C: 1.0}, {B: 1.0}, {W[5]: 0.6, W[3]: 0.3, W[4]: 0.1},
            {E: 0.95, W[4]: 0.05}, {EOS: 1.0}] + [{EOS: 1.0}] * 13
    tables = [[_dist(s) for s in copy], [_dist(s) for s in copy], [_dist(s) for s in link]]

    def cands(sources):
        assert sources == [[W[0], W[1]], [W[2]]]
        return {(1, 0, 1): CandidateSet("given", ["Q3"], [[EOS, W[3], EOS]])}

    gen, sample = _gen_setup(tables, [[W[0], W[1], EOS], [W[2], EOS, PAD]],
                             mention_tree=mention_tree(MENTIONS, D), span_candidates=cands)
    sample["id"] = torch.tensor([7, 3])  # fairseq's ids need not be positions
    out = gen.generate([gen.model.single_model], sample)
    assert out[0][0]["tokens"].tolist() == [W[0], W[1], EOS] and out[0][0]["spans"] == []
    best = out[1][0]
    assert best["tokens"].tolist() == [O, W[2], C, B, W[3], E, EOS]
    assert best["spans"] == [LinkedSpan(0, 1, [W[3]])]
    expected = [0.9, 1.0, 1.0, 1.0, 0.3, 0.95, 1.0]
    assert best["positional_scores"].tolist() == pytest.approx([math.log(p) for p in expected], abs=1e-4)
    for hypos in out:
        for h in hypos:
            for s in h["spans"]:
                assert s.entity_tokens == [W[3]]  # never outside the candidates


def test_gold_spans_round_trip_through_targets_and_parse_output():
    """text -> pieces -> training target with markup -> (the model reproduces it) -> spans -> the gold characters."""
    import os

    import sentencepiece

    from genre_fairseq import markup as mk

    sp = sentencepiece.SentencePieceProcessor()
    sp.Load(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                         "examples", "quickstart", "model", "spm.model"))
    text = "Zürich and Zürich: cafe\u0301 😀 Łódź met 𝔘nicode."
    gold = [(0, 6, "Zürich"), (11, 17, "Zürich"), (19, 24, "Café"), (27, 31, "Łódź"), (36, 43, "Unicode")]
    toks = mk.sentencepiece_tokens(sp, text)
    spans = []
    for a, b, ident in gold:
        first, last, snapped = mk.snap_to_tokens(text, toks, a, b)
        assert not snapped
        spans.append((first, last, sp.encode(ident, out_type=str)))
    target = mk.target_symbols([t.symbol for t in toks], spans, ["{", "}", "[", "]"])
    vocab = {}
    ids = lambda syms: [vocab.setdefault(s, 10 + len(vocab)) for s in syms]  # noqa: E731
    markup = MarkupTokens(*ids(["{", "}", "[", "]"]))
    source_ids = ids([t.symbol for t in toks])
    out = parse_output(source_ids, ids(target) + [EOS], markup, EOS)
    inverse = {v: k for k, v in vocab.items()}
    got = [mk.token_span_to_chars(text, toks, s.start, s.end) + (sp.decode([inverse[i] for i in s.entity_tokens]),)
           for s in out]
    assert got == gold


def test_max_len_too_short_gives_an_empty_nbest_list_not_a_truncated_copy():
    steps = [{W[0]: 0.9, O: 0.1}, {W[1]: 0.9, O: 0.1}, {EOS: 1.0}] + [{EOS: 1.0}] * 17
    gen, sample = _gen_setup([[_dist(s) for s in steps]], [[W[0], W[1], EOS]])
    gen.max_len_b = 1  # room for one token: the source (2 tokens) cannot be copied
    assert gen.generate([gen.model.single_model], sample)[0] == []


class _Mentions:
    """A mention table stand-in: exact text -> [(identifier, count)]."""

    def __init__(self, table):
        self.table = table

    def candidates(self, mention, k=None):
        return self.table.get(mention, [])[:k]


def test_mention_candidates_assign_each_allowed_span_its_texts_candidates():
    from genre_fairseq.e2e_search import mention_candidates

    search = EndToEndSearch(D, ENTITY_TREE, MK, mention_tree=mention_tree(MENTIONS, D), max_mention_len=3)
    names = {"w3": (W[3],), "w3 w4": (W[3], W[4]), "w5": (W[5],)}
    table = _Mentions({"w0": [("w5", 9), ("w3", 2)], "w0 w1": [("w3 w4", 5)], "w2": [("nowhere", 1)]})

    def encode(ident):
        return [EOS, *names[ident], EOS] if ident in names else None

    sources = [[W[0], W[1], W[2], W[0]], [W[2]]]
    got = mention_candidates(search, sources, lambda ids: " ".join(D[i] for i in ids), mention_table=table, k=1,
                             encode=encode)
    # spans the tree allows: (0,0,1) w0, (0,0,2) w0 w1, (0,1,4) w1 w2 w0, (0,2,3) w2, (0,3,4) w0, (1,0,1) w2;
    # w2's candidate is not in the tree, w1 w2 w0 has none: those use the whole tree
    assert {key: cs.sequences for key, cs in got.items()} == {
        (0, 0, 1): [[EOS, W[5], EOS]], (0, 0, 2): [[EOS, W[3], W[4], EOS]], (0, 3, 4): [[EOS, W[5], EOS]]}
    assert search.span_table(sources).sum().item() == 6
    search.set_batch(sources, span_candidates=got)  # accepted as is
    with pytest.raises(ValueError, match="need a mention tree"):
        mention_candidates(EndToEndSearch(D, ENTITY_TREE, MK), sources, str, mention_table=table, k=1, encode=encode)


def test_genre_trie_build_mentions_compiles_a_mention_tree(tmp_path, capsys):
    import os

    import sentencepiece
    from fairseq.data import Dictionary

    from genre_fairseq.name_table import MentionTable
    from trie_tools.cli import main

    model = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples", "quickstart", "model")
    spm_path, dict_path = os.path.join(model, "spm.model"), os.path.join(model, "dict.target.txt")
    table = tmp_path / "kb.mentions"
    MentionTable.build([("Berlin", "Q64", 5), ("Berlin", "Q1", 1), ("Angela Merkel", "Q567", 3), ("Fanti", "Q9", 1)],
                       str(table))
    out = tmp_path / "kb.mtrie"
    assert main(["build", "--mentions", str(table), "--sentencepiece", spm_path, "--dict", dict_path,
                 "--output", str(out), "--quiet", "--workers", "1"]) == 0
    tree = PrefixTree.load(str(out))
    d = Dictionary.load(dict_path)
    sp = sentencepiece.SentencePieceProcessor()
    sp.Load(spm_path)
    # "Berlin" has no first piece with the space: SentencePiece writes a lone "▁" and the word's
    # pieces; "Angela" starts with "▁An"
    assert sp.encode("Berlin", out_type=str)[0] == "\u2581" and sp.encode("Angela Merkel", out_type=str)[0] != "\u2581"
    # the mention as a sentence has it: its pieces inside "In Berlin" are the same pieces, less the
    # lone "▁" of a split word (it belongs to the space before the mention)
    pieces = {m: sp.encode(m, out_type=str) for m in ("Berlin", "Angela Merkel", "Fanti")}
    expected = {tuple([d.index(p) for p in (ps[1:] if ps[0] == "\u2581" else ps)] + [d.eos()]) for ps in pieces.values()}
    assert set(tree) == expected and tree.start_token is None
    # the Python helper applies the same rule to the mentions encoded alone
    alone = [[d.index(p) for p in ps] for ps in pieces.values()]
    assert set(mention_tree(alone, d)) == expected
    # what genre-prepare --end-to-end marks in a text (the tokens covering the gold characters) is in the tree
    from genre_fairseq.markup import sentencepiece_tokens, snap_to_tokens

    text = "Man spricht Fanti in Berlin, sagt Angela Merkel."
    tokens = sentencepiece_tokens(sp, text)
    for mention in ("Fanti", "Berlin", "Angela Merkel"):
        start = text.index(mention)
        a, b, snapped = snap_to_tokens(text, tokens, start, start + len(mention))
        assert not snapped and tuple(d.index(t.symbol) for t in tokens[a:b]) + (d.eos(),) in set(tree), mention
    EndToEndSearch(d, PrefixTree.from_sequences([[d.eos(), 10, d.eos()]], start_token=d.eos()),
                   MarkupTokens(4, 5, 6, 7), mention_tree=tree)  # accepted: same dictionary
    assert main(["build", "--mentions", str(table), "--format", "name_lang", "--sentencepiece", spm_path,
                 "--dict", dict_path, "--output", str(out)]) == 2
    assert "--format does not apply to --mentions" in capsys.readouterr().err
    assert main(["build", "--mentions", str(tmp_path / "missing"), "--sentencepiece", spm_path, "--dict", dict_path,
                 "--output", str(out)]) == 2
    assert "file not found" in capsys.readouterr().err
