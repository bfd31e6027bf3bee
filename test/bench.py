"""`make bench`: ediff's ops against PyTorch, on this machine, in one run, one table.

    .venv/bin/python test/bench.py --portable build/bench-cc-omp/bench --native build/bench-cc-omp-native/bench

The two C programs are test/bench.c built portable (`make`) and for this CPU (`make NATIVE=1`). They run as
servers beside this process, and every row is measured in rounds that interleave ediff-portable,
ediff-native and PyTorch, so the three see the same machine load (the machines are shared). Each
round times a case repeatedly for `--budget` seconds; a row reports the median time over all its calls
(and the fastest call, in parentheses for the ratios). A ratio is PyTorch time / ediff time: above 1,
ediff is faster. Same threads (torch.set_num_threads), same shapes, same data sizes, float32, and the
same OpenMP wait policy (passive by default: on a shared machine, threads that spin between parallel
regions, one side's or another job's, stall the other side's 2-thread runs by whole scheduler slices).

PyTorch is the reference only if its BLAS is a real one: a build on the reference BLAS (about
6 GFLOP/s) is refused, by its build configuration and by a measured sgemm.
"""
import argparse
import os
import platform
import re
import statistics
import subprocess
import sys
import time

torch = F = None                    # imported in main(), after the OpenMP wait policy is set

# --- The rows. Shapes are the default model's (weights/ediffi.py: base UNet 32x32 with channels 32/64/128,
# attention at 8x8 with 4 heads of 32, cross-attention to 32 + 79 = 111 context rows; SR UNet 64x64 with
# 16/32/64; T5 and CLIP text: width 64, 4 heads of 16, 32 and 77 tokens), plus larger ones for the peak.
GEMM = [  # (label, M, N, K); every row runs on 1 and on `--threads` threads
    ("conv 128ch 8x8", 128, 64, 1152),
    ("conv 32ch 32x32", 32, 1024, 288),
    ("GEGLU 64 tokens", 64, 1024, 128),
    ("large", 1024, 1024, 1024),
    ("large", 2048, 2048, 2048),
]
CONV = [  # (label, C, H, W): 3x3, stride 1, pad 1, C -> C, with bias
    ("base L0, SR L1", 32, 32, 32),
    ("base L1, SR L2", 64, 16, 16),
    ("base L2 + mid", 128, 8, 8),
    ("SR L0", 16, 64, 64),
    ("", 64, 32, 32),
    ("", 128, 16, 16),
]
ATTN = [  # (label, Tq, Tk, heads, dh, causal)
    ("UNet self 8x8", 64, 64, 4, 32, 0),
    ("UNet cross 8x8", 64, 111, 4, 32, 0),
    ("T5 encoder", 32, 32, 4, 16, 0),
    ("CLIP text (causal)", 77, 77, 4, 16, 1),
    ("self 16x16", 256, 256, 4, 32, 0),
    ("online softmax", 2048, 2048, 4, 32, 0),
]
# The model rows of issue 9 (one UNet expert forward per stage at its resolution, T5 and CLIP encodes of a
# prompt, the whole default-model image: seconds and peak RSS against the diffusers/transformers pipeline
# with a k-diffusion sampler on the same weights) come with the pipeline: each will be a function
# returning (label, ediff_seconds, torch_seconds, ediff_peak_rss, torch_peak_rss) listed here.
MODEL = []
MODEL_PENDING = ["UNet expert forward, base stage 32x32", "UNet expert forward, SR stage 64x64",
                 "T5 encode of a prompt", "CLIP text encode of a prompt",
                 "whole default-model image (all stages, default steps): s, peak RSS"]


