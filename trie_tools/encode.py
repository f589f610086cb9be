"""Identifier strings -> token ids, with the model's own tokenizer and fairseq dictionary.

The token ids of an identifier are what the model's decoder produces for it: the tokenizer's
symbols (SentencePiece pieces for mGENRE, GPT-2 BPE ids written as decimal strings for GENRE),
looked up in the target dictionary (``dict.txt``). The tokenizers here give the same symbols
as fairseq's ``--bpe sentencepiece`` and ``--bpe gpt2`` encoders (a test checks it), so a tree
built here matches targets preprocessed by fairseq.

GPT-2 BPE: GENRE's released tries encode each title with a leading space (``" Albert Einstein"``,
i.e. ``ĠAlbert ĠEinstein``), the form a title takes after a word boundary; ``leading_space``
(default on) does the same. Turn it off for a model trained on targets without it.

An identifier whose symbols are not all in the dictionary (or that the tokenizer maps to its
unknown piece) cannot be generated faithfully: it is skipped and counted, never silently mapped
to ``<unk>``. So is one whose tokens decode to a different string (SentencePiece's NFKC
normalization, collapsed or trimmed spaces, a literal ``▁``): the model could only generate
the other string, which the name table does not map to the entity. Such identifiers are counted
and reported (``--strict`` makes them fatal), not stored in another form.
"""
from __future__ import annotations

import dataclasses
import json
import mmap
import multiprocessing
import os
from collections import deque
from dataclasses import dataclass, field
from typing import Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np
from tqdm import tqdm

from genre_fairseq.dictionary import SymbolDictionary

__all__ = ["EncodeStats", "GPT2Tokenizer", "load_dictionary", "SentencePieceTokenizer", "TargetEncoder", "TokenizerSpec",
           "encode_identifiers"]


def load_dictionary(path: str):
    """A fairseq dictionary from ``--dict PATH``; ``ValueError`` naming the option and the file otherwise.

    Read without fairseq (``genre_fairseq.dictionary``: the same ids), so that building a tree does not
    import torch.
    """
    if not os.path.isfile(path):
        raise ValueError(f"--dict {path}: file not found")
    try:
        return SymbolDictionary.load(path)
    except (ValueError, RuntimeError, UnicodeDecodeError, IndexError) as e:
        raise ValueError(f"--dict {path}: not a fairseq dictionary ({e})") from None


class SentencePieceTokenizer:
    """Text -> SentencePiece pieces (mGENRE's ``spm_256000.model``), as fairseq's ``--bpe sentencepiece``."""

    def __init__(self, model_path: str, *, threads: Optional[int] = None) -> None:
        import sentencepiece

        self.threads = threads  # None: SentencePiece's default (every core)
        if not os.path.isfile(model_path):
            raise FileNotFoundError(f"--sentencepiece {model_path}: file not found")
        self.sp = sentencepiece.SentencePieceProcessor()
        try:
            self.sp.Load(model_path)
        except (OSError, RuntimeError) as e:
            raise ValueError(f"--sentencepiece {model_path}: not a SentencePiece model ({e})") from None
        self.unknown = {self.sp.IdToPiece(self.sp.unk_id())}

    def symbols(self, texts: Sequence[str]) -> List[List[str]]:
        """The pieces of each text (one batched call into SentencePiece)."""
        return self.sp.Encode(list(texts), out_type=str, num_threads=self.threads)

    def decode(self, symbols: Sequence[str]) -> str:
        """Pieces -> text, as fairseq's SentencePiece decoder does."""
        return "".join(symbols).replace("\u2581", " ").strip()


class GPT2Tokenizer:
    """Text -> GPT-2 byte-level BPE ids as strings (GENRE), as fairseq's ``--bpe gpt2``, from local files."""

    def __init__(self, encoder_json: str, vocab_bpe: str, *, leading_space: bool = True) -> None:
        from fairseq.data.encoders.gpt2_bpe_utils import get_encoder

        for option, path in (("--gpt2-encoder-json", encoder_json), ("--gpt2-vocab-bpe", vocab_bpe)):
            if not os.path.isfile(path):
                raise FileNotFoundError(f"{option} {path}: file not found")
        try:
            self.bpe = get_encoder(encoder_json, vocab_bpe)
        except (ValueError, json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"--gpt2-encoder-json {encoder_json} / --gpt2-vocab-bpe {vocab_bpe}: unreadable ({e})") from None
        self.leading_space = leading_space
        self.unknown: set = set()

    def symbols(self, texts: Sequence[str]) -> List[List[str]]:
        """The BPE ids of each text, as decimal strings (the symbols of GPT-2 ``dict.txt`` files)."""
        prefix = " " if self.leading_space else ""
        out = []
        for text in texts:
            try:
                out.append([str(i) for i in self.bpe.encode(prefix + text)])
            except KeyError as e:  # a merge result missing from encoder.json
                out.append(["<missing BPE token %s>" % e])
        return out

    def decode(self, symbols: Sequence[str]) -> str:
        """BPE id strings -> text (the leading space removed again)."""
        text = self.bpe.decode([int(s) for s in symbols])
        return text[1:] if self.leading_space and text.startswith(" ") else text


