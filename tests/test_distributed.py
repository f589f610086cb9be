"""Training recipes and multi-process launching: examples/{genre,mgenre}/train.sh, examples/distributed/.

The key check: two processes under torchrun (gloo, CPU), each taking every other batch, end with the
same parameters as one process accumulating the same pairs of batches with --update-freq 2.
"""

import os
import socket
import subprocess
import sys

import pytest
import torch
from omegaconf import OmegaConf

import genre_fairseq
from genre_fairseq import distributed

from . import inprocess

genre_fairseq.register()  # what fairseq's --user-dir does: the torchrun detection
genre_fairseq.apply_fairseq_fixes()  # what the genre task does: the allow-list and the broadcast

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PLUGIN = os.path.join(ROOT, "genre_fairseq")
BIN = os.path.dirname(sys.executable)
GENRE = os.path.join(ROOT, "examples", "genre", "train.sh")
MGENRE = os.path.join(ROOT, "examples", "mgenre", "train.sh")
TORCHRUN = os.path.join(ROOT, "examples", "distributed", "torchrun.sh")
SLURM = os.path.join(ROOT, "examples", "distributed", "slurm.sbatch")


def _env(**variables):
    # the venv's commands first; one thread per process (2 shared cores)
    return dict(os.environ, PATH=BIN + os.pathsep + os.environ["PATH"], PYTHONWARNINGS="ignore",
                OMP_NUM_THREADS="1", **{k: str(v) for k, v in variables.items()})


def run(cmd, **variables):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=_env(**variables))


def check(proc):
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc.stdout + proc.stderr


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("script", [GENRE, MGENRE, TORCHRUN, SLURM])
def test_scripts_are_valid_bash(script):
    proc = run(["bash", "-n", script])
    assert proc.returncode == 0, proc.stderr


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """The demo's synthetic data, binarized."""
    w = tmp_path_factory.mktemp("distributed")
    check(run([sys.executable, os.path.join(ROOT, "examples", "demo", "make_data.py"), str(w)]))
    check(inprocess.run("fairseq-preprocess", [  # in this process (tests/inprocess.py): the same files
        "--source-lang", "source", "--target-lang", "target", "--trainpref", str(w / "train"),
        "--validpref", str(w / "valid"), "--destdir", str(w / "bin"), "--joined-dictionary", "--workers", "1"]))
    return w


@pytest.fixture(scope="module")
def pretrained(workdir):
    """A tiny 'pretrained' genre_tiny checkpoint (one update), standing in for BART / mBART."""
    check(run(["fairseq-train", str(workdir / "bin"), "--user-dir", PLUGIN, "--task", "genre", "--arch", "genre_tiny",
               "--optimizer", "adam", "--lr", "0.01", "--max-tokens", "1000", "--max-update", "1", "--cpu",
               "--save-dir", str(workdir / "pretrained"), "--no-epoch-checkpoints", "--disable-validation",
               "--num-workers", "0", "--no-progress-bar"]))
    return workdir / "pretrained" / "checkpoint_last.pt"


def _command_line(recipe, **variables):
    """The fairseq-train command line a recipe runs, one argument per item (LAUNCHER prints it)."""
    proc = run(["bash", recipe], LAUNCHER="printf %s\\n", **variables)
    assert proc.returncode == 0, proc.stderr
    argv = proc.stdout.splitlines()
    assert argv[0] == "fairseq-train"
    return argv[1:]


def _options(argv):
    """{option: value or True} of a command line (the first item is the data directory)."""
    options, i = {}, 1
    while i < len(argv):
        if i + 1 < len(argv) and not argv[i + 1].startswith("--"):
            options[argv[i]] = argv[i + 1]
            i += 2
        else:
            options[argv[i]] = True
            i += 1
    return options


PUBLISHED = {
    GENRE: {"--arch": "genre_bart_large", "--finetune-from-model": "bart.large/model.pt", "--lr": "3e-05",
            "--max-tokens": "1024", "--warmup-updates": "500", "--total-num-update": "200000",
            "--max-update": "200000", "--clip-norm": "0.1", "--ddp-backend": "no_c10d",
            "--adam-betas": "(0.9, 0.999)"},
    MGENRE: {"--arch": "mgenre_mbart_large", "--finetune-from-model": "mbart.cc100/model.pt", "--lr": "1e-04",
             "--max-tokens": "3072", "--warmup-updates": "5000", "--adam-betas": "(0.9, 0.98)",
             "--ddp-backend": "c10d"},
}
BOTH = {"--task": "genre", "--criterion": "label_smoothed_cross_entropy", "--label-smoothing": "0.1",
        "--optimizer": "adam", "--lr-scheduler": "polynomial_decay", "--weight-decay": "0.01", "--dropout": "0.1",
        "--attention-dropout": "0.1", "--update-freq": "1", "--truncate-source": True, "--fp16": True}


