"""Candidate-restricted decoding: the per-batch forest against brute force, and the beam search on it."""

import math
import random

import pytest
import torch

from genre_fairseq.candidates import (
    FOREST_BASE, CandidateSet, CandidateTrees, IdentifierEncoder, mention_text, resolve_candidates)
from genre_fairseq.name_table import MentionTable, NameTable
from genre_fairseq.prefix_tree import PrefixTree
from genre_fairseq.search import PrefixTreeSequenceGenerator
from tests.toy import TableModel, make_dictionary, table_sample

EOS = 2


def _allowed(seqs, prefix):
    """Brute force: the tokens that follow ``prefix`` in some sequence of ``seqs``."""
    n = len(prefix)
    return sorted({s[n] for s in seqs if len(s) > n and list(s[:n]) == list(prefix)})


def _random_seqs(rng, n, vocab=(4, 12), max_len=5):
    return [[EOS] + [rng.randint(*vocab) for _ in range(rng.randint(1, max_len))] + [EOS] for _ in range(n)]


@pytest.mark.parametrize("seed", range(3))
def test_forest_agrees_with_brute_force_per_sentence(seed):
    rng = random.Random(seed)
    main_seqs = _random_seqs(rng, 25)
    main = PrefixTree.from_sequences(main_seqs, start_token=EOS)
    # Sentence ids as fairseq gives them (sample ids, not 0..n-1); sentence 7 has no candidates.
    sets = {}
    for sid in (3, 11, 20):
        picked = rng.sample(main_seqs, rng.randint(1, 6))
        sets[sid] = CandidateSet("given", [str(i) for i in range(len(picked))], picked)
    sets[7] = CandidateSet("none")
    trees = CandidateTrees(main, sets)
    ids = torch.tensor([3, 7, 11, 20, 42])  # 42: unknown to the sets -> main tree too
    roots = trees.sentence_roots(ids)
    assert roots.tolist()[1] == 0 and roots.tolist()[4] == 0
    assert all(r >= FOREST_BASE for r in (roots[0], roots[2], roots[3]))
    seq_sets = [sets[3].sequences, main_seqs, sets[11].sequences, sets[20].sequences, main_seqs]
    # Walk every prefix of every sequence (of the sentence's set or of the main tree) from each root.
    for row, seqs in enumerate(seq_sets):
        probes = sorted({tuple(s[:k]) for s in seqs + main_seqs for k in range(len(s) + 1)})
        for prefix in map(list, probes):
            state = trees.walk(torch.tensor([prefix], dtype=torch.long).view(1, -1), roots[row:row + 1]) \
                if prefix else roots[row:row + 1]
            expected = _allowed(seqs, prefix)
            tok, nxt, valid = trees.candidates(state, min_width=1)
            got = tok[0][valid[0]].tolist()
            assert got == expected, (row, prefix)
            assert int(trees.child_ranges(state)[1][0]) == len(expected)
            mask = trees.allowed_mask(state, 16)[0]
            assert torch.nonzero(mask).view(-1).tolist() == expected
            # next states of candidates() are those of advance()
            for t, s in zip(got, nxt[0][valid[0]].tolist()):
                assert trees.advance(state, torch.tensor([t])).item() == s
            if prefix and int(state) >= 0:
                assert trees.incoming_tokens(state).item() == prefix[-1]


def test_mixed_batch_states_dispatch_together():
    main = PrefixTree.from_sequences([[EOS, 4, EOS], [EOS, 5, 6, EOS]], start_token=EOS)
    trees = CandidateTrees(main, {0: CandidateSet("given", ["x"], [[EOS, 5, 6, EOS]])})
    roots = trees.sentence_roots(torch.tensor([0, 1]))
    states = trees.advance(roots, torch.tensor([EOS, EOS]))
    states = torch.cat([states, torch.tensor([-1])])
    tok, nxt, valid = trees.candidates(states)
    assert [tok[i][valid[i]].tolist() for i in range(3)] == [[5], [4, 5], []]
    assert trees.incoming_tokens(states).tolist() == [EOS, EOS, -1]
    after = trees.advance(states, torch.tensor([4, 4, 4]))
    assert after.tolist()[0] == -1 and after.tolist()[1] >= 0 and after.tolist()[2] == -1


def test_without_a_main_tree_a_sentence_without_candidates_is_an_error():
    trees = CandidateTrees(None, {0: CandidateSet("given", ["x"], [[EOS, 4, EOS]])})
    assert trees.start_token == EOS
    with pytest.raises(ValueError, match="sentence 1 has no candidates"):
        trees.sentence_roots(torch.tensor([0, 1]))


# ---------------------------------------------------------------- beam search, hand-set probabilities
#        bos  pad  eos  unk  w0=4 w1=5 w2=6 w3=7
P0 = [0.0, 0.0, 0.0, 0.0, 0.5, 0.3, 0.15, 0.05]
P1 = [0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0]
KB = [[EOS, 4, EOS], [EOS, 5, EOS], [EOS, 6, EOS], [EOS, 7, EOS]]


def _generate(trees, n_sentences=2, beam=2):
    d = make_dictionary(4)
    model = TableModel(d, [[P0, P1, P1]] * n_sentences)
    tree = PrefixTree.from_sequences(KB, start_token=EOS)
    gen = PrefixTreeSequenceGenerator([model], d, prefix_tree=tree, beam_size=beam)
    if trees is not None:
        gen.search.set_tree(trees(tree))
    out = gen.generate([model], table_sample(n_sentences, d))
    return [[(h["tokens"].tolist(), float(h["score"])) for h in sent] for sent in out]


