"""The compiled prefix tree (trie) of valid identifiers: its file format, builder, and lookups.

What is stored
--------------
Decoding only asks "which tokens may follow this prefix" and "is this a whole sequence", so
the file holds the *minimal* automaton of the sequence set (a DAWG): the trie with every two
nodes that have the same continuations (same terminal flag, same tokens leading to the same
nodes) merged into one. Names that end alike (`` >> en`` + EOS, a shared surname, ``(film)``)
then share their ending. Membership, allowed sets, iteration and the number of sequences are
those of the trie, exactly (see docs/prefix_tree.md).

Nodes are numbered in three groups so that most need no offset: the ``n1`` nodes with one
outgoing edge come first and node ``v < n1`` owns edge ``v``; the ``n2`` nodes with two or
more edges follow, their edges in blocks after the first ``n1``, located by ``offsets``; the
nodes without edges come last. Per edge, ``tokens`` holds the token's rank among the distinct
tokens of the tree (``token_map`` maps ranks back to ids, so a rank order is a token order) and
``targets`` the node the edge leads to. Edges of a node are sorted by token, so "which node does
token t lead to" is a binary search. Every array is bit-packed at the smallest width that
fits (``terminal`` is one bit per node).

Decoding state
--------------
A hypothesis's state is one integer: ``0`` at the root, ``e + 1`` after taking edge ``e``,
or ``-1`` once it has left the tree. An edge, unlike a merged node, has one token entering it,
so :meth:`PrefixTree.incoming_tokens` stays well defined. The tensor methods
(:meth:`~PrefixTree.child_ranges`, :meth:`~PrefixTree.advance`, :meth:`~PrefixTree.walk`,
:meth:`~PrefixTree.candidates`, :meth:`~PrefixTree.allowed_mask`) take and return
``torch.LongTensor`` on any device. On CPU they read the memory-mapped arrays directly; on another
device the packed words are copied there once and cached.

File format
-----------
Little-endian: magic ``b"GENRETRI"``, ``uint32`` version (2), ``uint32`` length of a JSON
header (counts, bit widths, fingerprints, start token, identifier format, CRC32 of the
sections), padding to 8 bytes, then the sections ``token_map | tokens | targets | offsets |
terminal``, each ``uint32`` words padded to 8 bytes. ``load`` memory-maps the sections.
docs/prefix_tree.md gives the details.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import struct
import zlib
from array import array
from typing import TYPE_CHECKING, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from .identifiers import FORMATS as IDENTIFIER_FORMATS

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from fairseq.data import Dictionary
else:
    class _Torch:
        """torch, imported at first use: the format, the builder and the numpy lookups do not need it."""

        def __getattr__(self, name: str):
            import torch as module

            globals()["torch"] = module
            return getattr(module, name)

    torch = _Torch()

__all__ = ["PrefixTree", "dictionary_fingerprint", "MAGIC", "FORMAT_VERSION", "IDENTIFIER_FORMATS"]

MAGIC = b"GENRETRI"
FORMAT_VERSION = 2
_PREFIX = struct.Struct("<8sII")  # magic, version, meta_len
_ALIGN = 8
#: Sections of the file, in order.
_SECTIONS = ("token_map", "tokens", "targets", "offsets", "terminal")
_U64 = np.uint64


def dictionary_fingerprint(dictionary: "Dictionary") -> str:
    """SHA-256 of a fairseq dictionary's symbols in id order (counts do not change ids)."""
    digest = hashlib.sha256()
    for symbol in dictionary.symbols:
        digest.update(symbol.encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()


def _pad_len(n: int) -> int:
    return (-n) % _ALIGN


def _bits_for(max_value: int) -> int:
    """Bits needed to store 0..max_value (at least 1)."""
    return max(int(max_value).bit_length(), 1)


# ---------------------------------------------------------------------------- bit-packed arrays
class _Packed:
    """``n`` unsigned integers of ``bits`` (1..32) bits each, packed little-endian into uint32 words.

    Value ``i`` occupies bits ``i * bits .. (i + 1) * bits - 1`` of the word stream. Reads load
    the 8 bytes that start at the value's first byte (an overlapping int64 view: one gather per
    value), so two spare words at the end keep every read inside the array.
    """

    __slots__ = ("words", "n", "bits", "mask", "_bytes8")
    #: Values packed per step (bounds the temporary memory); a multiple of 32, so steps start on a word.
    CHUNK = 1 << 20

    def __init__(self, words: np.ndarray, n: int, bits: int):
        self.words, self.n, self.bits = words, int(n), int(bits)
        self.mask = (1 << self.bits) - 1
        raw = np.asarray(words).view(np.uint8)  # a plain ndarray: memmap's indexing hooks cost time
        self._bytes8 = np.ndarray(shape=(raw.size - 7,), dtype="<i8", buffer=raw, strides=(1,))

    @staticmethod
    def num_words(n: int, bits: int) -> int:
        return (max(n, 1) * bits + 31) // 32 + 2

    @classmethod
    def pack(cls, values: np.ndarray, bits: Optional[int] = None) -> "_Packed":
        values = np.asarray(values)
        n = values.size
        if bits is None:
            bits = _bits_for(int(values.max()) if n else 0)
        if not 1 <= bits <= 32:
            raise ValueError(f"cannot pack values of {bits} bits")
        if n and (int(values.min()) < 0 or int(values.max()) >> bits):
            raise ValueError(f"values {int(values.min())}..{int(values.max())} do not fit in {bits} unsigned bits")
        words = np.zeros(cls.num_words(n, bits), dtype="<u4")
        step = cls.CHUNK
        for a in range(0, n, step):
            v = values[a: a + step].astype(_U64)
            pos = np.arange(a, a + v.size, dtype=np.int64) * bits
            word = pos >> 5
            shift = (pos & 31).astype(_U64)
            low = ((v << shift) & _U64(0xFFFFFFFF)).astype(np.float64)  # exact: < 2**32
            high = (v >> (_U64(32) - shift)).astype(np.float64)
            high[shift == 0] = 0  # a shift by 32 is not defined for every backend
            first = int(word[0])
            # Fields never share bits, so summing their contributions to each word is an OR.
            span = int(word[-1]) - first + 2
            acc = np.bincount(word - first, weights=low, minlength=span)
            acc += np.bincount(word - first + 1, weights=high, minlength=span)
            words[first: first + span] |= acc.astype(np.uint32)
        return cls(words, n, bits)

    def get(self, index: np.ndarray) -> np.ndarray:
        """Values at ``index`` (any integer array), as int64."""
        pos = np.asarray(index, dtype=np.int64) * self.bits
        # bits + 7 <= 39 bits are used: the sign of the int64 load never reaches them.
        return (self._bytes8[pos >> 3] >> (pos & 7)) & self.mask

    def get1(self, i: int) -> int:
        pos = i * self.bits
        return (int(self._bytes8[pos >> 3]) >> (pos & 7)) & self.mask

    def range(self, lo: int, hi: int) -> np.ndarray:
        return self.get(np.arange(lo, hi, dtype=np.int64))

    def all(self) -> np.ndarray:
        return self.range(0, self.n)


def _torch_get(words: torch.Tensor, bits: int, index: torch.Tensor) -> torch.Tensor:
    """:meth:`_Packed.get` on int64 tensors of the words (no uint64 in torch: no shift overflows)."""
    pos = index * bits
    word = pos >> 5
    shift = pos & 31
    lo, hi = words[word], words[word + 1]
    high = (hi & ((torch.ones_like(shift) << shift) - 1)) << (32 - shift)
    return ((lo >> shift) | high) & ((1 << bits) - 1)


# ---------------------------------------------------------------------------- the tree
class PrefixTree:
    """A compiled, immutable set of integer token sequences, searched as a prefix tree."""

    def __init__(
        self,
        arrays: Dict[str, _Packed],
        layout: Dict[str, int],
        num_sequences: int,
        *,
        dictionary_fingerprint: Optional[str] = None,
        start_token: Optional[int] = None,
        identifier_format: Optional[str] = None,
        name_table_fingerprint: Optional[str] = None,
        path: Optional[str] = None,
    ):
        self._arrays = arrays
        self.num_sequences = int(num_sequences)
        #: Nodes of the minimal automaton (fewer than the trie's: equal subtrees are stored once).
        self.num_nodes = int(layout["num_nodes"])
        #: Edges of the automaton; states are 0 (root) .. num_edges.
        self.num_edges = int(layout["num_edges"])
        self._n1 = int(layout["single"])
        self._n2 = int(layout["multi"])
        self._root = int(layout["root"])
        self.dictionary_fingerprint = dictionary_fingerprint
        self.start_token = None if start_token is None else int(start_token)
        self.identifier_format = identifier_format
        # Fingerprint of the name table that maps this tree's identifiers to entities (if known).
        self.name_table_fingerprint = name_table_fingerprint
        self.path = path
        # The distinct tokens are few (at most the vocabulary): decoded once, kept in memory.
        self._token_map = arrays["token_map"].all()
        self.max_token = int(self._token_map[-1]) if self.num_edges else -1
        self._device_arrays: Dict[torch.device, Dict[str, torch.Tensor]] = {}
        # Off the CPU the packed words are copied to the device as int64 tensors; tests set this
        # to run that same code path on the CPU.
        self._torch_arrays_on_cpu = False

    @property
    def bit_widths(self) -> Dict[str, int]:
        """Bits per stored value of each array (token ranks, edge targets, offsets, token ids)."""
        return {name: self._arrays[name].bits for name in ("tokens", "targets", "offsets", "token_map")}

    # ------------------------------------------------------------------ building
    @classmethod
    def from_sequences(
        cls,
        seqs: Iterable[Sequence[int]],
        *,
        dictionary_fingerprint: Optional[str] = None,
        start_token: Optional[int] = None,
        identifier_format: Optional[str] = None,
        name_table_fingerprint: Optional[str] = None,
    ) -> "PrefixTree":
        """Build a tree from token sequences; duplicates collapse."""
        # Validation (format, start token, negative ids) is from_arrays's, done once on the arrays.
        flat = array("q")
        lengths = array("q")
        for seq in seqs:
            before = len(flat)
            flat.extend(seq)  # ints only: a float or str raises TypeError here
            lengths.append(len(flat) - before)
        return cls.from_arrays(
            np.frombuffer(flat, dtype=np.int64) if flat else np.zeros(0, np.int64),
            np.frombuffer(lengths, dtype=np.int64) if lengths else np.zeros(0, np.int64),
            dictionary_fingerprint=dictionary_fingerprint,
            start_token=start_token,
            identifier_format=identifier_format,
            name_table_fingerprint=name_table_fingerprint,
        )

    @classmethod
    def from_arrays(
        cls,
        flat: np.ndarray,
        lengths: np.ndarray,
        *,
        dictionary_fingerprint: Optional[str] = None,
        start_token: Optional[int] = None,
        identifier_format: Optional[str] = None,
        name_table_fingerprint: Optional[str] = None,
    ) -> "PrefixTree":
        """Build a tree from sequences concatenated in ``flat`` with their ``lengths``; duplicates collapse."""
        if identifier_format is not None and identifier_format not in IDENTIFIER_FORMATS:
            raise ValueError(
                f"unknown identifier format {identifier_format!r}; expected one of {IDENTIFIER_FORMATS}"
            )
        flat = np.asarray(flat)
        lengths = np.asarray(lengths, dtype=np.int64)
        if flat.ndim != 1 or lengths.ndim != 1 or not np.issubdtype(flat.dtype, np.integer):
            raise ValueError("flat and lengths must be 1-d integer arrays")
        if (lengths < 0).any() or int(lengths.sum()) != flat.size:
            raise ValueError(f"lengths must be >= 0 and sum to len(flat) = {flat.size}")
        low = min((int(c.min()) for c in _steps(flat)), default=0)
        if low < 0:
            raise ValueError(f"token ids must be >= 0, got {low}")
        high = max((int(c.max()) for c in _steps(flat)), default=0)
        if high >= 1 << 32:
            raise ValueError(f"token ids must be < 2**32, got {high}")
        if start_token is not None and lengths.size:
            starts = np.cumsum(lengths) - lengths
            # An empty flat (only empty sequences) has no first token to read: every one is bad.
            firsts = _take(flat, np.minimum(starts, flat.size - 1)) if flat.size else np.full(lengths.size, -1)
            bad = np.flatnonzero((lengths == 0) | (firsts != start_token))
            if bad.size:
                i = int(bad[0])
                seq = flat[starts[i]: starts[i] + min(int(lengths[i]), 8)].tolist()
                raise ValueError(f"sequence {i} does not begin with the start token {start_token}: {seq}")
        arrays, layout, count = _build(flat, lengths)
        return cls(
            arrays,
            layout,
            count,
            dictionary_fingerprint=dictionary_fingerprint,
            start_token=start_token,
            identifier_format=identifier_format,
            name_table_fingerprint=name_table_fingerprint,
        )

    # ------------------------------------------------------------------ file I/O
    def _meta(self) -> dict:
        return {
            "num_nodes": self.num_nodes,
            "num_edges": self.num_edges,
            "single": self._n1,
            "multi": self._n2,
            "root": self._root,
            "num_sequences": self.num_sequences,
            "sections": {name: [self._arrays[name].n, self._arrays[name].bits] for name in _SECTIONS},
            "dictionary_fingerprint": self.dictionary_fingerprint,
            "start_token": self.start_token,
            "identifier_format": self.identifier_format,
            "name_table_fingerprint": self.name_table_fingerprint,
            "max_token": self.max_token,
        }

    def save(self, path: str) -> None:
        """Write the tree to ``path`` (atomically: a temporary file is renamed into place)."""
        words = [np.ascontiguousarray(self._arrays[name].words, dtype="<u4") for name in _SECTIONS]
        crc = 0
        for w in words:
            crc = zlib.crc32(memoryview(w).cast("B"), crc)
        meta = self._meta()
        meta["sections_crc32"] = crc
        meta["header_crc32"] = _header_crc(meta)
        blob = json.dumps(meta, sort_keys=True).encode("utf-8")
        tmp = f"{path}.tmp{os.getpid()}"
        try:
            with open(tmp, "wb") as f:
                head = _PREFIX.pack(MAGIC, FORMAT_VERSION, len(blob)) + blob
                f.write(head + b"\0" * _pad_len(len(head)))
                for w in words:
                    f.write(memoryview(w).cast("B"))
                    f.write(b"\0" * _pad_len(w.nbytes))
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.remove(tmp)
            raise
        self.path = path

    @classmethod
    def load(cls, path: str, *, verify: bool = True, deep: bool = False) -> "PrefixTree":
        """Memory-map a tree saved by :meth:`save`, checksummed unless ``verify=False``; ``deep`` reads every array.

        The checksums prove the bytes are the ones :meth:`save` wrote, which is all accidental
        damage can change; ``deep`` also bounds-checks every value (about 4x the time of the
        checksums), for files whose checksums may have been forged.
        """
        if not os.path.exists(path):
            raise FileNotFoundError(f"prefix tree file not found: {path}")
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            prefix = f.read(_PREFIX.size)
            if len(prefix) < _PREFIX.size:
                raise ValueError(f"{path}: not a prefix tree file (too short: {size} bytes)")
            magic, version, meta_len = _PREFIX.unpack(prefix)
            if magic != MAGIC:
                raise ValueError(f"{path}: not a prefix tree file (bad magic {magic!r})")
            if version == 1:
                raise ValueError(
                    f"{path}: prefix tree format version 1 is no longer read (this code reads version "
                    f"{FORMAT_VERSION}, about 6x smaller); rebuild the tree with `genre-trie build` or "
                    "`genre-trie convert`"
                )
            if version != FORMAT_VERSION:
                raise ValueError(
                    f"{path}: unsupported prefix tree format version {version} (this code reads {FORMAT_VERSION})"
                )
            blob = f.read(meta_len)
        if len(blob) < meta_len:
            raise ValueError(f"{path}: truncated prefix tree file (header cut short)")
        try:
            meta = json.loads(blob.decode("utf-8"))
            layout = {k: int(meta[k]) for k in ("num_nodes", "num_edges", "single", "multi", "root")}
            sections = [(name, int(meta["sections"][name][0]), int(meta["sections"][name][1])) for name in _SECTIONS]
            if any(not 1 <= bits <= 32 or n < 0 for _, n, bits in sections):
                raise ValueError("bad section widths")
        except (ValueError, KeyError, TypeError, IndexError, AttributeError) as e:
            raise ValueError(f"{path}: corrupt prefix tree header ({e})") from None
        if verify:
            problem = _header_problem(meta, blob)
            if problem:
                raise ValueError(f"{path}: corrupt prefix tree header ({problem})")
        pos = _PREFIX.size + meta_len
        pos += _pad_len(pos)
        expected = pos + sum(4 * _Packed.num_words(n, bits) + _pad_len(4 * _Packed.num_words(n, bits))
                             for _, n, bits in sections)
        if size < expected:
            raise ValueError(f"{path}: truncated prefix tree file ({size} bytes, header says {expected})")
        if size > expected:
            raise ValueError(f"{path}: corrupt prefix tree file ({size} bytes, header says {expected})")
        arrays: Dict[str, _Packed] = {}
        # Padding is zero in a file `save` wrote: checked too, so that no byte of the file is unchecked.
        gaps = [(_PREFIX.size + meta_len, _pad_len(_PREFIX.size + meta_len))]
        for name, n, bits in sections:
            nw = _Packed.num_words(n, bits)
            arrays[name] = _Packed(np.memmap(path, dtype="<u4", mode="r", offset=pos, shape=(nw,)), n, bits)
            gaps.append((pos + 4 * nw, _pad_len(4 * nw)))
            pos += 4 * nw + _pad_len(4 * nw)
        if verify:
            with open(path, "rb") as f:
                for start, length in gaps:
                    f.seek(start)
                    if length and f.read(length).strip(b"\0"):
                        raise ValueError(f"{path}: corrupt prefix tree file (non-zero padding at byte {start})")
            crc = 0
            for name in _SECTIONS:
                crc = zlib.crc32(memoryview(np.ascontiguousarray(arrays[name].words)).cast("B"), crc)
            if crc != meta.get("sections_crc32"):
                raise ValueError(f"{path}: corrupt prefix tree file (checksum mismatch)")
        problem = _layout_problem(arrays, layout, deep=deep)
        if problem:
            raise ValueError(f"{path}: corrupt prefix tree file ({problem})")
        tree = cls(
            arrays,
            layout,
            meta.get("num_sequences", 0),
            dictionary_fingerprint=meta.get("dictionary_fingerprint"),
            start_token=meta.get("start_token"),
            identifier_format=meta.get("identifier_format"),
            name_table_fingerprint=meta.get("name_table_fingerprint"),
            path=path,
        )
        if meta.get("max_token") is not None and int(meta["max_token"]) != tree.max_token:
            raise ValueError(
                f"{path}: corrupt prefix tree header (max_token {meta['max_token']}, tokens say {tree.max_token})"
            )
        return tree

    def nbytes(self) -> int:
        """Bytes of the packed arrays (the file adds a header of a few hundred bytes)."""
        return int(sum(a.words.nbytes for a in self._arrays.values()))

    # ------------------------------------------------------------------ Python lookups
    def _node_of(self, state: int) -> int:
        return self._root if state == 0 else self._arrays["targets"].get1(state - 1)

    def _block(self, node: int) -> Tuple[int, int]:
        if node < self._n1:
            return node, 1
        j = node - self._n1
        if j < self._n2:
            off = self._arrays["offsets"]
            lo = off.get1(j)
            return self._n1 + lo, off.get1(j + 1) - lo
        return 0, 0

    def _is_terminal(self, node: int) -> bool:
        return bool(self._arrays["terminal"].get1(node))

    def _rank(self, token: int) -> int:
        i = int(np.searchsorted(self._token_map, token))
        return i if i < self._token_map.size and int(self._token_map[i]) == token else -1

    def _step(self, state: int, token: int) -> int:
        start, count = self._block(self._node_of(state))
        rank = self._rank(token) if count else -1
        if rank < 0:
            return -1
        toks = self._arrays["tokens"]
        lo, hi = start, start + count
        while lo < hi:
            mid = (lo + hi) // 2
            if toks.get1(mid) < rank:
                lo = mid + 1
            else:
                hi = mid
        return lo + 1 if lo < start + count and toks.get1(lo) == rank else -1

    def node(self, prefix: Sequence[int]) -> int:
        """The state reached by ``prefix`` from the root (0 for ``[]``), or -1 when ``prefix`` leaves the tree."""
        state = 0
        for token in prefix:
            state = self._step(state, int(token))
            if state < 0:
                return -1
        return state

    def _children(self, state: int) -> Tuple[np.ndarray, int]:
        """Token ids allowed after ``state`` and the edge of the first (edge + 1 is the next state)."""
        start, count = self._block(self._node_of(state))
        return self._token_map[self._arrays["tokens"].range(start, start + count)], start

    def allowed(self, prefix: Sequence[int]) -> List[int]:
        """Sorted tokens that may follow ``prefix``; [] when ``prefix`` is not in the tree."""
        state = self.node(prefix)
        if state < 0:
            return []
        return self._children(state)[0].tolist()

    def __len__(self) -> int:
        return self.num_sequences

    def __contains__(self, seq: object) -> bool:
        try:
            state = self.node(seq)  # type: ignore[arg-type]
        except (TypeError, ValueError, OverflowError):
            return False
        return state >= 0 and self._is_terminal(self._node_of(state))

    def __iter__(self) -> Iterator[Tuple[int, ...]]:
        """Every distinct sequence, in lexicographic order."""
        if self.num_sequences == 0:
            return
        stack: List[Tuple[int, Tuple[int, ...]]] = [(0, ())]
        while stack:
            state, seq = stack.pop()
            if self._is_terminal(self._node_of(state)):
                yield seq
            tokens, first = self._children(state)
            for i in range(tokens.size - 1, -1, -1):
                stack.append((first + i + 1, seq + (int(tokens[i]),)))

    def to_arrays(self) -> Tuple[np.ndarray, np.ndarray]:
        """Every distinct sequence, in lexicographic order, as ``(flat, lengths)`` (as ``from_arrays`` takes)."""
        return _expand(self)

    def __repr__(self) -> str:
        return (
            f"PrefixTree(sequences={self.num_sequences}, nodes={self.num_nodes}, edges={self.num_edges}, "
            f"format={self.identifier_format!r}, path={self.path!r})"
        )

    # ------------------------------------------------------------------ tensor lookups
    def _on(self, device: torch.device) -> Optional[Dict[str, torch.Tensor]]:
        """The arrays as int64 tensors on ``device``, or None to read the numpy arrays (CPU)."""
        if device.type == "cpu" and not self._torch_arrays_on_cpu:
            return None
        if device not in self._device_arrays:
            on = {name: torch.from_numpy(np.asarray(a.words, dtype=np.int64)).to(device)
                  for name, a in self._arrays.items() if name != "token_map"}
            on["token_map"] = torch.from_numpy(self._token_map.astype(np.int64)).to(device)
            self._device_arrays[device] = on
        return self._device_arrays[device]

    def _read(self, name: str, index: torch.Tensor) -> torch.Tensor:
        """Values of packed array ``name`` at ``index`` (in range), as a LongTensor on index's device."""
        on = self._on(index.device)
        if on is not None:
            return _torch_get(on[name], self._arrays[name].bits, index)
        return torch.from_numpy(self._arrays[name].get(index.numpy()))

    def _token_ids(self, ranks: torch.Tensor) -> torch.Tensor:
        on = self._on(ranks.device)
        if on is not None:
            return on["token_map"][ranks]
        return torch.from_numpy(self._token_map[ranks.numpy()].astype(np.int64))

    def _ranks(self, tokens: torch.Tensor) -> torch.Tensor:
        """Rank of each token id among the tree's tokens, or -1 for tokens the tree does not hold."""
        on = self._on(tokens.device)
        if on is not None:
            tmap = on["token_map"]
            i = torch.searchsorted(tmap, tokens.contiguous()).clamp(max=max(tmap.numel() - 1, 0))
            hit = tmap[i] == tokens if tmap.numel() else torch.zeros_like(tokens, dtype=torch.bool)
            return torch.where(hit, i, torch.full_like(i, -1))
        t = tokens.numpy()
        i = np.minimum(np.searchsorted(self._token_map, t), max(self._token_map.size - 1, 0))
        hit = (self._token_map[i] == t) if self._token_map.size else np.zeros(t.shape, bool)
        return torch.from_numpy(np.where(hit, i, -1).astype(np.int64))

    def _nodes(self, states: torch.Tensor) -> torch.Tensor:
        """Node of each state >= 0."""
        if self.num_edges == 0:
            return torch.full_like(states, self._root)
        tgt = self._read("targets", (states - 1).clamp(min=0))
        return torch.where(states > 0, tgt, torch.full_like(tgt, self._root))

    def child_ranges(self, states: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """First edge and number of allowed tokens of each state; states < 0 get (0, 0).

        Edges ``start .. start + count - 1`` lead to states ``start + 1 .. start + count``;
        :meth:`edge_tokens` gives their tokens.
        """
        valid = states >= 0
        nodes = self._nodes(states.clamp(min=0))
        n1, n2 = self._n1, self._n2
        single = nodes < n1
        start = torch.where(single, nodes, torch.zeros_like(nodes))
        count = single.long()
        if n2:
            j = nodes - n1
            multi = (j >= 0) & (j < n2)
            jj = j.clamp(0, n2 - 1)
            lo, hi = self._read("offsets", torch.stack([jj, jj + 1])).unbind(0)
            start = torch.where(multi, n1 + lo, start)
            count = torch.where(multi, hi - lo, count)
        zero = torch.zeros_like(start)
        return torch.where(valid, start, zero), torch.where(valid, count, zero)

    def edge_tokens(self, edges: torch.Tensor) -> torch.Tensor:
        """The token of each edge (edges as given by :meth:`child_ranges`, in range)."""
        return self._token_ids(self._read("tokens", edges))

    def incoming_tokens(self, states: torch.Tensor) -> torch.Tensor:
        """The token that enters each state (-1 for the root and for states < 0)."""
        inside = states > 0
        if self.num_edges == 0:
            return torch.full_like(states, -1)
        tok = self.edge_tokens((states - 1).clamp(min=0, max=self.num_edges - 1))
        return torch.where(inside, tok, torch.full_like(tok, -1))

    def advance(self, states: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """The state after each token, or -1 (vectorized binary search)."""
        start, count = self.child_ranges(states)
        if self.num_edges == 0:
            return torch.full_like(states, -1)
        rank = self._ranks(tokens)
        count = torch.where(rank >= 0, count, torch.zeros_like(count))
        lo, hi = start.clone(), start + count
        steps = int(count.max().item()).bit_length() if count.numel() else 0
        last = self.num_edges - 1
        for _ in range(steps):
            active = lo < hi
            mid = (lo + hi) // 2
            go_right = active & (self._read("tokens", mid.clamp(max=last)) < rank)
            lo = torch.where(go_right, mid + 1, lo)
            hi = torch.where(active & ~go_right, mid, hi)
        found = (lo < start + count) & (self._read("tokens", lo.clamp(max=last)) == rank)
        return torch.where(found, lo + 1, torch.full_like(lo, -1))

    def root_states(self, n: int, device: Optional[torch.device] = None) -> torch.Tensor:
        """``n`` states at the root."""
        return torch.zeros(n, dtype=torch.long, device=device)

    def walk(self, tokens: torch.Tensor, states: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Advance ``states`` (default: the root) along each row of ``tokens`` (N x T)."""
        if states is None:
            states = self.root_states(tokens.size(0), tokens.device)
        for t in range(tokens.size(1)):
            states = self.advance(states, tokens[:, t])
        return states

    def candidates(
        self, states: torch.Tensor, min_width: int = 0
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Allowed tokens of each state, padded: ``(tokens, next_states, valid)``, each N x K.

        K is the largest number of allowed tokens among ``states`` (at least ``min_width``);
        padding has token 0, next state -1 and ``valid`` False.
        """
        start, count = self.child_ranges(states)
        width = max(int(count.max().item()) if count.numel() else 0, min_width)
        cols = torch.arange(width, device=states.device)
        valid = cols.unsqueeze(0) < count.unsqueeze(1)
        edge = start.unsqueeze(1) + cols.unsqueeze(0)
        edge = torch.where(valid, edge, torch.zeros_like(edge))
        if width and self.num_edges:
            tok = self.edge_tokens(edge.reshape(-1)).view_as(edge)
        else:
            tok = edge
        tok = tok.masked_fill(~valid, 0)
        nxt = torch.where(valid, edge + 1, torch.full_like(edge, -1))
        return tok, nxt, valid

    def allowed_mask(self, states: torch.Tensor, vocab_size: int) -> torch.Tensor:
        """Boolean N x vocab_size mask of the tokens each state allows."""
        start, count = self.child_ranges(states)
        n = states.size(0)
        mask = torch.zeros(n, vocab_size, dtype=torch.bool, device=states.device)
        total = int(count.sum().item()) if n else 0
        if total == 0:
            return mask
        rows = torch.repeat_interleave(torch.arange(n, device=states.device), count)
        first = torch.cumsum(count, 0) - count
        within = torch.arange(total, device=states.device) - torch.repeat_interleave(first, count)
        toks = self.edge_tokens(torch.repeat_interleave(start, count) + within)
        keep = toks < vocab_size
        mask[rows[keep], toks[keep]] = True
        return mask


# ---------------------------------------------------------------------------- checks on load
_HEADER_FIELDS = {"num_nodes", "num_edges", "single", "multi", "root", "num_sequences", "sections",
                  "dictionary_fingerprint", "start_token", "identifier_format", "name_table_fingerprint",
                  "max_token", "sections_crc32", "header_crc32"}


def _header_crc(meta: dict) -> int:
    """CRC-32 of the header's canonical JSON without its own ``header_crc32`` field."""
    rest = {k: v for k, v in meta.items() if k != "header_crc32"}
    return zlib.crc32(json.dumps(rest, sort_keys=True).encode("utf-8"))


def _header_problem(meta: dict, blob: bytes) -> Optional[str]:
    """Why the header bytes are not the ones `save` wrote, or None."""
    # `save` writes canonical JSON: any other byte sequence that parses (a changed space) is damage.
    if json.dumps(meta, sort_keys=True).encode("utf-8") != blob:
        return "not the JSON this code writes"
    unknown = sorted(set(meta) - _HEADER_FIELDS)
    if unknown:  # a damaged field name, or a file this code did not write
        return f"unknown field {unknown[0]!r}"
    # Files written before the header had a checksum lack the field; their sections are still checked.
    if "header_crc32" in meta and meta["header_crc32"] != _header_crc(meta):
        return "checksum mismatch"
    return None


def _layout_problem(arrays: Dict[str, _Packed], layout: Dict[str, int], *, deep: bool) -> Optional[str]:
    """What is inconsistent between the header's counts and the arrays, or None.

    The cheap checks read a few values; ``deep`` reads every array (bounds of every target,
    token rank and offset), so that a file passing it cannot make a lookup index out of range.
    """
    v, e, n1, n2, root = (layout[k] for k in ("num_nodes", "num_edges", "single", "multi", "root"))
    ns = {name: a.n for name, a in arrays.items()}
    if v < 1 or not 0 <= root < v or n1 < 0 or n2 < 0 or n1 + n2 > v:
        return "node counts do not add up"
    if ns["tokens"] != e or ns["targets"] != e or ns["offsets"] != n2 + 1 or ns["terminal"] != v:
        return "array lengths do not match the node and edge counts"
    if (ns["token_map"] == 0) != (e == 0):
        return "token map does not match the edges"
    off = arrays["offsets"]
    if off.get1(0) != 0 or n1 + off.get1(n2) != e:
        return "offsets do not span the edges"
    if not deep:
        return None
    if e and int(arrays["targets"].all().max()) >= v:
        return "an edge leads outside the tree"
    if e and int(arrays["tokens"].all().max()) >= ns["token_map"]:
        return "a token rank outside the token map"
    offsets = off.all()
    if (np.diff(offsets) < 2).any():
        return "offsets do not give every multi-edge node two or more edges"
    tmap = arrays["token_map"].all()
    if (np.diff(tmap) <= 0).any():
        return "token map is not strictly increasing"
    return None


# ---------------------------------------------------------------------------- building
#: Tokens per step of a pass over the sequences (bounds the temporaries of a pass).
_STEP = 1 << 22


def _mapped(flat: np.ndarray) -> Optional[Tuple[mmap.mmap, int]]:
    """The read-only file mapping ``flat`` views (and its byte offset there), or None if in memory."""
    mm = flat.base
    while isinstance(mm, np.ndarray):
        mm = mm.base
    if isinstance(mm, memoryview):
        mm = mm.obj
    if not isinstance(mm, mmap.mmap) or flat.size == 0:
        return None
    start = np.frombuffer(mm, np.uint8, count=1).__array_interface__["data"][0]
    return mm, flat.__array_interface__["data"][0] - start


def _release(where: Optional[Tuple[mmap.mmap, int]], flat: np.ndarray, lo: int, hi: int) -> None:
    """Drop the pages of ``flat[lo:hi]`` from a file mapping's resident set (read again from the page cache if needed).

    The sequences of a large build are a memory-mapped file (trie_tools.encode): each pass over
    them (validation, token map, one gather per trie level) releases what it read, so resident
    memory does not grow with the sequence file.
    """
    if where is None or hi <= lo:
        return
    mm, offset = where
    page = mmap.PAGESIZE
    a = (offset + lo * flat.itemsize) // page * page
    b = min(len(mm), offset + hi * flat.itemsize)
    mm.madvise(mmap.MADV_DONTNEED, a, b - a)


def _steps(flat: np.ndarray) -> Iterator[np.ndarray]:
    """``flat`` in consecutive steps of ``_STEP`` tokens, released after each (see ``_release``)."""
    where = _mapped(flat)
    for a in range(0, flat.size, _STEP):
        yield flat[a: a + _STEP]
        _release(where, flat, a, min(a + _STEP, flat.size))


def _take(flat: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """``flat[pos]`` for ascending ``pos``, in steps, each step's pages released after it."""
    where = _mapped(flat)
    if where is None:
        return flat[pos]
    out = np.empty(pos.size, dtype=flat.dtype)
    for a in range(0, pos.size, _STEP):
        p = pos[a: a + _STEP]
        out[a: a + p.size] = flat[p]
        _release(where, flat, int(p[0]), int(p[-1]) + 1)
    return out


class _Grow:
    """A numpy array that grows by appending (amortized doubling)."""

    def __init__(self, dtype) -> None:
        self.data = np.zeros(1024, dtype=dtype)
        self.n = 0

    def extend(self, values: np.ndarray) -> None:
        need = self.n + values.size
        if need > self.data.size:
            bigger = np.zeros(max(need, 2 * self.data.size), dtype=self.data.dtype)
            bigger[: self.n] = self.data[: self.n]
            self.data = bigger
        self.data[self.n: need] = values
        self.n = need

    def view(self) -> np.ndarray:
        return self.data[: self.n]


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer: a bijection of uint64 that scatters every input bit."""
    x = x ^ (x >> _U64(30))
    x = x * _U64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> _U64(27))
    x = x * _U64(0x94D049BB133111EB)
    return x ^ (x >> _U64(31))


def _token_map(flat: np.ndarray) -> Tuple[np.ndarray, object]:
    """The distinct tokens (sorted) and a function from token ids to their ranks."""
    if flat.size == 0:
        return np.zeros(0, np.int64), None
    top = max(int(c.max()) for c in _steps(flat))
    if top < 1 << 24:
        present = np.zeros(top + 1, dtype=bool)
        for c in _steps(flat):  # bincount copies its input to intp: one step at a time
            present |= np.bincount(c, minlength=top + 1) > 0
        lut = (np.cumsum(present) - 1).astype(np.int64)
        return np.flatnonzero(present), lambda t: lut[t]
    tmap = np.unique(np.concatenate([np.unique(c) for c in _steps(flat)]))
    return tmap, lambda t: np.searchsorted(tmap, t)


def _build(flat: np.ndarray, lengths: np.ndarray) -> Tuple[Dict[str, _Packed], Dict[str, int], int]:
    """The packed arrays of the minimal automaton of the distinct sequences in flat + lengths."""
    tmap, rank_of = _token_map(flat)
    levels, num_sequences = _trie_levels(flat, lengths, rank_of, max(tmap.size, 1))
    counts, terminal, edge_start, edge_tok, edge_tgt, root = _minimize(levels)
    del levels
    # Node numbering: one-edge nodes first (node v owns edge v), then the rest with edges, then leaves.
    n_classes = counts.size
    group = np.where(counts == 1, 0, np.where(counts > 1, 1, 2)).astype(np.int8)
    order = np.argsort(group, kind="stable")
    n1, n2 = int((group == 0).sum()), int((group == 1).sum())
    del group
    new_id = np.empty(n_classes, dtype=edge_tgt.dtype)
    new_id[order] = np.arange(n_classes, dtype=edge_tgt.dtype)
    ordered_counts = counts[order]
    ordered_start = edge_start[order[: n1 + n2]]
    ordered_terminal = terminal[order]
    root_id = int(new_id[root])
    del order, counts, terminal, edge_start
    # Edges in the new node order: a one-edge node's edge, then each multi-edge node's block.
    multi = ordered_counts[n1: n1 + n2]
    multi_from = np.repeat(ordered_start[n1:], multi) + (
        np.arange(int(multi.sum())) - np.repeat(np.cumsum(multi) - multi, multi))
    tokens = np.concatenate([edge_tok[ordered_start[:n1]], edge_tok[multi_from]])
    targets = np.concatenate([new_id[edge_tgt[ordered_start[:n1]]], new_id[edge_tgt[multi_from]]])
    del multi_from, ordered_start, edge_tok, edge_tgt, new_id
    offsets = np.zeros(n2 + 1, dtype=np.int64)
    np.cumsum(ordered_counts[n1: n1 + n2], out=offsets[1:])
    arrays = {
        "token_map": _Packed.pack(tmap if tmap.size else np.zeros(0, np.int64)),
        "tokens": _Packed.pack(tokens, _bits_for(max(tmap.size - 1, 0))),
        "targets": _Packed.pack(targets, _bits_for(n_classes - 1)),
        "offsets": _Packed.pack(offsets, _bits_for(int(offsets[-1]))),
        "terminal": _Packed.pack(ordered_terminal.astype(np.uint8), 1),
    }
    layout = {"num_nodes": n_classes, "num_edges": int(tokens.size), "single": n1, "multi": n2,
              "root": root_id}
    return arrays, layout, num_sequences


def _narrow(counts: np.ndarray) -> np.ndarray:
    """Children counts of a trie level in the narrowest unsigned dtype that holds them (most are 0 or 1)."""
    top = int(counts.max()) if counts.size else 0
    return counts.astype(np.uint8 if top < 1 << 8 else np.uint16 if top < 1 << 16 else np.int32)


def _trie_levels(flat, lengths, rank_of, base: int):
    """The trie of the distinct sequences, level by level: per depth, each node's number of children,
    its terminal flag, and the token ranks of the edges to the next level (children in order).

    The nodes at depth d + 1 are the distinct (node at depth d, token) pairs of the sequences
    longer than d; sorting those pairs orders children by token and parents as on level d.
    Memory is a few int64 arrays of one entry per live sequence, never a padded matrix.
    """
    n = len(lengths)
    starts = np.zeros(n, dtype=np.int64)
    if n > 1:
        np.cumsum(lengths[:-1], out=starts[1:])
    small = np.uint32 if base <= 1 << 32 else np.int64  # token ranks
    terminal = np.array([bool(n) and bool((lengths == 0).any())])
    num_sequences = int(terminal.sum())
    ids = np.int32 if n < 1 << 31 else np.int64  # a level has at most one node per sequence
    live = np.flatnonzero(lengths > 0).astype(ids)
    node = np.zeros(live.size, dtype=ids)  # node of each live sequence within the current level
    levels = []
    size, depth = 1, 0
    while live.size:
        key = node.astype(np.int64) * base + rank_of(_take(flat, starts[live] + depth))
        pairs, inverse = np.unique(key, return_inverse=True)
        del key
        levels.append((_narrow(np.bincount(pairs // base, minlength=size)), terminal, (pairs % base).astype(small)))
        size = pairs.size
        del pairs
        node = inverse.reshape(-1).astype(ids)
        del inverse
        ends = lengths[live] == depth + 1
        terminal = np.zeros(size, dtype=bool)
        terminal[node[ends]] = True
        num_sequences += int(terminal.sum())
        keep = ~ends
        del ends
        live, node = live[keep], node[keep]
        del keep
        depth += 1
    levels.append((np.zeros(size, dtype=np.int32), terminal, np.zeros(0, dtype=small)))
    return levels, num_sequences


def _minimize(levels):
    """Merge equivalent trie nodes, deepest level first.

    A node's class is fixed by its terminal flag and the (token, class of child) pairs of its
    edges; children are one level deeper, so their classes are known when a level is
    processed. Signatures are hashed (a sum over edges, then ``_mix``) and looked up in one
    table shared by all levels (equivalent nodes may sit at different depths); every node is then
    compared with the class it was given, edge by edge, so a hash collision can only cost
    sharing, never correctness: a node that differs from its class gets a class of its own.

    Returns per class: edge count, terminal flag, first edge; per edge: token rank, target class;
    and the root's class. Classes are numbered in creation order, children before parents.
    """
    # Classes and edges are at most the trie's nodes: 4-byte ids unless the trie has 2**31 nodes.
    wide = sum(level[0].size for level in levels) >= 1 << 31
    ids = np.int64 if wide else np.int32
    counts, terms, starts = _Grow(ids), _Grow(bool), _Grow(ids)
    etok, etgt = _Grow(np.uint32 if levels[0][2].dtype == np.uint32 else np.int64), _Grow(ids)
    table_h = np.zeros(0, dtype=_U64)  # sorted signature hashes
    table_c = np.zeros(0, dtype=np.int64)  # their classes
    child_cls = np.zeros(0, dtype=np.int64)
    while levels:
        cnt, term, tok = levels.pop()
        cnt = cnt.astype(np.int32)  # stored narrow (_narrow); the arithmetic below is int32's
        m = cnt.size
        first = np.cumsum(cnt) - cnt  # first edge of each node within the level
        owner = np.repeat(np.arange(m), cnt)
        ev = _mix((tok.astype(_U64) << _U64(32)) | child_cls.astype(_U64))  # one value per edge
        h = np.zeros(m, dtype=_U64)
        has = np.flatnonzero(cnt)
        if has.size:
            h[has] = np.add.reduceat(ev, first[has])
        del ev
        h = _mix(h + _mix(cnt.astype(_U64) * _U64(2) + term.astype(_U64)))
        uniq, rep, inv = np.unique(h, return_index=True, return_inverse=True)
        inv = inv.reshape(-1)
        pos = np.searchsorted(table_h, uniq)
        found = pos < table_h.size
        found[found] = table_h[pos[found]] == uniq[found]
        ucls = np.empty(uniq.size, dtype=np.int64)
        ucls[found] = table_c[pos[found]]
        new = np.flatnonzero(~found)
        ucls[new] = counts.n + np.arange(new.size)
        _add_classes(rep[new], cnt, term, first, tok, child_cls, counts, terms, starts, etok, etgt)
        table_h = np.insert(table_h, pos[new], uniq[new])
        table_c = np.insert(table_c, pos[new], ucls[new])
        cls = ucls[inv]
        del uniq, rep, inv, pos, found, ucls, new, h  # the level's temporaries go before the check's
        # Exactness: compare each node with its class's stored signature.
        k = counts.view()[cls]
        bad = (k != cnt) | (terms.view()[cls] != term)
        if owner.size and etok.n == 0:  # every class so far is edgeless
            bad[owner] = True
        elif owner.size:
            within = np.arange(owner.size) - first[owner]
            e = starts.view()[cls[owner]] + np.minimum(within, np.maximum(k[owner] - 1, 0))
            e = np.minimum(e, etok.n - 1)
            bad_edge = (etok.view()[e] != tok) | (etgt.view()[e] != child_cls) | (within >= k[owner])
            bad[owner[bad_edge]] = True
        bad = np.flatnonzero(bad)
        if bad.size:  # hash collisions: these nodes get classes of their own
            cls[bad] = counts.n + np.arange(bad.size)
            _add_classes(bad, cnt, term, first, tok, child_cls, counts, terms, starts, etok, etgt)
        child_cls = cls
    return counts.view(), terms.view(), starts.view(), etok.view(), etgt.view(), int(child_cls[0])


def _add_classes(nodes, cnt, term, first, tok, child_cls, counts, terms, starts, etok, etgt) -> None:
    """Append classes copied from ``nodes`` of the current level (their edges in order)."""
    k = cnt[nodes]
    starts.extend(etok.n + np.cumsum(k) - k)
    counts.extend(k)
    terms.extend(term[nodes])
    edges = np.repeat(first[nodes], k) + (np.arange(int(k.sum())) - np.repeat(np.cumsum(k) - k, k))
    etok.extend(tok[edges])
    etgt.extend(child_cls[edges])


# ---------------------------------------------------------------------------- expansion
def _expand(tree: PrefixTree) -> Tuple[np.ndarray, np.ndarray]:
    """All sequences of ``tree`` in lexicographic order, level-wise (the trie the automaton encodes).

    Memory: about 13 bytes per node of that trie, plus the output.
    """
    a = tree._arrays
    terminal = a["terminal"].all().astype(bool)
    n1, n2 = tree._n1, tree._n2
    offsets = a["offsets"].all()
    small = np.int32 if max(tree.num_sequences, tree.num_edges, tree.num_nodes) < 1 << 31 else np.int64

    def children(nodes: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """Number of edges of each node, and all their edges in order."""
        single, j = nodes < n1, nodes - n1
        multi = (j >= 0) & (j < n2)
        jj = np.clip(j, 0, max(n2 - 1, 0))
        start = np.where(single, nodes, np.where(multi, n1 + offsets[jj], 0))
        count = np.where(single, 1, np.where(multi, offsets[np.minimum(jj + 1, n2)] - offsets[jj], 0))
        total = int(count.sum())
        return count, np.repeat(start, count) + (np.arange(total) - np.repeat(np.cumsum(count) - count, count))

    # Top-down: per trie level, each node's number of children, its terminal flag, and the
    # tokens (ranks) of the next level's nodes.
    counts, terms, toks = [], [], []
    nodes = np.array([tree._root], dtype=np.int64)
    while True:
        count, edge = children(nodes)
        counts.append(count.astype(small))
        terms.append(terminal[nodes])
        if edge.size == 0:
            break
        toks.append(a["tokens"].get(edge).astype(small))
        nodes = a["targets"].get(edge)
        del edge
    del nodes
    depth = len(counts)
    # Bottom-up: sequences below each trie node.
    below: List[np.ndarray] = [np.zeros(0)] * depth
    below[-1] = terms[-1].astype(small)
    for d in range(depth - 2, -1, -1):
        b = terms[d].astype(small)
        has = np.flatnonzero(counts[d])
        if has.size:
            b[has] += np.add.reduceat(below[d + 1], (np.cumsum(counts[d]) - counts[d])[has]).astype(small)
        below[d] = b

    def ranks():
        """Per level, the lexicographic rank of the first sequence below each node."""
        rank = np.zeros(1, dtype=np.int64)
        for d in range(depth):
            yield d, rank
            if d + 1 < depth:
                c, b = counts[d], below[d + 1]
                before = np.cumsum(b, dtype=np.int64) - b  # sequences under earlier nodes of the level
                first = np.minimum(np.cumsum(c) - c, b.size - 1)  # clipped ones are repeated 0 times
                rank = np.repeat(rank + terms[d], c) + before - np.repeat(before[first], c)

    lengths = np.zeros(tree.num_sequences, dtype=np.int64)
    for d, rank in ranks():
        lengths[rank[terms[d]]] = d
    seq_start = np.cumsum(lengths) - lengths
    flat = np.zeros(int(lengths.sum()), dtype=np.int64)
    # The token entering a trie node at depth d is at position d - 1 of every sequence below it;
    # those sequences are consecutive in lexicographic order.
    for d, rank in ranks():
        if d == 0:
            continue
        b = below[d].astype(np.int64)
        r = np.repeat(rank, b) + (np.arange(int(b.sum())) - np.repeat(np.cumsum(b) - b, b))
        flat[seq_start[r] + d - 1] = np.repeat(tree._token_map[toks[d - 1]], b)
    return flat, lengths
