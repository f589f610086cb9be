"""Trie-constrained beam search: exact hand-set scores, equality with fairseq, exhaustiveness, dead ends."""

import math
import random

import pytest
import torch
from fairseq.search import BeamSearch, PrefixConstrainedBeamSearch
from fairseq.sequence_generator import SequenceGenerator

from genre_fairseq.prefix_tree import PrefixTree
from genre_fairseq.search import PrefixTreeSearch, PrefixTreeSequenceGenerator
from tests.toy import TableModel, make_dictionary, table_sample, teacher_forced_logprob, tiny_transformer

EOS = 2


def _hypos(finalized):
    return [[(h["tokens"].tolist(), float(h["score"])) for h in sent] for sent in finalized]


def _reference_generator(model, d, tree, beam, **kw):
    """fairseq's own PrefixConstrainedBeamSearch fed by the same tree, one callback per hypothesis."""
    search = PrefixConstrainedBeamSearch(d, lambda batch_id, sent: tree.allowed(sent.tolist()))
    return SequenceGenerator([model], d, beam_size=beam, search_strategy=search, **kw)


# ---------------------------------------------------------------- exact, hand-set probabilities
#            bos  pad  eos  unk  w0=4 w1=5 w2=6 w3=7
STEP0 = [0.0, 0.0, 0.0, 0.0, 0.3, 0.1, 0.6, 0.0]
STEP1 = [0.0, 0.0, 0.5, 0.0, 0.2, 0.2, 0.1, 0.0]
STEP2 = [0.0, 0.0, 0.4, 0.0, 0.2, 0.2, 0.2, 0.0]
STEP3 = [0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0]
TREE_SEQS = [[EOS, 4, 5, EOS], [EOS, 5, 4, EOS], [EOS, 5, EOS]]


@pytest.mark.parametrize("mode", ["sparse", "dense", "auto"])
def test_hand_set_probabilities_give_the_expected_hypotheses(mode):
    d = make_dictionary(4)
    model = TableModel(d, [[STEP0, STEP1, STEP2, STEP3]])
    tree = PrefixTree.from_sequences(TREE_SEQS, start_token=EOS)
    sample = table_sample(1, d)

    plain = SequenceGenerator([model], d, beam_size=2).generate([model], sample)
    assert plain[0][0]["tokens"][0].item() == 6  # unconstrained, the forbidden w2 wins

    gen = PrefixTreeSequenceGenerator([model], d, prefix_tree=tree, search_mode=mode, beam_size=2,
                                      candidate_multiple=1)
    got = _hypos(gen.generate([model], sample))[0]
    # step 0 keeps w0 (.3) and w1 (.1); step 1: [w0 w1] = .06, [w1 eos] = .05 (finished);
    # step 2: [w0 w1 eos] = .06 * .4 = .024.
    expected = [([4, 5, EOS], math.log(0.024) / 3), ([5, EOS], math.log(0.05) / 2)]
    assert [t for t, _ in got] == [t for t, _ in expected]
    for (_, s), (_, e) in zip(got, expected):
        assert s == pytest.approx(e, abs=1e-6)
    pos = gen.generate([model], sample)[0][1]["positional_scores"]
    assert pos.tolist() == pytest.approx([math.log(0.1), math.log(0.5)], abs=1e-6)

    reference = _hypos(_reference_generator(model, d, tree, 2).generate([model], sample))[0]
    assert [t for t, _ in reference] == [t for t, _ in got]
    assert [s for _, s in reference] == pytest.approx([s for _, s in got], abs=1e-6)


# ---------------------------------------------------------------- equality with fairseq on a real model
def _random_tree(rng, n, vocab_lo, vocab_hi, max_len):
    seqs = set()
    while len(seqs) < n:
        length = rng.randint(1, max_len)
        seqs.add(tuple([EOS] + [rng.randrange(vocab_lo, vocab_hi) for _ in range(length)] + [EOS]))
    return PrefixTree.from_sequences(sorted(seqs), start_token=EOS)


