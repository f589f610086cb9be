"""Training-time marginalization: the genre_marginal criterion and the grouped-target data it reads."""

import math
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from fairseq.criterions.label_smoothed_cross_entropy import label_smoothed_nll_loss
from fairseq.data import Dictionary, LanguagePairDataset

import genre_fairseq  # noqa: F401  registers the task and the criterion
from genre_fairseq.criterions import marginal_nll_loss
from genre_fairseq.task import GroupedTargetsDataset, decoding_rows, read_group_ids

from . import inprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PLUGIN = os.path.join(ROOT, "genre_fairseq")
BIN = os.path.dirname(sys.executable)
PAD = 1


# ---- the loss, against a brute-force oracle ----

def _batch(seed=0, rows=5, length=4, vocab=9):
    """Random log-probabilities (float64) and targets whose names end at different lengths."""
    g = torch.Generator().manual_seed(seed)
    lprobs = torch.log_softmax(torch.randn(rows, length, vocab, generator=g, dtype=torch.float64), dim=-1)
    target = torch.randint(4, vocab, (rows, length), generator=g)
    ends = [length, 2, 3, length, 1][:rows]
    for r, end in enumerate(ends):
        target[r, end - 1] = 2  # EOS
        target[r, end:] = PAD
    return lprobs, target


def _brute_force(lprobs, target, group, eps):
    """Per group, in order of increasing id: (1-eps-eps_i)*(-log sum_j p_j) + eps_i * mean_j smooth_j."""
    vocab = lprobs.size(-1)
    eps_i = eps / (vocab - 1)
    out = []
    for g in sorted(set(group)):
        members = [r for r in range(len(group)) if group[r] == g]
        seq, smooth = [], []
        for r in members:
            steps = [t for t in range(target.size(1)) if target[r, t] != PAD]
            seq.append(sum(float(lprobs[r, t, target[r, t]]) for t in steps))
            smooth.append(sum(-float(lprobs[r, t, v]) for t in steps for v in range(vocab)))
        nll = -math.log(sum(math.exp(s) for s in seq))
        out.append((1 - eps - eps_i) * nll + eps_i * sum(smooth) / len(members))
    return out


@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_loss_equals_brute_force_logsumexp(eps):
    lprobs, target = _batch()
    group = [7, 3, 7, 3, 11]  # any ids, rows of a group need not be adjacent in a batch
    loss, nll, mean_length = marginal_nll_loss(lprobs, target, torch.tensor(group), PAD, eps)
    expected = _brute_force(lprobs, target, group, eps)
    assert loss.tolist() == pytest.approx(expected, abs=1e-5)
    assert nll.tolist() == pytest.approx(_brute_force(lprobs, target, group, 0.0), abs=1e-5)
    # groups 3 (rows 1, 3: lengths 2, 4), 7 (rows 0, 2: 4, 3), 11 (row 4: 1)
    assert mean_length.tolist() == [3.0, 3.5, 1.0]


@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_one_name_groups_are_label_smoothed_cross_entropy(eps):
    lprobs, target = _batch(seed=1)
    loss, nll, _ = marginal_nll_loss(lprobs, target, None, PAD, eps)
    ref_loss, ref_nll = label_smoothed_nll_loss(lprobs.view(-1, lprobs.size(-1)), target.view(-1), eps,
                                                ignore_index=PAD)
    assert float(loss.sum()) == pytest.approx(float(ref_loss), abs=1e-9)
    assert float(nll.sum()) == pytest.approx(float(ref_nll), abs=1e-9)


def test_gradient_is_the_names_posterior():
    """d loss / d log p(token): -(1-eps-eps_i) * w_j - eps_i/|g| for target tokens, with w = softmax of the names'
    log-likelihoods within the group; -eps_i/|g| for the other symbols; 0 at padding."""
    eps = 0.1
    lprobs, target = _batch(seed=2)
    lprobs.requires_grad_(True)
    group = torch.tensor([0, 0, 1, 1, 1])
    loss, _, _ = marginal_nll_loss(lprobs, target, group, PAD, eps)
    loss.sum().backward()
    vocab = lprobs.size(-1)
    eps_i = eps / (vocab - 1)
    mask = target.ne(PAD)
    seq = (lprobs.detach().gather(-1, target.unsqueeze(-1)).squeeze(-1) * mask).sum(1)
    expected = torch.zeros_like(lprobs)
    for members in ([0, 1], [2, 3, 4]):
        w = torch.softmax(seq[members], dim=0)
        for j, r in enumerate(members):
            for t in range(target.size(1)):
                if mask[r, t]:
                    expected[r, t, :] = -eps_i / len(members)
                    expected[r, t, target[r, t]] += -(1 - eps - eps_i) * w[j]
    assert torch.allclose(lprobs.grad, expected, atol=1e-12)