@pytest.mark.parametrize("recipe", [GENRE, MGENRE])
def test_recipe_defaults_are_the_published_settings(recipe):
    argv = _command_line(recipe)
    options = _options(argv)
    assert argv[0] == ("data-bin/genre" if recipe == GENRE else "data-bin/mgenre")
    for option, value in {**BOTH, **PUBLISHED[recipe]}.items():
        assert options.get(option) == value, option
    assert "--cpu" not in options and "--trie" not in options and "--target-groups" not in options


def test_recipe_switches():
    options = _options(_command_line(MGENRE, TRIE="kb.trie", NAME_TABLE="kb.names", CRITERION="genre_marginal",
                                     FP16=0, CPU=1, UPDATE_FREQ=3))
    assert options["--trie"] == "kb.trie" and options["--name-table"] == "kb.names"
    assert options["--eval-accuracy"] is True and options["--eval-accuracy-args"] == '{"beam": 10, "max_len_b": 32}'
    assert options["--best-checkpoint-metric"] == "entity_acc" and options["--maximize-best-checkpoint-metric"]
    assert options["--criterion"] == "genre_marginal" and options["--target-groups"] is True
    assert options["--cpu"] is True and "--fp16" not in options and options["--update-freq"] == "3"
    assert _options(_command_line(GENRE, TRIE="kb.trie"))["--best-checkpoint-metric"] == "identifier_acc"


# Both runs: the GENRE recipe on a tiny model, 4 updates, no dropout, a learning rate that moves the weights.
TINY = dict(ARCH="genre_tiny", FP16=0, CPU=1, MAX_UPDATE=4, MAX_TOKENS=500, LR="1e-3", WARMUP_UPDATES=1,
            TOTAL_NUM_UPDATE=100, DROPOUT=0, ATTENTION_DROPOUT=0)
EXTRA = ["--no-progress-bar", "--log-interval", "1", "--disable-validation", "--num-workers", "0"]


def _params(path):
    return torch.load(str(path), map_location="cpu")["model"]


def test_two_ranks_equal_one_process_with_update_freq_2(workdir, pretrained):
    """torchrun.sh (2 processes, gloo) == the same recipe in 1 process with --update-freq 2.

    fairseq makes the same list of batches in both runs (same seed); rank r takes batches r, r+2, ...
    and an update sums the gradients of batches (2k, 2k+1) across the ranks, which is exactly the
    pair that --update-freq 2 accumulates in one process. Both fine-tune from the same checkpoint,
    which rank 0 reads and broadcasts to rank 1 (the broadcast fix of distributed.py).
    """
    common = dict(TINY, DATA=workdir / "bin", PRETRAINED=pretrained)
    two = check(run(["bash", TORCHRUN, "--distributed-backend", "gloo", *EXTRA], **common,
                    RECIPE=GENRE, NPROC_PER_NODE=2, MASTER_PORT=free_port(), SAVE_DIR=workdir / "two_ranks"))
    one = check(run(["bash", GENRE, *EXTRA], **common, UPDATE_FREQ=2, SAVE_DIR=workdir / "one_process"))

    assert "training on 2 devices" in two and "training on 1 devices" in one
    for rank in (0, 1):
        assert f"torchrun without CUDA: rank {rank} of 2 (local rank {rank}), gloo backend" in two
        assert f"initialized host {socket.gethostname()} as rank {rank}" in two
    for log in (one, two):
        assert "loading pretrained model from" in log and "num_updates 4" in log

    a = _params(workdir / "two_ranks" / "checkpoint_last.pt")
    b = _params(workdir / "one_process" / "checkpoint_last.pt")
    p = _params(pretrained)
    assert a.keys() == b.keys()
    diff = max(float((a[k] - b[k]).abs().max()) for k in a)
    moved = max(float((a[k] - p[k]).abs().max()) for k in a)
    assert diff < 1e-5, diff  # float summation order only
    assert moved > 1e-3, moved  # the comparison is not vacuous: training changed the weights


