"""Load a fairseq checkpoint into a model without random initialisation and without a second copy.

fairseq's ``checkpoint_utils.load_model_ensemble_and_task`` reads the whole checkpoint into memory,
builds the model with random initialisation (most of the load time for a 600M-parameter model),
then copies the checkpoint's tensors into the model's: the peak is the file plus the model, and the
initialisation is thrown away. :func:`load_model_ensemble_and_task` here does the same work in a
different order:

1. ``torch.load(mmap=True, weights_only=True)`` maps the file (fairseq's classes allow-listed by
   ``checkpoints.py``); pages are read when a tensor is first used, and belong to the page cache.
   A checkpoint in torch's legacy (pre-1.6, non-zip) format cannot be mapped and is read whole.
2. The model is built on torch's ``meta`` device: shapes only, no memory, no initialisation.
3. fairseq's state-dict upgrades and LayerDrop pruning run as in ``BaseFairseqModel.load_state_dict``;
   then ``load_state_dict(strict=True, assign=True)`` makes the checkpoint's tensors the model's.
   A tensor whose dtype differs from the model's (an fp16 checkpoint into an fp32 model) is
   converted once; tensors the checkpoint stores once under several names (BART's shared
   embeddings) stay one tensor, and parameters the model ties stay tied.
4. What a checkpoint does not hold is rebuilt: the sinusoidal position tables fairseq computes at
   construction. If any other tensor is left on ``meta``, the model is rebuilt the ordinary way.

The resulting parameters of an fp32 checkpoint are copy-on-write views of the mapped file, so the
file must not be truncated or rewritten in place while the model lives (fairseq and this
project replace checkpoint files by renaming, which is safe).
"""
from __future__ import annotations

import contextlib
import ctypes
import functools
import inspect
import logging
import mmap
import os
import sys
import threading
import zipfile
from typing import Any, Collection, Dict, Iterator, List, Optional, Sequence, Tuple

import torch
from torch.overrides import TorchFunctionMode

from .checkpoints import allow_fairseq_checkpoint_globals

logger = logging.getLogger(__name__)

__all__ = ["read_checkpoint", "build_on_meta", "build_for_checkpoint", "ordinary_builds", "map_fairseq_model_loads", "assign_state_dict", "load_model_ensemble_and_task"]


def read_checkpoint(path: str, arg_overrides: Optional[Dict[str, Any]] = None) -> dict:
    """A checkpoint mapped (not read) into memory, upgraded and overridden as fairseq's loader does."""
    from fairseq import checkpoint_utils
    from fairseq.dataclass.utils import overwrite_args_by_name
    from omegaconf import OmegaConf

    allow_fairseq_checkpoint_globals()
    mapped = zipfile.is_zipfile(path)
    if mapped:
        state = torch.load(path, map_location=torch.device("cpu"), mmap=True, weights_only=True)
    else:  # torch's legacy format cannot be mapped; a damaged zip fails here as in fairseq's loader
        with open(path, "rb") as f:
            try:
                state = torch.load(f, map_location=torch.device("cpu"), weights_only=True)
            except OSError as e:  # torch's reader on a zip cut short: "[Errno 22] Invalid argument"
                f.seek(0)
                cut = f.read(4) == b"PK\x03\x04"
                raise RuntimeError("the zip archive is truncated or damaged (no central directory)" if cut
                                   else f"unreadable ({e})") from e
    if not isinstance(state, dict):
        raise KeyError("model: the file holds no model state")
    if state.get("args") is not None and arg_overrides is not None:
        for name, value in arg_overrides.items():
            setattr(state["args"], name, value)
    if state.get("cfg") is not None:
        state["cfg"] = OmegaConf.create(state["cfg"], flags={"allow_objects": True})
        if arg_overrides is not None:
            overwrite_args_by_name(state["cfg"], arg_overrides)
    state = checkpoint_utils._upgrade_state_dict(state)  # fails on what is not a fairseq checkpoint
    if "model" not in state:
        raise KeyError("model: the file holds no model state")
    if mapped:  # the storages of the file mapping: only their pages may be given back (_cast_like)
        state[_MAPPED] = frozenset(t.untyped_storage().data_ptr() for t in state["model"].values()
                                   if isinstance(t, torch.Tensor))
    return state


# Key of the upgraded state holding the addresses of its storages that are a private file mapping.
_MAPPED = "_genre_mapped"