def test_bad_shapes_are_refused():
    lprobs, target = _batch()
    with pytest.raises(ValueError, match=r"^group must have one entry per row \(5\), got shape \(4,\)$"):
        marginal_nll_loss(lprobs, target, torch.zeros(4, dtype=torch.long), PAD)
    with pytest.raises(ValueError, match=r"^lprobs must be rows x len x vocab"):
        marginal_nll_loss(lprobs[0], target, None, PAD)


# ---- the criterion on a real (tiny) model ----

WORDS = ["a", "b", "c", "d", "[START]", "[END]", ">>", "en", "de"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("criterion_data")
    d = Dictionary()
    for w in WORDS:
        d.add_symbol(w)
    for side in ("source", "target"):
        d.save(str(root / f"dict.{side}.txt"))
    return root


def _task_and_criterion(data_dir, *extra):
    from fairseq import options, tasks

    argv = [str(data_dir), "--task", "genre", "--arch", "genre_tiny", "--source-lang", "source",
            "--target-lang", "target", "--dropout", "0", "--attention-dropout", "0", *extra]
    args = options.parse_args_and_arch(options.get_training_parser(), argv)
    task = tasks.setup_task(args)
    torch.manual_seed(0)
    model = task.build_model(args)
    return task, model, task.build_criterion(args)


def _encode(d, text):
    return torch.tensor([d.index(w) for w in text.split()] + [d.eos()])


def test_criterion_on_a_hand_made_batch(data_dir):
    """Loss from one padded batch == brute force over rows decoded one at a time, and every layer gets gradient."""
    task, model, criterion = _task_and_criterion(
        data_dir, "--criterion", "genre_marginal", "--target-groups", "--label-smoothing", "0.1")
    d = task.target_dictionary
    examples = [  # (group, source, target): group 0 has three names, group 1 one
        (0, "a [START] b c [END] d", "b c >> en"),
        (0, "a [START] b c [END] d", "b c >> de"),
        (0, "a [START] b c [END] d", "c >> en"),
        (1, "[START] d [END]", "d a b c >> de"),
    ]
    items = [{"id": i, "source": _encode(d, s), "target": _encode(d, t)} for i, (_, s, t) in enumerate(examples)]
    pairs = LanguagePairDataset([x["source"] for x in items], [len(x["source"]) for x in items], d,
                                [x["target"] for x in items], [len(x["target"]) for x in items], d)
    sample = pairs.collater(items)  # sorted by source length, padded
    sample["group"] = torch.tensor([examples[i][0] for i in sample["id"].tolist()])
    model.train()
    loss, sample_size, log = criterion(model, sample)

    eps, vocab = 0.1, len(d)
    eps_i = eps / (vocab - 1)
    seq, smooth = {}, {}
    with torch.no_grad():
        for i, x in enumerate(items):  # each row alone: no padding anywhere
            prev = torch.cat([x["target"][-1:], x["target"][:-1]]).unsqueeze(0)
            out = model(x["source"].unsqueeze(0), torch.tensor([len(x["source"])]), prev)
            lp = model.get_normalized_probs(out, log_probs=True)[0].double()
            seq[i] = float(lp.gather(-1, x["target"].unsqueeze(-1)).sum())
            smooth[i] = float(-lp.sum())
    expected = 0.0
    for members in ([0, 1, 2], [3]):
        nll = -math.log(sum(math.exp(seq[i]) for i in members))
        expected += (1 - eps - eps_i) * nll + eps_i * sum(smooth[i] for i in members) / len(members)
    assert float(loss.detach()) == pytest.approx(expected, abs=1e-4)
    # sample_size: mean name length per group, EOS included: (5 + 5 + 4) / 3 + 7
    assert sample_size == pytest.approx(14 / 3 + 7)
    assert (log["ngroups"], log["nsentences"], log["ntokens"]) == (2, 4, 21)

    loss.backward()
    for name, p in model.named_parameters():
        if "embed_tokens" not in name and "embed_positions" not in name:
            assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_genre_marginal_needs_grouped_targets(data_dir):
    with pytest.raises(ValueError, match=r"^--criterion genre_marginal marginalizes over the names of a group: "
                                         r"use --task genre --target-groups"):
        _task_and_criterion(data_dir, "--criterion", "genre_marginal")


# ---- grouped-target data: the .group file and the dataset over it ----

def _pairs(sources, targets, d):
    src = [_encode(d, s) for s in sources]
    tgt = [_encode(d, t) for t in targets]
    return LanguagePairDataset(src, np.array([len(s) for s in src]), d, tgt, np.array([len(t) for t in tgt]), d,
                               shuffle=False)


def _dictionary():
    d = Dictionary()
    for w in WORDS:
        d.add_symbol(w)
    return d


def test_grouped_dataset_batches_whole_groups_within_max_tokens():
    d = _dictionary()
    sources = ["a", "a", "a", "b c", "b c", "d d d d", "c"]
    targets = ["a >> en", "a >> de", "a", "b", "c c c c c", "d", "c >> en"]
    ids = np.array([5, 5, 5, 2, 2, 9, 4])
    data = GroupedTargetsDataset(_pairs(sources, targets, d), ids, "train.group")
    assert len(data) == 4
    assert data.group_sizes.tolist() == [3, 2, 1, 1]
    # (longest source, longest target) of each group, EOS included
    assert [data.size(g) for g in range(4)] == [(2, 4), (3, 6), (5, 2), (2, 4)]
    assert data.num_tokens_vec(np.arange(4)).tolist() == [12, 12, 5, 4]
    # padded tokens = rows x longest row: [0, 3] -> 4 x 4 = 16 <= 16; + group 1 would be 6 x 6 = 36
    assert [b.tolist() for b in data.batch_by_size(np.array([0, 3, 1, 2]), max_tokens=16)] == [[0, 3], [1], [2]]
    # max_sentences counts rows, not groups
    assert [b.tolist() for b in data.batch_by_size(np.array([0, 3, 1, 2]), max_sentences=4)] == [[0, 3], [1, 2]]
    with pytest.raises(ValueError, match=r"^train.group:4: group 2 has 2 examples of up to 6 tokens, more than one "
                                         r"batch holds \(--max-tokens 10, "):
        data.batch_by_size(np.array([1]), max_tokens=10)

    batch = data.collater([data[1], data[0]])
    assert batch["nsentences"] == 5 and batch["net_input"]["src_tokens"].size(0) == 5
    rows_of = {}
    for row, (example, g) in enumerate(zip(batch["id"].tolist(), batch["group"].tolist())):
        rows_of.setdefault(g, set()).add(example)
    assert sorted(map(sorted, rows_of.values())) == [[0, 1, 2], [3, 4]]
    assert sorted(rows_of) == [0, 1]
    # validation decodes the first row of each group and accepts any of its names
    rows, golds = decoding_rows(batch, PAD)
    assert len(rows) == 2 and sorted(len(g) for g in golds) == [2, 3]
    assert data.filter_indices_by_size(np.arange(4), (4, 5))[0].tolist() == [0, 3]


def test_grouped_dataset_refuses_malformed_groups(tmp_path):
    d = _dictionary()
    pairs = _pairs(["a", "a", "b"], ["a", "b", "c"], d)
    with pytest.raises(ValueError, match=r"^g.group has 2 group ids, but its split has 3 examples$"):
        GroupedTargetsDataset(pairs, np.array([1, 1]), "g.group")
    with pytest.raises(ValueError, match=r"^g.group:3: group 1 already ended at line 1; the examples of a group "
                                         r"must be consecutive lines$"):
        GroupedTargetsDataset(pairs, np.array([1, 2, 1]), "g.group")
    mixed = GroupedTargetsDataset(pairs, np.array([1, 2, 2]), "g.group")
    with pytest.raises(ValueError, match=r"^g.group:3: example 2 is in group 2 with example 1 \(line 2\), but its "
                                         r"source differs"):
        mixed[1]

    good = tmp_path / "ok.group"
    good.write_text("0\n0\n17\n")
    assert read_group_ids(str(good)).tolist() == [0, 0, 17]
    bad = tmp_path / "bad.group"
    bad.write_text("0\n-1\n")
    with pytest.raises(ValueError, match=r"bad.group:2: a group id is a non-negative integer, got '-1'$"):
        read_group_ids(str(bad))


# ---- fairseq-train --criterion genre_marginal ----

def _run(cmd):
    if cmd[0] in ("fairseq-preprocess", "fairseq-generate", "genre-trie"):
        return inprocess.run(cmd[0], cmd[1:])  # in this process (tests/inprocess.py): the same output
    # one thread per process: tiny models on shared cores run several times faster than with contended threads
    env = dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")
    return subprocess.run([os.path.join(BIN, cmd[0])] + cmd[1:], capture_output=True, text=True, timeout=900,
                          env=env)


def write_grouped_data(w, n_sources, seed):
    """Sources marking a name without saying the language; targets: the name in both languages (a group)."""
    import random

    from examples.demo.make_data import FILLER, LANGS, NAMES

    rng = random.Random(seed)
    for split, n in (("train", n_sources), ("valid", 20)):
        src, tgt, grp = [], [], []
        for k in range(n):
            name = rng.choice(NAMES)
            left = [rng.choice(FILLER) for _ in range(rng.randint(0, 3))]
            sentence = " ".join(left + ["[START]", name, "[END]"])
            for lang in LANGS:
                src.append(sentence)
                tgt.append(f"{name} >> {lang}")
                grp.append(str(k))
        (w / f"{split}.source").write_text("\n".join(src) + "\n")
        (w / f"{split}.target").write_text("\n".join(tgt) + "\n")
        (w / f"{split}.group").write_text("\n".join(grp) + "\n")


def test_fairseq_train_with_genre_marginal_lowers_the_loss(tmp_path):
    write_grouped_data(tmp_path, 200, seed=0)
    proc = _run(["fairseq-preprocess", "--source-lang", "source", "--target-lang", "target",
                 "--trainpref", str(tmp_path / "train"), "--validpref", str(tmp_path / "valid"),
                 "--destdir", str(tmp_path / "bin"), "--joined-dictionary", "--workers", "1"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    for split in ("train", "valid"):
        os.replace(tmp_path / f"{split}.group", tmp_path / "bin" / f"{split}.group")
    from examples.demo.make_data import LANGS, NAMES

    (tmp_path / "kb.txt").write_text("".join(f"{n} >> {lang}\n" for n in NAMES for lang in LANGS))
    proc = _run(["genre-trie", "build", "--tokenized", str(tmp_path / "kb.txt"), "--dict",
                 str(tmp_path / "bin" / "dict.target.txt"), "--output", str(tmp_path / "kb.trie"), "--quiet"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    proc = _run([
        "fairseq-train", str(tmp_path / "bin"), "--user-dir", PLUGIN, "--task", "genre", "--arch", "genre_tiny",
        "--criterion", "genre_marginal", "--target-groups", "--label-smoothing", "0.1",
        "--optimizer", "adam", "--lr", "0.01", "--lr-scheduler", "inverse_sqrt", "--warmup-updates", "10",
        "--max-tokens", "1000", "--max-update", "40", "--cpu", "--seed", "1", "--log-interval", "10",
        "--no-progress-bar", "--num-workers", "0", "--validate-interval", "1000", "--validate-interval-updates", "20",
        "--save-dir", str(tmp_path / "ckpt"), "--no-epoch-checkpoints", "--save-interval", "1000",
        "--trie", str(tmp_path / "kb.trie"), "--eval-accuracy", "--eval-accuracy-args", '{"beam": 4}',
    ])
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = proc.stderr + proc.stdout
    losses = [float(x) for x in re.findall(r"train_inner \| .* loss=([0-9.]+),", log)]
    groups = [float(x) for x in re.findall(r"train_inner \| .* groups=([0-9.]+),", log)]
    assert len(losses) == 4 and losses[-1] < losses[0] - 0.5, losses
    # each batch holds whole groups of 2 names: 2 rows per group
    bsz = [float(x) for x in re.findall(r"train_inner \| .* bsz=([0-9.]+),", log)]
    assert all(b == pytest.approx(2 * g, abs=0.2) for b, g in zip(bsz, groups)) and groups
    # validation, with the marginal criterion on the grouped valid split, at updates 20 and 40
    valid = [float(x) for x in re.findall(r"valid on 'valid' subset \| loss ([0-9.]+)", log)]
    assert len(valid) == 2 and valid[1] < valid[0], valid
    assert re.findall(r"valid on 'valid' subset \| .* groups ([0-9.]+)", log) == ["20", "20"]

    # grouped validation decodes each source once and accepts either of its names: recompute from
    # fairseq-generate on the ungrouped rows (rows 2k and 2k+1 are group k, with one source)
    logged = float(re.findall(r"valid on 'valid' subset \| .* identifier_acc ([0-9.]+)", log)[-1])
    proc = _run(["fairseq-generate", str(tmp_path / "bin"), "--user-dir", PLUGIN, "--task", "genre",
                 "--path", str(tmp_path / "ckpt" / "checkpoint_last.pt"), "--gen-subset", "valid",
                 "--trie", str(tmp_path / "kb.trie"), "--beam", "4", "--max-tokens", "1000", "--cpu"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    fields = [line.split("\t") for line in proc.stdout.splitlines()]
    gold = {int(f[0][2:]): f[1] for f in fields if f[0].startswith("T-")}
    best = {}
    for f in fields:
        if f[0].startswith("H-"):
            best.setdefault(int(f[0][2:]), f[2])
    assert len(gold) == 40 and all(best[2 * k] == best[2 * k + 1] for k in range(20))
    right = sum(best[2 * k] in (gold[2 * k], gold[2 * k + 1]) for k in range(20))
    assert logged == pytest.approx(100.0 * right / 20, abs=1e-3)
