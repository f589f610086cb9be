"""Tiny dictionaries and models built inside the tests (fairseq's style: pad=1, eos=2, unk=3)."""

from __future__ import annotations

import argparse
from typing import Dict, List, Sequence

import torch
import torch.nn as nn
from fairseq.data import Dictionary
from fairseq.models import FairseqEncoder, FairseqEncoderDecoderModel, FairseqIncrementalDecoder


def make_dictionary(n_words: int) -> Dictionary:
    """A fairseq Dictionary with the special symbols then words w0..w{n-1} (ids 4..)."""
    d = Dictionary()
    for i in range(n_words):
        d.add_symbol(f"w{i}")
    return d


class _SourceIdEncoder(FairseqEncoder):
    """Passes the source tokens through: the toy decoder keys its tables on them."""

    def forward(self, src_tokens, src_lengths=None, **kwargs):
        return {"src_tokens": src_tokens}

    def reorder_encoder_out(self, encoder_out, new_order):
        return {"src_tokens": encoder_out["src_tokens"].index_select(0, new_order)}


class _TableDecoder(FairseqIncrementalDecoder):
    """Returns hand-set probabilities: ``tables[example][step]`` is a vocab-sized distribution.

    The example is the last non-pad source token minus 4 (source ``[w_k, eos]`` is example k).
    """

    def __init__(self, dictionary: Dictionary, tables: List[List[Sequence[float]]]):
        super().__init__(dictionary)
        self.tables = [torch.tensor(t, dtype=torch.float).log() for t in tables]

    def forward(self, prev_output_tokens, encoder_out=None, incremental_state=None, **kwargs):
        src = encoder_out["src_tokens"]
        example = src[:, 0] - 4
        steps = prev_output_tokens.size(1)
        positions = [steps - 1] if incremental_state is not None else list(range(steps))
        out = torch.stack(
            [torch.stack([self.tables[int(e)][p] for p in positions]) for e in example.tolist()]
        )
        return out, {"attn": [None]}

    def reorder_incremental_state(self, incremental_state, new_order):
        pass

    def max_positions(self):
        return 1024


class TableModel(FairseqEncoderDecoderModel):
    """An encoder-decoder whose step distributions are given, per example, by hand."""

    def __init__(self, dictionary: Dictionary, tables: List[List[Sequence[float]]]):
        super().__init__(_SourceIdEncoder(dictionary), _TableDecoder(dictionary, tables))

    def max_positions(self):
        return (1024, 1024)


def table_sample(n_examples: int, dictionary: Dictionary) -> Dict:
    """A fairseq sample whose k-th source is ``[w_k, eos]``."""
    src = torch.tensor([[4 + k, dictionary.eos()] for k in range(n_examples)])
    return {
        "id": torch.arange(n_examples),
        "net_input": {"src_tokens": src, "src_lengths": torch.full((n_examples,), 2)},
    }


def tiny_transformer(dictionary: Dictionary, seed: int = 0, dim: int = 16) -> nn.Module:
    """A randomly initialised 1-layer fairseq transformer over ``dictionary`` (eval mode)."""
    from fairseq.models.transformer import TransformerModel, base_architecture

    torch.manual_seed(seed)
    args = argparse.Namespace(
        encoder_embed_dim=dim, encoder_ffn_embed_dim=2 * dim, encoder_layers=1, encoder_attention_heads=2,
        decoder_embed_dim=dim, decoder_ffn_embed_dim=2 * dim, decoder_layers=1, decoder_attention_heads=2,
        dropout=0.0, attention_dropout=0.0, max_source_positions=64, max_target_positions=64,
        share_all_embeddings=True,
    )
    base_architecture(args)

    class _Task:
        source_dictionary = dictionary
        target_dictionary = dictionary

    model = TransformerModel.build_model(args, _Task())
    # Sharpen the output distribution so that rankings are far from ties.
    with torch.no_grad():
        model.decoder.embed_tokens.weight.mul_(8.0)
    return model.eval()


def teacher_forced_logprob(model, src: torch.Tensor, target: Sequence[int], eos: int) -> float:
    """log p(target | src) under ``model``, target ending with EOS and decoding starting at EOS."""
    tgt = torch.tensor([target])
    prev = torch.cat([torch.tensor([[eos]]), tgt[:, :-1]], dim=1)
    with torch.no_grad():
        out = model(src.unsqueeze(0), torch.tensor([src.numel()]), prev)
        lprobs = model.get_normalized_probs(out, log_probs=True)
    return float(lprobs[0].gather(1, tgt[0].unsqueeze(1)).sum())


