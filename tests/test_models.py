"""Architecture presets: what each one resolves to, and that command-line flags still win."""

import math
from argparse import Namespace

import pytest
import torch
from fairseq import options, tasks
from fairseq.data import Dictionary
from fairseq.models import ARCH_CONFIG_REGISTRY, ARCH_MODEL_NAME_REGISTRY
from fairseq.models.bart import BARTModel

import genre_fairseq.models  # noqa: F401  registers the presets

PRESETS = ["genre_bart_large", "mgenre_mbart_large", "genre_tiny", "mgenre_tiny"]
PRE_NORM = {"genre_bart_large": False, "mgenre_mbart_large": True, "genre_tiny": False, "mgenre_tiny": True}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """A translation data directory holding only a joined tiny dictionary (pad=1, eos=2, unk=3)."""
    root = tmp_path_factory.mktemp("models_data")
    d = Dictionary()
    for word in ["alpha", "beta", "gamma", "delta", "[START]", "[END]", ">>"]:
        d.add_symbol(word)
    for lang in ("src", "tgt"):
        d.save(str(root / f"dict.{lang}.txt"))
    return root


def _parse(data_dir, arch, *extra):
    """Parse fairseq-train's command line for ``--task translation --arch ARCH``."""
    argv = [str(data_dir), "--task", "translation", "--source-lang", "src", "--target-lang", "tgt",
            "--arch", arch, *extra]
    return options.parse_args_and_arch(options.get_training_parser(), argv)


@pytest.mark.parametrize("arch", PRESETS)
def test_presets_are_registered_on_bart(arch):
    assert ARCH_MODEL_NAME_REGISTRY[arch] == "bart"
    assert ARCH_CONFIG_REGISTRY[arch].__doc__.strip()


@pytest.mark.parametrize("arch", PRESETS)
def test_genre_training_flags(data_dir, arch):
    args = _parse(data_dir, arch)
    assert args.share_all_embeddings is True
    assert args.share_decoder_input_output_embed is True
    assert args.layernorm_embedding is True
    assert args.dropout == 0.1
    assert args.attention_dropout == 0.1
    assert args.encoder_normalize_before is PRE_NORM[arch]
    assert args.decoder_normalize_before is PRE_NORM[arch]


@pytest.mark.parametrize("arch", ["genre_bart_large", "mgenre_mbart_large"])
def test_large_presets_resolve_to_the_published_shapes(data_dir, arch):
    args = _parse(data_dir, arch)
    for side in ("encoder", "decoder"):
        assert getattr(args, f"{side}_embed_dim") == 1024
        assert getattr(args, f"{side}_ffn_embed_dim") == 4096
        assert getattr(args, f"{side}_layers") == 12
        assert getattr(args, f"{side}_attention_heads") == 16
        assert getattr(args, f"{side}_learned_pos") is True
    assert args.max_source_positions == args.max_target_positions == 1024
    assert args.activation_fn == "gelu"
    # BART does not scale embeddings by sqrt(dim); mBART does.
    assert args.no_scale_embedding is (arch == "genre_bart_large")


@pytest.mark.parametrize("arch", ["genre_bart_large", "mgenre_mbart_large"])
def test_large_presets_on_a_bare_namespace(arch):
    """The arch function alone fills an empty Namespace the same way, without building weights."""
    args = Namespace()
    ARCH_CONFIG_REGISTRY[arch](args)
    assert (args.encoder_layers, args.decoder_layers, args.encoder_embed_dim) == (12, 12, 1024)
    assert args.layernorm_embedding and args.share_all_embeddings
    assert args.encoder_normalize_before is PRE_NORM[arch]


@pytest.mark.parametrize("arch", PRESETS)
def test_command_line_flags_override_the_preset(data_dir, arch):
    args = _parse(data_dir, arch, "--dropout", "0.3", "--attention-dropout", "0.0",
                  "--encoder-layers", "1", "--decoder-embed-dim", "32")
    assert args.dropout == 0.3
    assert args.attention_dropout == 0.0
    assert args.encoder_layers == 1
    assert args.decoder_embed_dim == 32
    assert args.decoder_layers == (12 if "large" in arch else 2)  # untouched flags keep the preset


def test_values_already_set_win_over_the_preset():
    """A checkpoint's stored flags reach the arch function as a filled Namespace: they must stay."""
    args = Namespace(dropout=0.0, encoder_normalize_before=False, encoder_layers=3)
    ARCH_CONFIG_REGISTRY["mgenre_mbart_large"](args)
    assert (args.dropout, args.encoder_normalize_before, args.encoder_layers) == (0.0, False, 3)
    assert args.decoder_normalize_before is True


@pytest.mark.parametrize("arch", ["genre_tiny", "mgenre_tiny"])
def test_tiny_presets_build_and_run(data_dir, arch):
    args = _parse(data_dir, arch)
    task = tasks.setup_task(args)
    model = task.build_model(args)
    assert isinstance(model, BARTModel)
    encoder, decoder = model.encoder, model.decoder
    pre_norm = PRE_NORM[arch]

    assert (args.encoder_embed_dim, args.encoder_ffn_embed_dim, args.encoder_attention_heads) == (16, 32, 2)
    assert len(encoder.layers) == len(decoder.layers) == 2
    assert encoder.max_positions() == decoder.max_positions() == 256
    assert sum(p.numel() for p in model.parameters()) < 20_000

    # share_all_embeddings and share_decoder_input_output_embed: one embedding matrix in three roles.
    assert encoder.embed_tokens is decoder.embed_tokens
    assert decoder.output_projection.weight is decoder.embed_tokens.weight
    assert encoder.layernorm_embedding is not None and decoder.layernorm_embedding is not None
    assert all(layer.normalize_before is pre_norm for layer in [*encoder.layers, *decoder.layers])
    # Pre-norm stacks end with a final LayerNorm; post-norm ones do not.
    assert (encoder.layer_norm is not None) is pre_norm
    assert (decoder.layer_norm is not None) is pre_norm
    assert encoder.embed_scale == (1.0 if arch == "genre_tiny" else math.sqrt(16))

    model.eval()
    d = task.source_dictionary
    src = torch.tensor([[d.index("alpha"), d.index("beta"), d.eos()]])
    prev = torch.tensor([[d.eos(), d.index("gamma")]])
    logits, _ = model(src, torch.tensor([3]), prev)
    assert logits.shape == (1, 2, len(d))
    assert torch.isfinite(logits).all()
