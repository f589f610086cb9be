"""Time and peak memory of loading an mGENRE-sized checkpoint: fairseq's loader against genre_fairseq.loading.

    python benchmarks/bench_load.py --dir /tmp/bench_load --repeats 3

Creates (once) a randomly initialised ``mbart_large`` checkpoint with a 256,000-symbol dictionary in
``--dir`` (12+12 layers, width 1024: mGENRE's shape, about 2.3 GiB in fp32; ``--fp16`` also writes an
fp16 copy, as the quickstart model is stored), then loads it in a fresh subprocess per run, the
variants interleaved: ``torch.load`` with ``mmap=True`` (reading the file, the floor), fairseq's
``checkpoint_utils.load_model_ensemble_and_task`` (what the hub did before), and
``mGENRE.from_pretrained`` (genre_fairseq.loading), and ``fairseq-generate --path``'s load (the
``genre`` task from the command line, then ``checkpoint_utils.load_model_ensemble``): with the task's
ordinary build and read (``loading.ordinary_builds()``, before), and as it runs now (``fairseq-generate``:
the meta build of ``GenreTask.build_model`` and the mapped read of
``genre_fairseq.loading.map_fairseq_model_loads``, which the genre task wires in); ``+mmap`` calls the
latter once more (the same as ``fairseq-generate`` since it is wired in). Each child reports its wall time for the load and
its peak resident memory (``VmHWM``) before and after. ``--delete`` removes the directory at the end.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

VOCAB = 256000
VARIANTS = ("torch.load(mmap)", "fairseq", "hub", "fairseq-generate (ordinary build)", "fairseq-generate",
            "fairseq-generate+mmap")

CHILD = r"""
import json, sys, time
import torch
torch.set_num_threads(1)
import genre_fairseq  # noqa: F401  (allow-list, registration)
from fairseq import checkpoint_utils
from genre_fairseq.hub import mGENRE
variant, model_dir, checkpoint = sys.argv[1:4]


def peak_kib():
    # VmHWM starts afresh at exec, unlike ru_maxrss, which a child inherits from its parent
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))


path = model_dir + "/" + checkpoint
before = peak_kib()
start = time.perf_counter()
if variant == "torch.load(mmap)":
    state = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
    n = sum(t.numel() for t in {t.data_ptr(): t for t in state["model"].values()}.values())
elif variant == "fairseq":
    overrides = {"data": model_dir, "source_lang": "source", "target_lang": "target"}
    (model,), _, _ = checkpoint_utils.load_model_ensemble_and_task([path], arg_overrides=overrides)
    model.eval()
    n = sum(p.numel() for p in model.parameters())
elif variant.startswith("fairseq-generate"):
    # what fairseq_cli.generate does before decoding: the task from the command line, then load_model_ensemble
    import contextlib
    from fairseq import options, tasks
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf
    from genre_fairseq import loading
    args = options.parse_args_and_arch(options.get_generation_parser(), [
        model_dir, "--task", "genre", "--source-lang", "source", "--target-lang", "target", "--path", path, "--cpu"])
    cfg = convert_namespace_to_omegaconf(args)
    if variant.endswith("+mmap"):
        loading.map_fairseq_model_loads()
    with loading.ordinary_builds() if variant.endswith("(ordinary build)") else contextlib.nullcontext():
        task = tasks.setup_task(cfg.task)
        (model,), _ = checkpoint_utils.load_model_ensemble([path], task=task)
    n = sum(p.numel() for p in model.parameters())
else:
    hub = mGENRE.from_pretrained(model_dir, checkpoint, bpe=None, device="cpu")
    n = sum(p.numel() for p in hub.models[0].parameters())