def test_the_best_candidate_wins_over_the_unconstrained_favourite():
    plain = _generate(None)
    assert [h[0] for h in plain[0]] == [[4, EOS], [5, EOS]]  # w0 (.5) then w1 (.3)
    # Sentence 0 may only produce w2 or w3; sentence 1 has no candidates: full tree, as before.
    got = _generate(lambda tree: CandidateTrees(tree, {0: CandidateSet("given", ["a", "b"], [KB[2], KB[3]])}))
    assert [h[0] for h in got[0]] == [[6, EOS], [7, EOS]]
    assert got[0][0][1] == pytest.approx(math.log(0.15) / 2, abs=1e-6)
    assert got[0][1][1] == pytest.approx(math.log(0.05) / 2, abs=1e-6)
    assert got[1] == plain[1]


def test_a_single_candidate_fills_one_beam_slot_only():
    got = _generate(lambda tree: CandidateTrees(tree, {1: CandidateSet("given", ["a"], [KB[3]])}), beam=3)
    assert [h[0] for h in got[1]] == [[7, EOS]]
    assert [h[0] for h in got[0]] == [[4, EOS], [5, EOS], [6, EOS]]


# ---------------------------------------------------------------- where candidates come from
def test_mention_text_finds_either_marker_pair():
    assert mention_text("he met [START_ENT] Paris Hilton [END_ENT] here") == "Paris Hilton"
    assert mention_text("[START] Париж [END] est") == "Париж"
    assert mention_text("no markers") is None
    assert mention_text("[START] never closed") is None


def test_resolve_candidates_from_a_mention_table_and_a_name_table(tmp_path):
    d = make_dictionary(10)  # symbols w0..w9 (ids 4..13)
    names = tmp_path / "kb.names"
    NameTable.build([("Q1", "en", "w0"), ("Q1", "de", "w1"), ("Q2", "en", "w2"), ("Q3", "en", "w9")], names)
    mentions = tmp_path / "kb.mentions"
    MentionTable.build([("m", "Q1", 5), ("m", "Q2", 9), ("m", "Q3", 1)], mentions)
    table, mtable = NameTable.load(names), MentionTable.load(mentions)
    encode = IdentifierEncoder(None, d)  # identifiers are space-separated symbols here
    tree = PrefixTree.from_sequences([[EOS, 4, EOS], [EOS, 5, EOS], [EOS, 6, EOS]], start_token=EOS)
    seen = []

    def enc(identifier):  # ">>" and language codes are not symbols of this toy dictionary
        seen.append(identifier)
        return encode(identifier.split(" >> ")[0])

    got = resolve_candidates(None, "m", encode=enc, tree=tree, name_table=table,
                             identifier_format="name_lang", mention_table=mtable, k=2)
    assert got.source == "mentions" and got.entities == ["Q2", "Q1"]  # by count
    assert sorted(seen) == ["w0 >> en", "w1 >> de", "w2 >> en"]  # every name of each entity, name_lang
    assert sorted(got.sequences) == [[EOS, 4, EOS], [EOS, 5, EOS], [EOS, 6, EOS]]
    got = resolve_candidates(None, "m", encode=enc, tree=tree, name_table=table,
                             identifier_format="name_lang", mention_table=mtable, k=None)
    assert got.dropped == 1  # Q3's w9 is not in the tree
    assert got.describe() == "3 candidates (mentions), 3 identifiers"
    unseen = resolve_candidates(None, "unseen", encode=enc, tree=tree, mention_table=mtable)
    assert not unseen.restricted and unseen.entities == []
    assert unseen.describe() == "no candidates (mentions): full tree"
    outside = resolve_candidates(["w9"], None, encode=encode, tree=tree)
    assert not outside.restricted and outside.dropped == 1
    assert resolve_candidates(None, None, encode=encode, tree=tree).describe() == "no candidates: full tree"
    given = resolve_candidates(["w2"], "m", encode=encode, tree=tree, mention_table=mtable)
    assert given.source == "given" and given.sequences == [[EOS, 6, EOS]]
    assert given.describe() == "1 candidates (given), 1 identifiers"
    with pytest.raises(TypeError, match="list of strings"):
        resolve_candidates("w2", None, encode=encode, tree=tree)


def test_identifier_encoder_refuses_unknown_symbols():
    d = make_dictionary(3)
    enc = IdentifierEncoder(None, d)
    assert enc("w0 w2") == [EOS, 4, 6, EOS]
    assert enc("w0 nope") is None
    assert enc("") is None


def test_dead_states_need_no_main_tree():
    trees = CandidateTrees(None, {0: CandidateSet("given", ["x"], [[EOS, 4, EOS]])})
    states = torch.tensor([-1, -1])
    tok, nxt, valid = trees.candidates(states, min_width=1)
    assert not valid.any() and (nxt == -1).all()
    assert trees.child_ranges(states)[1].tolist() == [0, 0]
    assert trees.advance(states, torch.tensor([4, EOS])).tolist() == [-1, -1]
    assert trees.incoming_tokens(states).tolist() == [-1, -1]
    assert not trees.allowed_mask(states, 8).any()