def train_sentencepiece(texts: Sequence[str], directory: str, vocab_size: int = 150) -> tuple:
    """Train a small unigram SentencePiece model on ``texts``; return (model path, fairseq dict.txt path).

    dict.txt lists every piece except SentencePiece's own control and unknown pieces, as an
    mGENRE dictionary does (fairseq adds <s>, <pad>, </s>, <unk> itself).
    """
    import os

    import sentencepiece as spm

    corpus = os.path.join(directory, "spm_corpus.txt")
    with open(corpus, "w", encoding="utf-8") as f:
        f.write("\n".join(texts) + "\n")
    prefix = os.path.join(directory, "spm")
    spm.SentencePieceTrainer.train(input=corpus, model_prefix=prefix, vocab_size=vocab_size, character_coverage=1.0,
                                   model_type="unigram", hard_vocab_limit=False, minloglevel=2, num_threads=1)
    sp = spm.SentencePieceProcessor(model_file=prefix + ".model")
    dict_path = os.path.join(directory, "dict.txt")
    with open(dict_path, "w", encoding="utf-8") as f:
        for i in range(sp.get_piece_size()):
            if not (sp.is_control(i) or sp.is_unknown(i)):
                f.write(f"{sp.id_to_piece(i)} 1\n")
    return prefix + ".model", dict_path


def write_gpt2_bpe(directory: str, merges: Sequence[tuple]) -> tuple:
    """A tiny byte-level GPT-2 BPE: the 256 byte symbols plus ``merges``; return (encoder.json, vocab.bpe, dict.txt).

    dict.txt lists every BPE id as a decimal string, as GENRE's (BART's) dictionary does.
    """
    import json
    import os

    from fairseq.data.encoders.gpt2_bpe_utils import bytes_to_unicode

    symbols = list(bytes_to_unicode().values())
    for a, b in merges:
        symbols.append(a + b)
    encoder = {s: i for i, s in enumerate(symbols)}
    paths = [os.path.join(directory, name) for name in ("encoder.json", "vocab.bpe", "dict.txt")]
    with open(paths[0], "w", encoding="utf-8") as f:
        json.dump(encoder, f)
    with open(paths[1], "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    with open(paths[2], "w", encoding="utf-8") as f:
        f.write("".join(f"{i} 1\n" for i in range(len(symbols))))
    return tuple(paths)


def fairseq_bpe(sentencepiece_model: str | None = None, gpt2_encoder_json: str | None = None,
                gpt2_vocab_bpe: str | None = None):
    """fairseq's own ``--bpe sentencepiece`` or ``--bpe gpt2`` encoder over local files (what the model sees)."""
    from fairseq.data.encoders.gpt2_bpe import GPT2BPE, GPT2BPEConfig
    from fairseq.data.encoders.sentencepiece_bpe import SentencepieceBPE, SentencepieceConfig

    if sentencepiece_model is not None:
        return SentencepieceBPE(SentencepieceConfig(sentencepiece_model=sentencepiece_model))
    return GPT2BPE(GPT2BPEConfig(gpt2_encoder_json=gpt2_encoder_json, gpt2_vocab_bpe=gpt2_vocab_bpe))


def bpe_encode_file(bpe, source: str, destination: str, prefix: str = "") -> None:
    """Encode each line of ``source`` (stripped, as fairseq's BPE scripts do) with ``bpe``, ``prefix`` first."""
    with open(source, encoding="utf-8") as f, open(destination, "w", encoding="utf-8") as out:
        for line in f:
            out.write(bpe.encode(prefix + line.strip()) + "\n")


def released_checkpoint(source: str, destination: str, arch: str) -> None:
    """Rewrite a fairseq 0.12 checkpoint the way the released GENRE/mGENRE ``model.pt`` files store it.

    Those hold every flag as an ``argparse.Namespace`` in ``args`` (``cfg`` is None), name fairseq's
    own ``translation`` task and a stock BART-family arch (``bart_large``, ``mbart_large``), and know
    nothing of ``--user-dir`` or the ``genre`` task's options. Every shape flag is explicit in
    ``args``, so a stock arch name rebuilds the same tiny model.
    """
    from dataclasses import fields

    from fairseq.tasks.translation import TranslationConfig

    from genre_fairseq.task import GenreConfig

    state = torch.load(source, map_location="cpu", weights_only=False)  # our own file: trusted
    args = argparse.Namespace(**vars(state["cfg"]["model"]))
    args.arch, args.task, args.user_dir = arch, "translation", None
    for option in {f.name for f in fields(GenreConfig)} - {f.name for f in fields(TranslationConfig)}:
        if hasattr(args, option):
            delattr(args, option)
    torch.save(dict(state, args=args, cfg=None), destination)