seconds = time.perf_counter() - start
peak = peak_kib()
print(json.dumps({"seconds": seconds, "rss_before_kib": before, "rss_peak_kib": peak, "numel": n}))
"""


def create(model_dir: str, fp16: bool) -> None:
    """Write dict.{source,target}.txt and a random mbart_large model.pt (and model.fp16.pt) into ``model_dir``."""
    import torch
    from fairseq import options, tasks

    import genre_fairseq  # noqa: F401

    os.makedirs(model_dir, exist_ok=True)
    for side in ("source", "target"):
        with open(os.path.join(model_dir, f"dict.{side}.txt"), "w", encoding="utf-8") as f:
            f.writelines(f"w{i} 1\n" for i in range(VOCAB - 4))  # + <s> <pad> </s> <unk>
    parser = options.get_training_parser()
    args = options.parse_args_and_arch(parser, [model_dir, "--task", "translation", "--arch", "mbart_large",
                                                "-s", "source", "-t", "target", "--cpu"])
    task = tasks.setup_task(args)
    torch.manual_seed(0)
    model = task.build_model(args)
    history = [{"criterion_name": "CrossEntropyCriterion", "optimizer_name": "Adam", "lr_scheduler_state": {},
                "num_updates": 0}]
    state = {"args": args, "cfg": None, "model": model.state_dict(), "optimizer_history": history, "extra_state": {}}
    torch.save(state, os.path.join(model_dir, "model.pt"))
    if fp16:
        halves = {}  # shared embeddings stay one tensor, as fairseq's --fp16 training saves them
        for key, value in state["model"].items():
            if value.is_floating_point():
                state["model"][key] = halves.setdefault(value.data_ptr(), value.half())
        torch.save(state, os.path.join(model_dir, "model.fp16.pt"))


def run(variant: str, model_dir: str, checkpoint: str) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    out = subprocess.run([sys.executable, "-c", CHILD, variant, model_dir, checkpoint], env=env,
                         capture_output=True, text=True)
    if out.returncode:
        sys.exit(f"{variant} on {checkpoint} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dir", required=True, help="directory for the checkpoint (created if missing)")
    p.add_argument("--repeats", type=int, default=3, help="runs per variant (interleaved); medians reported")
    p.add_argument("--fp16", action="store_true", help="also measure an fp16 copy of the checkpoint")
    p.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated variants, of " + ", ".join(VARIANTS))
    p.add_argument("--delete", action="store_true", help="delete --dir at the end")
    a = p.parse_args()
    if not os.path.isfile(os.path.join(a.dir, "model.pt")) or (a.fp16 and not os.path.isfile(
            os.path.join(a.dir, "model.fp16.pt"))):
        free = shutil.disk_usage(os.path.dirname(os.path.abspath(a.dir))).free
        if free < 8 * 2**30:
            sys.exit(f"{a.dir}: needs about 4 GiB of disk, {free / 2**30:.1f} GiB free")
        start = time.perf_counter()
        create(a.dir, a.fp16)
        print(f"created in {time.perf_counter() - start:.1f} s", flush=True)
    checkpoints = ["model.pt"] + (["model.fp16.pt"] if a.fp16 else [])
    variants = a.variants.split(",")
    for checkpoint in checkpoints:
        size = os.path.getsize(os.path.join(a.dir, checkpoint))
        runs = {v: [] for v in variants}
        for _ in range(a.repeats):
            for v in variants:
                runs[v].append(run(v, a.dir, checkpoint))
        print(f"\n{checkpoint}: {size / 2**30:.2f} GiB, {runs[variants[0]][0]['numel']:,} parameters; "
              f"medians of {a.repeats}; `uptime`: {os.getloadavg()}")
        print("| variant | load s | peak RSS GiB | RSS after imports GiB | peak - imports, x file |")
        print("| --- | ---: | ---: | ---: | ---: |")
        for v in variants:
            s = statistics.median(r["seconds"] for r in runs[v])
            peak = statistics.median(r["rss_peak_kib"] for r in runs[v]) * 1024
            base = statistics.median(r["rss_before_kib"] for r in runs[v]) * 1024
            print(f"| {v} | {s:.2f} | {peak / 2**30:.2f} | {base / 2**30:.2f} | {(peak - base) / size:.2f} |")
    if a.delete:
        shutil.rmtree(a.dir)


if __name__ == "__main__":
    main()
