"""Python interface: load a GENRE or mGENRE checkpoint directory and link marked mentions to entities.

    from genre_fairseq.hub import mGENRE
    model = mGENRE.from_pretrained("fairseq_multilingual_entity_disambiguation")
    model.sample(["[START] Einstein [END] era un fisico tedesco."], trie="kb.trie", name_table="kb.names")
    # -> [[{"id": "Q937", "score": ..., "texts": ["Albert Einstein >> it", ...], "scores": [...]}, ...]]
    model.retrieve(["who wrote the theory of relativity"], trie="kilt.trie", name_table="kilt.canonical.names", k=5)
    # -> [[{"id": "736", "title": "Albert Einstein", "score": ...}, ...]]   (page-level retrieval, no markers)

Checkpoint directory layouts (the official releases):

* GENRE: ``model.pt``, ``dict.source.txt``, ``dict.target.txt``; GPT-2 BPE files given as local
  paths (``gpt2_encoder_json=``, ``gpt2_vocab_bpe=``; looked up in the directory as
  ``encoder.json`` / ``vocab.bpe`` when not given). Mentions are marked ``[START_ENT] m [END_ENT]``.
* mGENRE: ``model.pt``, ``dict.source.txt``, ``dict.target.txt``, ``spm_256000.model`` (any
  ``*.model`` SentencePiece file in the directory, or ``sentencepiece_model=``). Mentions are marked
  ``[START] m [END]``.
* No BPE at all (``bpe=None``): whitespace-separated dictionary symbols, as in the tests and demo.

Inputs longer than the model's cap (GENRE 384 words, mGENRE 128 words, and never more source
tokens than the model's positions) are cut *around the mention*: the mention is always kept,
and the remaining budget is shared between the left and right context (whatever one side does not
use goes to the other). Nothing is cut from one end blindly. An uncut sentence is encoded exactly
as given (stripped, inner whitespace kept), as fairseq's BPE scripts and ``fairseq-interactive``
encode it, so the hub and ``fairseq-generate`` see the same tokens; a cut one is re-joined with
single spaces.

End-to-end linking (docs/end_to_end.md): ``model.link(texts, trie=..., name_table=...)`` marks and
links every mention of raw texts, ``[[{"start", "end", "mention", "id", "identifier", "score"}, ...]]``
with character offsets into each text; ``model.link(texts, spans=[[(start, end), ...]])``
disambiguates given mentions through ``sample``.

Bad input (each a one-line error naming the file, option or sentence index):

* ``sample()`` takes a list of strings: one string is a ``TypeError``; an empty list returns ``[]``
  without loading anything. Each sentence must hold exactly one ``START ... END`` pair of the
  model's markers, as separate words: none, one without the other, two of either, ``END`` before
  ``START``, a marker glued to a word, and the other model's markers (``[START_ENT]`` given to
  mGENRE) are each a ``ValueError`` that says which.
* ``from_pretrained()``: a missing ``model.pt``, ``dict.*.txt``, SentencePiece model or GPT-2 BPE
  file is a ``FileNotFoundError`` naming the path; a corrupt one, a checkpoint that torch's safe
  loading refuses, dictionaries of another size than the checkpoint's embeddings, and BPE files
  whose symbols are not the dictionary's (e.g. the other model's) are a ``ValueError``.
* ``trie=`` built for another dictionary, ``name_table=`` other than the one the trie was built
  from (fingerprints), and ``identifier_format=`` unknown or disagreeing with the trie's: ``ValueError``.

Languages: ``sample()`` takes no language. A language code enters only as part of a generated
``name >> lang`` / ``lang >> name`` identifier, when it is parsed and looked up in the name table.
Codes are not checked against ISO 639 (Wikipedia's own codes include ``simple``, ``als``,
``zh-yue``, ``be-tarask``): they are the name table's keys. An identifier whose (lang, name) the
table lacks, an unknown language included, or one that does not parse, gets ``"id": None`` and is
ranked on its own (``marginalize.py``); it is never an error in the middle of a batch. A trie built
from the name table (``genre-trie build --names``) only yields identifiers the table holds.
"""
from __future__ import annotations

import glob
import logging
import math
import os
import pickle
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch

from . import markup as markup_format
from .context import cut_around_mention
from .candidates import CandidateTrees, IdentifierEncoder, mention_text, resolve_candidates
from .e2e_search import EndToEndSequenceGenerator, MarkupTokens, mention_candidates, span_entities
from .marginalize import NameResolver, add_nil, check_nil_options, hypothesis_fields, rank_entities
from .name_table import MentionTable, NameTable
from .prefix_tree import IDENTIFIER_FORMATS, PrefixTree
from .task import check_name_table, check_prefix_tree, identifier_text

logger = logging.getLogger(__name__)

__all__ = ["GENRE", "mGENRE", "cut_around_mention"]


_BPE_FILE_FIELDS = ("sentencepiece_model", "gpt2_encoder_json", "gpt2_vocab_bpe")  # BPE config fields naming files
_BPE_KINDS = {"sentencepiece": "SentencePiece model", "gpt2": "GPT-2 BPE files"}


def _first_line(error: BaseException) -> str:
    """A one-line reason for a load failure (torch's safe-loading refusals are paragraphs)."""
    text = str(error)
    if "WeightsUnpickler error:" in text:  # torch refused a pickled object: keep what it refused
        detail = next((x.strip() for x in text.split("WeightsUnpickler error:", 1)[1].splitlines() if x.strip()), "")
        return "refused by torch's safe loading: " + detail.split(". ")[0]
    lines = [x.strip() for x in text.splitlines() if x.strip()]
    if not lines:
        return f"{type(error).__name__}: the file ends early"
    line = lines[0] + (" " + lines[1] if lines[0].endswith(":") and len(lines) > 1 else "")  # "Error(s) ...:"
    return f"{type(error).__name__}: {line.split('. ')[0]}"