def test_mgenre_recipe_trains_a_tiny_model(workdir, pretrained):
    """The recipe's command line parses and trains; only the size (ARCH) and the machine are overridden."""
    log = check(run(["bash", MGENRE, *EXTRA], ARCH="genre_tiny", FP16=0, CPU=1, MAX_UPDATE=3,
                    DATA=workdir / "bin", PRETRAINED=pretrained, SAVE_DIR=workdir / "mgenre"))
    assert f"loading pretrained model from {pretrained}" in log
    assert "num_updates 3" in log and (workdir / "mgenre" / "checkpoint_last.pt").exists()
    for setting in ["'adam_betas': '(0.9, 0.98)'", "'lr': [0.0001]", "'warmup_updates': 5000",
                    "'label_smoothing': 0.1", "'weight_decay': 0.01", "'max_tokens': 3072", "'clip_norm': 0.1",
                    " dropout=0.1,", " attention_dropout=0.1,", "truncate_source=True"]:
        assert setting in log, setting


@pytest.mark.parametrize("nodes, target, update_freq", [(4, None, 12), (48, None, 1), (4, 1_000_000, 11)])
def test_slurm_update_freq_arithmetic(nodes, target, update_freq):
    variables = dict(DRY_RUN=1, NODES=nodes, DATA="d", PRETRAINED="m.pt")
    if target is not None:
        variables["TARGET_TOKENS"] = target
    proc = run(["bash", SLURM, "--log-interval", "7"], **variables)
    assert proc.returncode == 0, proc.stderr
    gpus = nodes * 8
    assert f"tokens/update <= 3072 x {gpus} x {update_freq} = {3072 * gpus * update_freq} " in proc.stderr
    command = proc.stdout.split()
    assert command[:3] == ["srun", "--kill-on-bad-exit=1", "fairseq-train"]
    assert command[command.index("--update-freq") + 1] == str(update_freq)
    assert command[command.index("--distributed-world-size") + 1] == str(gpus)
    assert int(command[command.index("--distributed-port") + 1]) > 0  # fairseq's Slurm detection needs one
    assert "--fp16" in command and command[-2:] == ["--log-interval", "7"]


# ---- the torchrun detection of distributed.py, as a function ----

def _cfg(**overrides):
    from fairseq.dataclass.configs import DistributedTrainingConfig

    cfg = OmegaConf.structured(DistributedTrainingConfig(**overrides))
    OmegaConf.set_struct(cfg, False)
    cfg.tpu = False
    return cfg


TORCHRUN_ENV = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500", "WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1"}


def test_torchrun_variables_set_world_size_and_rank_on_cpu():
    cfg = _cfg(distributed_backend="gloo", ddp_backend="legacy_ddp")
    distributed.init_from_torchrun_on_cpu(cfg, TORCHRUN_ENV)
    assert (cfg.distributed_init_method, cfg.distributed_world_size, cfg.distributed_rank, cfg.device_id,
            cfg.distributed_no_spawn) == ("env://", 4, 3, 1, True)
    assert distributed.torchrun_world_size(TORCHRUN_ENV) == 4
    assert distributed.torchrun_world_size({"WORLD_SIZE": "4"}) is None


def test_settings_that_cannot_work_on_cpu_are_refused():
    with pytest.raises(ValueError, match=r"^torchrun on a machine without CUDA: NCCL needs GPUs; "
                                         r"add --distributed-backend gloo$"):
        distributed.init_from_torchrun_on_cpu(_cfg(ddp_backend="legacy_ddp"), TORCHRUN_ENV)
    with pytest.raises(ValueError, match=r"^torchrun on a machine without CUDA: --ddp-backend pytorch_ddp cannot wrap "
                                         r"a CPU model in fairseq 0.12; add --ddp-backend legacy_ddp"):
        distributed.init_from_torchrun_on_cpu(_cfg(distributed_backend="gloo"), TORCHRUN_ENV)


def test_fairseq_detection_is_patched_only_for_torchrun_without_cuda(monkeypatch):
    from fairseq.distributed import utils as dist_utils

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    for name in TORCHRUN_ENV:
        monkeypatch.delenv(name, raising=False)
    cfg = _cfg(distributed_backend="gloo", ddp_backend="legacy_ddp")
    dist_utils.infer_init_method(cfg)  # no torchrun: fairseq's own detection, world size 1
    assert cfg.distributed_init_method is None
    for name, value in TORCHRUN_ENV.items():
        monkeypatch.setenv(name, value)
    dist_utils.infer_init_method(cfg)
    assert (cfg.distributed_init_method, cfg.distributed_world_size, cfg.distributed_rank) == ("env://", 4, 3)
    patched = dist_utils.infer_init_method
    distributed.patch_fairseq_torchrun_detection()  # idempotent: importing twice does not wrap twice
    assert dist_utils.infer_init_method is patched
