"""The ``genre`` task: fairseq translation plus decoding constrained to a knowledge base's identifiers."""


import logging
import os
from dataclasses import dataclass, field
from typing import Optional

from fairseq.dataclass import ChoiceEnum
from fairseq.tasks import register_task
from fairseq.tasks.translation import TranslationConfig, TranslationTask

from .candidates import CandidateTrees, IdentifierEncoder, mention_text, resolve_candidates
from .marginalize import NameResolver, hypothesis_fields, rank_entities
from .name_table import MentionTable, NameTable
from .prefix_tree import IDENTIFIER_FORMATS, PrefixTree, dictionary_fingerprint
from .search import PrefixTreeSequenceGenerator

logger = logging.getLogger(__name__)


@dataclass
class GenreConfig(TranslationConfig):
    trie: Optional[str] = field(
        default=None,
        metadata={
            "help": "compiled prefix tree of valid identifiers (built by `genre-trie build`); "
            "when given, generation only produces sequences of this tree"
        },
    )
    name_table: Optional[str] = field(
        default=None,
        metadata={
            "help": "name table mapping identifiers to entity ids (genre-trie names; for a canonical tree, the "
            "canonical table written by genre-trie build); generation then also prints E- lines: "
            "E-<id> <rank> <score> <entity id> <identifiers of the entity>"
        },
    )
    marginalize: bool = field(
        default=False,
        metadata={"help": "score an entity by the log-sum-exp of its hypotheses' length-normalized scores "
                  "(needs --name-table)"},
    )
    marginalize_alpha: float = field(
        default=0.5,
        metadata={"help": "length normalization of --marginalize and of E- line scores: log p / L ** alpha"},
    )
    identifier_format: Optional[ChoiceEnum(list(IDENTIFIER_FORMATS))] = field(
        default=None,
        metadata={
            "help": "format of the target identifiers: name_lang ('name >> lang'), lang_name "
            "('lang >> name') or canonical; defaults to the format recorded in --trie, and must "
            "agree with it when both are given"
        },
    )

    candidates_table: Optional[str] = field(
        default=None,
        metadata={
            "help": "mention table (genre-trie names --mentions): restrict each sentence's decoding to the "
            "identifiers of the top --candidates-k entities of its mention's exact text (needs --trie and "
            "--name-table); a sentence without candidates falls back to the whole --trie. Prints a C- line "
            "per sentence: C-<id> <how it was decoded>"
        },
    )
    candidates_k: int = field(default=10, metadata={"help": "candidates taken from --candidates-table, by count"})
    candidates_file: Optional[str] = field(
        default=None,
        metadata={
            "help": "explicit candidates, one line per sentence of the generated subset (line i: sentence id i): "
            "tab-separated entity ids (identifier strings without --name-table); an empty line has none. "
            "Takes precedence over --candidates-table for the sentences it gives candidates"
        },
    )