def _load_dictionary(path: str):
    """A fairseq dictionary file; a missing or malformed one is refused, naming it."""
    from fairseq.data import Dictionary

    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: dictionary not found")
    try:
        return Dictionary.load(path)
    except (ValueError, RuntimeError, UnicodeDecodeError, IndexError) as e:
        raise ValueError(f"{path}: not a fairseq dictionary ({_first_line(e)})") from None


def _check_bpe_fits(bpe, kind: str, files: str, dictionary, dict_path: str, sample: int = 1000) -> None:
    """Refuse BPE files that do not produce the dictionary's symbols (e.g. the other model's).

    A GENRE dictionary lists GPT-2 BPE ids, an mGENRE one SentencePiece pieces. With a BPE that
    does not fit, every input would silently become ``<unk>``s. Checks the dictionary's first
    ``sample`` ordinary symbols (its most frequent) and wants at least half of them to fit.
    """
    symbols = [dictionary[i] for i in range(dictionary.nspecial, min(len(dictionary), dictionary.nspecial + sample))]
    symbols = [x for x in symbols if not (x.startswith("madeupword") or x.startswith("<") or x.startswith("["))]
    if not symbols:
        return
    if kind == "gpt2":
        size = len(bpe.bpe.encoder)
        fits = sum(x.isdigit() and int(x) < size for x in symbols)
    else:
        unk = bpe.sp.unk_id()
        fits = sum(bpe.sp.PieceToId(x) != unk for x in symbols)
    if 2 * fits < len(symbols):
        what = "GPT-2 BPE ids" if kind == "gpt2" else "pieces of the SentencePiece model"
        verb = "do" if " / " in files else "does"
        raise ValueError(f"{files} {verb} not fit {dict_path}: only {fits} of its first {len(symbols)} symbols "
                         f"are {what} (is this the other model's BPE, or its dictionary?)")


