"""Train-step speed and peak memory of M2TR and MAT on CPU, against plain EfficientNet-B4.

Each configuration runs in its own subprocess (so peak RSS is its own): random init, batch 4
at the model's default input, 2 threads, one warm-up step, then `--repeats` timed steps of
forward + backward + SGD. Also times M2TR's cross-modality fusion alone with SDPA against a
plain softmax-matrix version.

    .venv/bin/python bench/train_step.py                 # all configurations
    .venv/bin/python bench/train_step.py --only m2tr mat  # a subset
    .venv/bin/python bench/train_step.py --pairs m2tr:effnet_b4@320 --repeats 3  # interleaved
    .venv/bin/python bench/train_step.py --pairs m2tr+compile:m2tr  # torch.compile vs eager
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

CONFIGS = {
    # name: (what, input size); each model next to its baseline so load drift hurts less
    "effnet_b4@320": ("plain timm efficientnet_b4, BCE", 320),
    "m2tr": ("M2TR paper default (dct-bands, depth 4, CE+seg+con)", 320),
    "m2tr_fft": ("M2TR official variant (fft-filter, scale sqrt(32), focal)", 320),
    "m2tr_plain": ("M2TR paper default, fusion as a plain softmax matrix", 320),
    "m2tr_eval": ("M2TR paper default, eval forward only (no grad)", 320),
    "effnet_b4@380": ("plain timm efficientnet_b4, BCE", 380),
    "mat": ("MAT paper (AGDA soft + CE + RIL)", 380),
    "mat_official": ("MAT official loss (two passes: CE+0.5RIL, CE on AGDA, match)", 380),
    "mat_ce": ("MAT, CE only (no AGDA, no RIL)", 380),
    "cmf_sdpa": ("M2TR fusion alone, 80x80x32, SDPA, fwd+bwd", 320),
    "cmf_plain": ("M2TR fusion alone, 80x80x32, softmax matrix, fwd+bwd", 320),
}
BATCH = 4


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def build(name: str, size: int):
    """-> (module, step function taking (x, target, mask) and returning a loss or None).
    A `+compile` suffix runs the same configuration through `torch.compile` (what
    `dfpipe train --compile` does); its first step, the build, is reported apart."""
    import timm
    import torch
    import torch.nn.functional as F

    from dfpipe.models.registry import create_model

    compiled = name.endswith("+compile")
    name = name.removesuffix("+compile")
    wrap = torch.compile if compiled else (lambda m: m)
    if name.startswith("effnet"):
        net = timm.create_model("efficientnet_b4", pretrained=False, num_classes=1)
        fwd = wrap(net)
        return net, lambda x, t, m: F.binary_cross_entropy_with_logits(fwd(x).squeeze(1), t)
    if name.startswith("cmf"):
        from dfpipe.models.m2tr import CrossModalityFusion

        cmf = CrossModalityFusion(32, scale=(80 * 80 * 32) ** 0.5, plain=name == "cmf_plain")
        feats = [torch.randn(BATCH, 32, 80, 80, requires_grad=True) for _ in range(3)]
        fwd = wrap(cmf)
        return cmf, lambda x, t, m: fwd(*feats).square().mean()
    if name.startswith("m2tr"):
        cfg = {"freq": "fft-filter", "attn_scale": "official", "loss": "focal"} if name == "m2tr_fft" else {}
        net = create_model("m2tr", **cfg)
        if name == "m2tr_plain":
            for block in net.blocks:
                block.cmf.plain = True
        fwd = wrap(net)
        if name == "m2tr_eval":
            net.eval()
            return net, lambda x, t, m: fwd(x)["logit"]
        return net, lambda x, t, m: fwd(x, target=t, mask=m)["loss"]
    cfg = {"mat_official": {"loss": "official"}, "mat_ce": {"agda": "none", "l_ril": 0.0}}.get(name, {})
    net = create_model("mat", **cfg)
    fwd = wrap(net)
    return net, lambda x, t, m: fwd(x, target=t)["loss"]


def make_step(name: str):
    """-> (model, a callable doing one timed unit: fwd+bwd+SGD, or an eval forward)."""
    import torch

    size = CONFIGS[name.removesuffix("+compile")][1]
    net, step = build(name, size)
    opt = torch.optim.SGD(net.parameters(), lr=5e-4, momentum=0.9)
    x = torch.randn(BATCH, 3, size, size)
    target = torch.tensor([0.0, 1.0] * (BATCH // 2))
    mask = torch.zeros(BATCH, 1, size, size)
    mask[1::2, :, size // 4: 3 * size // 4, size // 4: 3 * size // 4] = 1

    def one() -> None:
        if name.startswith("m2tr_eval"):
            with torch.no_grad():
                step(x, target, mask)
            return
        loss = step(x, target, mask)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return net, one


def worker(name: str, repeats: int) -> None:
    import torch

    torch.set_num_threads(2)
    torch.manual_seed(0)
    net, one = make_step(name)
    times, cpu = [], []
    for i in range(repeats + 1):
        t0, c0 = time.perf_counter(), time.process_time()
        one()
        if i:  # the first step is a warm-up (and, compiled, the build)
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        else:
            first = time.perf_counter() - t0
    params = sum(p.numel() for p in net.parameters())
    print(json.dumps({"name": name, "times": times, "cpu": cpu, "peak_rss_gib": peak_rss_gib(),
                      "params": params, "first_step_s": first}))


def interleaved(pair: str, rounds: int) -> None:
    """Alternate steps of two configurations in one process: on a machine shared with other
    work, the per-round time ratio cancels the load drift that separate runs suffer."""
    import torch

    torch.set_num_threads(2)
    torch.manual_seed(0)
    a, b = pair.split(":")
    steps = {n: make_step(n)[1] for n in (a, b)}
    for n, one in steps.items():
        t0 = time.perf_counter()
        one()  # warm-up (and, compiled, the build)
        print(f"  {n}: first step {time.perf_counter() - t0:.1f} s", flush=True)
    ratios = []
    for r in range(rounds):
        t = {}
        for n, one in steps.items():
            t0 = time.perf_counter()
            one()
            t[n] = time.perf_counter() - t0
        ratios.append(t[a] / t[b])
        print(f"  round {r}: {a} {t[a]:.1f} s, {b} {t[b]:.1f} s, ratio {ratios[-1]:.2f}", flush=True)
    print(f"{a} / {b}: median time ratio x{statistics.median(ratios):.2f} over {rounds} interleaved rounds")


def run(name: str, repeats: int) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="2", MKL_NUM_THREADS="2", HF_HUB_OFFLINE="1")
    proc = subprocess.run([sys.executable, __file__, "--worker", name, "--repeats", str(repeats)],
                          capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        return {"name": name, "error": proc.stderr.strip().splitlines()[-1] if proc.stderr else "failed"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    names = list(CONFIGS) + [f"{n}+compile" for n in CONFIGS]
    ap.add_argument("--only", nargs="*", choices=names, default=list(CONFIGS))
    ap.add_argument("--pairs", nargs="*", metavar="A:B",
                    help="instead: time A against B with interleaved steps in one process")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args.worker, args.repeats)
        return
    if args.pairs:
        for pair in args.pairs:
            interleaved(pair, args.repeats)
        return
    results = {}
    for name in args.only:
        r = results[name] = run(name, args.repeats)
        if "error" in r:
            print(f"{name:15s} ERROR {r['error']}", flush=True)
            continue
        r["median"], r["cpu_median"] = statistics.median(r["times"]), statistics.median(r["cpu"])
        print(f"{name:15s} wall {r['median']:7.2f} s/step ({BATCH / r['median']:5.2f} img/s)  "
              f"cpu {r['cpu_median']:7.2f} s/step  peak RSS {r['peak_rss_gib']:5.2f} GiB  "
              f"params {r['params'] / 1e6:6.2f}M  wall steps {' '.join(f'{t:.1f}' for t in r['times'])}  "
              f"({CONFIGS[name.removesuffix('+compile')][0]})", flush=True)
    print("\nratios (same run, medians; CPU time is robust to other load on a shared machine):")
    pairs = [("m2tr", "effnet_b4@320"), ("m2tr_fft", "effnet_b4@320"), ("m2tr_plain", "m2tr"),
             ("m2tr_eval", "effnet_b4@320"), ("mat", "effnet_b4@380"), ("mat_official", "effnet_b4@380"),
             ("mat_ce", "effnet_b4@380"), ("mat_official", "mat"), ("cmf_plain", "cmf_sdpa"),
             ("m2tr+compile", "m2tr"), ("m2tr+compile", "effnet_b4@320"), ("mat+compile", "mat")]
    for a, b in pairs:
        if "median" in results.get(a, {}) and "median" in results.get(b, {}):
            ra, rb = results[a], results[b]
            print(f"  {a:13s} / {b:14s} wall x{ra['median'] / rb['median']:.2f}  "
                  f"cpu x{ra['cpu_median'] / rb['cpu_median']:.2f}  "
                  f"peak RSS x{ra['peak_rss_gib'] / rb['peak_rss_gib']:.2f}")


if __name__ == "__main__":
    main()