@register_task("genre", dataclass=GenreConfig)
class GenreTask(TranslationTask):
    """Generative entity linking: translate a marked mention in context into an entity identifier."""

    cfg: GenreConfig

    def __init__(self, cfg: GenreConfig, src_dict, tgt_dict):
        super().__init__(cfg, src_dict, tgt_dict)
        self.prefix_tree: Optional[PrefixTree] = None
        self.identifier_format: Optional[str] = cfg.identifier_format
        if cfg.trie:
            self.prefix_tree = load_prefix_tree_for(cfg.trie, tgt_dict, self._target_dict_path())
            tree_format = self.prefix_tree.identifier_format
            if self.identifier_format is None:
                self.identifier_format = tree_format
            elif tree_format is not None and tree_format != self.identifier_format:
                raise ValueError(
                    f"--identifier-format {self.identifier_format} disagrees with --trie {cfg.trie}, "
                    f"which holds {tree_format} identifiers"
                )
        self.name_table = None
        self._bpe = None
        if cfg.marginalize and not cfg.name_table:
            raise ValueError("--marginalize groups hypotheses by entity: give --name-table KB.names")
        if cfg.name_table:
            self.name_table = load_name_table_for(cfg.name_table, self.prefix_tree, cfg.trie)
            if self.identifier_format is None:
                raise ValueError("--name-table needs the identifier format: give --identifier-format or a --trie that records it")
            self.resolver = NameResolver(self.name_table, str(self.identifier_format))
        self.mention_table, self.given_candidates = load_candidate_options(cfg, self.prefix_tree, self.name_table)

    def _target_dict_path(self) -> str:
        paths = (self.cfg.data or "").split(os.pathsep)
        return os.path.join(paths[0], f"dict.{self.cfg.target_lang}.txt")

    def get_batch_iterator(
        self, dataset, max_tokens=None, max_sentences=None, max_positions=None,
        ignore_invalid_inputs=False, required_batch_size_multiple=1, **kwargs,
    ):
        """fairseq's batch iterator, except that evaluation never drops sentences.

        fairseq drops the last batch when its size is not a multiple of
        ``--required-batch-size-multiple`` (default 8; fairseq issues #5036, #5351), so
        ``fairseq-generate`` silently skips up to 7 test sentences. Outside the training
        subset, the multiple is 1.
        """
        if dataset is not self.datasets.get(self.cfg.train_subset):
            required_batch_size_multiple = 1
        return super().get_batch_iterator(
            dataset, max_tokens, max_sentences, max_positions, ignore_invalid_inputs,
            required_batch_size_multiple, **kwargs,
        )

    def build_bpe(self, args):
        """fairseq's BPE, kept to turn generated tokens back into identifier text for the name table."""
        self._bpe = super().build_bpe(args)
        return self._bpe

    def inference_step(self, generator, models, sample, prefix_tokens=None, constraints=None):
        """fairseq's inference step; with --name-table, also print each sentence's ranked entities (E- lines)."""
        if self.mention_table is not None or self.given_candidates is not None:
            self._restrict_to_candidates(generator, sample)
        hypos = super().inference_step(generator, models, sample, prefix_tokens=prefix_tokens, constraints=constraints)
        if self.name_table is not None:
            for sample_id, sentence_hypos in zip(sample["id"].tolist(), hypos):
                for rank, entity in enumerate(self.entities(sentence_hypos)):
                    print(f"E-{sample_id}\t{rank}\t{entity['score']:.6f}\t{entity['id'] or '-'}\t"
                          + " | ".join(entity["texts"]), flush=True)
        return hypos

    def _restrict_to_candidates(self, generator, sample) -> None:
        """Give the search this batch's candidate trees, and print how each sentence is decoded (C- lines)."""
        from fairseq import utils

        encode = IdentifierEncoder(self._bpe, self.tgt_dict)
        sets = {}
        for row, sid in enumerate(sample["id"].tolist()):
            given = None
            if self.given_candidates is not None:
                if sid >= len(self.given_candidates):
                    raise ValueError(f"--candidates-file {self.cfg.candidates_file} has {len(self.given_candidates)} "
                                     f"lines, but sentence {sid} is being generated")
                given = self.given_candidates[sid] or None
            source = self.src_dict.string(utils.strip_pad(sample["net_input"]["src_tokens"][row], self.src_dict.pad()))
            if self._bpe is not None:
                source = self._bpe.decode(source)
            sets[sid] = resolve_candidates(
                given, mention_text(source), encode=encode, tree=self.prefix_tree, name_table=self.name_table,
                identifier_format=self.identifier_format, mention_table=self.mention_table, k=self.cfg.candidates_k)
            print(f"C-{sid}\t{sets[sid].describe()}", flush=True)
        generator.search.set_tree(CandidateTrees(self.prefix_tree, sets))

    def entities(self, hypos) -> list:
        """Ranked entities of one sentence's hypotheses (see ``marginalize.rank_entities``)."""
        texts, logprobs, lengths = hypothesis_fields(hypos, self.tgt_dict, self._bpe)
        return rank_entities(texts, logprobs, lengths, self.resolver, marginalize=self.cfg.marginalize,
                             alpha=self.cfg.marginalize_alpha)

    def build_generator(
        self, models, args, seq_gen_cls=None, extra_gen_cls_kwargs=None, prefix_allowed_tokens_fn=None
    ):
        """A SequenceGenerator; with ``--trie``, one whose beam search follows the prefix tree."""
        if self.prefix_tree is None or getattr(args, "score_reference", False):
            return super().build_generator(
                models, args, seq_gen_cls, extra_gen_cls_kwargs, prefix_allowed_tokens_fn
            )
        conflicting = [
            flag
            for flag, on in (
                ("--sampling", getattr(args, "sampling", False)),
                ("--diverse-beam-groups", getattr(args, "diverse_beam_groups", -1) > 0),
                ("--diversity-rate", getattr(args, "diversity_rate", -1) > -1),
                ("--match-source-len", getattr(args, "match_source_len", False)),
                ("--constraints", bool(getattr(args, "constraints", False))),
                ("prefix_allowed_tokens_fn", prefix_allowed_tokens_fn is not None),
                ("--print-alignment", bool(getattr(args, "print_alignment", False))),
            )
            if on
        ]
        if conflicting:
            raise ValueError(
                f"--trie decodes with a trie-constrained beam search; it cannot be combined with "
                f"{', '.join(conflicting)} (drop those options or --trie)"
            )
        extra = dict(extra_gen_cls_kwargs or {})
        extra["prefix_tree"] = self.prefix_tree
        return super().build_generator(
            models, args, seq_gen_cls=seq_gen_cls or PrefixTreeSequenceGenerator, extra_gen_cls_kwargs=extra
        )


