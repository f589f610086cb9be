"""The ``genre`` task: fairseq translation plus decoding constrained to a knowledge base's identifiers."""


import json
import math
import logging
import os
import pickle
import sys
from argparse import Namespace
from collections import deque
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch
from fairseq import utils as fairseq_utils
from fairseq.data import FairseqDataset, data_utils, encoders
from fairseq.dataclass import ChoiceEnum
from fairseq.logging import metrics
from fairseq.modules import MultiheadAttention
from fairseq.tasks import register_task
from fairseq.tasks.translation import TranslationConfig, TranslationTask

from . import apply_fairseq_fixes
from .checkpoints import allow_fairseq_checkpoint_globals
from . import criterions as _criterion, models as _presets  # noqa: F401  (they register with the task)
from .candidates import CandidateTrees, IdentifierEncoder, mention_text, resolve_candidates
from .marginalize import NameResolver, add_nil, check_nil_options, hypothesis_fields, rank_entities
from .name_table import MentionTable, NameTable
from .prefix_tree import IDENTIFIER_FORMATS, PrefixTree, dictionary_fingerprint
from .search import CANDIDATE_MULTIPLES, PrefixTreeSequenceGenerator

logger = logging.getLogger(__name__)


# The hub loads a checkpoint before it builds this task; until its loader allow-lists the
# checkpoint globals itself, importing the task (the fairseq side of the plugin) does it.
allow_fairseq_checkpoint_globals()


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
    no_verify: bool = field(
        default=False,
        metadata={"help": "open --trie, --name-table and --candidates-table without checking their checksums and "
                  "structure (by default a damaged file is refused; skip only for files already checked, "
                  "e.g. with `genre-trie inspect`)"},
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

    retrieval: bool = field(
        default=False,
        metadata={"help": "page-level retrieval (KILT): inputs are queries or claims without mention markers, "
                  "decoded under --trie as they are (by default a sentence without a marked mention is refused)"},
    )
    candidate_multiple: int = field(
        default=2,
        metadata={"help": "candidates per search step, in beams: 2 (default, as fairseq's BeamSearch) keeps the beam "
                  "full after hypotheses finish; 1 reproduces the reference GENRE search, which can lose a better "
                  "identifier"},
    )
    nil_threshold: Optional[float] = field(
        default=None,
        metadata={"help": "no entity (an E- line with entity NIL at rank 0, before the others) when the best "
                  "entity's score (as in E- lines) is below this (needs --name-table); see docs/decoding.md"},
    )
    nil_margin: Optional[float] = field(
        default=None,
        metadata={"help": "no entity (E- line NIL at rank 0) when the best entity's score beats the second's by "
                  "less than this (needs --name-table)"},
    )

    # End-to-end linking (docs/end_to_end.md): raw text in, the text with { mention } [ identifier ] out.
    end_to_end: bool = field(
        default=False,
        metadata={"help": "end-to-end entity linking: the inputs are raw text (no mention markers); the output copies "
                  "the source and marks each linked mention { m } [ identifier ] (an identifier of --trie, which is "
                  "required). Prints one line per span: L-<id> <start> <end> <score> <entity id or -> <identifier> "
                  "<mention>, character offsets into the detokenized source line, score the mean log-probability of "
                  "the identifier's tokens and ] (with --marginalize: log-sum-exp over the entity's identifiers)"},
    )
    mention_trie: Optional[str] = field(
        default=None,
        metadata={"help": "with --end-to-end: the mentions that may be marked, a mention tree (genre-trie build "
                  "--mentions); default any span of up to --max-mention-len tokens. Needed by --candidates-table"},
    )
    max_mention_len: int = field(default=32, metadata={"help": "with --end-to-end: the longest mention, in tokens"})
    markup_symbols: Optional[str] = field(
        default=None,
        metadata={"help": "with --end-to-end: the four dictionary symbols of { } [ ], space-separated; default "
                  "\u2581{ \u2581} \u2581[ \u2581] (SentencePiece), else { } [ ] when the dictionary has them "
                  "(GPT-2 models: give the BPE ids of ' {' ' }' ' [' ' ]')"},
    )

    # Training: validation decoding (--eval-accuracy) and grouped targets (--target-groups).
    eval_accuracy: bool = field(
        default=False,
        metadata={
            "help": "during validation, decode the validation set with the --trie constrained search and log "
            "identifier_acc (top hypothesis == gold identifier, %%) and, with --name-table, entity_acc (top "
            "entity, ranked as in E- lines, == gold entity, %%); usable as --best-checkpoint-metric"
        },
    )
    eval_accuracy_args: str = field(
        default="{}",
        metadata={"help": 'generation options of --eval-accuracy as a JSON object, e.g. \'{"beam": 10, "max_len_b": 32}\''},
    )
    eval_accuracy_bpe: Optional[str] = field(
        default=None,
        metadata={
            "help": "BPE that turns tokens back into identifier text for entity_acc's name-table lookup (needs "
            "--name-table), as a JSON "
            'object of fairseq BPE options, e.g. \'{"bpe": "sentencepiece", "sentencepiece_model": "spm.model"}\'; '
            "default: none (the dictionary's symbols, joined by spaces)"
        },
    )
    target_groups: bool = field(
        default=False,
        metadata={
            "help": "read DATA/<split>.group (one group id per example; consecutive examples with the same id "
            "are several targets of one source) and batch each group whole, for --criterion genre_marginal; "
            "required for the training subset, optional for the others"
        },
    )


@register_task("genre", dataclass=GenreConfig)
class GenreTask(TranslationTask):
    """Generative entity linking: translate a marked mention in context into an entity identifier."""

    cfg: GenreConfig

    @classmethod
    def setup_task(cls, cfg, **kwargs):
        """fairseq's set-up; errors of the genre task's options and inputs then end the command in one line."""
        install_error_hook()
        return super().setup_task(cfg, **kwargs)

    def __init__(self, cfg: GenreConfig, src_dict, tgt_dict):
        apply_fairseq_fixes()  # fairseq runs with this task: scope the process-wide fixes here
        super().__init__(cfg, src_dict, tgt_dict)
        if cfg.candidate_multiple not in CANDIDATE_MULTIPLES:
            raise GenreError(f"--candidate-multiple must be 1 or 2, got {cfg.candidate_multiple}")
        check_nil_options(cfg.nil_threshold, cfg.nil_margin, prefix="--")
        if (cfg.nil_threshold is not None or cfg.nil_margin is not None) and not cfg.name_table:
            raise GenreError("--nil-threshold / --nil-margin decide on the E- lines' entities: give --name-table KB.names")
        self._unchecked_sources_warned = False
        self.prefix_tree: Optional[PrefixTree] = None
        self.identifier_format: Optional[str] = cfg.identifier_format
        if cfg.trie:
            self.prefix_tree = load_prefix_tree_for(cfg.trie, tgt_dict, self._target_dict_path(), verify=not cfg.no_verify)
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
            self.name_table = load_name_table_for(cfg.name_table, self.prefix_tree, cfg.trie, verify=not cfg.no_verify)
            if self.identifier_format is None:
                raise ValueError("--name-table needs the identifier format: give --identifier-format or a --trie that records it")
            self.resolver = NameResolver(self.name_table, str(self.identifier_format))
        self.mention_table, self.given_candidates = load_candidate_options(cfg, self.prefix_tree, self.name_table)
        # fairseq-interactive's batches carry no sentence ids: see build_dataset_for_inference
        self._inference_dataset = None
        self._inference_offset = 0
        self._inference_batches: deque = deque()

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
        iterator = super().get_batch_iterator(
            dataset, max_tokens, max_sentences, max_positions, ignore_invalid_inputs,
            required_batch_size_multiple, **kwargs,
        )
        if dataset is self._inference_dataset:
            self._inference_batches = deque(iterator.frozen_batches)  # in the order they are decoded
        return iterator

    def build_dataset_for_inference(self, src_tokens, src_lengths, constraints=None):
        """fairseq's inference dataset; its sentences are numbered after those of the previous one.

        fairseq-interactive builds one per buffer of input lines and numbers its output
        ``start_id + id``, but hands ``inference_step`` batches without ``id``: the task keeps the
        dataset, its offset and its batches to recover the ids (:meth:`_sentence_ids`).
        """
        if self._inference_dataset is not None:
            self._inference_offset += len(self._inference_dataset)
        self._inference_dataset = super().build_dataset_for_inference(src_tokens, src_lengths, constraints=constraints)
        return self._inference_dataset

    def _sentence_ids(self, sample) -> list:
        """The sentence id of each row of a fairseq-interactive batch, which carries none."""
        if not self._inference_batches:
            raise ValueError("the genre task got a batch without sentence ids that it did not make")
        # the collater reorders a batch's rows (longest first): match each row to its sentence
        indices = list(self._inference_batches.popleft())
        pad, ids = self.src_dict.pad(), []
        for row in sample["net_input"]["src_tokens"]:
            tokens = row[row.ne(pad)].cpu()
            match = next((i for i in indices if torch.equal(self._inference_dataset.src[i], tokens)), None)
            if match is None:
                raise ValueError("the genre task cannot tell which input line a fairseq-interactive batch row is")
            indices.remove(match)
            ids.append(self._inference_offset + int(match))
        return ids

    def get_interactive_tokens_and_lengths(self, lines, encode_fn):
        """fairseq's encoding of fairseq-interactive's raw lines; warns once when --bpe looks missing."""
        tokens, lengths = super().get_interactive_tokens_and_lengths(lines, encode_fn)
        if self._bpe is None and not getattr(self, "_raw_text_checked", False):
            self._raw_text_checked = True
            unk = sum(int(t.eq(self.src_dict.unk()).sum()) for t in tokens)
            message = raw_text_without_bpe_warning(self.cfg.data.split(os.pathsep)[0], unk, sum(lengths))
            if message:
                logger.warning(message)
        return tokens, lengths

    def build_bpe(self, args):
        """fairseq's BPE, kept to turn generated tokens back into identifier text for the name table."""
        self._bpe = super().build_bpe(args)
        return self._bpe

    def inference_step(self, generator, models, sample, prefix_tokens=None, constraints=None):
        """fairseq's inference step; with --name-table, also print each sentence's ranked entities (E- lines)."""
        if "id" not in sample:  # fairseq-interactive; the search and the C-/E- lines need the ids
            sample["id"] = torch.tensor(self._sentence_ids(sample), dtype=torch.long,
                                        device=sample["net_input"]["src_tokens"].device)
        if self.cfg.end_to_end:  # raw text: no mention markers to check
            return self._end_to_end_step(generator, models, sample, prefix_tokens, constraints)
        self._check_mentions(sample)
        if self.mention_table is not None or self.given_candidates is not None:
            self._restrict_to_candidates(generator, sample)
        hypos = super().inference_step(generator, models, sample, prefix_tokens=prefix_tokens, constraints=constraints)
        if self.name_table is not None:
            for sample_id, sentence_hypos in zip(sample["id"].tolist(), hypos):
                for rank, entity in enumerate(self.entities(sentence_hypos)):
                    name = "NIL" if entity.get("nil") else entity["id"] or "-"
                    print(f"E-{sample_id}\t{rank}\t{entity['score']:.6f}\t{name}\t"
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
                    raise GenreError(f"--candidates-file {self.cfg.candidates_file} has {len(self.given_candidates)} "
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
        """Ranked entities of one sentence's hypotheses (``marginalize.rank_entities``), NIL first if decided."""
        texts, logprobs, lengths = hypothesis_fields(hypos, self.tgt_dict, self._bpe)
        ranked = rank_entities(texts, logprobs, lengths, self.resolver, marginalize=self.cfg.marginalize,
                               alpha=self.cfg.marginalize_alpha)
        return add_nil(ranked, threshold=self.cfg.nil_threshold, margin=self.cfg.nil_margin)

    def _check_mentions(self, sample) -> None:
        """Refuse a sentence without a marked, non-empty mention, naming its line of the input."""
        from fairseq import utils

        if self.cfg.retrieval:  # queries carry no markers
            return

        src_tokens = sample["net_input"]["src_tokens"]
        ids = sample.get("id")  # fairseq-interactive's batches have none: number the batch's lines
        for row, sid in enumerate(ids.tolist() if torch.is_tensor(ids) else range(src_tokens.size(0))):
            symbols = self.src_dict.string(utils.strip_pad(sample["net_input"]["src_tokens"][row], self.src_dict.pad()))
            if self._bpe is not None:
                forms = [self._bpe.decode(symbols)]
            else:  # dictionary symbols, or SentencePiece pieces given without --bpe
                forms = [symbols, "".join(symbols.split()).replace("\u2581", " ")]
            mentions = [m for m in (mention_text(f) for f in forms) if m is not None]
            if mentions and any(mentions):
                continue
            where = f"--task genre: sentence {sid} (line {sid + 1} of the input)"
            if mentions:
                raise GenreError(f"{where}: empty mention, no word between the markers: {forms[0][:80]!r}")
            if self._bpe is None and symbols.split() and all(x.isdigit() for x in symbols.split()):
                if not self._unchecked_sources_warned:  # GPT-2 BPE ids: the markers cannot be read without --bpe
                    logger.warning("sources are GPT-2 BPE ids and no --bpe was given: mention markers are not checked")
                    self._unchecked_sources_warned = True
                return
            raise GenreError(f"{where}: no mention marked [START] ... [END] or [START_ENT] ... [END_ENT]"
                             f"{' (an empty line)' if not symbols.strip() else ''}: {forms[0][:80]!r}")

    def build_generator(
        self, models, args, seq_gen_cls=None, extra_gen_cls_kwargs=None, prefix_allowed_tokens_fn=None
    ):
        """A SequenceGenerator; with ``--trie``, one whose beam search follows the prefix tree."""
        if self.cfg.end_to_end:
            return self._end_to_end_generator(models, args, prefix_allowed_tokens_fn)
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
                ("--prefix-size", getattr(args, "prefix_size", 0) > 0),
                ("--min-len (the tree decides where an identifier ends)", getattr(args, "min_len", 1) > 1),
            )
            if on
        ]
        if conflicting:
            raise GenreError(
                f"--trie decodes with a trie-constrained beam search; it cannot be combined with "
                f"{', '.join(conflicting)} (drop those options or --trie)"
            )
        beam, nbest = getattr(args, "beam", 5), getattr(args, "nbest", 1)
        if beam < 1:
            raise GenreError(f"--beam must be >= 1, got {beam}")
        if nbest < 1 or nbest > beam:
            raise GenreError(f"--nbest must be between 1 and --beam {beam}, got {nbest}")
        check_length_options(args)
        extra = dict(extra_gen_cls_kwargs or {})
        extra["prefix_tree"] = self.prefix_tree
        extra["candidate_multiple"] = self.cfg.candidate_multiple
        return super().build_generator(
            models, args, seq_gen_cls=seq_gen_cls or PrefixTreeSequenceGenerator, extra_gen_cls_kwargs=extra
        )

    # ---- end-to-end linking (--end-to-end) ----

    def _end_to_end_generator(self, models, args, prefix_allowed_tokens_fn=None):
        """The EndToEndSequenceGenerator of --end-to-end; options that do not apply to it are refused."""
        from .e2e_search import EndToEndSequenceGenerator, MarkupTokens, mention_candidates

        cfg = self.cfg
        refused = [flag for flag, on in (
            ("--candidates-file", bool(cfg.candidates_file)),
            ("--nil-threshold", cfg.nil_threshold is not None),
            ("--nil-margin", cfg.nil_margin is not None),
            ("--candidate-multiple 1", cfg.candidate_multiple != 2),
            ("--retrieval", cfg.retrieval),
            ("--min-len", getattr(args, "min_len", 1) > 1),
            ("--score-reference", getattr(args, "score_reference", False)),
            ("--sampling", getattr(args, "sampling", False)),
            ("--diverse-beam-groups", getattr(args, "diverse_beam_groups", -1) > 0),
            ("--diversity-rate", getattr(args, "diversity_rate", -1) > -1),
            ("--match-source-len", getattr(args, "match_source_len", False)),
            ("--constraints", bool(getattr(args, "constraints", False))),
            ("--prefix-size", getattr(args, "prefix_size", 0) > 0),
            ("--print-alignment", bool(getattr(args, "print_alignment", False))),
            ("prefix_allowed_tokens_fn", prefix_allowed_tokens_fn is not None),
        ) if on]
        if refused:
            raise GenreError(f"--end-to-end copies the source and marks its mentions; it cannot be combined with "
                             f"{', '.join(refused)}")
        if self.prefix_tree is None:
            raise GenreError("--end-to-end links mentions to the identifiers of an entity tree: give --trie KB.trie")
        if self.src_dict.symbols != self.tgt_dict.symbols:
            raise GenreError("--end-to-end copies the source into the output: it needs the same source and target "
                             "dictionary")
        beam, nbest = getattr(args, "beam", 5), getattr(args, "nbest", 1)
        if beam < 1:
            raise GenreError(f"--beam must be >= 1, got {beam}")
        if nbest < 1 or nbest > beam:
            raise GenreError(f"--nbest must be between 1 and --beam {beam}, got {nbest}")
        check_length_options(args)
        if cfg.max_mention_len < 1:
            raise GenreError(f"--max-mention-len must be >= 1, got {cfg.max_mention_len}")
        mtree = None
        if cfg.mention_trie:
            if not os.path.isfile(cfg.mention_trie):
                raise GenreError(f"--mention-trie {cfg.mention_trie}: file not found")
            mtree = PrefixTree.load(cfg.mention_trie, verify=not cfg.no_verify)
        if self.mention_table is not None and mtree is None:
            raise GenreError("--candidates-table with --end-to-end gives each mention its candidates: it needs "
                             "--mention-trie (the mentions a span may be)")
        if cfg.markup_symbols:
            symbols = cfg.markup_symbols.split()
        else:
            symbols = next((s for s in (["\u2581{", "\u2581}", "\u2581[", "\u2581]"], ["{", "}", "[", "]"])
                            if all(self.tgt_dict.index(x) != self.tgt_dict.unk() for x in s)), None)
            if symbols is None:
                raise GenreError("--end-to-end: the target dictionary has neither \u2581{ \u2581} \u2581[ \u2581] nor "
                                 "{ } [ ]; give --markup-symbols with its four symbols of the markup (see "
                                 "docs/end_to_end.md, 'Markup tokens')")
        if len(symbols) != 4:
            raise GenreError(f"--markup-symbols must be four space-separated symbols, got {cfg.markup_symbols!r}")
        try:
            markup = MarkupTokens.from_dictionary(self.tgt_dict, symbols)
        except ValueError as e:
            raise GenreError(f"--markup-symbols: {e}") from None
        span_candidates = None
        if self.mention_table is not None:
            def candidates_of(sources):
                encode = IdentifierEncoder(self._bpe, self.tgt_dict)
                return mention_candidates(generator.search, sources, self._token_text, mention_table=self.mention_table,
                                          k=cfg.candidates_k, encode=encode, name_table=self.name_table,
                                          identifier_format=self.identifier_format)

            span_candidates = candidates_of
        generator = EndToEndSequenceGenerator(
            models, self.tgt_dict, entity_tree=self.prefix_tree, markup=markup, mention_tree=mtree,
            max_mention_len=cfg.max_mention_len, span_candidates=span_candidates, beam_size=beam,
            max_len_a=getattr(args, "max_len_a", 0), max_len_b=getattr(args, "max_len_b", 200),
            min_len=getattr(args, "min_len", 1), normalize_scores=not getattr(args, "unnormalized", False),
            len_penalty=getattr(args, "lenpen", 1), unk_penalty=getattr(args, "unkpen", 0),
            temperature=getattr(args, "temperature", 1.0))
        return generator

    def _token_text(self, token_ids) -> str:
        """The text of target token ids (--bpe undone)."""
        return identifier_text(torch.as_tensor(list(token_ids), dtype=torch.long), self.tgt_dict, self._bpe)

    def _end_to_end_step(self, generator, models, sample, prefix_tokens, constraints):
        """Decode a batch of raw sentences and print one L- line per linked span."""
        from fairseq import utils

        from . import markup as markup_format
        from .e2e_search import span_entities

        hypos = super().inference_step(generator, models, sample, prefix_tokens=prefix_tokens, constraints=constraints)
        resolver = self.resolver if self.name_table is not None else None
        for row, (sid, sentence_hypos) in enumerate(zip(sample["id"].tolist(), hypos)):
            src = utils.strip_pad(sample["net_input"]["src_tokens"][row], self.src_dict.pad()).tolist()
            if src and src[-1] == self.src_dict.eos():
                src = src[:-1]
            symbols = [self.src_dict[t] for t in src]
            if self._bpe is None:
                line = " ".join(symbols)
                tokens = markup_format.whitespace_tokens(line)
            elif hasattr(self._bpe, "sp"):  # exactly fairseq's decoding of the pieces
                line, tokens = markup_format.sentencepiece_line(symbols)
            else:  # GPT-2's decoding is lossless: the line re-tokenizes to its source
                line = self._bpe.decode(" ".join(symbols))
                tokens = markup_format.gpt2_tokens(self._bpe.bpe, line)
            if [t.symbol for t in tokens] != symbols:
                tokens = None  # the detokenized line does not re-tokenize to the source: no offsets
                logger.warning("sentence %d: its detokenized line does not re-tokenize to its source tokens; "
                               "its L- lines give no character offsets (-)", sid)
            for span in span_entities(sentence_hypos, self.tgt_dict, self._bpe, resolver, alpha=1.0,
                                      marginalize=self.cfg.marginalize):
                if tokens is not None:
                    a, b = markup_format.token_span_to_chars(line, tokens, span["start"], span["end"])
                    start, end, mention = str(a), str(b), line[a:b]
                    if a == b:
                        continue  # a span of whitespace pieces only (a lone SentencePiece \u2581)
                else:
                    start, end, mention = "-", "-", self._token_text(src[span["start"]: span["end"]])
                print(f"L-{sid}\t{start}\t{end}\t{span['score']:.6f}\t{span['id'] or '-'}\t"
                      f"{span['identifier']}\t{mention}", flush=True)
        return hypos

    # ---- training: grouped targets (--target-groups) and validation decoding (--eval-accuracy) ----

    def load_dataset(self, split, epoch=1, combine=False, **kwargs):
        """fairseq's language-pair split; with --target-groups, grouped by DATA/<split>.group (docs/training.md)."""
        super().load_dataset(split, epoch=epoch, combine=combine, **kwargs)
        if self.given_candidates is not None and len(self.given_candidates) < len(self.datasets[split]):
            raise GenreError(f"--candidates-file {self.cfg.candidates_file} has {len(self.given_candidates)} lines, "
                             f"but the {split} subset has {len(self.datasets[split])} sentences (one line each)")
        if not self.cfg.target_groups:
            return
        paths = fairseq_utils.split_paths(self.cfg.data)
        data_path = paths[(epoch - 1) % len(paths)] if split == self.cfg.train_subset else paths[0]
        path = os.path.join(data_path, f"{split}.group")
        if os.path.isfile(path):
            self.datasets[split] = GroupedTargetsDataset(self.datasets[split], read_group_ids(path), path)
        elif split == self.cfg.train_subset:
            raise ValueError(f"--target-groups: {path} not found (one group id per training example, see docs/training.md)")
        else:
            logger.info("--target-groups: no %s, so every %s example is its own group", path, split)

    def build_model(self, cfg, from_checkpoint=False):
        """fairseq's model; with --eval-accuracy, also the constrained generator that validation decodes with.

        For a checkpoint (``from_checkpoint``: fairseq-generate --path) the model is built without
        random initialisation, and fairseq's ``load_state_dict`` then keeps the checkpoint's tensors.
        """
        if from_checkpoint:
            from .loading import build_for_checkpoint

            model = build_for_checkpoint(super().build_model, cfg, from_checkpoint)
        else:
            model = super().build_model(cfg, from_checkpoint)
        if self.cfg.eval_accuracy:
            if self.prefix_tree is None:
                raise ValueError("--eval-accuracy decodes the validation set with the constrained search: give --trie KB.trie")
            gen_args = json_object_option("--eval-accuracy-args", self.cfg.eval_accuracy_args, '{"beam": 10}')
            self._accuracy_bpe_options = None
            if self.cfg.eval_accuracy_bpe:
                if self.name_table is None:
                    raise ValueError("--eval-accuracy-bpe decodes identifiers for entity_acc: give --name-table KB.names")
                self._accuracy_bpe_options = json_object_option(
                    "--eval-accuracy-bpe", self.cfg.eval_accuracy_bpe, '{"bpe": "sentencepiece", ...}')
                if "bpe" not in self._accuracy_bpe_options:
                    raise ValueError(f"--eval-accuracy-bpe must name the BPE (\"bpe\": ...), got {self.cfg.eval_accuracy_bpe!r}")
            self._accuracy_bpe = None  # built at the first validation: it may read files
            self._accuracy_generator = self.build_generator([model], Namespace(**gen_args))
            restore_training_attention(model)
        return model

    def valid_step(self, sample, model, criterion):
        """fairseq's validation loss; with --eval-accuracy, also decode the batch and count correct answers."""
        loss, sample_size, logging_output = super().valid_step(sample, model, criterion)
        if self.cfg.eval_accuracy:
            logging_output.update(self._count_correct(sample, model))
        return loss, sample_size, logging_output

    def _count_correct(self, sample, model) -> dict:
        """Decode one row per source (group) and count exact identifier and entity matches with its gold."""
        rows, golds = decoding_rows(sample, self.tgt_dict.pad())
        counts = {"_acc_total": len(rows), "_acc_identifier": 0, "_acc_entity": 0}
        if not rows:
            return counts
        with torch.no_grad():
            hypos = self._accuracy_generator.generate([model], select_rows(sample, rows))
        bpe = self._validation_bpe() if self.name_table is not None else None
        for sentence_hypos, gold in zip(hypos, golds):
            best = sentence_hypos[0]["tokens"] if sentence_hypos else None
            counts["_acc_identifier"] += int(best is not None and any(torch.equal(best, g) for g in gold))
            if self.name_table is not None:
                texts, logprobs, lengths = hypothesis_fields(sentence_hypos, self.tgt_dict, bpe)
                ranked = rank_entities(texts, logprobs, lengths, self.resolver, marginalize=self.cfg.marginalize,
                                       alpha=self.cfg.marginalize_alpha)
                gold_ids = {self.resolver(identifier_text(g, self.tgt_dict, bpe)) for g in gold} - {None}
                counts["_acc_entity"] += int(bool(ranked) and ranked[0]["id"] in gold_ids)
        return counts

    def _validation_bpe(self):
        """The --eval-accuracy-bpe BPE (None: identifiers are the dictionary's symbols joined by spaces)."""
        if self._accuracy_bpe is None and self._accuracy_bpe_options is not None:
            self._accuracy_bpe = encoders.build_bpe(Namespace(**self._accuracy_bpe_options))
        return self._accuracy_bpe

    def reduce_metrics(self, logging_outputs, criterion):
        """fairseq's metrics; with --eval-accuracy, also identifier_acc and entity_acc (percent)."""
        super().reduce_metrics(logging_outputs, criterion)
        if not self.cfg.eval_accuracy:
            return
        total = sum(log.get("_acc_total", 0) for log in logging_outputs)
        if total == 0:
            return
        metrics.log_scalar("_acc_total", total)
        metrics.log_scalar("_acc_identifier", sum(log.get("_acc_identifier", 0) for log in logging_outputs))
        metrics.log_derived("identifier_acc", lambda m: round(100.0 * m["_acc_identifier"].sum / m["_acc_total"].sum, 3))
        if self.name_table is not None:
            metrics.log_scalar("_acc_entity", sum(log.get("_acc_entity", 0) for log in logging_outputs))
            metrics.log_derived("entity_acc", lambda m: round(100.0 * m["_acc_entity"].sum / m["_acc_total"].sum, 3))


def raw_text_without_bpe_warning(data_dir: str, unknown: int, total: int) -> Optional[str]:
    """The warning for raw text read without ``--bpe`` next to a BPE model, or mostly ``<unk>``; else None."""
    if not total or unknown * 5 < total:  # fewer than 1 in 5 unknown: text already in the model's pieces
        return None
    names = set(os.listdir(data_dir)) if os.path.isdir(data_dir) else set()
    spm = sorted(n for n in names if n.endswith(".model"))
    if spm:
        hint = f"--bpe sentencepiece --sentencepiece-model {os.path.join(data_dir, spm[0])}"
    elif "encoder.json" in names and "vocab.bpe" in names:
        hint = (f"--bpe gpt2 --gpt2-encoder-json {os.path.join(data_dir, 'encoder.json')} "
                f"--gpt2-vocab-bpe {os.path.join(data_dir, 'vocab.bpe')}")
    elif unknown * 2 >= total:
        hint = "the --bpe (and --tokenizer) the model was trained with"
    else:
        return None
    return (f"raw text without --bpe: {unknown} of {total} input tokens are <unk> in the source dictionary, "
            f"and the output is likely garbage; give {hint}")


class GenreError(ValueError):
    """A bad option value or input of the genre task: fairseq's commands print it as one line."""


def _genre_frames(tb) -> bool:
    """Whether a traceback passes through this package (an error of ours, not of fairseq or torch)."""
    here = os.path.dirname(os.path.abspath(__file__))
    while tb is not None:
        if os.path.abspath(tb.tb_frame.f_code.co_filename).startswith(here + os.sep):
            return True
        tb = tb.tb_next
    return False


def one_line_error(exc: BaseException, tb) -> Optional[str]:
    """The one line a fairseq command with the genre task prints for ``exc``, or None (keep the traceback).

    Ours: a GenreError, and a ValueError / OSError raised through this package (option checks,
    file loading). fairseq's and torch's refusals of the inputs: a checkpoint torch's safe loading
    or unpickling refuses, a checkpoint whose embeddings do not fit the dictionaries, an input
    longer than the model's positions. Anything else is a bug and keeps its traceback.
    """
    from .hub import _first_line

    text = str(exc)
    if isinstance(exc, GenreError) or (isinstance(exc, (ValueError, OSError)) and _genre_frames(tb)):
        return text.splitlines()[0] if text else type(exc).__name__
    if isinstance(exc, (pickle.UnpicklingError, EOFError)) or "WeightsUnpickler" in text:
        return f"checkpoint (--path) refused: {_first_line(exc)}"
    if isinstance(exc, RuntimeError) and "size mismatch" in text:
        mismatch = next(x.strip() for x in text.splitlines() if "size mismatch" in x)
        return (f"the checkpoint (--path) does not fit the dictionaries of the data directory ({mismatch}); "
                f"use the dict.*.txt released with the checkpoint")
    if text.startswith("Size of sample #"):
        return text.splitlines()[0] + " (or shorten the input)"
    return None


def _genre_excepthook(exc_type, exc, tb) -> None:
    line = one_line_error(exc, tb) if isinstance(exc, Exception) else None
    if line is None:
        _genre_excepthook.previous(exc_type, exc, tb)
        return
    print(f"error: {line}", file=sys.stderr, flush=True)
    sys.exit(2)


def install_error_hook() -> None:
    """Make uncaught genre-task errors print ``error: <one line>`` and exit 2 (fairseq's CLIs, not the library)."""
    if sys.excepthook is not _genre_excepthook:
        _genre_excepthook.previous = sys.excepthook
        sys.excepthook = _genre_excepthook


def check_length_options(args) -> None:
    """Refuse generation options whose values leave no valid output or no ranking, before fairseq asserts.

    A NaN or infinite ``--lenpen`` makes every normalized score NaN or equal (an arbitrary order);
    ``--max-len-a``/``--max-len-b`` that allow no token would stop fairseq with an AssertionError.
    """
    lenpen = getattr(args, "lenpen", 1.0)
    if lenpen is not None and not math.isfinite(lenpen):
        raise GenreError(f"--lenpen must be a finite number (scores are log p / length ** lenpen), got {lenpen}")
    temperature = getattr(args, "temperature", 1.0)
    if temperature is not None and not (math.isfinite(temperature) and temperature > 0):
        raise GenreError(f"--temperature must be a finite number > 0, got {temperature}")
    a, b = getattr(args, "max_len_a", 0), getattr(args, "max_len_b", 200)
    if not (math.isfinite(a) and a >= 0):
        raise GenreError(f"--max-len-a must be a finite number >= 0, got {a}")
    if a == 0 and b < 1:
        raise GenreError(f"--max-len-b must be >= 1 (the longest output, in tokens, with --max-len-a 0), got {b}")


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
        mentions = MentionTable.load(cfg.candidates_table, verify=not getattr(cfg, "no_verify", False))
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


def load_name_table_for(path: str, tree: Optional[PrefixTree], tree_path: Optional[str], *,
                        verify: bool = True) -> NameTable:
    """Load a name table and check that it is the one the prefix tree's identifiers were compiled from."""
    if not os.path.isfile(path):
        raise ValueError(f"--name-table {path}: file not found")
    table = NameTable.load(path, verify=verify)
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


def load_prefix_tree_for(path: str, tgt_dict, dict_name: str = "the target dictionary", *,
                         verify: bool = True) -> PrefixTree:
    """Load a prefix tree (checksums verified unless ``verify=False``) and check that it was built for ``tgt_dict``."""
    tree = PrefixTree.load(path, verify=verify)
    check_prefix_tree(tree, tgt_dict, f"--trie {path}", dict_name)
    logger.info("prefix tree %s: %d sequences, %d nodes", path, tree.num_sequences, tree.num_nodes)
    return tree


# ---- grouped targets: several target names of one source, batched together (--target-groups) ----


def read_group_ids(path: str) -> np.ndarray:
    """The group ids of a ``.group`` file: one non-negative integer per line, one line per example."""

    def ids():
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                text = line.strip()
                if not text.isdigit() or not text.isascii():
                    raise ValueError(f"{path}:{lineno}: a group id is a non-negative integer, got {text!r}")
                yield int(text)

    return np.fromiter(ids(), dtype=np.int64)


def json_object_option(flag: str, text: str, example: str) -> dict:
    """The JSON object given to a command-line option; a ValueError naming the option otherwise."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{flag} is not valid JSON ({e}): {text!r}") from None
    if not isinstance(value, dict):
        raise ValueError(f"{flag} must be a JSON object, e.g. '{example}', got {text!r}")
    return value


def identifier_text(tokens, tgt_dict, bpe=None) -> str:
    """The identifier a target or hypothesis spells (end token dropped, BPE undone when given)."""
    text = tgt_dict.string(tokens)
    return (bpe.decode(text) if bpe is not None else text).strip()


def restore_training_attention(model) -> None:
    """Undo the beam-search shortcut a SequenceGenerator switches on in a BART model it is built for.

    ``SequenceGenerator`` calls ``set_beam_size(beam)`` on the model; BART then makes every decoder
    encoder-attention keep one row in ``beam`` of the encoder output, and stops reordering that
    output. In training, where rows are distinct examples, this raises a shape error, or, when the
    batch size is a multiple of the beam, silently makes each row attend to another example's
    source. Back to the default here: beam search then reorders the encoder output as usual.
    """
    for module in model.modules():
        if isinstance(module, MultiheadAttention):
            module.set_beam_size(1)
    encoder = getattr(model, "encoder", None)
    if encoder is not None:
        encoder.__dict__.pop("reorder_encoder_out", None)  # BART's no-op replacement, set per instance


def decoding_rows(sample, pad: int):
    """Rows to decode for validation (the first of each group) and each one's gold targets (EOS-terminated)."""
    targets = [fairseq_utils.strip_pad(t, pad) for t in sample["target"]]
    group = sample.get("group")
    if group is None:
        return list(range(len(targets))), [[t] for t in targets]
    first = {}
    golds = {}
    for row, g in enumerate(group.tolist()):
        first.setdefault(g, row)
        golds.setdefault(g, []).append(targets[row])
    return list(first.values()), [golds[g] for g in first]


def select_rows(sample, rows):
    """The sub-batch of ``sample`` made of ``rows`` (what the sequence generator reads)."""
    index = torch.tensor(rows, dtype=torch.long, device=sample["target"].device)
    net_input = {k: v.index_select(0, index) for k, v in sample["net_input"].items() if torch.is_tensor(v)}
    return {"id": sample["id"].index_select(0, index), "net_input": net_input,
            "target": sample["target"].index_select(0, index), "nsentences": len(rows)}


class GroupedTargetsDataset(FairseqDataset):
    """A language-pair dataset whose items are groups: one source with several targets (consecutive examples).

    ``group_ids[i]`` is the group of example ``i``; a group is a run of equal ids, and an id may
    not come back after its run ends. Batches hold whole groups, at most ``max_tokens`` padded tokens
    (rows x longest source or target) and ``max_sentences`` rows (not groups); they are not rounded to
    ``--required-batch-size-multiple``. A collated batch is the pair dataset's batch of all member
    examples plus ``group``: ``(rows,)`` the batch-local group (``0..G-1``) of each row.
    """

    def __init__(self, pairs, group_ids: np.ndarray, path: str = "<group ids>"):
        super().__init__()
        if pairs.tgt_sizes is None:
            raise ValueError(f"{path}: grouped targets need a split with targets")
        if len(group_ids) != len(pairs):
            raise ValueError(f"{path} has {len(group_ids)} group ids, but its split has {len(pairs)} examples")
        self.pairs = pairs
        self.path = path
        n = len(group_ids)
        change = np.flatnonzero(group_ids[1:] != group_ids[:-1]) + 1
        self.starts = np.concatenate([[0], change, [n]]).astype(np.int64) if n else np.zeros(1, dtype=np.int64)
        self.group_ids = group_ids[self.starts[:-1]]
        if len(np.unique(self.group_ids)) != len(self.group_ids):
            seen = {}
            for run, gid in enumerate(self.group_ids.tolist()):
                if gid in seen:
                    raise ValueError(
                        f"{path}:{self.starts[run] + 1}: group {gid} already ended at line {self.starts[seen[gid] + 1]}; "
                        f"the examples of a group must be consecutive lines"
                    )
                seen[gid] = run
        self.group_sizes = np.diff(self.starts)
        self.src_sizes = pairs.src_sizes[self.starts[:-1]]
        self.tgt_sizes = np.maximum.reduceat(pairs.tgt_sizes, self.starts[:-1]) if n else np.zeros(0, np.int64)
        self.shuffle = pairs.shuffle

    def __len__(self):
        return len(self.group_sizes)

    def __getitem__(self, index):
        start, end = int(self.starts[index]), int(self.starts[index + 1])
        members = [self.pairs[i] for i in range(start, end)]
        for i, member in zip(range(start + 1, end), members[1:]):
            if not torch.equal(member["source"], members[0]["source"]):
                raise ValueError(
                    f"{self.path}:{i + 1}: example {i} is in group {self.group_ids[index]} with example {start} "
                    f"(line {start + 1}), but its source differs; a group is one source with several targets"
                )
        return {"id": index, "members": members}

    def collater(self, samples, pad_to_length=None):
        """The pair dataset's batch of every member, plus ``group`` (batch-local group of each row)."""
        batch = self.pairs.collater([m for s in samples for m in s["members"]], pad_to_length=pad_to_length)
        if batch:
            group = np.searchsorted(self.starts, batch["id"].numpy(), side="right") - 1
            batch["group"] = torch.from_numpy(np.unique(group, return_inverse=True)[1].reshape(-1))
        return batch

    def num_tokens(self, index):
        return int(self.group_sizes[index] * max(self.src_sizes[index], self.tgt_sizes[index]))

    def num_tokens_vec(self, indices):
        return self.group_sizes[indices] * np.maximum(self.src_sizes[indices], self.tgt_sizes[indices])

    def size(self, index):
        return (int(self.src_sizes[index]), int(self.tgt_sizes[index]))

    def ordered_indices(self):
        """Groups by length, as fairseq orders examples: by longest target, then by source (shuffled first)."""
        indices = np.random.permutation(len(self)).astype(np.int64) if self.shuffle else np.arange(len(self))
        indices = indices[np.argsort(self.tgt_sizes[indices], kind="mergesort")]
        return indices[np.argsort(self.src_sizes[indices], kind="mergesort")]

    def filter_indices_by_size(self, indices, max_sizes):
        return data_utils.filter_paired_dataset_indices_by_size(self.src_sizes, self.tgt_sizes, indices, max_sizes)

    def batch_by_size(self, indices, max_tokens=None, max_sentences=None, required_batch_size_multiple=1):
        """Batches of whole groups within ``max_tokens`` padded tokens and ``max_sentences`` rows."""
        max_tokens = max_tokens or float("inf")
        max_sentences = max_sentences or float("inf")
        lengths = np.maximum(self.src_sizes, self.tgt_sizes)
        batches, batch, rows, longest = [], [], 0, 0
        for g in np.asarray(indices, dtype=np.int64).tolist():
            n, length = int(self.group_sizes[g]), int(lengths[g])
            if n * length > max_tokens or n > max_sentences:
                raise ValueError(
                    f"{self.path}:{self.starts[g] + 1}: group {self.group_ids[g]} has {n} examples of up to {length} "
                    f"tokens, more than one batch holds (--max-tokens {max_tokens}, --batch-size {max_sentences})"
                )
            if batch and ((rows + n) * max(longest, length) > max_tokens or rows + n > max_sentences):
                batches.append(np.array(batch, dtype=np.int64))
                batch, rows, longest = [], 0, 0
            batch.append(g)
            rows += n
            longest = max(longest, length)
        if batch:
            batches.append(np.array(batch, dtype=np.int64))
        return batches

    def set_epoch(self, epoch):
        self.pairs.set_epoch(epoch)

    @property
    def can_reuse_epoch_itr_across_epochs(self):
        return self.pairs.can_reuse_epoch_itr_across_epochs
