"""Architecture presets for GENRE and mGENRE, registered on fairseq's ``bart`` model.

``--arch genre_bart_large`` and ``--arch mgenre_mbart_large`` reproduce the published models'
shapes and training flags, so a recipe no longer has to repeat ``--share-all-embeddings
--layernorm-embedding ...`` on every command line. ``genre_tiny`` and ``mgenre_tiny`` keep the
same layout (post-norm BART, pre-norm mBART) at a size that trains in seconds on a CPU, for tests
and offline demos.

Every preset only fills in attributes that are still unset (``getattr`` with a default), the
fairseq convention: a flag given on the command line, or stored in a checkpoint, wins.
All presets share the encoder and decoder embeddings, so the data must be binarized with
``fairseq-preprocess --joined-dictionary`` (or ``--srcdict D --tgtdict D``).
"""
from argparse import Namespace

from fairseq.models import register_model_architecture
from fairseq.models.bart.model import bart_large_architecture, mbart_large_architecture


def _genre_training_flags(args: Namespace) -> None:
    """Set the embedding-sharing and dropout flags of GENRE's public fine-tuning recipe."""
    args.share_all_embeddings = getattr(args, "share_all_embeddings", True)
    args.share_decoder_input_output_embed = getattr(args, "share_decoder_input_output_embed", True)
    args.layernorm_embedding = getattr(args, "layernorm_embedding", True)
    args.dropout = getattr(args, "dropout", 0.1)
    args.attention_dropout = getattr(args, "attention_dropout", 0.1)


@register_model_architecture("bart", "genre_bart_large")
def genre_bart_large(args: Namespace) -> None:
    """BART-large with GENRE's fine-tuning flags (shared embeddings, layernorm_embedding, dropout 0.1)."""
    _genre_training_flags(args)
    bart_large_architecture(args)


@register_model_architecture("bart", "mgenre_mbart_large")
def mgenre_mbart_large(args: Namespace) -> None:
    """mBART-large as mGENRE uses it: pre-norm encoder/decoder, layernorm_embedding, dropout 0.1."""
    args.encoder_normalize_before = getattr(args, "encoder_normalize_before", True)
    args.decoder_normalize_before = getattr(args, "decoder_normalize_before", True)
    _genre_training_flags(args)
    mbart_large_architecture(args)


def _tiny_dimensions(args: Namespace) -> None:
    """Set the sizes shared by the tiny presets: width 16, 2 layers, 2 heads, 256 positions."""
    args.encoder_embed_dim = getattr(args, "encoder_embed_dim", 16)
    args.encoder_ffn_embed_dim = getattr(args, "encoder_ffn_embed_dim", 32)
    args.encoder_layers = getattr(args, "encoder_layers", 2)
    args.encoder_attention_heads = getattr(args, "encoder_attention_heads", 2)
    args.decoder_embed_dim = getattr(args, "decoder_embed_dim", args.encoder_embed_dim)
    args.decoder_ffn_embed_dim = getattr(args, "decoder_ffn_embed_dim", args.encoder_ffn_embed_dim)
    args.decoder_layers = getattr(args, "decoder_layers", 2)
    args.decoder_attention_heads = getattr(args, "decoder_attention_heads", 2)
    args.max_source_positions = getattr(args, "max_source_positions", 256)
    args.max_target_positions = getattr(args, "max_target_positions", 256)


@register_model_architecture("bart", "genre_tiny")
def genre_tiny(args: Namespace) -> None:
    """A 16-wide, 2-layer post-norm GENRE (BART layout) for tests and demos."""
    _tiny_dimensions(args)
    genre_bart_large(args)


@register_model_architecture("bart", "mgenre_tiny")
def mgenre_tiny(args: Namespace) -> None:
    """A 16-wide, 2-layer pre-norm mGENRE (mBART layout) for tests and demos."""
    _tiny_dimensions(args)
    mgenre_mbart_large(args)