@dataclass(frozen=True)
class TokenizerSpec:
    """What builds a tokenizer: picklable, so worker processes build their own."""

    sentencepiece: Optional[str] = None
    gpt2_encoder_json: Optional[str] = None
    gpt2_vocab_bpe: Optional[str] = None
    gpt2_leading_space: bool = True
    # Threads of one SentencePiece call; encoding workers use 1 each, so that N workers keep N
    # cores busy instead of N x cores threads competing for them.
    sentencepiece_threads: Optional[int] = None

    def build(self):
        """The tokenizer this spec names; ``ValueError`` unless exactly one kind is given."""
        if self.sentencepiece and (self.gpt2_encoder_json or self.gpt2_vocab_bpe):
            raise ValueError("give either --sentencepiece or --gpt2-encoder-json/--gpt2-vocab-bpe, not both")
        if self.sentencepiece:
            return SentencePieceTokenizer(self.sentencepiece, threads=self.sentencepiece_threads)
        if self.gpt2_encoder_json and self.gpt2_vocab_bpe:
            return GPT2Tokenizer(self.gpt2_encoder_json, self.gpt2_vocab_bpe, leading_space=self.gpt2_leading_space)
        if self.gpt2_encoder_json or self.gpt2_vocab_bpe:
            raise ValueError("GPT-2 BPE needs both --gpt2-encoder-json and --gpt2-vocab-bpe")
        raise ValueError("no tokenizer: give --sentencepiece SPM or --gpt2-encoder-json F --gpt2-vocab-bpe F")


class TargetEncoder:
    """Identifier text -> target-dictionary ids (without the start and end tokens)."""

    def __init__(self, tokenizer, dictionary) -> None:
        self.tokenizer = tokenizer
        self.dictionary = dictionary
        self._indices = dictionary.indices
        self._unk = dictionary.unk()
        self._unknown_symbols = set(tokenizer.unknown) | {dictionary.unk_word}

    def encode_batch(self, texts: Sequence[str]) -> Tuple[List[List[int]], List[Tuple[int, str]]]:
        """Ids of each text (``[]`` for a failed one) and the failures as (index in batch, reason)."""
        get, unk = self._indices.get, self._unk
        out: List[List[int]] = []
        failures: List[Tuple[int, str]] = []
        for i, (text, symbols) in enumerate(zip(texts, self.tokenizer.symbols(texts))):
            ids = [get(s, unk) for s in symbols]
            if not ids:
                failures.append((i, f"{text!r} encodes to no tokens"))
                ids = []
            elif unk in ids:
                bad = symbols[ids.index(unk)]
                why = "the tokenizer's unknown piece" if bad in self._unknown_symbols else "not in the dictionary"
                failures.append((i, f"{text!r}: symbol {bad!r} is {why}"))
                ids = []
            else:
                # What the model generates is these tokens decoded: if that is another string (NFKC,
                # collapsed spaces, a literal "▁"), the name table never maps it back to the entity.
                back = self.tokenizer.decode(symbols)
                if back != text:
                    failures.append((i, f"{text!r} does not survive the tokenizer: its tokens decode to {back!r}"))
                    ids = []
            out.append(ids)
        return out, failures

    def encode(self, text: str) -> List[int]:
        """Ids of one text; ``ValueError`` naming the symbol if it cannot be encoded."""
        (ids,), failures = self.encode_batch([text])
        if failures:
            raise ValueError(failures[0][1])
        return ids

    def decode(self, ids: Sequence[int]) -> str:
        """Ids (without start/end tokens) -> identifier text."""
        return self.tokenizer.decode([self.dictionary[i] for i in ids])


@dataclass
class EncodeStats:
    """Counts of an encoding run; the first few failures are kept with their reasons."""

    read: int = 0
    encoded: int = 0
    failed: int = 0
    examples: List[str] = field(default_factory=list)

    MAX_EXAMPLES = 10

    def summary(self) -> str:
        """One line: the counters, then the first failures."""
        text = f"encoded {self.encoded:,} of {self.read:,} identifiers, {self.failed:,} failed"
        if self.examples:
            text += "; first failures: " + "; ".join(self.examples)
        return text


_worker_encoder: Optional[TargetEncoder] = None


def _init_worker(spec: TokenizerSpec, dict_path: str) -> None:
    global _worker_encoder
    _worker_encoder = TargetEncoder(spec.build(), SymbolDictionary.load(dict_path))


