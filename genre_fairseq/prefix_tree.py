"""The compiled prefix tree (trie) of valid identifiers: its file format, builder, and lookups.

Layout
------
Nodes are numbered breadth-first; the root is node 0. Children of a node are sorted by
token, and because numbering is breadth-first, the children of node ``n`` are the
consecutive nodes ``offsets[n] + 1 .. offsets[n + 1]``. So the tree is three flat arrays:

- ``offsets``  (num_nodes + 1): CSR offsets; edge ``e`` leads to node ``e + 1``.
- ``tokens``   (num_nodes - 1): the token of edge ``e`` (the token that enters node ``e + 1``),
  sorted within each node's range.
- ``terminal`` (ceil(num_nodes / 8) bytes): bit ``n`` is set when a sequence ends at node ``n``.

"Which tokens may follow node n" is a slice of ``tokens``; "which node does token t lead
to" is a binary search in that slice. Each array uses the smallest unsigned width that fits.

File format (little-endian)
---------------------------
::

    magic      8 bytes   b"GENRETRI"
    version    uint32    FORMAT_VERSION
    meta_len   uint32    length of the JSON metadata that follows
    meta       meta_len bytes of UTF-8 JSON: counts, dtypes, dictionary fingerprint,
               start token, identifier format, the fingerprint of the name table that
               maps identifiers to entities (or null), CRC32 of the array sections
    padding    to a multiple of 8 bytes
    offsets | tokens | terminal   each padded to a multiple of 8 bytes

``load`` memory-maps the arrays, so opening a tree costs milliseconds whatever its size.

Decoding state
--------------
A hypothesis's state is one integer: its node, or ``-1`` once it has left the tree. The
tensor methods (:meth:`PrefixTree.child_ranges`, :meth:`~PrefixTree.advance`,
:meth:`~PrefixTree.walk`, :meth:`~PrefixTree.candidates`, :meth:`~PrefixTree.allowed_mask`)
take and return ``torch.LongTensor`` on any device. On CPU they read the memory-mapped
arrays directly; on another device the arrays are copied there once and cached.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import zlib
from array import array
from typing import TYPE_CHECKING, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch

from .identifiers import FORMATS as IDENTIFIER_FORMATS

if TYPE_CHECKING:  # pragma: no cover
    from fairseq.data import Dictionary

MAGIC = b"GENRETRI"
FORMAT_VERSION = 1
_PREFIX = struct.Struct("<8sII")  # magic, version, meta_len
_ALIGN = 8



def dictionary_fingerprint(dictionary: "Dictionary") -> str:
    """SHA-256 of a fairseq dictionary's symbols in id order (counts do not change ids)."""
    digest = hashlib.sha256()
    for symbol in dictionary.symbols:
        digest.update(symbol.encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()


def _smallest_uint(max_value: int) -> np.dtype:
    for dtype in (np.uint8, np.uint16, np.uint32, np.uint64):
        if max_value <= np.iinfo(dtype).max:
            return np.dtype(dtype).newbyteorder("<")
    raise ValueError(f"value {max_value} does not fit in 64 bits")


def _pad_len(n: int) -> int:
    return (-n) % _ALIGN


class PrefixTree:
    """A compiled, immutable prefix tree of integer token sequences."""

    def __init__(
        self,
        offsets: np.ndarray,
        tokens: np.ndarray,
        terminal: np.ndarray,
        num_sequences: int,
        *,
        dictionary_fingerprint: Optional[str] = None,
        start_token: Optional[int] = None,
        identifier_format: Optional[str] = None,
        name_table_fingerprint: Optional[str] = None,
        path: Optional[str] = None,
        max_token: Optional[int] = None,
    ):
        self.offsets = offsets
        self.tokens = tokens
        self.terminal = terminal
        self.num_sequences = int(num_sequences)
        self.num_nodes = int(len(offsets) - 1)
        self.dictionary_fingerprint = dictionary_fingerprint
        self.start_token = None if start_token is None else int(start_token)
        self.identifier_format = identifier_format
        # Fingerprint of the name table that maps this tree's identifiers to entities (if known).
        self.name_table_fingerprint = name_table_fingerprint
        self.path = path
        # Read from the header when loading: tokens.max() would read the whole array.
        self.max_token = int(max_token) if max_token is not None else (int(tokens.max()) if len(tokens) else -1)
        self._device_arrays: Dict[torch.device, Tuple[torch.Tensor, torch.Tensor]] = {}
        # Off the CPU the arrays are copied to the device as int64 tensors; tests set this to
        # run that same code path on the CPU.
        self._torch_arrays_on_cpu = False

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
        if flat.size and int(flat.min()) < 0:
            raise ValueError(f"token ids must be >= 0, got {int(flat.min())}")
        if start_token is not None and lengths.size:
            starts = np.cumsum(lengths) - lengths
            bad = np.flatnonzero((lengths == 0) | (flat[np.minimum(starts, max(flat.size - 1, 0))] != start_token))
            if bad.size:
                i = int(bad[0])
                seq = flat[starts[i]: starts[i] + min(int(lengths[i]), 8)].tolist()
                raise ValueError(f"sequence {i} does not begin with the start token {start_token}: {seq}")
        offsets, tokens, terminal, count = _build_arrays(flat, lengths)
        return cls(
            offsets,
            tokens,
            terminal,
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
            "num_sequences": self.num_sequences,
            "offsets_dtype": self.offsets.dtype.str,
            "tokens_dtype": self.tokens.dtype.str,
            "dictionary_fingerprint": self.dictionary_fingerprint,
            "start_token": self.start_token,
            "identifier_format": self.identifier_format,
            "name_table_fingerprint": self.name_table_fingerprint,
            "max_token": self.max_token,
        }

    def save(self, path: str) -> None:
        """Write the tree to ``path`` (atomically: a temporary file is renamed into place)."""
        arrays = [np.ascontiguousarray(a) for a in (self.offsets, self.tokens, self.terminal)]
        crc = 0
        for a in arrays:
            crc = zlib.crc32(memoryview(a).cast("B"), crc)
        meta = self._meta()
        meta["arrays_crc32"] = crc
        blob = json.dumps(meta, sort_keys=True).encode("utf-8")
        tmp = f"{path}.tmp{os.getpid()}"
        with open(tmp, "wb") as f:
            head = _PREFIX.pack(MAGIC, FORMAT_VERSION, len(blob)) + blob
            f.write(head + b"\0" * _pad_len(len(head)))
            for a in arrays:
                f.write(memoryview(a).cast("B"))
                f.write(b"\0" * _pad_len(a.nbytes))
        os.replace(tmp, path)
        self.path = path

    @classmethod
    def load(cls, path: str, *, verify: bool = False) -> "PrefixTree":
        """Memory-map a tree saved by :meth:`save`; ``verify`` also checks the arrays' CRC32."""
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
            if version != FORMAT_VERSION:
                raise ValueError(
                    f"{path}: unsupported prefix tree format version {version} (this code reads {FORMAT_VERSION})"
                )
            blob = f.read(meta_len)
        if len(blob) < meta_len:
            raise ValueError(f"{path}: truncated prefix tree file (header cut short)")
        try:
            meta = json.loads(blob.decode("utf-8"))
            num_nodes = int(meta["num_nodes"])
            offsets_dtype = np.dtype(meta["offsets_dtype"])
            tokens_dtype = np.dtype(meta["tokens_dtype"])
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{path}: corrupt prefix tree header ({e})") from None
        pos = _PREFIX.size + meta_len
        pos += _pad_len(pos)
        layout = [
            (offsets_dtype, num_nodes + 1),
            (tokens_dtype, max(num_nodes - 1, 0)),
            (np.dtype(np.uint8), (num_nodes + 7) // 8),
        ]
        expected = pos + sum(dt.itemsize * n + _pad_len(dt.itemsize * n) for dt, n in layout)
        if size < expected:
            raise ValueError(f"{path}: truncated prefix tree file ({size} bytes, header says {expected})")
        if size > expected:
            raise ValueError(f"{path}: corrupt prefix tree file ({size} bytes, header says {expected})")
        arrays = []
        for dtype, n in layout:
            arrays.append(np.memmap(path, dtype=dtype, mode="r", offset=pos, shape=(n,)) if n else np.zeros(0, dtype))
            pos += dtype.itemsize * n + _pad_len(dtype.itemsize * n)
        offsets, tokens, terminal = arrays
        if verify:
            crc = 0
            for a in arrays:
                crc = zlib.crc32(memoryview(np.ascontiguousarray(a)).cast("B"), crc)
            if crc != meta.get("arrays_crc32"):
                raise ValueError(f"{path}: corrupt prefix tree file (checksum mismatch)")
            actual = int(tokens.max()) if len(tokens) else -1
            if meta.get("max_token") is not None and int(meta["max_token"]) != actual:
                raise ValueError(f"{path}: corrupt prefix tree header (max_token {meta['max_token']}, tokens say {actual})")
        if num_nodes < 1 or int(offsets[0]) != 0 or int(offsets[-1]) != num_nodes - 1:
            raise ValueError(f"{path}: corrupt prefix tree file (offsets do not span the tree)")
        return cls(
            offsets,
            tokens,
            terminal,
            meta.get("num_sequences", 0),
            dictionary_fingerprint=meta.get("dictionary_fingerprint"),
            start_token=meta.get("start_token"),
            identifier_format=meta.get("identifier_format"),
            name_table_fingerprint=meta.get("name_table_fingerprint"),
            path=path,
            max_token=meta.get("max_token"),
        )

    def nbytes(self) -> int:
        """Bytes of the three arrays (the file adds a header of a few hundred bytes)."""
        return int(self.offsets.nbytes + self.tokens.nbytes + self.terminal.nbytes)

    # ------------------------------------------------------------------ Python lookups
    def _is_terminal(self, node: int) -> bool:
        return bool((int(self.terminal[node >> 3]) >> (node & 7)) & 1)

    def _child(self, node: int, token: int) -> int:
        lo, hi = int(self.offsets[node]), int(self.offsets[node + 1])
        if lo == hi or token < 0 or token > self.max_token:
            return -1
        i = lo + int(np.searchsorted(self.tokens[lo:hi], token))
        if i < hi and int(self.tokens[i]) == token:
            return i + 1
        return -1

    def node(self, prefix: Sequence[int]) -> int:
        """The node reached by ``prefix`` from the root, or -1 when ``prefix`` leaves the tree."""
        node = 0
        for token in prefix:
            node = self._child(node, int(token))
            if node < 0:
                return -1
        return node

    def allowed(self, prefix: Sequence[int]) -> List[int]:
        """Sorted tokens that may follow ``prefix``; [] when ``prefix`` is not in the tree."""
        node = self.node(prefix)
        if node < 0:
            return []
        return self.tokens[int(self.offsets[node]) : int(self.offsets[node + 1])].tolist()

    def __len__(self) -> int:
        return self.num_sequences

    def __contains__(self, seq: object) -> bool:
        try:
            node = self.node(seq)  # type: ignore[arg-type]
        except (TypeError, ValueError, OverflowError):
            return False
        return node >= 0 and self._is_terminal(node)

    def __iter__(self) -> Iterator[Tuple[int, ...]]:
        """Every distinct sequence, in lexicographic order."""
        stack: List[Tuple[int, Tuple[int, ...]]] = [(0, ())]
        while stack:
            node, seq = stack.pop()
            if self._is_terminal(node):
                yield seq
            lo, hi = int(self.offsets[node]), int(self.offsets[node + 1])
            children = self.tokens[lo:hi].tolist()
            for i in range(hi - 1, lo - 1, -1):
                stack.append((i + 1, seq + (children[i - lo],)))

    def __repr__(self) -> str:
        return (
            f"PrefixTree(sequences={self.num_sequences}, nodes={self.num_nodes}, "
            f"format={self.identifier_format!r}, path={self.path!r})"
        )

    # ------------------------------------------------------------------ tensor lookups
    def _arrays_on(self, device: torch.device) -> Optional[Tuple[torch.Tensor, torch.Tensor]]:
        if device.type == "cpu" and not self._torch_arrays_on_cpu:
            return None  # read the (memory-mapped) numpy arrays directly
        if device not in self._device_arrays:
            self._device_arrays[device] = (
                torch.from_numpy(self.offsets.astype(np.int64)).to(device),
                torch.from_numpy(self.tokens.astype(np.int64)).to(device),
            )
        return self._device_arrays[device]

    def _take(self, which: int, index: torch.Tensor) -> torch.Tensor:
        """``offsets[index]`` (which=0) or ``tokens[index]`` (which=1) as a LongTensor on index's device."""
        on_device = self._arrays_on(index.device)
        if on_device is not None:
            return on_device[which][index]
        source = self.offsets if which == 0 else self.tokens
        return torch.from_numpy(source[index.numpy()].astype(np.int64))

    def child_ranges(self, states: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """First edge and number of children of each state; states < 0 get (0, 0)."""
        valid = states >= 0
        s = states.clamp(min=0)
        start = self._take(0, s)
        count = self._take(0, s + 1) - start
        zero = torch.zeros_like(start)
        return torch.where(valid, start, zero), torch.where(valid, count, zero)

    def incoming_tokens(self, states: torch.Tensor) -> torch.Tensor:
        """The token that enters each state (-1 for the root and for states < 0)."""
        inside = states > 0
        tok = self._take(1, (states - 1).clamp(min=0)) if self.num_nodes > 1 else torch.zeros_like(states)
        return torch.where(inside, tok, torch.full_like(tok, -1))

    def advance(self, states: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """The child of each state along each token, or -1 (vectorized binary search)."""
        start, count = self.child_ranges(states)
        lo, hi = start.clone(), start + count
        steps = int(count.max().item()).bit_length() if count.numel() else 0
        last = max(self.num_nodes - 2, 0)
        for _ in range(steps):
            active = lo < hi
            mid = (lo + hi) // 2
            go_right = active & (self._take(1, mid.clamp(max=last)) < tokens)
            lo = torch.where(go_right, mid + 1, lo)
            hi = torch.where(active & ~go_right, mid, hi)
        end = start + count
        found = lo < end
        if self.num_nodes > 1:
            found &= self._take(1, lo.clamp(max=last)) == tokens
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

        K is the largest number of children among ``states`` (at least ``min_width``);
        padding has token 0, next state -1 and ``valid`` False.
        """
        start, count = self.child_ranges(states)
        width = max(int(count.max().item()) if count.numel() else 0, min_width)
        cols = torch.arange(width, device=states.device)
        valid = cols.unsqueeze(0) < count.unsqueeze(1)
        edge = start.unsqueeze(1) + cols.unsqueeze(0)
        edge = torch.where(valid, edge, torch.zeros_like(edge))
        if width and self.num_nodes > 1:
            tok = self._take(1, edge.reshape(-1)).view_as(edge)
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
        edges = torch.repeat_interleave(start, count) + within
        toks = self._take(1, edges)
        keep = toks < vocab_size
        mask[rows[keep], toks[keep]] = True
        return mask


def _build_arrays(flat: np.ndarray, lengths: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Breadth-first CSR arrays of the distinct sequences given as flat tokens + lengths."""
    # Level by level: the nodes at depth d + 1 are the distinct (node at depth d, token) pairs of the
    # sequences longer than d. Sorting those pairs numbers the children of each parent in token
    # order, parents in breadth-first order, so breadth-first numbering falls out of the sort.
    # Memory is a few int64 arrays of one entry per live sequence, never a padded matrix.
    lengths = np.asarray(lengths, dtype=np.int64)
    n = len(lengths)
    starts = np.zeros(n, dtype=np.int64)
    if n > 1:
        np.cumsum(lengths[:-1], out=starts[1:])
    base = int(flat.max()) + 1 if flat.size else 1
    token_dtype = _smallest_uint(base - 1)
    level_tokens: List[np.ndarray] = []
    child_counts: List[np.ndarray] = []
    terminal_nodes: List[np.ndarray] = []
    if n and (lengths == 0).any():
        terminal_nodes.append(np.zeros(1, dtype=np.int64))
    live = np.flatnonzero(lengths > 0)
    node = np.zeros(live.size, dtype=np.int64)  # node of each live sequence at the current depth
    level_first, level_size, next_id, depth = 0, 1, 1, 0
    while live.size:
        key = (node - level_first) * base + flat[starts[live] + depth]
        pairs, inverse = np.unique(key, return_inverse=True)
        del key
        child_counts.append(np.bincount(pairs // base, minlength=level_size).astype(np.uint32))
        level_tokens.append((pairs % base).astype(token_dtype))
        node = next_id + inverse.reshape(-1)
        del inverse
        ends = lengths[live] == depth + 1
        terminal_nodes.append(np.unique(node[ends]))
        keep = ~ends
        live, node = live[keep], node[keep]
        level_first, level_size = next_id, pairs.size
        next_id += pairs.size
        depth += 1
    child_counts.append(np.zeros(level_size, dtype=np.uint32))  # the deepest level has no children

    num_nodes = next_id
    tokens = np.concatenate(level_tokens) if level_tokens else np.zeros(0, dtype=token_dtype)
    del level_tokens
    offsets = np.zeros(num_nodes + 1, dtype=_smallest_uint(num_nodes - 1))
    np.cumsum(np.concatenate(child_counts), out=offsets[1:], dtype=offsets.dtype)
    del child_counts
    terminal_bits = np.zeros(num_nodes, dtype=bool)
    if terminal_nodes:
        terminal_bits[np.concatenate(terminal_nodes)] = True
    terminal = np.packbits(terminal_bits, bitorder="little")
    return (
        offsets,
        tokens.astype(_smallest_uint(int(tokens.max()) if tokens.size else 0), copy=False),
        terminal,
        int(terminal_bits.sum()),
    )