def load_candidate_options(cfg, tree: Optional[PrefixTree], table: Optional[NameTable]):
    """The mention table and the explicit candidate lists named by the options (None when not given)."""
    if not (cfg.candidates_table or cfg.candidates_file):
        return None, None
    if tree is None:
        raise ValueError("--candidates-table / --candidates-file restrict the --trie search: give --trie KB.trie")
    if cfg.candidates_k < 1:
        raise ValueError(f"--candidates-k must be >= 1, got {cfg.candidates_k}")
    mentions = None
    if cfg.candidates_table:
        if table is None:
            raise ValueError("--candidates-table gives entity ids: give --name-table KB.names to find their names")
        if not os.path.isfile(cfg.candidates_table):
            raise ValueError(f"--candidates-table {cfg.candidates_table}: file not found")
        mentions = MentionTable.load(cfg.candidates_table)
    given = None
    if cfg.candidates_file:
        if not os.path.isfile(cfg.candidates_file):
            raise ValueError(f"--candidates-file {cfg.candidates_file}: file not found")
        with open(cfg.candidates_file, encoding="utf-8") as f:
            given = [[c for c in line.rstrip("\n").split("\t") if c] for line in f]
    return mentions, given


def check_name_table(table: NameTable, tree: Optional[PrefixTree], table_label: str, tree_label: str) -> None:
    """Refuse a name table other than the one the prefix tree's identifiers were compiled from."""
    expected = tree.name_table_fingerprint if tree is not None else None
    if expected is not None and table.fingerprint != expected:
        raise ValueError(
            f"{table_label} (fingerprint {table.fingerprint[:12]}...) is not the table {tree_label} "
            f"was built from ({expected[:12]}...); for a canonical tree give the .canonical.names table"
        )


def load_name_table_for(path: str, tree: Optional[PrefixTree], tree_path: Optional[str]) -> NameTable:
    """Load a name table and check that it is the one the prefix tree's identifiers were compiled from."""
    if not os.path.isfile(path):
        raise ValueError(f"--name-table {path}: file not found")
    table = NameTable.load(path)
    check_name_table(table, tree, f"--name-table {path}", f"--trie {tree_path}")
    return table


def check_prefix_tree(tree: PrefixTree, tgt_dict, label: str, dict_name: str = "the target dictionary") -> None:
    """Refuse an empty tree, or one built for another dictionary than ``tgt_dict``."""
    if tree.num_sequences == 0:
        raise ValueError(f"{label} holds no sequences: nothing could be generated")
    expected = dictionary_fingerprint(tgt_dict)
    if tree.dictionary_fingerprint is None:
        logger.warning("%s records no dictionary fingerprint; cannot check it matches %s", label, dict_name)
    elif tree.dictionary_fingerprint != expected:
        raise ValueError(
            f"{label} was built for dictionary {tree.dictionary_fingerprint[:16]}..., but "
            f"{dict_name} is {expected[:16]}...; rebuild the trie with the model's dict.txt"
        )
    if tree.max_token >= len(tgt_dict):
        raise ValueError(
            f"{label} holds token id {tree.max_token}, outside {dict_name} ({len(tgt_dict)} symbols)"
        )


def load_prefix_tree_for(path: str, tgt_dict, dict_name: str = "the target dictionary") -> PrefixTree:
    """Load a prefix tree and check that it was built for ``tgt_dict``."""
    tree = PrefixTree.load(path)
    check_prefix_tree(tree, tgt_dict, f"--trie {path}", dict_name)
    logger.info("prefix tree %s: %d sequences, %d nodes", path, tree.num_sequences, tree.num_nodes)
    return tree