class Ediff:
    """One test/bench.c program, serving "THREADS BUDGET CASE" requests."""

    def __init__(self, path):
        self.proc = subprocess.Popen([path, "--serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, bufsize=1)

    def run(self, case, threads, budget):
        self.proc.stdin.write(f"{threads} {budget} {case}\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            sys.exit(f"bench: the C bench program died on {case}")
        f = dict(kv.split("=") for kv in line.split()[1:])
        return float(f["flop"]), float(f["median_s"]), float(f["min_s"]), int(f["reps"])

    def close(self):
        self.proc.stdin.close()
        self.proc.wait()


def torch_case(case):
    """A zero-argument function doing PyTorch's version of a bench.c case, and its flop."""
    kind, _, args = case.partition(":")
    v = [int(x) for x in args.split(",")] if args else []
    g = torch.Generator().manual_seed(0)
    if kind == "gemm":
        M, N, K = v
        a, b = torch.rand(M, K, generator=g) * 2 - 1, torch.rand(K, N, generator=g) * 2 - 1
        c = torch.empty(M, N)
        return (lambda: torch.mm(a, b, out=c)), 2.0 * M * N * K
    if kind == "conv":
        C, H, W = v
        x = torch.rand(1, C, H, W, generator=g) * 2 - 1
        w, b = torch.rand(C, C, 3, 3, generator=g) * 2 - 1, torch.rand(C, generator=g)
        return (lambda: F.conv2d(x, w, b, padding=1)), 2.0 * C * C * 9 * H * W
    if kind == "attn":
        Tq, Tk, H, dh = v[:4]
        causal = bool(v[4]) if len(v) > 4 else False
        q = torch.rand(1, H, Tq, dh, generator=g) * 2 - 1
        k, vv = torch.rand(1, H, Tk, dh, generator=g) * 2 - 1, torch.rand(1, H, Tk, dh, generator=g) * 2 - 1
        return (lambda: F.scaled_dot_product_attention(q, k, vv, is_causal=causal)), 4.0 * Tq * Tk * H * dh
    raise ValueError(case)


def torch_time(fn, budget):
    fn()
    times, start = [], time.perf_counter()
    while len(times) < 3 or (time.perf_counter() - start < budget and len(times) < 1000):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def measure(case, threads, budget, rounds, port, nat):
    """Interleaved rounds; returns {side: (median over rounds of the round's median, fastest call)}, flop."""
    torch.set_num_threads(threads)
    fn, flop = torch_case(case)
    med, best = {"portable": [], "native": [], "torch": []}, {}
    for _ in range(rounds):
        for side, prog in (("portable", port), ("native", nat)):
            _, m, mn, _ = prog.run(case, threads, budget)
            med[side].append(m)
            best[side] = min(best.get(side, mn), mn)
        t = torch_time(fn, budget)
        med["torch"].append(statistics.median(t))
        best["torch"] = min(best.get("torch", min(t)), min(t))
    return {k: (statistics.median(v), best[k]) for k, v in med.items()}, flop


def torch_blas():
    """The BLAS PyTorch was built with, from its build configuration; and a measured 1-thread sgemm."""
    cfg = torch.__config__.show()
    m = re.search(r"BLAS_INFO=(\w+)", cfg)
    blas = m.group(1) if m else "unknown"
    lapack = re.search(r"LAPACK_INFO=(\w+)", cfg)
    onednn = re.search(r"oneDNN v?([\d.]+)|MKL-DNN v?([\d.]+)", torch.__config__.parallel_info() + cfg)
    torch.set_num_threads(1)
    a, b = torch.rand(1024, 1024), torch.rand(1024, 1024)
    t = min(torch_time(lambda: a @ b, 0.3))
    return blas, (lapack.group(1) if lapack else "?"), (onednn.group(0) if onednn else "no oneDNN"), 2 * 1024 ** 3 / t / 1e9


def fmt_gf(flop, t):
    return f"{flop / t / 1e9:8.1f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--portable", required=True, help="test/bench.c built with `make`")
    ap.add_argument("--native", required=True, help="test/bench.c built with `make NATIVE=1`")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--budget", type=float, default=0.08, help="seconds per side per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--omp-wait", choices=("passive", "active"), default="passive",
                    help="OMP_WAIT_POLICY of both sides (default passive: on a shared machine spinning threads "
                         "of one side, or of other jobs, stall the other side's 2-thread runs)")
    args = ap.parse_args()
    os.environ["OMP_WAIT_POLICY"] = args.omp_wait          # read by libgomp when it loads: torch's and ours
    global torch, F
    import torch
    import torch.nn.functional as F

    t_start = time.time()
    blas, lapack, onednn, sgemm1 = torch_blas()
    print(f"ediff bench  {time.strftime('%Y-%m-%d %H:%M:%S')}  {platform.node()}  {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"PyTorch {torch.__version__}: BLAS {blas}, LAPACK {lapack}, {onednn}; 1-thread sgemm 1024: {sgemm1:.1f} GFLOP/s")
    print(f"OMP_WAIT_POLICY={args.omp_wait} for both sides")
    if blas.lower() in ("unknown", "blas", "generic", "eigen", "open") or sgemm1 < 20.0:
        sys.exit("bench: PyTorch runs on a reference BLAS here (BLAS_INFO=%s, %.1f GFLOP/s): not a reference to "
                 "compare against; install the PyPI CPU build (MKL + oneDNN)" % (blas, sgemm1))

    port, nat = Ediff(args.portable), Ediff(args.native)
    threads = sorted({1, args.threads})
    best = {}                                # fastest peak call seen, per thread count

    def sample_peak():                       # the loop of the portable program is plain SSE2: not a peak
        for th in threads:
            for _ in range(3):
                flop, _, mn, _ = nat.run("peak", th, 0.1)
                best["native", th] = max(best.get(("native", th), 0.0), flop / mn)

    # Every row first (with the peak sampled before and after, so a busy moment cannot lower it), then the table.
    sample_peak()
    rows = []
    for title, kind, cases in (("GEMM M x N x K, GFLOP/s", "gemm", [(f"{M}x{N}x{K} {l}", f"gemm:{M},{N},{K}") for l, M, N, K in GEMM]),
                               ("conv2d 3x3 C -> C, C x H x W, GFLOP/s", "conv", [(f"{C}x{H}x{W} {l}", f"conv:{C},{H},{W}") for l, C, H, W in CONV]),
                               ("attention Tq x Tk, heads x dh, GFLOP/s", "attn",
                                [(f"{Tq}x{Tk} {H}x{dh} {l}", f"attn:{Tq},{Tk},{H},{dh},{c}") for l, Tq, Tk, H, dh, c in ATTN])):
        rows.append((title, kind, [(label, th) + measure(case, th, args.budget, args.rounds, port, nat)
                                   for th in threads for label, case in cases]))
        print(".", end="", file=sys.stderr, flush=True)
    sample_peak()
    print(file=sys.stderr)
    port.close()
    nat.close()

    for th in threads:
        print(f"peak, {th} thread{'s' if th > 1 else ''}: {best['native', th] / 1e9:.1f} GFLOP/s (FMA, native build)")
    print("  measured as a GEMM micro-kernel loop (a 12x32 tile: 24 AVX-512 accumulators, 2 loads and 12 broadcasts\n"
          "  per 24 multiply-adds) on L1-resident data, fastest call of six tries spread over the run: what the FMA\n"
          "  units give when nothing waits for memory.")
    print(f"ediff = `make` (portable), native = `make NATIVE=1`, torch = PyTorch {torch.__version__}; ratio = PyTorch time /\n"
          f"ediff time (> 1: ediff faster), from median times, in parentheses from the fastest calls; "
          f"{args.rounds} interleaved\nrounds of {args.budget:.2f} s per side and row. ~: on some side the median call took over "
          f"1.5x the fastest\n(a busy machine): trust the fastest-call ratio more.\n")
    W = 40
    head = f"{'thr':>3} {'ediff':>8} {'native':>8} {'torch':>8}   {'ratio':>11} {'ratio native':>12}"
    for title, kind, measured in rows:
        print(f"{title:{W}} {head}" + ("   % of peak (ediff, native)" if kind == "gemm" else ""))
        for label, th, r, flop in measured:
            ratio = lambda side: f"{r['torch'][0] / r[side][0]:5.2f} ({r['torch'][1] / r[side][1]:4.2f})"
            line = (f"{label:{W}} {th:3d} {fmt_gf(flop, r['portable'][0])} {fmt_gf(flop, r['native'][0])} "
                    f"{fmt_gf(flop, r['torch'][0])}   {ratio('portable'):>11} {ratio('native'):>12}")
            if kind == "gemm":
                line += (f"   {100 * flop / r['portable'][0] / best['native', th]:4.0f}% "
                         f"{100 * flop / r['native'][0] / best['native', th]:4.0f}%")
            if any(med > 1.5 * mn for med, mn in r.values()):
                line += "  ~"
            print(line)
        print()
    print("model: seconds and peak RSS, ediff vs the diffusers/transformers pipeline")
    for fn in MODEL:
        label, et, tt, erss, trss = fn()
        print(f"  {label:60} ediff {et:7.3f} s {erss / 2**20:7.1f} MiB   torch {tt:7.3f} s {trss / 2**20:7.1f} MiB   ratio {tt / et:5.2f}")
    for label in MODEL_PENDING[len(MODEL):]:
        print(f"  {label:60} (pending: comes with the pipeline)")
    print(f"\nload average at the end {' '.join(f'{x:.2f}' for x in os.getloadavg())}; bench took {time.time() - t_start:.0f} s")


if __name__ == "__main__":
    main()