class _Hub:
    """A loaded (m)GENRE model with its dictionaries and BPE, ready to ``sample``."""

    START: str
    END: str
    OTHER_MARKERS: Optional[Tuple[str, str, str]] = None  # the other model's start and end markers and name
    MAX_WORDS: int
    DEFAULT_BPE: str

    def __init__(self, models, task, bpe, device: str) -> None:
        self.models = models
        self.task = task
        self.bpe = bpe
        self.device = torch.device(device)
        self.src_dict, self.tgt_dict = task.source_dictionary, task.target_dictionary
        # Source tokens the models accept (EOS included), from their position embeddings.
        self._max_source_tokens = min(
            int(m.max_positions()[0]) if isinstance(m.max_positions(), tuple) else 10**9 for m in models) - 1
        self._trees: Dict[str, PrefixTree] = {}
        self._tables: Dict[str, NameTable] = {}
        #: Check the checksums and structure of trees and tables opened from paths (a damaged file is
        #: refused); set False only for files already checked (``genre-trie inspect``).
        self.verify_files = True

    @classmethod
    def from_pretrained(
        cls,
        model_dir: str,
        checkpoint_file: str = "model.pt",
        *,
        bpe: Optional[str] = "auto",
        sentencepiece_model: Optional[str] = None,
        gpt2_encoder_json: Optional[str] = None,
        gpt2_vocab_bpe: Optional[str] = None,
        device: Optional[str] = None,
    ) -> "_Hub":
        """Load ``model_dir/checkpoint_file`` with the directory's dictionaries and BPE (see module doc)."""
        from fairseq.data import encoders
        from fairseq.dataclass.utils import convert_namespace_to_omegaconf  # noqa: F401  (fairseq init order)

        from . import loading

        path = os.path.join(model_dir, checkpoint_file)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path}: checkpoint not found")
        dicts = [_load_dictionary(os.path.join(model_dir, f"dict.{side}.txt")) for side in ("source", "target")]
        bpe_cfg = cls._bpe_config(model_dir, bpe, sentencepiece_model, gpt2_encoder_json, gpt2_vocab_bpe)
        bpe_obj = None
        if bpe_cfg is not None:
            files = " / ".join(str(v) for k, v in vars(bpe_cfg).items() if k in _BPE_FILE_FIELDS)
            try:
                bpe_obj = encoders.build_bpe(bpe_cfg)
            except (RuntimeError, OSError, ValueError, KeyError) as e:  # a corrupt .model / encoder.json / vocab.bpe
                raise ValueError(f"{files}: unreadable {_BPE_KINDS[bpe_cfg.bpe]} ({_first_line(e)})") from e
            _check_bpe_fits(bpe_obj, bpe_cfg.bpe, files, dicts[1], os.path.join(model_dir, "dict.target.txt"))
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        # A checkpoint trained with the genre task records the files of its options (--trie,
        # --eval-accuracy's name table, ...); sample() takes its own, so none is reopened here.
        overrides = {"data": model_dir, "source_lang": "source", "target_lang": "target", "trie": None,
                     "name_table": None, "marginalize": False, "eval_accuracy": False, "target_groups": False,
                     "candidates_table": None, "candidates_file": None}
        try:
            models, _cfg, task = loading.load_model_ensemble_and_task([path], arg_overrides=overrides)
        except RuntimeError as e:
            if "size mismatch" not in str(e):
                raise ValueError(f"{path}: not a loadable fairseq checkpoint ({_first_line(e)})") from e
            mismatch = next(line.strip() for line in str(e).splitlines() if "size mismatch" in line)
            raise ValueError(f"{path} does not fit the dictionaries in {model_dir} ({mismatch}); "
                             f"use the dict.source.txt / dict.target.txt released with the checkpoint") from e
        except (pickle.UnpicklingError, EOFError, KeyError) as e:
            raise ValueError(f"{path}: not a loadable fairseq checkpoint ({_first_line(e)})") from e
        for model in models:
            model.eval()
            model.to(device)
        return cls(models, task, bpe_obj, device)

    @classmethod
    def _bpe_config(cls, model_dir, bpe, spm, enc_json, vocab_bpe):
        from argparse import Namespace

        if bpe == "auto":
            bpe = cls.DEFAULT_BPE
        if bpe is None:
            return None
        if bpe == "sentencepiece":
            if spm is None:
                found = sorted(glob.glob(os.path.join(model_dir, "*.model")))
                if not found:
                    raise FileNotFoundError(f"{model_dir}: no SentencePiece model (*.model); pass sentencepiece_model=")
                spm = found[0]
            if not os.path.isfile(spm):
                raise FileNotFoundError(f"{spm}: SentencePiece model not found")
            return Namespace(bpe="sentencepiece", sentencepiece_model=spm, sentencepiece_enable_sampling=False,
                             sentencepiece_alpha=None)
        if bpe == "gpt2":
            enc_json = enc_json or os.path.join(model_dir, "encoder.json")
            vocab_bpe = vocab_bpe or os.path.join(model_dir, "vocab.bpe")
            for what, p in (("gpt2_encoder_json", enc_json), ("gpt2_vocab_bpe", vocab_bpe)):
                if not os.path.isfile(p):
                    raise FileNotFoundError(f"{p}: GPT-2 BPE file not found; pass {what}= (a local path)")
            return Namespace(bpe="gpt2", gpt2_encoder_json=enc_json, gpt2_vocab_bpe=vocab_bpe)
        raise ValueError(f"bpe must be 'auto', 'sentencepiece', 'gpt2' or None, not {bpe!r}")

    # ------------------------------------------------------------------ encoding
    def _source_ids(self, sentence: str, index: int) -> torch.Tensor:
        if not isinstance(sentence, str):
            raise TypeError(f"sentence {index}: expected a string, got {type(sentence).__name__}")
        all_words = sentence.split()
        try:
            words = cut_around_mention(all_words, self.START, self.END, self.MAX_WORDS)
        except ValueError as e:
            hint = self._marker_hint(all_words, sentence)
            raise ValueError(f"sentence {index}: {e}{hint}: {sentence[:80]!r}") from None
        # An uncut sentence goes to the BPE as fairseq's BPE scripts and fairseq-interactive give it
        # (stripped, inner whitespace kept): GPT-2 BPE encodes every space, so re-joining would change it.
        text = sentence.strip() if len(words) == len(all_words) else " ".join(words)
        budget = len(words)
        while True:
            symbols = self.bpe.encode(text) if self.bpe is not None else text
            ids = self.src_dict.encode_line(symbols, add_if_not_exist=False, append_eos=True).long()
            if ids.numel() <= self._max_source_tokens or budget <= 1:
                return ids
            budget -= max(1, budget // 8)
            text = " ".join(cut_around_mention(words, self.START, self.END, budget))

    def _marker_hint(self, words: List[str], sentence: str) -> str:
        """What is wrong with a sentence's markers, beyond ``cut_around_mention``'s message."""
        starts, ends = words.count(self.START), words.count(self.END)
        hint = ""
        if (starts, ends) != (0, 0):
            hint = (f"; found {starts} {self.START} and {ends} {self.END}" if (starts, ends) != (1, 1)
                    else f"; {self.END} comes first")
        glued = [m for m in (self.START, self.END) if m not in words and m in sentence]
        if glued:
            return hint + f"; {glued[0]} must be a separate word, with whitespace around it"
        other_start, other_end, other_model = self.OTHER_MARKERS or ("", "", "")
        if (starts, ends) == (0, 0) and other_model and (other_start in words or other_end in words):
            return hint + f"; found {other_start} ... {other_end}, which are {other_model}'s markers"
        return hint

    def _tree(self, trie: Union[str, PrefixTree]) -> PrefixTree:
        if isinstance(trie, PrefixTree):
            tree = trie
        else:
            if trie not in self._trees:
                self._trees[trie] = PrefixTree.load(trie, verify=self.verify_files)
            tree = self._trees[trie]
        check_prefix_tree(tree, self.tgt_dict, f"trie {tree.path or '<in memory>'}", "this model's target dictionary")
        return tree

    def _table(self, name_table: Union[str, NameTable], tree: Optional[PrefixTree]) -> NameTable:
        table = name_table
        if not isinstance(name_table, NameTable):
            if name_table not in self._tables:
                if not os.path.isfile(name_table):
                    raise FileNotFoundError(f"name table file not found: {name_table}")
                self._tables[name_table] = NameTable.load(name_table, verify=self.verify_files)
            table = self._tables[name_table]
        check_name_table(table, tree, f"name table {table.path}", f"trie {tree.path if tree is not None else ''}")
        return table

    @staticmethod
    def _identifier_format(identifier_format: Optional[str], tree: Optional[PrefixTree]) -> Optional[str]:
        """The format hypotheses are parsed in: ``identifier_format``, which must agree with the tree's."""
        recorded = tree.identifier_format if tree is not None else None
        if identifier_format is None:
            return recorded
        if identifier_format not in IDENTIFIER_FORMATS:
            raise ValueError(f"identifier_format={identifier_format!r}: expected one of "
                             f"{', '.join(IDENTIFIER_FORMATS)}")
        if recorded is not None and recorded != identifier_format:
            raise ValueError(f"identifier_format={identifier_format!r} disagrees with trie "
                             f"{tree.path or '<in memory>'}, which holds {recorded} identifiers")
        return identifier_format

    def _knowledge_base(self, trie, name_table, identifier_format):
        """``(tree, name table, identifier format, resolver)`` of the options (each None when not given), checked."""
        tree = self._tree(trie) if trie is not None else None
        table = self._table(name_table, tree) if name_table is not None else None
        fmt = self._identifier_format(identifier_format, tree)
        resolver = None
        if table is not None:
            if fmt is None:
                raise ValueError("name_table needs identifier_format= (or a trie that records it)")
            resolver = NameResolver(table, fmt)
        return tree, table, fmt, resolver

    # ------------------------------------------------------------------ sampling
    @torch.no_grad()
    def sample(
        self,
        sentences: Sequence[str],
        beam: int = 10,
        trie: Union[str, PrefixTree, None] = None,
        name_table: Union[str, NameTable, None] = None,
        marginalize: Optional[bool] = None,
        candidates: Optional[Sequence[Optional[Sequence[str]]]] = None,
        max_len_b: int = 32,
        *,
        alpha: float = 0.5,
        identifier_format: Optional[str] = None,
        batch_size: int = 32,
        mention_table: Union[str, MentionTable, None] = None,
        candidates_k: Optional[int] = 10,
        candidate_multiple: int = 2,
        nil_threshold: Optional[float] = None,
        nil_margin: Optional[float] = None,
    ) -> List[List[dict]]:
        """Link each sentence's marked mention: ranked ``{"id", "score", "texts", "scores"}`` with a name
        table, else ranked ``{"text", "score"}`` (score: log p / L ** alpha).

        Candidates (see ``genre_fairseq.candidates``): ``candidates`` gives, per sentence, None or a
        list of entity ids (identifier strings when there is no name table) to restrict decoding
        to; ``mention_table`` (a ``genre-trie names --mentions`` table) supplies the top
        ``candidates_k`` entities of the mention's exact text for sentences without given ones.
        A sentence with no candidate in the tree falls back to the whole ``trie``. With either
        option, every returned entry also has ``"candidates"``: how its sentence was decoded
        (e.g. ``"3 candidates (mentions), 7 identifiers"`` or ``"no candidates: full tree"``).

        ``marginalize`` (default: True with a name table) needs ``name_table``.
        ``candidate_multiple``: candidates per step in beams, 2 (default) or 1 (the reference
        GENRE search, which can lose a better identifier; see ``genre_fairseq.search``).
        No entity (``marginalize.add_nil``): with ``nil_threshold`` (best score below it) or
        ``nil_margin`` (best beats the second by less), a sentence's list starts with
        ``{"nil": True, "id": None, "score": <best score>, ...}``, and every entry has ``"nil"``.
        """
        if isinstance(sentences, (str, bytes)):
            raise TypeError("sample() takes a list of sentences, not one string")
        if candidates is not None and (isinstance(candidates, str) or len(candidates) != len(sentences)):
            raise ValueError(f"candidates must be a list with one entry (None or a list) per sentence: "
                             f"{len(sentences)} sentences")
        _check_sample_options(beam=beam, max_len_b=max_len_b, batch_size=batch_size, candidates_k=candidates_k,
                              alpha=alpha, candidate_multiple=candidate_multiple)
        check_nil_options(nil_threshold, nil_margin)
        if marginalize and name_table is None:
            raise ValueError("marginalize=True groups hypotheses by entity: it needs name_table=")
        if not sentences:
            return []
        sources = [self._source_ids(s, i) for i, s in enumerate(sentences)]
        return self._decode(sentences, sources, beam=beam, trie=trie, name_table=name_table, marginalize=marginalize,
                            candidates=candidates, max_len_b=max_len_b, alpha=alpha,
                            identifier_format=identifier_format, batch_size=batch_size, mention_table=mention_table,
                            candidates_k=candidates_k, candidate_multiple=candidate_multiple,
                            nil_threshold=nil_threshold, nil_margin=nil_margin)

    def _decode(self, sentences, sources: List[torch.Tensor], *, beam, trie, name_table, marginalize, candidates,
                max_len_b, alpha, identifier_format, batch_size, mention_table, candidates_k, candidate_multiple,
                nil_threshold, nil_margin) -> List[List[dict]]:
        """Decode encoded sources in batches and rank each one's hypotheses (``sample``'s and ``retrieve``'s work)."""
        tree, table, fmt, resolver = self._knowledge_base(trie, name_table, identifier_format)
        restrict = candidates is not None or mention_table is not None
        if mention_table is not None:
            if table is None:
                raise ValueError("mention_table= gives entity ids: it needs name_table= to find their names")
            if not isinstance(mention_table, MentionTable):
                mention_table = MentionTable.load(mention_table, verify=self.verify_files)
        results: List[List[dict]] = []
        generator = None if restrict else self._generator(beam, max_len_b, tree, candidate_multiple)
        for start in range(0, len(sources), batch_size):
            batch = self._batch(sources[start: start + batch_size], start)
            sets = {}
            if restrict:
                encode = IdentifierEncoder(self.bpe, self.tgt_dict)
                for i in range(start, start + batch["id"].numel()):
                    sets[i] = resolve_candidates(
                        candidates[i] if candidates is not None else None,
                        mention_text(sentences[i], [(self.START, self.END)]),
                        encode=encode, tree=tree, name_table=table, identifier_format=fmt,
                        mention_table=mention_table, k=candidates_k)
                trees = CandidateTrees(tree, sets)
                if tree is None:
                    missing = [i for i, cs in sets.items() if not cs.restricted]
                    if missing:
                        raise ValueError(f"sentence {missing[0]}: no candidate identifier could be encoded "
                                         f"({sets[missing[0]].describe()}), and there is no trie to fall back on")
                generator = generator or self._generator(beam, max_len_b, trees, candidate_multiple)
                generator.search.set_tree(trees)
            for i, hypos in zip(range(start, start + batch["id"].numel()), generator.generate(self.models, batch)):
                texts, logprobs, lengths = hypothesis_fields(hypos, self.tgt_dict, self.bpe)
                if resolver is not None:
                    ranked = rank_entities(texts, logprobs, lengths, resolver, marginalize=marginalize is not False,
                                           alpha=alpha)
                else:
                    scored = [{"text": t, "score": lp / (n ** alpha)} for t, lp, n in zip(texts, logprobs, lengths)]
                    ranked = sorted(scored, key=lambda e: -e["score"])
                if restrict:
                    for entry in ranked:
                        entry["candidates"] = sets[i].describe()
                results.append(add_nil(ranked, threshold=nil_threshold, margin=nil_margin))
        return results

    # ------------------------------------------------------------------ retrieval
    def _query_ids(self, query: str, index: int) -> torch.Tensor:
        """A query without markers, encoded; cut at the end to the model's word and position caps."""
        if not isinstance(query, str):
            raise TypeError(f"query {index}: expected a string, got {type(query).__name__}")
        words = query.split()
        if not words:
            raise ValueError(f"query {index}: empty (no word to retrieve pages for)")
        # Queries carry no mention to keep: the end is cut, as fairseq's --truncate-source does.
        text = query.strip() if len(words) <= self.MAX_WORDS else " ".join(words[: self.MAX_WORDS])
        symbols = self.bpe.encode(text) if self.bpe is not None else text
        ids = self.src_dict.encode_line(symbols, add_if_not_exist=False, append_eos=True).long()
        if ids.numel() > self._max_source_tokens:
            ids = torch.cat([ids[: self._max_source_tokens - 1], ids[-1:]])
        return ids

    @torch.no_grad()
    def retrieve(
        self,
        queries: Sequence[str],
        trie: Union[str, PrefixTree, None] = None,
        name_table: Union[str, NameTable, None] = None,
        beam: int = 10,
        k: Optional[int] = None,
        batch_size: int = 32,
        *,
        max_len_b: int = 32,
        alpha: float = 0.5,
        marginalize: Optional[bool] = None,
        identifier_format: Optional[str] = None,
        candidate_multiple: int = 2,
    ) -> List[List[dict]]:
        """Page-level retrieval: for each query (no mention markers), the ranked pages
        ``{"id", "title", "score"}``, best first, at most ``k`` (default: all the beam gives).

        ``trie`` holds the page identifiers (a KILT title tree: ``genre-trie names
        --kilt-knowledge-source`` then ``genre-trie build --format canonical``); ``name_table`` maps
        them to page ids (for a canonical tree, its ``.canonical.names`` table). ``id`` is None
        without a name table, or for an identifier it does not know; ``title`` is the name of the
        best identifier of the page (without its language). Pages are entities of ``sample``:
        ranked as there (``marginalize`` default True with a name table), repeats merged.
        """
        if isinstance(queries, (str, bytes)):
            raise TypeError("retrieve() takes a list of queries, not one string")
        if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
            raise ValueError(f"k must be None (all) or an integer >= 1, got {k!r}")
        _check_sample_options(beam=beam, max_len_b=max_len_b, batch_size=batch_size, candidates_k=None, alpha=alpha,
                              candidate_multiple=candidate_multiple)
        if marginalize and name_table is None:
            raise ValueError("marginalize=True groups hypotheses by page: it needs name_table=")
        if not queries:
            return []
        sources = [self._query_ids(q, i) for i, q in enumerate(queries)]
        ranked = self._decode(queries, sources, beam=beam, trie=trie, name_table=name_table, marginalize=marginalize,
                              candidates=None, max_len_b=max_len_b, alpha=alpha, identifier_format=identifier_format,
                              batch_size=batch_size, mention_table=None, candidates_k=None,
                              candidate_multiple=candidate_multiple, nil_threshold=None, nil_margin=None)
        fmt = self._identifier_format(identifier_format, self._tree(trie) if trie is not None else None)
        return [_pages(entries, fmt, k) for entries in ranked]

    # ------------------------------------------------------------------ end-to-end linking
    @torch.no_grad()
    def link(
        self,
        texts: Sequence[str],
        spans: Optional[Sequence[Sequence[Tuple[int, int]]]] = None,
        *,
        trie: Union[str, PrefixTree, None] = None,
        name_table: Union[str, NameTable, None] = None,
        mention_trie: Union[str, PrefixTree, None] = None,
        mention_table: Union[str, MentionTable, None] = None,
        candidates_k: Optional[int] = 10,
        beam: int = 5,
        max_len_b: Optional[int] = None,
        threshold: Optional[float] = None,
        window: Optional[int] = None,
        batch_size: int = 8,
        markup: Optional[Sequence[str]] = None,
        max_mention_len: int = 32,
        alpha: float = 1.0,
        marginalize: Optional[bool] = None,
        identifier_format: Optional[str] = None,
    ) -> List[List[dict]]:
        """Link raw texts end to end: per text ``[{"start", "end", "mention", "id", "identifier", "score"}]``,
        character offsets into the text (end exclusive), sorted by start (docs/end_to_end.md "Using it").

        ``trie``: the entity tree (required, except with ``spans``); ``name_table``: gives ``id`` (else None) and groups a
        span's identifiers by entity (``marginalize``, default True with a table);
        ``mention_trie``: the mentions that may be marked (default: any 1..``max_mention_len``
        tokens); ``mention_table`` + ``candidates_k``: each mention's identifiers restricted to its
        top-k candidate entities (needs ``mention_trie`` and ``name_table``). ``score``: the
        log-probability of the span's identifier tokens and ``]``, over ``L ** alpha`` (default
        ``alpha=1``: the mean log-probability per token; marginalized over the entity's identifiers
        with a name table); a span scoring below ``threshold`` is not returned. ``window``:
        source tokens per window (default: what fits the model, at most 128); a longer text is cut at
        sentence ends and its windows' spans merged. ``max_len_b``: output tokens per window
        (default ``2 * window + 32``, room for the copy and its markup). ``markup``: the four
        dictionary symbols of ``{ } [ ]`` (default: the model's, see :meth:`markup_tokens`).

        With ``spans`` (per text a list of ``(start, end)`` character spans), the given mentions are
        disambiguated instead: each is marked with the model's markers (``text[:start]``, START, the
        mention, END, ``text[end:]``, joined by single spaces) and decoded with :meth:`sample`
        (``score``: its ranking score, with the same ``alpha``).
        """
        if isinstance(texts, (str, bytes)):
            raise TypeError("link() takes a list of texts, not one string")
        if not isinstance(texts, Sequence) or len(texts) == 0:
            raise ValueError("link() needs a non-empty list of texts")
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"text {i}: expected a string, got {type(text).__name__}")
        _check_sample_options(beam=beam, max_len_b=1, batch_size=batch_size, candidates_k=candidates_k,
                              alpha=alpha, candidate_multiple=2)
        for name, value in (("window", window), ("max_len_b", max_len_b), ("max_mention_len", max_mention_len)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, (int, float))
                                      or not math.isfinite(threshold)):
            raise ValueError(f"threshold must be a finite number (a span score, <= 0), got {threshold!r}")
        if marginalize and name_table is None:
            raise ValueError("marginalize=True groups a span's identifiers by entity: it needs name_table=")
        if mention_table is not None and name_table is None:
            raise ValueError("mention_table= gives entity ids: it needs name_table= to find their names")
        if spans is not None:
            for name, value in (("mention_trie", mention_trie), ("window", window), ("markup", markup)):
                if value is not None:
                    raise ValueError(f"{name}= is for linking raw text; with spans= the mentions are given")
            return self._link_spans(texts, spans, trie=trie, name_table=name_table, mention_table=mention_table,
                                    candidates_k=candidates_k, beam=beam, max_len_b=max_len_b, threshold=threshold,
                                    batch_size=batch_size, alpha=alpha, marginalize=marginalize,
                                    identifier_format=identifier_format)
        if trie is None:
            raise ValueError("link() needs trie= (the entity tree: the identifiers a mention may be linked to)")
        if mention_table is not None and mention_trie is None:
            raise ValueError("mention_table= restricts each mention to its candidates: it needs mention_trie= "
                             "(the mentions a span may be), e.g. genre-trie build --mentions")
        if self.src_dict.symbols != self.tgt_dict.symbols:
            raise ValueError("end-to-end linking copies the source into the output: it needs a model whose "
                             "dict.source.txt and dict.target.txt are the same")
        tree, table, fmt, resolver = self._knowledge_base(trie, name_table, identifier_format)
        mtree = None
        if mention_trie is not None:
            mtree = mention_trie if isinstance(mention_trie, PrefixTree) else self._mention_tree(mention_trie)
        mk = self.markup_tokens(markup)
        budget = window if window is not None else self.default_window()
        if budget > self._max_source_tokens - 1:
            raise ValueError(f"window={budget} tokens does not fit the model: at most {self._max_source_tokens - 1} "
                             f"source tokens (and EOS)")
        max_len = max_len_b if max_len_b is not None else 2 * budget + 32
        cands = None
        if mention_table is not None:
            if not isinstance(mention_table, MentionTable):
                mention_table = MentionTable.load(mention_table, verify=self.verify_files)
            encode = IdentifierEncoder(self.bpe, self.tgt_dict)

            def span_candidates(sources):
                return mention_candidates(generator.search, sources, self._text_of_ids, mention_table=mention_table,
                                          k=candidates_k, encode=encode, name_table=table, identifier_format=fmt)

            cands = span_candidates

        generator = EndToEndSequenceGenerator(
            self.models, self.tgt_dict, entity_tree=tree, markup=mk, mention_tree=mtree,
            max_mention_len=max_mention_len, span_candidates=cands, beam_size=beam, max_len_a=0, max_len_b=max_len,
            len_penalty=1.0)
        # every window of every text, decoded batch_size at a time
        docs, items = [], []
        for t, text in enumerate(texts):
            tokens = self.tokens_with_offsets(text)
            wins = markup_format.windows(text, tokens, budget)
            docs.append((tokens, wins))
            for w, win in enumerate(wins):
                ids = [self.src_dict.index(tok.symbol) for tok in tokens[win.tok_start: win.tok_end]]
                items.append((t, w, torch.tensor(ids + [self.src_dict.eos()], dtype=torch.long)))
        found: List[List[list]] = [[[] for _ in wins] for _, wins in docs]
        for start in range(0, len(items), batch_size):
            chunk = items[start: start + batch_size]
            batch = self._batch([src for _, _, src in chunk], start)
            for (t, w, _), hypos in zip(chunk, generator.generate(self.models, batch)):
                if not hypos:
                    logger.warning("text %d, window %d: no complete output within max_len_b=%d tokens: no spans "
                                   "for its characters %d..%d (raise max_len_b or lower window)", t, w, max_len,
                                   docs[t][1][w].start, docs[t][1][w].end)
                    continue
                for s in span_entities(hypos, self.tgt_dict, self.bpe, resolver, alpha=alpha,
                                       marginalize=marginalize is not False):
                    found[t][w].append((s["start"], s["end"], s["id"], s["identifier"], s["score"]))
        results = []
        for text, (tokens, wins), per_window in zip(texts, docs, found):
            merged = markup_format.merge_window_spans(text, tokens, wins, per_window)
            results.append([{"start": a, "end": b, "mention": text[a:b], "id": entity, "identifier": identifier,
                             "score": score}
                            for a, b, entity, identifier, score in merged
                            # a < b: a span of whitespace pieces only (a lone SentencePiece "▁") marks no text
                            if a < b and (threshold is None or score >= threshold)])
        return results

    def _link_spans(self, texts, spans, *, trie, name_table, mention_table, candidates_k, beam, max_len_b, threshold,
                    batch_size, alpha, marginalize, identifier_format) -> List[List[dict]]:
        """``link(texts, spans=...)``: one marked input per given span, decoded with :meth:`sample`."""
        if isinstance(spans, (str, bytes)) or len(spans) != len(texts):
            raise ValueError(f"spans= must be a list with one list of (start, end) per text: {len(texts)} texts")
        marked, where = [], []
        for t, (text, text_spans) in enumerate(zip(texts, spans)):
            previous = None
            for s in sorted(_check_span(t, span, text) for span in text_spans):
                if previous is not None and s[0] < previous[1]:
                    raise ValueError(f"spans[{t}]: {s} overlaps {previous}")
                previous = s
                marked.append(self.mark(text, *s))
                where.append((t, s))
        results: List[List[dict]] = [[] for _ in texts]
        if not marked:
            return results
        ranked = self.sample(marked, beam=beam, trie=trie, name_table=name_table, marginalize=marginalize,
                             max_len_b=max_len_b or 32, alpha=alpha, identifier_format=identifier_format,
                             batch_size=batch_size, mention_table=mention_table, candidates_k=candidates_k)
        for (t, (a, b)), entries in zip(where, ranked):
            if not entries:
                continue
            best = entries[0]
            identifier = best["texts"][0] if "texts" in best else best["text"]
            if threshold is not None and best["score"] < threshold:
                continue
            results[t].append({"start": a, "end": b, "mention": texts[t][a:b], "id": best.get("id"),
                               "identifier": identifier, "score": best["score"]})
        return results

    def mark(self, text: str, start: int, end: int) -> str:
        """``text`` with characters ``[start, end)`` marked as the mention (the model's markers, single spaces)."""
        parts = [text[:start].strip(), self.START, text[start:end].strip(), self.END, text[end:].strip()]
        return " ".join(p for p in parts if p)

    def tokens_with_offsets(self, text: str) -> List[markup_format.Token]:
        """The model's source symbols of ``text``, each with the characters it covers (``markup.Token``)."""
        if self.bpe is None:
            return markup_format.whitespace_tokens(text)
        if hasattr(self.bpe, "sp"):
            return markup_format.sentencepiece_tokens(self.bpe.sp, text)
        return markup_format.gpt2_tokens(self.bpe.bpe, text)

    def markup_tokens(self, symbols: Optional[Sequence[str]] = None) -> MarkupTokens:
        """The ids of ``{ } [ ]``: ``symbols`` (dictionary symbols), else the model's (SentencePiece
        ``▁{ ▁} ▁[ ▁]``, GPT-2 the BPE ids of ``" {" " }" " [" " ]"``, no BPE ``{ } [ ]``)."""
        if symbols is None:
            symbols = self._default_markup_symbols()
        if isinstance(symbols, str) or len(symbols) != 4:
            raise ValueError(f"markup= must be the four dictionary symbols of {{ }} [ ], got {symbols!r}")
        missing = [s for s in symbols if self.tgt_dict.index(s) == self.tgt_dict.unk()]
        if missing:
            raise ValueError(
                f"markup symbol {missing[0]!r} is not in this model's dict.target.txt: an end-to-end model needs "
                f"{{ }} [ ] as dictionary symbols ({' '.join(symbols)}); append them to dict.source.txt and "
                f"dict.target.txt and extend the embeddings (docs/end_to_end.md, 'Markup tokens'), or pass markup=[...]")
        return MarkupTokens.from_dictionary(self.tgt_dict, symbols)

    def _default_markup_symbols(self) -> List[str]:
        if self.bpe is None:
            return ["{", "}", "[", "]"]
        if hasattr(self.bpe, "sp"):
            return ["\u2581{", "\u2581}", "\u2581[", "\u2581]"]
        encoder = self.bpe.bpe
        out = []
        for piece in (" {", " }", " [", " ]"):
            mapped = "".join(encoder.byte_encoder[b] for b in piece.encode("utf-8"))
            if mapped not in encoder.encoder:
                raise ValueError(f"the GPT-2 BPE has no single token for {piece!r}: pass markup=[...]")
            out.append(str(encoder.encoder[mapped]))
        return out

    def default_window(self) -> int:
        """Source tokens per window of :meth:`link`: what the model's source and target positions allow, at most 128."""
        target = min(int(m.max_positions()[1]) if isinstance(m.max_positions(), tuple) else 10**9 for m in self.models)
        return max(1, min(self._max_source_tokens - 1, target // 2, 128))

    def _mention_tree(self, path: str) -> PrefixTree:
        if path not in self._trees:
            if not os.path.isfile(path):
                raise FileNotFoundError(f"mention trie not found: {path}")
            self._trees[path] = PrefixTree.load(path, verify=self.verify_files)
        return self._trees[path]

    def _text_of_ids(self, token_ids) -> str:
        """The text of target token ids (BPE undone)."""
        return identifier_text(torch.as_tensor(list(token_ids), dtype=torch.long), self.tgt_dict, self.bpe)

    def _generator(self, beam: int, max_len_b: int, tree, candidate_multiple: int = 2):
        from fairseq.sequence_generator import SequenceGenerator

        from .search import PrefixTreeSequenceGenerator

        kwargs = dict(beam_size=beam, max_len_a=0, max_len_b=max_len_b, len_penalty=1.0)
        if tree is None:
            return SequenceGenerator(self.models, self.tgt_dict, **kwargs)
        return PrefixTreeSequenceGenerator(self.models, self.tgt_dict, prefix_tree=tree,
                                           candidate_multiple=candidate_multiple, **kwargs)

    def _batch(self, sources: List[torch.Tensor], first_id: int = 0) -> dict:
        from fairseq.data import data_utils

        # Every tensor follows the model: fairseq indexes sample["id"] (and the search its
        # candidate roots) with the decoder's indices once a sentence of the batch finishes.
        lengths = torch.tensor([s.numel() for s in sources], device=self.device)
        tokens = data_utils.collate_tokens(sources, self.src_dict.pad(), self.src_dict.eos(), left_pad=True)
        ids = torch.arange(first_id, first_id + len(sources), device=self.device)
        return {"id": ids, "net_input": {"src_tokens": tokens.to(self.device), "src_lengths": lengths}}


def _pages(entries: List[dict], fmt: Optional[str], k: Optional[int]) -> List[dict]:
    """``sample`` entries as retrieved pages ``{"id", "title", "score"}``: one per page, best first, top ``k``."""
    from .identifiers import parse_identifier

    pages: List[dict] = []
    seen = set()
    for entry in entries:
        text = entry["texts"][0] if "texts" in entry else entry["text"]
        try:
            title = parse_identifier(text, fmt or "canonical")[1]
        except ValueError:
            title = text
        key = ("id", entry["id"]) if entry.get("id") is not None else ("title", title)
        if key in seen:
            continue
        seen.add(key)
        pages.append({"id": entry.get("id"), "title": title, "score": float(entry["score"])})
        if k is not None and len(pages) == k:
            break
    return pages


def _check_span(index: int, span, text: str) -> Tuple[int, int]:
    """A given ``(start, end)`` character span of text ``index``, checked."""
    try:
        start, end = span
    except (TypeError, ValueError):
        raise ValueError(f"spans[{index}]: a span is a pair (start, end) of character offsets, got {span!r}") from None
    if not all(isinstance(x, int) and not isinstance(x, bool) for x in (start, end)) or not 0 <= start < end <= len(text):
        raise ValueError(f"spans[{index}]: {span!r} is not a span of text {index} (0 <= start < end <= {len(text)})")
    if not text[start:end].strip():
        raise ValueError(f"spans[{index}]: {span!r} covers only whitespace")
    return start, end


def _check_sample_options(**options) -> None:
    """Refuse option values of ``sample()`` that cannot be decoded with, naming the option."""
    for name in ("beam", "max_len_b", "batch_size"):
        value = options[name]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    k = options["candidates_k"]
    if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
        raise ValueError(f"candidates_k must be None (all) or an integer >= 1, got {k!r}")
    alpha = options["alpha"]
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 <= alpha < float("inf"):
        raise ValueError(f"alpha must be a finite number >= 0 (the length normalization), got {alpha!r}")
    multiple = options["candidate_multiple"]
    if isinstance(multiple, bool) or multiple not in (1, 2):
        raise ValueError(f"candidate_multiple must be 1 (the reference's search) or 2, got {multiple!r}")


class GENRE(_Hub):
    """English GENRE (BART-large, GPT-2 BPE): mentions marked ``[START_ENT] ... [END_ENT]``, 384 words."""

    START, END, MAX_WORDS, DEFAULT_BPE = "[START_ENT]", "[END_ENT]", 384, "gpt2"
    OTHER_MARKERS = ("[START]", "[END]", "mGENRE")


class mGENRE(_Hub):
    """Multilingual mGENRE (mBART, SentencePiece): mentions marked ``[START] ... [END]``, 128 words."""

    START, END, MAX_WORDS, DEFAULT_BPE = "[START]", "[END]", 128, "sentencepiece"
    OTHER_MARKERS = ("[START_ENT]", "[END_ENT]", "GENRE")
