"""Training-time marginalization over the names of an entity: the ``genre_marginal`` criterion.

A *group* is one source (a marked mention in context) with several target names of its entity,
e.g. the entity's name in every language (mGENRE's "L+NM" model). Instead of the likelihood of
each name on its own, the criterion maximizes the probability of the entity, summed over its names:

    nll(group) = - log sum_{j in group} p(name_j | source)
               = - logsumexp_j  sum_t log p(name_j[t] | name_j[<t], source)

(sequence log-likelihoods, end token included). With label smoothing ``eps`` and a vocabulary of
V symbols, fairseq's smoothing term is added per group, averaged over the group's names:

    loss(group) = (1 - eps - eps / (V - 1)) * nll(group)
                  + eps / (V - 1) * mean_{j in group} sum_t sum_v -log p(v | name_j[<t], source)

For a group of one name this is exactly ``label_smoothed_cross_entropy`` on that example.

Normalization (``sample_size``): the number of groups with ``--sentence-avg``; otherwise the sum,
over groups, of the mean length of their names (tokens, end included), so that a batch of
one-name groups is normalized by its number of target tokens, as fairseq does. ``nll_loss`` is
logged per such token (base 2, like fairseq).

Batches carry the group of each row in ``sample["group"]`` (``(rows,)``, ids ``0..G-1`` local to
the batch), which the ``genre`` task adds when trained with ``--target-groups`` (data format:
docs/training.md). Rows of one group share their source; the model is run on every row.
"""

import math
from dataclasses import dataclass, field
from typing import Optional, Tuple

import torch
from fairseq import utils
from fairseq.criterions import FairseqCriterion, register_criterion
from fairseq.dataclass import FairseqDataclass
from fairseq.logging import metrics
from omegaconf import II
from torch import Tensor

__all__ = ["GenreMarginalCriterion", "marginal_nll_loss"]


@dataclass
class GenreMarginalConfig(FairseqDataclass):
    label_smoothing: float = field(
        default=0.0,
        metadata={"help": "epsilon for label smoothing (as label_smoothed_cross_entropy), 0 for none"},
    )
    sentence_avg: bool = II("optimization.sentence_avg")


def marginal_nll_loss(
    lprobs: Tensor, target: Tensor, group: Optional[Tensor], padding_idx: int, epsilon: float = 0.0
) -> Tuple[Tensor, Tensor, Tensor]:
    """Per-group losses of the names in a batch: (loss, nll, mean name length), each ``(groups,)``.

    Args:
        lprobs: (rows x tgt_len x vocab) log-probabilities
        target: (rows x tgt_len) target tokens, ``padding_idx`` after each name's end
        group: (rows,) group of each row (any integers; None: each row is its own group).
            The returned groups are in increasing order of these ids.
    """
    if lprobs.dim() != 3 or target.shape != lprobs.shape[:2]:
        raise ValueError(f"lprobs must be rows x len x vocab and target rows x len, got {tuple(lprobs.shape)} "
                         f"and {tuple(target.shape)}")
    rows = target.size(0)
    if group is None:
        group = torch.arange(rows, device=target.device)
    elif group.shape != (rows,):
        raise ValueError(f"group must have one entry per row ({rows}), got shape {tuple(group.shape)}")
    _, group = torch.unique(group, return_inverse=True)
    n_groups = int(group.max().item()) + 1 if rows else 0

    mask = target.ne(padding_idx)
    token_lprobs = lprobs.gather(-1, target.unsqueeze(-1)).squeeze(-1).masked_fill(~mask, 0.0)
    seq_lprob = token_lprobs.sum(dim=1)  # (rows,) log p(name | source)
    smooth = (-lprobs.sum(dim=-1)).masked_fill(~mask, 0.0).sum(dim=1)  # (rows,)
    lengths = mask.sum(dim=1).to(lprobs.dtype)

    # logsumexp within groups; the shift is constant per group, so detaching it keeps the gradient exact
    shift = seq_lprob.new_full((n_groups,), -math.inf).scatter_reduce(
        0, group, seq_lprob.detach(), reduce="amax", include_self=True
    )
    summed = seq_lprob.new_zeros(n_groups).index_add(0, group, torch.exp(seq_lprob - shift[group]))
    nll = -(shift + torch.log(summed))
    size = seq_lprob.new_zeros(n_groups).index_add(0, group, torch.ones_like(seq_lprob))
    mean_smooth = seq_lprob.new_zeros(n_groups).index_add(0, group, smooth) / size
    mean_length = seq_lprob.new_zeros(n_groups).index_add(0, group, lengths) / size

    eps_i = epsilon / (lprobs.size(-1) - 1)
    loss = (1.0 - epsilon - eps_i) * nll + eps_i * mean_smooth
    return loss, nll, mean_length


@register_criterion("genre_marginal", dataclass=GenreMarginalConfig)
class GenreMarginalCriterion(FairseqCriterion):
    """-log sum_j p(name_j | source) over the names of each group (see the module docstring)."""

    def __init__(self, task, sentence_avg: bool, label_smoothing: float = 0.0):
        super().__init__(task)
        if not getattr(getattr(task, "cfg", None), "target_groups", False):
            raise ValueError(
                "--criterion genre_marginal marginalizes over the names of a group: use --task genre "
                "--target-groups with a DATA/train.group file (format: docs/training.md)"
            )
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"--label-smoothing must be in [0, 1), got {label_smoothing}")
        self.sentence_avg = sentence_avg
        self.eps = label_smoothing

    def forward(self, model, sample, reduce=True):
        """Loss of the batch's groups; returns (loss, sample_size, logging_output)."""
        net_output = model(**sample["net_input"])
        lprobs = model.get_normalized_probs(net_output, log_probs=True)
        target = model.get_targets(sample, net_output)
        loss, nll, mean_length = marginal_nll_loss(lprobs, target, sample.get("group"), self.padding_idx, self.eps)
        group_tokens = float(mean_length.sum().item())
        n_groups = loss.numel()
        if reduce:
            loss, nll = loss.sum(), nll.sum()
        sample_size = n_groups if self.sentence_avg else group_tokens
        logging_output = {
            "loss": loss.data,
            "nll_loss": nll.data,
            "ntokens": sample["ntokens"],
            "nsentences": target.size(0),
            "ngroups": n_groups,
            "group_tokens": group_tokens,
            "sample_size": sample_size,
        }
        return loss, sample_size, logging_output

    @classmethod
    def reduce_metrics(cls, logging_outputs) -> None:
        """loss per sample_size unit and nll_loss per name token (base 2), like fairseq's criteria."""
        loss_sum = sum(log.get("loss", 0) for log in logging_outputs)
        nll_sum = sum(log.get("nll_loss", 0) for log in logging_outputs)
        sample_size = sum(log.get("sample_size", 0) for log in logging_outputs)
        group_tokens = sum(log.get("group_tokens", 0) for log in logging_outputs)
        n_groups = sum(log.get("ngroups", 0) for log in logging_outputs)
        metrics.log_scalar("loss", loss_sum / (sample_size or 1) / math.log(2), sample_size, round=3)
        metrics.log_scalar("nll_loss", nll_sum / (group_tokens or 1) / math.log(2), group_tokens, round=3)
        metrics.log_derived("ppl", lambda meters: utils.get_perplexity(meters["nll_loss"].avg))
        metrics.log_scalar("groups", n_groups, priority=190, round=1)

    @staticmethod
    def logging_outputs_can_be_summed() -> bool:
        """Every logged value is a sum, so workers' outputs can be added before reduce_metrics."""
        return True