@pytest.mark.parametrize("seed,beam,n_seqs", [(0, 4, 30), (1, 5, 3), (2, 3, 60), (3, 6, 12)])
@pytest.mark.parametrize("mode", ["sparse", "dense"])
@pytest.mark.parametrize("device_path", [False, True], ids=["cpu-mmap", "device-tensors"])
def test_scores_equal_fairseq_prefix_constrained_beam_search(seed, beam, n_seqs, mode, device_path):
    rng = random.Random(seed)
    d = make_dictionary(20)
    model = tiny_transformer(d, seed=seed)
    tree = _random_tree(rng, n_seqs, 4, len(d), 5)
    tree._torch_arrays_on_cpu = device_path  # True: the tensor path used on CUDA
    src = torch.tensor([[rng.randrange(4, len(d)) for _ in range(6)] + [EOS] for _ in range(4)])
    sample = {"id": torch.arange(4), "net_input": {"src_tokens": src, "src_lengths": torch.full((4,), 7)}}

    ours = _hypos(
        PrefixTreeSequenceGenerator([model], d, prefix_tree=tree, search_mode=mode, beam_size=beam, max_len_b=8,
                                    candidate_multiple=1)
        .generate([model], sample)
    )
    ref = _hypos(_reference_generator(model, d, tree, beam, max_len_b=8).generate([model], sample))
    valid = {s[1:] for s in tree}
    for o, r in zip(ours, ref):
        assert [t for t, _ in o] == [t for t, _ in r]
        assert [s for _, s in o] == pytest.approx([s for _, s in r], abs=1e-5)
        assert all(tuple(t) in valid for t, _ in o)
        assert all(math.isfinite(s) for _, s in o)


# ---------------------------------------------------------------- exhaustiveness
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_with_beam_at_least_the_tree_size_nbest_is_the_full_ranking(seed):
    rng = random.Random(100 + seed)
    d = make_dictionary(12)
    model = tiny_transformer(d, seed=seed)
    tree = _random_tree(rng, 7, 4, len(d), 4)
    src = torch.tensor([rng.randrange(4, len(d)) for _ in range(5)] + [EOS])
    sample = {"id": torch.arange(1), "net_input": {"src_tokens": src[None], "src_lengths": torch.tensor([6])}}

    gen = PrefixTreeSequenceGenerator([model], d, prefix_tree=tree, beam_size=9, max_len_b=10)
    got = _hypos(gen.generate([model], sample))[0]

    brute = []
    for seq in tree:
        target = list(seq[1:])
        brute.append((target, teacher_forced_logprob(model, src, target, EOS) / len(target)))
    brute.sort(key=lambda x: -x[1])
    assert [t for t, _ in got] == [t for t, _ in brute]
    assert [s for _, s in got] == pytest.approx([s for _, s in brute], abs=1e-4)


# ---------------------------------------------------------------- dead ends
def _table_model_uniform(d, steps=6):
    uniform = [0.0, 0.0] + [1.0 / (len(d) - 2)] * (len(d) - 2)
    return TableModel(d, [[uniform] * steps])


def test_leaf_without_eos_is_dropped_not_nan():
    d = make_dictionary(4)
    model = _table_model_uniform(d)
    tree = PrefixTree.from_sequences([[EOS, 4, 5], [EOS, 5, EOS]], start_token=EOS)
    got = _hypos(PrefixTreeSequenceGenerator([model], d, prefix_tree=tree, beam_size=3).generate([model], table_sample(1, d)))
    assert [t for t, _ in got[0]] == [[5, EOS]]
    assert all(math.isfinite(s) for _, s in got[0])


def test_max_len_inside_every_name_gives_an_empty_nbest():
    d = make_dictionary(4)
    model = _table_model_uniform(d)
    tree = PrefixTree.from_sequences([[EOS, 4, 5, 6, EOS], [EOS, 5, 5, 5, 5, EOS]], start_token=EOS)
    gen = PrefixTreeSequenceGenerator([model], d, prefix_tree=tree, beam_size=2, max_len_b=2)
    assert gen.generate([model], table_sample(1, d)) == [[]]
    gen = PrefixTreeSequenceGenerator([model], d, prefix_tree=tree, beam_size=2, max_len_b=3)
    got = _hypos(gen.generate([model], table_sample(1, d)))[0]
    assert [t for t, _ in got] == [[4, 5, 6, EOS]]


def test_prefix_forced_off_the_tree_is_dropped():
    d = make_dictionary(4)
    model = _table_model_uniform(d)
    tree = PrefixTree.from_sequences([[EOS, 4, EOS], [EOS, 5, EOS]], start_token=EOS)
    gen = PrefixTreeSequenceGenerator([model], d, prefix_tree=tree, beam_size=2)
    assert gen.generate([model], table_sample(1, d), prefix_tokens=torch.tensor([[7]])) == [[]]
    got = _hypos(gen.generate([model], table_sample(1, d), prefix_tokens=torch.tensor([[5]])))[0]
    assert [t for t, _ in got] == [[5, EOS]]


