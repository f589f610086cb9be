"""Python interface: load a GENRE or mGENRE checkpoint directory and link marked mentions to entities.

    from genre_fairseq.hub import mGENRE
    model = mGENRE.from_pretrained("fairseq_multilingual_entity_disambiguation")
    model.sample(["[START] Einstein [END] era un fisico tedesco."], trie="kb.trie", name_table="kb.names")
    # -> [[{"id": "Q937", "score": ..., "texts": ["Albert Einstein >> it", ...], "scores": [...]}, ...]]

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
use goes to the other). Nothing is cut from one end blindly.
"""
from __future__ import annotations

import glob
import os
from typing import Dict, List, Optional, Sequence, Union

import torch

from .candidates import CandidateTrees, IdentifierEncoder, mention_text, resolve_candidates
from .marginalize import NameResolver, hypothesis_fields, rank_entities
from .name_table import MentionTable, NameTable
from .prefix_tree import PrefixTree
from .task import check_name_table, check_prefix_tree

__all__ = ["GENRE", "mGENRE", "cut_around_mention"]


def cut_around_mention(words: Sequence[str], start: str, end: str, max_words: int) -> List[str]:
    """Keep the marked mention and at most ``max_words`` words in all, context shared around it."""
    if start not in words or end not in words:
        raise ValueError(f"no mention marked with {start} ... {end}")
    i, j = words.index(start), words.index(end)
    if j < i or words.count(start) != 1 or words.count(end) != 1:
        raise ValueError(f"mention markers must appear once each, {start} before {end}")
    if len(words) <= max_words:
        return list(words)
    budget = max(max_words - (j - i + 1), 0)
    left_avail, right_avail = i, len(words) - j - 1
    left = min(left_avail, budget // 2)
    right = min(right_avail, budget - left)
    left = min(left_avail, budget - right)
    return list(words[i - left: j + 1 + right])


class _Hub:
    """A loaded (m)GENRE model with its dictionaries and BPE, ready to ``sample``."""

    START: str
    END: str
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
        from fairseq import checkpoint_utils
        from fairseq.data import encoders
        from fairseq.dataclass.utils import convert_namespace_to_omegaconf  # noqa: F401  (fairseq init order)

        from . import checkpoints  # noqa: F401  (allow-list for torch.load)

        path = os.path.join(model_dir, checkpoint_file)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path}: checkpoint not found")
        for name in ("dict.source.txt", "dict.target.txt"):
            if not os.path.isfile(os.path.join(model_dir, name)):
                raise FileNotFoundError(f"{os.path.join(model_dir, name)}: dictionary not found")
        bpe_cfg = cls._bpe_config(model_dir, bpe, sentencepiece_model, gpt2_encoder_json, gpt2_vocab_bpe)
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        # A checkpoint trained with the genre task records the files of its options (--trie,
        # --eval-accuracy's name table, ...); sample() takes its own, so none is reopened here.
        overrides = {"data": model_dir, "source_lang": "source", "target_lang": "target", "trie": None,
                     "name_table": None, "marginalize": False, "eval_accuracy": False, "target_groups": False,
                     "candidates_table": None, "candidates_file": None}
        models, _cfg, task = checkpoint_utils.load_model_ensemble_and_task([path], arg_overrides=overrides)
        for model in models:
            model.eval()
            model.to(device)
        bpe_obj = encoders.build_bpe(bpe_cfg) if bpe_cfg is not None else None
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
        try:
            words = cut_around_mention(sentence.split(), self.START, self.END, self.MAX_WORDS)
        except ValueError as e:
            raise ValueError(f"sentence {index}: {e}: {sentence[:80]!r}") from None
        budget = len(words)
        while True:
            text = " ".join(cut_around_mention(words, self.START, self.END, budget))
            symbols = self.bpe.encode(text) if self.bpe is not None else text
            ids = self.src_dict.encode_line(symbols, add_if_not_exist=False, append_eos=True).long()
            if ids.numel() <= self._max_source_tokens or budget <= 1:
                return ids
            budget -= max(1, budget // 8)

    def _tree(self, trie: Union[str, PrefixTree]) -> PrefixTree:
        if isinstance(trie, PrefixTree):
            tree = trie
        else:
            if trie not in self._trees:
                self._trees[trie] = PrefixTree.load(trie)
            tree = self._trees[trie]
        check_prefix_tree(tree, self.tgt_dict, f"trie {tree.path or '<in memory>'}", "this model's target dictionary")
        return tree

    def _table(self, name_table: Union[str, NameTable], tree: Optional[PrefixTree]) -> NameTable:
        table = name_table
        if not isinstance(name_table, NameTable):
            if name_table not in self._tables:
                self._tables[name_table] = NameTable.load(name_table)
            table = self._tables[name_table]
        check_name_table(table, tree, f"name table {table.path}", f"trie {tree.path if tree is not None else ''}")
        return table

    # ------------------------------------------------------------------ sampling
    @torch.no_grad()
    def sample(
        self,
        sentences: Sequence[str],
        beam: int = 10,
        trie: Union[str, PrefixTree, None] = None,
        name_table: Union[str, NameTable, None] = None,
        marginalize: bool = True,
        candidates: Optional[Sequence[Optional[Sequence[str]]]] = None,
        max_len_b: int = 32,
        *,
        alpha: float = 0.5,
        identifier_format: Optional[str] = None,
        batch_size: int = 32,
        mention_table: Union[str, MentionTable, None] = None,
        candidates_k: Optional[int] = 10,
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
        """
        if isinstance(sentences, str):
            raise TypeError("sample() takes a list of sentences, not one string")
        if candidates is not None and (isinstance(candidates, str) or len(candidates) != len(sentences)):
            raise ValueError(f"candidates must be a list with one entry (None or a list) per sentence: "
                             f"{len(sentences)} sentences")
        if not sentences:
            return []
        sources = [self._source_ids(s, i) for i, s in enumerate(sentences)]
        tree = self._tree(trie) if trie is not None else None
        table = self._table(name_table, tree) if name_table is not None else None
        fmt = identifier_format or (tree.identifier_format if tree is not None else None)
        resolver = None
        if table is not None:
            if fmt is None:
                raise ValueError("name_table needs identifier_format= (or a trie that records it)")
            resolver = NameResolver(table, fmt)
        restrict = candidates is not None or mention_table is not None
        if mention_table is not None:
            if table is None:
                raise ValueError("mention_table= gives entity ids: it needs name_table= to find their names")
            if not isinstance(mention_table, MentionTable):
                mention_table = MentionTable.load(mention_table)
        results: List[List[dict]] = []
        generator = None if restrict else self._generator(beam, max_len_b, tree)
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
                generator = generator or self._generator(beam, max_len_b, trees)
                generator.search.set_tree(trees)
            for i, hypos in zip(batch["id"].tolist(), generator.generate(self.models, batch)):
                texts, logprobs, lengths = hypothesis_fields(hypos, self.tgt_dict, self.bpe)
                if resolver is not None:
                    ranked = rank_entities(texts, logprobs, lengths, resolver, marginalize=marginalize, alpha=alpha)
                else:
                    scored = [{"text": t, "score": lp / (n ** alpha)} for t, lp, n in zip(texts, logprobs, lengths)]
                    ranked = sorted(scored, key=lambda e: -e["score"])
                if restrict:
                    for entry in ranked:
                        entry["candidates"] = sets[i].describe()
                results.append(ranked)
        return results

    def _generator(self, beam: int, max_len_b: int, tree):
        from fairseq.sequence_generator import SequenceGenerator

        from .search import PrefixTreeSequenceGenerator

        kwargs = dict(beam_size=beam, max_len_a=0, max_len_b=max_len_b, len_penalty=1.0)
        if tree is None:
            return SequenceGenerator(self.models, self.tgt_dict, **kwargs)
        return PrefixTreeSequenceGenerator(self.models, self.tgt_dict, prefix_tree=tree, **kwargs)

    def _batch(self, sources: List[torch.Tensor], first_id: int = 0) -> dict:
        from fairseq.data import data_utils

        lengths = torch.tensor([s.numel() for s in sources])
        tokens = data_utils.collate_tokens(sources, self.src_dict.pad(), self.src_dict.eos(), left_pad=True)
        ids = torch.arange(first_id, first_id + len(sources))
        return {"id": ids, "net_input": {"src_tokens": tokens.to(self.device), "src_lengths": lengths.to(self.device)}}


class GENRE(_Hub):
    """English GENRE (BART-large, GPT-2 BPE): mentions marked ``[START_ENT] ... [END_ENT]``, 384 words."""

    START, END, MAX_WORDS, DEFAULT_BPE = "[START_ENT]", "[END_ENT]", 384, "gpt2"


class mGENRE(_Hub):
    """Multilingual mGENRE (mBART, SentencePiece): mentions marked ``[START] ... [END]``, 128 words."""

    START, END, MAX_WORDS, DEFAULT_BPE = "[START]", "[END]", 128, "sentencepiece"