class MappedStateDict(dict):
    """A model state dict read by :func:`read_checkpoint` from a zip file, with ``storages``: the
    addresses of its storages that are a private file mapping, so that an fp16 checkpoint's pages
    can be given back as its tensors are converted."""

    def __init__(self, state_dict: dict, storages: frozenset):
        super().__init__(state_dict)
        self.storages = storages


# Random draws that initialise a tensor in place: on meta there is nothing to draw (and torch's
# meta implementation of them is a slow Python decomposition, seconds for a model).
_IN_PLACE_DRAWS = frozenset({"normal_", "uniform_", "bernoulli_", "exponential_", "random_", "kaiming_uniform_",
                             "kaiming_normal_", "xavier_uniform_", "xavier_normal_", "trunc_normal_", "orthogonal_"})


class _MetaStaysMeta(TorchFunctionMode):
    """Random in-place draws on meta tensors are skipped, and ``tensor.cpu()`` of one is itself.

    BART's ``init_bert_params`` draws its normal values on the CPU (``data.cpu().normal_()``), which
    a meta tensor cannot do; on meta the draw is skipped instead.
    """

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if name == "cpu" or name in _IN_PLACE_DRAWS:
            # a Tensor method gets the tensor first; torch.nn.init's functions pass it as tensor=
            tensor = args[0] if args else kwargs.get("tensor")
            if isinstance(tensor, torch.Tensor) and tensor.is_meta:
                return tensor
        return func(*args, **kwargs)


def build_on_meta(build, *args, **kwargs) -> torch.nn.Module:
    """``build(*args, **kwargs)`` with every tensor it creates on the meta device (no memory, no init)."""
    with torch.device("meta"), _MetaStaysMeta():
        return build(*args, **kwargs)


def _tied_names(model: torch.nn.Module) -> List[List[str]]:
    """Groups of parameter names that are one Parameter object in ``model`` (e.g. shared embeddings)."""
    groups: Dict[int, List[str]] = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        groups.setdefault(id(param), []).append(name)
    return [names for names in groups.values() if len(names) > 1]


def _set_by_name(model: torch.nn.Module, name: str, param: torch.nn.Parameter) -> None:
    module_name, _, attr = name.rpartition(".")
    setattr(model.get_submodule(module_name) if module_name else model, attr, param)