def test_fewer_sequences_than_beam_stops_early():
    """A sentence whose beam has no live hypothesis is finished at once, not run to max_len."""
    d = make_dictionary(4)
    model = _table_model_uniform(d, steps=200)
    tree = PrefixTree.from_sequences([[EOS, 4, EOS]], start_token=EOS)
    steps = []
    gen = PrefixTreeSequenceGenerator([model], d, prefix_tree=tree, beam_size=4, max_len_b=150)
    original = gen.search.step

    def counting_step(step, *args, **kwargs):
        steps.append(step)
        return original(step, *args, **kwargs)

    gen.search.step = counting_step
    got = _hypos(gen.generate([model], table_sample(1, d)))[0]
    assert [t for t, _ in got] == [[4, EOS]]
    assert max(steps) <= 3


def test_mismatched_start_token_and_foreign_tokens_are_refused():
    d = make_dictionary(4)
    with pytest.raises(ValueError, match="begin with token 0"):
        PrefixTreeSearch(d, PrefixTree.from_sequences([[0, 4, EOS]], start_token=0))
    with pytest.raises(ValueError, match="token id 99"):
        PrefixTreeSearch(d, PrefixTree.from_sequences([[EOS, 99, EOS]], start_token=EOS))


def test_tree_without_start_token_is_walked_after_bos():
    d = make_dictionary(4)
    model = TableModel(d, [[STEP0, STEP1, STEP2, STEP3]])
    tree = PrefixTree.from_sequences([s[1:] for s in TREE_SEQS])
    got = _hypos(PrefixTreeSequenceGenerator([model], d, prefix_tree=tree, beam_size=2).generate([model], table_sample(1, d)))
    assert [t for t, _ in got[0]] == [[4, 5, EOS], [5, EOS]]


def test_plain_beam_search_is_what_dense_masking_reduces_to():
    """With every token allowed, the trie search picks what fairseq's BeamSearch picks (2 * beam, or the first beam)."""
    d = make_dictionary(3)
    lprobs = torch.randn(2, 3, len(d)).log_softmax(-1)
    lprobs[:, :, 1] = -math.inf
    seqs = [[EOS, t] for t in range(len(d))]
    tree = PrefixTree.from_sequences(seqs, start_token=EOS)
    prev = torch.full((6, 1), EOS)
    ref = BeamSearch(d).step(0, lprobs.clone(), None)
    ours = PrefixTreeSearch(d, tree, mode="sparse").step(0, lprobs.clone(), None, prev, torch.arange(2))
    assert torch.equal(ours[0], ref[0]) and torch.equal(ours[1], ref[1])
    ours = PrefixTreeSearch(d, tree, mode="sparse", candidate_multiple=1).step(0, lprobs.clone(), None, prev,
                                                                             torch.arange(2))
    assert torch.equal(ours[0], ref[0][:, :3]) and torch.equal(ours[1], ref[1][:, :3])


# ---------------------------------------------------------------- candidates per step: 2 * beam vs the reference's beam
#                  bos  pad  eos  unk  w0=4  w1=5  w2=6  w3=7
LOSS_STEP0 = [0.0, 0.0, 0.0, 0.0, 0.50, 0.50, 0.00, 0.00]
LOSS_STEP1 = [0.0, 0.0, 0.4, 0.0, 0.00, 0.00, 0.31, 0.29]
LOSS_STEP2 = [0.0, 0.0, 0.9, 0.0, 0.00, 0.00, 0.10, 0.00]
LOSS_STEP3 = [0.0, 0.0, 1.0, 0.0, 0.00, 0.00, 0.00, 0.00]
# A = w0 (finishes at step 1), B = w1 w2 w2 (a poor continuation), C = w1 w3 (the best identifier)
LOSS_TREE = [[EOS, 4, EOS], [EOS, 5, 6, 6, EOS], [EOS, 5, 7, EOS]]


