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
               start token, identifier format, CRC32 of the array sections
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
from typing import TYPE_CHECKING, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch

if TYPE_CHECKING:  # pragma: no cover
    from fairseq.data import Dictionary

MAGIC = b"GENRETRI"
FORMAT_VERSION = 1
_PREFIX = struct.Struct("<8sII")  # magic, version, meta_len
_ALIGN = 8

IDENTIFIER_FORMATS = ("name_lang", "lang_name", "canonical")


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
        path: Optional[str] = None,
    ):
        self.offsets = offsets
        self.tokens = tokens
        self.terminal = terminal
        self.num_sequences = int(num_sequences)
        self.num_nodes = int(len(offsets) - 1)
        self.dictionary_fingerprint = dictionary_fingerprint
        self.start_token = None if start_token is None else int(start_token)
        self.identifier_format = identifier_format
        self.path = path
        self.max_token = int(tokens.max()) if len(tokens) else -1
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
    ) -> "PrefixTree":
        """Build a tree from token sequences; duplicates collapse."""
        if identifier_format is not None and identifier_format not in IDENTIFIER_FORMATS:
            raise ValueError(
                f"unknown identifier format {identifier_format!r}; expected one of {IDENTIFIER_FORMATS}"
            )
        lengths: List[int] = []
        flat: List[int] = []
        for i, seq in enumerate(seqs):
            seq = [int(t) for t in seq]
            if start_token is not None and (not seq or seq[0] != start_token):
                raise ValueError(f"sequence {i} does not begin with the start token {start_token}: {seq[:8]}")
            lengths.append(len(seq))
            flat.extend(seq)
        flat_arr = np.asarray(flat, dtype=np.int64)
        if flat_arr.size and flat_arr.min() < 0:
            raise ValueError(f"token ids must be >= 0, got {int(flat_arr.min())}")
        offsets, tokens, terminal, count = _build_arrays(flat_arr, np.asarray(lengths, dtype=np.int64))
        return cls(
            offsets,
            tokens,
            terminal,
            count,
            dictionary_fingerprint=dictionary_fingerprint,
            start_token=start_token,
            identifier_format=identifier_format,
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
            path=path,
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
    n = len(lengths)
    width = int(lengths.max()) if n else 0
    dtype = np.int64 if flat.size and flat.max() >= 2**31 - 1 else np.int32
    # Pad with -1, which sorts before every token, so a sequence precedes its extensions.
    rows = np.full((n, width), -1, dtype=dtype)
    if n and width:
        row_of = np.repeat(np.arange(n), lengths)
        col_of = np.arange(flat.size) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        rows[row_of, col_of] = flat
    differs = np.zeros((max(n - 1, 0), width), dtype=bool)
    if n:
        order = np.lexsort(rows.T[::-1]) if width else np.arange(n)
        rows, lengths = rows[order], lengths[order]
        # Padding makes equal rows mean equal sequences: drop the repeats.
        keep = np.ones(n, dtype=bool)
        keep[1:] = (rows[1:] != rows[:-1]).any(axis=1) if width else False
        rows, lengths = rows[keep], lengths[keep]
        n = len(rows)
        # differs[i - 1, d]: row i differs from row i - 1 somewhere in columns 0..d.
        differs = np.logical_or.accumulate(rows[1:] != rows[:-1], axis=1)
    num_sequences = n

    level_tokens: List[np.ndarray] = []
    level_parents: List[np.ndarray] = []
    terminal_nodes: List[np.ndarray] = []
    if n and (lengths == 0).any():
        terminal_nodes.append(np.zeros(1, dtype=np.int64))
    node_of_row = np.zeros(n, dtype=np.int64)  # node of each row at the previous depth (root at start)
    next_id = 1
    for d in range(width):
        has = lengths > d
        new = has.copy()
        new[1:] &= differs[:, d]
        ids = np.cumsum(new) - 1 + next_id
        count = int(new.sum())
        level_tokens.append(rows[new, d].astype(np.int64))
        level_parents.append(node_of_row[new])
        node_of_row = np.where(has, ids, -1)
        ends = lengths == d + 1
        terminal_nodes.append(node_of_row[ends])
        next_id += count

    num_nodes = next_id
    tokens = np.concatenate(level_tokens) if level_tokens else np.zeros(0, dtype=np.int64)
    parents = np.concatenate(level_parents) if level_parents else np.zeros(0, dtype=np.int64)
    children = np.bincount(parents, minlength=num_nodes) if parents.size else np.zeros(num_nodes, dtype=np.int64)
    offsets = np.zeros(num_nodes + 1, dtype=np.int64)
    np.cumsum(children, out=offsets[1:])
    terminal_bits = np.zeros(num_nodes, dtype=bool)
    if terminal_nodes:
        terminal_bits[np.concatenate(terminal_nodes)] = True
    terminal = np.packbits(terminal_bits, bitorder="little")
    return (
        offsets.astype(_smallest_uint(num_nodes - 1)),
        tokens.astype(_smallest_uint(int(tokens.max()) if tokens.size else 0)),
        terminal,
        num_sequences,
    )