def _drop_mapped_pages(tensor: torch.Tensor) -> None:
    """Give back the resident pages that lie wholly inside ``tensor``'s bytes in a private file mapping.

    They are clean copies of the file (nothing writes to a checkpoint tensor before it is converted),
    so ``madvise(MADV_DONTNEED)`` only drops them from memory: a later read maps the file's bytes again.
    Never called on anonymous memory, where the same call would zero the bytes.
    """
    libc = _libc()
    if libc is None:
        return
    start = tensor.data_ptr()
    end = start + tensor.numel() * tensor.element_size()
    page = mmap.PAGESIZE
    first, last = -(-start // page) * page, end // page * page
    if last > first:
        libc.madvise(ctypes.c_void_p(first), ctypes.c_size_t(last - first), 4)  # 4: MADV_DONTNEED (Linux)


def _libc():
    """The C library where ``madvise`` drops pages as Linux documents it, else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:  # pragma: no cover
        return None


def _cast_like(state_dict: Dict[str, torch.Tensor], model: torch.nn.Module, mapped: Collection[int] = ()) -> None:
    """Convert, in place, each floating tensor whose dtype differs from the model's; aliases stay aliases.

    ``mapped``: the addresses of the storages that are a private file mapping (:func:`read_checkpoint`);
    a tensor of one of them has its pages given back as soon as it is converted, so the peak is the
    converted model, not the model plus the whole mapped file. A tensor made since (by an upgrade, in
    anonymous memory) is never in it.
    """
    expected = dict(model.named_parameters(remove_duplicate=False))
    expected.update(model.named_buffers(remove_duplicate=False))
    converted: Dict[Tuple, torch.Tensor] = {}
    for key, value in state_dict.items():
        target = expected.get(key)
        if (target is None or not isinstance(value, torch.Tensor) or value.dtype == target.dtype
                or not (value.is_floating_point() and target.is_floating_point())):
            continue
        alias = (value.untyped_storage().data_ptr(), value.storage_offset(), tuple(value.shape),
                 tuple(value.stride()), target.dtype)
        if alias not in converted:
            converted[alias] = value.to(target.dtype)
            if value.untyped_storage().data_ptr() in mapped:  # never a tensor made since (anonymous memory)
                _drop_mapped_pages(value)
        state_dict[key] = converted[alias]


def _rebuild_computed_tensors(model: torch.nn.Module) -> None:
    """Recompute the tensors fairseq modules compute at construction and checkpoints do not hold."""
    from fairseq.modules import SinusoidalPositionalEmbedding

    for module in model.modules():
        if isinstance(module, SinusoidalPositionalEmbedding) and module.weights.is_meta:
            module.weights = SinusoidalPositionalEmbedding.get_embedding(
                module.weights.size(0), module.embedding_dim, module.padding_idx)
        for attr, value in list(vars(module).items()):
            # Empty caches such as TransformerDecoder._future_mask hold no values to lose.
            if isinstance(value, torch.Tensor) and value.is_meta and value.numel() == 0:
                setattr(module, attr, torch.empty(value.shape, dtype=value.dtype))


def _meta_tensors(model: torch.nn.Module) -> List[str]:
    """Names of the parameters, buffers and tensor attributes of ``model`` still on the meta device."""
    left = []
    for module_name, module in model.named_modules():
        for attr, value in vars(module).items():
            tensors = value.items() if attr in ("_parameters", "_buffers") else [(attr, value)]
            for name, tensor in tensors:
                if isinstance(tensor, torch.Tensor) and tensor.is_meta:
                    left.append(f"{module_name}.{name}" if module_name else name)
    return left


def assign_state_dict(model: torch.nn.Module, state_dict: Dict[str, torch.Tensor], model_cfg=None,
                      mapped: Collection[int] = ()) -> List[str]:
    """Make ``state_dict``'s tensors a meta-built fairseq ``model``'s; return what is left on meta.

    Does what ``BaseFairseqModel.load_state_dict`` does (upgrades, LayerDrop pruning, strict key
    and shape checks, with its errors), but assigns instead of copying.
    """
    from fairseq.checkpoint_utils import prune_state_dict

    tied = _tied_names(model)
    model.upgrade_state_dict(state_dict)
    state_dict = prune_state_dict(state_dict, model_cfg)
    _cast_like(state_dict, model, mapped)
    torch.nn.Module.load_state_dict(model, state_dict, strict=True, assign=True)
    for names in tied:
        param = model.get_parameter(names[0])
        for name in names[1:]:
            _set_by_name(model, name, param)
    _rebuild_computed_tensors(model)
    return _meta_tensors(model)


# Set while a model must be built the ordinary way (random init, then copy): the fallback below.
_ordinary_builds = threading.local()


@contextlib.contextmanager
def ordinary_builds() -> Iterator[None]:
    """Within this block fairseq's loader works as without the plugin: :func:`build_for_checkpoint`
    builds as fairseq does (no meta) and :func:`map_fairseq_model_loads`' wrapper reads the file
    into memory (no mapping)."""
    previous = getattr(_ordinary_builds, "on", False)
    _ordinary_builds.on = True
    try:
        yield
    finally:
        _ordinary_builds.on = previous


def build_for_checkpoint(build, *args, **kwargs) -> torch.nn.Module:
    """``build`` on meta, for fairseq's own loader: the model's next ``load_state_dict`` assigns.

    For a task's ``build_model(cfg, from_checkpoint=True)`` (``fairseq-generate --path``), whose
    result fairseq's ``load_model_ensemble_and_task`` fills with ``model.load_state_dict``. That first
    call assigns the checkpoint's tensors; later calls are the model class's own (copying) again.
    Inside :func:`ordinary_builds`, or if the checkpoint leaves a tensor unset, fairseq's way is used.
    """
    if getattr(_ordinary_builds, "on", False):
        return build(*args, **kwargs)
    model = build_on_meta(build, *args, **kwargs)

    def load_state_dict(state_dict, strict=True, model_cfg=None, args=None):
        del model.load_state_dict  # one assignment; the class's method from now on
        if not strict:
            raise ValueError("a model built on meta loads strictly (every tensor must be in the checkpoint)")
        left = assign_state_dict(model, state_dict, model_cfg, mapped=getattr(state_dict, "storages", ()))
        if left:
            raise RuntimeError(f"{len(left)} tensors are not in the checkpoint and cannot be rebuilt: "
                               f"{', '.join(left[:3])}")

    model.load_state_dict = load_state_dict
    return model


def _mapped_load_checkpoint_to_cpu(original):
    """fairseq's ``load_checkpoint_to_cpu`` reading a local zip checkpoint with :func:`read_checkpoint`."""

    @functools.wraps(original)
    def load_checkpoint_to_cpu(path, arg_overrides=None, load_on_all_ranks=False):
        if (getattr(_mapped_reads, "depth", 0) and not getattr(_ordinary_builds, "on", False)
                and os.path.isfile(path) and zipfile.is_zipfile(path)):
            state = read_checkpoint(path, arg_overrides)
            if state.get(_MAPPED):  # fairseq hands state["model"] alone to load_state_dict: the flag goes with it
                state["model"] = MappedStateDict(state["model"], state[_MAPPED])
            return state
        return original(path, arg_overrides, load_on_all_ranks)

    load_checkpoint_to_cpu._genre_mapped = True
    return load_checkpoint_to_cpu


def _scoped_load_model_ensemble_and_task(original):
    """fairseq's ``load_model_ensemble_and_task`` with its checkpoint reads mapped for its duration."""

    @functools.wraps(original)
    def load_model_ensemble_and_task(*args, **kwargs):
        _mapped_reads.depth = getattr(_mapped_reads, "depth", 0) + 1
        try:
            return original(*args, **kwargs)
        finally:
            _mapped_reads.depth -= 1

    load_model_ensemble_and_task._genre_mapped = True
    return load_model_ensemble_and_task


_mapped_reads = threading.local()


def map_fairseq_model_loads() -> None:
    """Make fairseq's model loading (``load_model_ensemble[_and_task]``, what ``fairseq-generate --path``
    uses) read local zip checkpoints with ``torch.load(mmap=True)``; idempotent.

    Only reads made inside ``load_model_ensemble_and_task`` are mapped: the trainer's
    ``load_checkpoint`` (resuming, whose optimizer state is then updated in place and whose file is
    rewritten) reads as before. The mapped tensors are copy-on-write, so a model loaded this way must
    not outlive an in-place rewrite of its file (fairseq writes checkpoints in place; load the model
    for inference, or copy it first, when training writes the same path).
    """
    from fairseq import checkpoint_utils

    if not getattr(checkpoint_utils.load_checkpoint_to_cpu, "_genre_mapped", False):
        checkpoint_utils.load_checkpoint_to_cpu = _mapped_load_checkpoint_to_cpu(checkpoint_utils.load_checkpoint_to_cpu)
    if not getattr(checkpoint_utils.load_model_ensemble_and_task, "_genre_mapped", False):
        checkpoint_utils.load_model_ensemble_and_task = _scoped_load_model_ensemble_and_task(
            checkpoint_utils.load_model_ensemble_and_task)


def _build_and_load(task, cfg, state: dict) -> Optional[torch.nn.Module]:
    """The model of ``state`` built on meta and assigned its tensors, or None if some are left unset."""
    build = task.build_model
    kwargs = {"from_checkpoint": True} if "from_checkpoint" in inspect.getfullargspec(build).args else {}
    model = build_on_meta(build, cfg.model, **kwargs)
    history = state.get("optimizer_history") or []
    if history and "num_updates" in history[-1]:
        model.set_num_updates(history[-1]["num_updates"])
    left = assign_state_dict(model, state["model"], cfg.model, mapped=state.get(_MAPPED, ()))
    model.__dict__.pop("load_state_dict", None)  # build_model's one-shot assignment (build_for_checkpoint) is spent
    if left:
        logger.warning("%d tensors are not in the checkpoint and cannot be rebuilt (%s): loading the "
                       "ordinary way", len(left), ", ".join(left[:3]))
        return None
    return model


def load_model_ensemble_and_task(
    paths: Sequence[str], arg_overrides: Optional[Dict[str, Any]] = None, task=None,
) -> Tuple[List[torch.nn.Module], Any, Any]:
    """fairseq's ``load_model_ensemble_and_task`` for unsharded checkpoints, without init or copies."""
    from fairseq import checkpoint_utils, tasks
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf

    models, cfg = [], None
    for path in paths:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path}: checkpoint not found")
        state = read_checkpoint(path, arg_overrides)
        if state.get("args") is not None:
            cfg = convert_namespace_to_omegaconf(state["args"])
        elif state.get("cfg") is not None:
            cfg = state["cfg"]
        else:
            raise KeyError("args: the checkpoint holds neither args nor cfg")
        if task is None:
            task = tasks.setup_task(cfg.task, from_checkpoint=True)
        if "task_state" in state:
            task.load_state_dict(state["task_state"])
        model = _build_and_load(task, cfg, state)
        del state
        if model is None:
            with ordinary_builds():
                (model,), _, _ = checkpoint_utils.load_model_ensemble_and_task([path], arg_overrides, task=task)
        models.append(model)
    return models, cfg, task