@pytest.mark.parametrize("mode", ["sparse", "dense"])
def test_two_beams_of_candidates_keep_the_better_identifier_the_reference_loses(mode):
    d = make_dictionary(4)
    model = TableModel(d, [[LOSS_STEP0, LOSS_STEP1, LOSS_STEP2, LOSS_STEP3]])
    tree = PrefixTree.from_sequences(LOSS_TREE, start_token=EOS)
    sample = table_sample(1, d)
    a = ([4, EOS], math.log(0.5 * 0.4) / 2)
    b = ([5, 6, 6, EOS], math.log(0.5 * 0.31 * 0.1 * 1.0) / 4)
    c = ([5, 7, EOS], math.log(0.5 * 0.29 * 0.9) / 3)
    assert c[1] > a[1] > b[1]

    # Step 1 candidates: A = .2 (EOS), [w1 w2] = .155, [w1 w3] = .145. With 2 beams of candidates
    # A is finished and both w1 hypotheses stay live; step 2 finishes C = .1305: the beam is full.
    gen = PrefixTreeSequenceGenerator([model], d, prefix_tree=tree, search_mode=mode, beam_size=2)
    got = _hypos(gen.generate([model], sample))[0]
    assert [t for t, _ in got] == [c[0], a[0]]
    assert [s for _, s in got] == pytest.approx([c[1], a[1]], abs=1e-6)

    # With beam_size candidates, finished A keeps one of the two slots: only [w1 w2] goes on, and C is lost.
    ref_gen = PrefixTreeSequenceGenerator([model], d, prefix_tree=tree, search_mode=mode, beam_size=2,
                                          candidate_multiple=1)
    ours_ref = _hypos(ref_gen.generate([model], sample))[0]
    assert [t for t, _ in ours_ref] == [a[0], b[0]]
    assert [s for _, s in ours_ref] == pytest.approx([a[1], b[1]], abs=1e-6)
    # ... exactly as fairseq's PrefixConstrainedBeamSearch (the reference's search) does.
    reference = _hypos(_reference_generator(model, d, tree, 2).generate([model], sample))[0]
    assert [t for t, _ in reference] == [t for t, _ in ours_ref]
    assert [s for _, s in reference] == pytest.approx([s for _, s in ours_ref], abs=1e-6)


@pytest.mark.parametrize("value", [0, 3, 4, -1, 1.5, True])
def test_candidate_multiple_other_than_1_or_2_is_refused(value):
    d = make_dictionary(4)
    tree = PrefixTree.from_sequences(TREE_SEQS, start_token=EOS)
    with pytest.raises(ValueError, match="candidate_multiple must be 1 .* or 2"):
        PrefixTreeSearch(d, tree, candidate_multiple=value)


# ---------------------------------------------------------------- length penalty never lets a dead filler out
@pytest.mark.parametrize("lenpen", [0.0, 1.0, 5.0])
@pytest.mark.parametrize("multiple", [1, 2])
def test_dead_fillers_never_come_out_whatever_the_length_penalty(lenpen, multiple):
    """max_len cuts inside every long name at step 110: dead EOS fillers, whose score / 111 ** 5 is only -1e19."""
    d = make_dictionary(4)
    model = _table_model_uniform(d, steps=130)
    long_names = [[EOS] + [4] * 120 + [EOS], [EOS] + [5] * 120 + [EOS]]
    tree = PrefixTree.from_sequences(long_names, start_token=EOS)
    gen = PrefixTreeSequenceGenerator([model], d, prefix_tree=tree, beam_size=2, max_len_b=110, len_penalty=lenpen,
                                      candidate_multiple=multiple)
    assert gen.generate([model], table_sample(1, d)) == [[]]

    # With a short name in the tree (and a beam that holds all three), it is the only answer,
    # scored as fairseq normalizes it.
    tree = PrefixTree.from_sequences(long_names + [[EOS, 6, EOS]], start_token=EOS)
    gen = PrefixTreeSequenceGenerator([model], d, prefix_tree=tree, beam_size=3, max_len_b=110, len_penalty=lenpen,
                                      candidate_multiple=multiple)
    got = _hypos(gen.generate([model], table_sample(1, d)))[0]
    assert [t for t, _ in got] == [[6, EOS]]
    p = 1.0 / (len(d) - 2)
    assert got[0][1] == pytest.approx(2 * math.log(p) / 2 ** lenpen, abs=1e-5)


@pytest.mark.parametrize("lenpen", [0.0, 1.0, 5.0])
def test_every_hypothesis_is_a_tree_sequence_on_a_real_model(lenpen):
    rng = random.Random(7)
    d = make_dictionary(20)
    model = tiny_transformer(d, seed=3)
    tree = _random_tree(rng, 25, 4, len(d), 6)
    src = torch.tensor([[rng.randrange(4, len(d)) for _ in range(6)] + [EOS] for _ in range(3)])
    sample = {"id": torch.arange(3), "net_input": {"src_tokens": src, "src_lengths": torch.full((3,), 7)}}
    valid = {s[1:] for s in tree}
    for max_len_b in (3, 5, 8):
        gen = PrefixTreeSequenceGenerator([model], d, prefix_tree=tree, beam_size=4, max_len_b=max_len_b,
                                          len_penalty=lenpen)
        for hypos in _hypos(gen.generate([model], sample)):
            assert all(tuple(t) in valid and len(t) <= max_len_b + 1 for t, _ in hypos)
            assert all(math.isfinite(s) for _, s in hypos)