def _encode_chunk(texts: List[str]) -> Tuple[np.ndarray, np.ndarray, List[Tuple[int, str]]]:
    assert _worker_encoder is not None
    return _pack(*_worker_encoder.encode_batch(texts))


def _pack(ids: List[List[int]], failures: List[Tuple[int, str]]) -> Tuple[np.ndarray, np.ndarray, List[Tuple[int, str]]]:
    lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
    flat = np.fromiter((t for x in ids for t in x), dtype=np.int32, count=int(lengths.sum()))
    return flat, lengths, failures


def _chunks(texts: Iterable[str], size: int) -> Iterator[List[str]]:
    chunk: List[str] = []
    for text in texts:
        chunk.append(text)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def encode_identifiers(
    identifiers: Iterable[str],
    spec: TokenizerSpec,
    dict_path: str,
    *,
    workers: int = 1,
    chunk_size: int = 10_000,
    total: Optional[int] = None,
    progress: bool = True,
    strict: bool = False,
    stats: Optional[EncodeStats] = None,
    spool_dir: Optional[str] = None,
) -> Tuple[np.ndarray, np.ndarray]:
    """Encode identifiers to tree sequences ``[eos] + ids + [eos]``: (flat int32 tokens, lengths).

    Failed identifiers are left out and counted in ``stats``; ``strict`` raises on the first one.
    With ``spool_dir`` the tokens are appended to a file there as they come and ``flat`` is a
    read-only memory map of it (``PrefixTree.from_arrays`` releases its pages as it reads them), so
    memory holds only the lengths: 4 bytes per identifier instead of 50 (twice that while the
    chunks were joined). The directory must outlive ``flat``'s use.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if stats is None:
        stats = EncodeStats()
    eos = SymbolDictionary.load(dict_path).eos()
    flats: List[np.ndarray] = []
    lengths_parts: List[np.ndarray] = []
    spool = open(os.path.join(spool_dir, "tokens.i32"), "w+b") if spool_dir is not None else None
    bar = tqdm(total=total, desc="encoding", unit=" names", disable=not progress, smoothing=0.1)

    def collect(result: Tuple[np.ndarray, np.ndarray, List[Tuple[int, str]]], n: int) -> None:
        flat, lengths, failures = result
        stats.read += n
        stats.failed += len(failures)
        if failures:
            if strict:
                raise ValueError(failures[0][1])
            for _, reason in failures[: max(0, EncodeStats.MAX_EXAMPLES - len(stats.examples))]:
                stats.examples.append(reason)
            lengths = lengths[lengths > 0]
        stats.encoded += lengths.size
        # Add the start and end tokens around every sequence in one vectorized pass.
        out = np.empty(flat.size + 2 * lengths.size, dtype=np.int32)
        ends = np.cumsum(lengths + 2)
        starts = ends - lengths - 2
        out[starts] = eos
        out[ends - 1] = eos
        body = np.ones(out.size, dtype=bool)
        body[starts] = False
        body[ends - 1] = False
        out[body] = flat
        if spool is not None:
            spool.write(memoryview(out).cast("B"))
        else:
            flats.append(out)
        lengths_parts.append((lengths + 2).astype(np.int32))
        bar.update(n)

    try:
        if workers == 1:
            _init_worker(spec, dict_path)
            for chunk in _chunks(identifiers, chunk_size):
                collect(_encode_chunk(chunk), len(chunk))
        else:
            spec.build()  # fail here, in the parent, on a bad tokenizer file
            # A bounded window of apply_async calls: Pool.imap would read the whole input ahead.
            worker_spec = dataclasses.replace(spec, sentencepiece_threads=1)
            with multiprocessing.get_context().Pool(workers, _init_worker, (worker_spec, dict_path)) as pool:
                pending: deque = deque()
                for chunk in _chunks(identifiers, chunk_size):
                    pending.append((pool.apply_async(_encode_chunk, (chunk,)), len(chunk)))
                    if len(pending) >= 4 * workers:
                        result, n = pending.popleft()
                        collect(result.get(), n)
                while pending:
                    result, n = pending.popleft()
                    collect(result.get(), n)
    finally:
        bar.close()
        if spool is not None:
            spool.flush()
    lengths = np.concatenate(lengths_parts).astype(np.int64) if lengths_parts else np.zeros(0, dtype=np.int64)
    lengths_parts = []  # (collect, which appends to it, is done)
    if spool is None:
        flat = np.concatenate(flats) if flats else np.zeros(0, dtype=np.int32)
    else:
        with spool:
            size = spool.tell()
            flat = (np.frombuffer(mmap.mmap(spool.fileno(), size, access=mmap.ACCESS_READ), dtype=np.int32)
                    if size else np.zeros(0, dtype=np.int32))
    return flat, lengths
