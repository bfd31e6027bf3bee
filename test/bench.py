"""`make bench`: ediff's ops and model against PyTorch, on this machine, in one run, one table.

    .venv/bin/python test/bench.py --portable build/bench-cc-omp/bench --native build/bench-cc-omp-native/bench \
        [--model BLOB]

The two C programs are test/bench.c built portable (`make`) and for this CPU (`make NATIVE=1`); `ediff`
built the same two ways lies beside each. The bench programs run as servers beside this process, and
every row is measured in rounds that interleave ediff-portable, ediff-native and PyTorch, so the three
see the same machine load (the machines are shared). Each round times a case repeatedly for `--budget`
seconds; a row reports the median time over all its calls (and the fastest call, in parentheses for the
ratios). A ratio is PyTorch time / ediff time: above 1, ediff is faster. Same threads
(torch.set_num_threads), same shapes, same data sizes, float32, and the same OpenMP wait policy (passive
by default: on a shared machine, threads that spin between parallel regions, one side's or another
job's, stall the other side's 2-thread runs by whole scheduler slices).

The model rows run on the weights of one blob written by weights/train/export.py (default
weights/ediff-tiny.bin; --model chooses): PyTorch loads them with weights/ediffi.py's load_blob
(diffusers UNet2DConditionModel, transformers T5/CLIP, k-diffusion samplers). The whole image is
`ediff PROMPT --model BLOB -t N` (a fresh process: load, tokenise, encode, every stage at its default
steps, PNG) against Pipeline.generate (encode, every stage, CFG's two branches batched) in a PyTorch
process that has imported and loaded everything beforehand; peak RSS is each process's high-water
mark (ediff's from getrusage of a small parent process, PyTorch's VmHWM, which includes torch itself).

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
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PROMPT = "a red circle above a blue square"

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


class Ediff:
    """One test/bench.c program, serving "THREADS BUDGET CASE" requests."""

    def __init__(self, path, model):
        self.proc = subprocess.Popen([path, "--model", model, "--prompt", PROMPT, "--serve"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, bufsize=1)

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


PIPE = None                         # weights/ediffi.py Pipeline of the model rows, loaded in main()


def torch_model_case(kind, stage):
    """PyTorch's version of a bench.c model case, on the same weights and shapes."""
    g = torch.Generator().manual_seed(0)
    if kind in ("unet", "cfg"):                    # expert 0 of the stage; cfg: CFG's two branches as one batch
        unet = PIPE.stages[stage].experts[0].unet
        R, batch, cfg = PIPE.stages[stage].meta["resolution"], 2 if kind == "cfg" else 1, unet.config
        n_ctx = PIPE.encoders.t5_tokenizer.max_tokens + 77 + 2
        x = torch.randn(batch, cfg.in_channels, R, R, generator=g)
        ctx = torch.randn(batch, n_ctx, cfg.cross_attention_dim, generator=g)
        cls = (torch.randn(batch, cfg.projection_class_embeddings_input_dim, generator=g)
               if cfg.class_embed_type else None)
        t = torch.full((batch,), 0.3)
        return lambda: unet(x, t, encoder_hidden_states=ctx, class_labels=cls)
    if kind == "t5":                               # the prompt's ids, unpadded (as ediff encodes them)
        ids = torch.tensor([PIPE.encoders.t5_tokenizer(PROMPT)])
        return lambda: PIPE.encoders.t5(input_ids=ids)
    ids = torch.tensor([PIPE.encoders.clip_tokenizer(PROMPT)])   # clip: 77 ids, hidden states + projection
    return lambda: PIPE.encoders.clip.text_projection(PIPE.encoders.clip.text_model(input_ids=ids).pooler_output)


def torch_case(case):
    """A zero-argument function doing PyTorch's version of a bench.c case, and its flop."""
    kind, _, args = case.partition(":")
    if kind in ("unet", "cfg", "t5", "clip"):
        fn = torch_model_case(kind, args)

        def no_grad():
            with torch.inference_mode():
                fn()
        return no_grad, 0.0
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


# --- the whole image --------------------------------------------------------------------------------

# Runs argv[1:] in a process forked from this small one, so that its peak RSS is its own: a child
# forked from the bench (hundreds of MB with torch) would inherit the bench's high-water mark through exec.
RUN_CHILD = """
import os, resource, sys, time
t0 = time.perf_counter()
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[1], sys.argv[1:])
_, status = os.waitpid(pid, 0)
seconds = time.perf_counter() - t0
print(seconds, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024, os.waitstatus_to_exitcode(status))
"""


def ediff_image(program, model, threads):
    """One `ediff PROMPT` run in a fresh process: (wall seconds, peak RSS bytes)."""
    with tempfile.TemporaryDirectory() as tmp:
        run = subprocess.run([sys.executable, "-S", "-c", RUN_CHILD, program, PROMPT, "--model", model, "-t",
                              str(threads), "-o", f"{tmp}/bench.png"], capture_output=True, text=True)
    fields = run.stdout.split()
    if run.returncode != 0 or len(fields) != 3 or fields[2] != "0":
        sys.exit(f"bench: {program} failed: {run.stderr.strip()}")
    return float(fields[0]), int(fields[1])


def torch_image_server(model):
    """`bench.py --torch-image-server BLOB`: load the PyTorch pipeline, then answer each "THREADS" line with
    "SECONDS VMHWM_BYTES" for one Pipeline.generate of the prompt (seed 42, the stages' default settings)."""
    import torch as t
    sys.path.insert(0, str(REPO / "weights"))
    import ediffi
    pipe = ediffi.load_blob(model)
    print("ready", flush=True)
    for line in sys.stdin:
        t.set_num_threads(int(line))
        t0 = time.perf_counter()
        pipe.generate([PROMPT], [42])
        seconds = time.perf_counter() - t0
        hwm = re.search(r"VmHWM:\s+(\d+) kB", Path("/proc/self/status").read_text())
        print(f"{seconds} {int(hwm.group(1)) * 1024 if hwm else 0}", flush=True)


class TorchImage:
    """The PyTorch pipeline in its own process (its peak RSS is its own), serving generate() calls."""

    def __init__(self, model):
        self.proc = subprocess.Popen([sys.executable, __file__, "--torch-image-server", model], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, bufsize=1)
        if self.proc.stdout.readline().strip() != "ready":
            sys.exit("bench: the PyTorch pipeline did not load")

    def run(self, threads):
        self.proc.stdin.write(f"{threads}\n")
        self.proc.stdin.flush()
        seconds, rss = self.proc.stdout.readline().split()
        return float(seconds), int(rss)

    def close(self):
        self.proc.stdin.close()
        self.proc.wait()


def measure_image(model, threads, rounds, programs):
    """Interleaved rounds of one image per side: {side: (median s, fastest s, peak RSS bytes)}."""
    torch_side = TorchImage(model)
    times, rss = {side: [] for side in list(programs) + ["torch"]}, {}
    for _ in range(rounds):
        for side, program in programs.items():
            s, r = ediff_image(program, model, threads)
            times[side].append(s)
            rss[side] = max(rss.get(side, 0), r)
        s, r = torch_side.run(threads)
        times["torch"].append(s)
        rss["torch"] = max(rss.get("torch", 0), r)
    torch_side.close()
    return {k: (statistics.median(v), min(v), rss[k]) for k, v in times.items()}


def blob_summary(path):
    """(name, stages text, bytes) of a blob, from `ediff info`-style parsing of weights/blob.py's reader."""
    sys.path.insert(0, str(REPO / "weights"))
    from blob import read_blob
    meta, _ = read_blob(path)
    parts = []
    for s in meta["stages"].split(","):
        cfg = f"cfg {meta[s + '.cfg_scale']}" if float(meta[s + ".cfg_scale"]) != 1 else "no CFG"
        parts.append(f"{s} {meta[s + '.resolution']}px {meta[s + '.experts']} expert(s) {meta[s + '.steps']} "
                     f"{meta[s + '.sampler']} steps {cfg}")
    return meta.get("ediff.model", Path(path).name), meta, ", ".join(parts), os.path.getsize(path)


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--torch-image-server":
        return torch_image_server(sys.argv[2])
    default_model = REPO / "weights/ediff-tiny.bin"
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--portable", required=True, help="test/bench.c built with `make` (ediff beside it)")
    ap.add_argument("--native", required=True, help="test/bench.c built with `make NATIVE=1` (ediff beside it)")
    ap.add_argument("--model", default=str(default_model),
                    help="the blob of the model rows (default weights/ediff-tiny.bin)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--budget", type=float, default=0.08, help="seconds per side per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--image-rounds", type=int, default=3, help="whole images per side and thread count")
    ap.add_argument("--omp-wait", choices=("passive", "active"), default="passive",
                    help="OMP_WAIT_POLICY of both sides (default passive: on a shared machine spinning threads "
                         "of one side, or of other jobs, stall the other side's 2-thread runs)")
    args = ap.parse_args()
    os.environ["OMP_WAIT_POLICY"] = args.omp_wait          # read by libgomp when it loads: torch's and ours
    global torch, F, PIPE
    import torch
    import torch.nn.functional as F
    sys.path.insert(0, str(REPO / "weights"))
    import ediffi

    t_start = time.time()
    blas, lapack, onednn, sgemm1 = torch_blas()
    print(f"ediff bench  {time.strftime('%Y-%m-%d %H:%M:%S')}  {platform.node()}  {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"PyTorch {torch.__version__}: BLAS {blas}, LAPACK {lapack}, {onednn}; 1-thread sgemm 1024: {sgemm1:.1f} GFLOP/s")
    print(f"OMP_WAIT_POLICY={args.omp_wait} for both sides")
    if blas.lower() in ("unknown", "blas", "generic", "eigen", "open") or sgemm1 < 20.0:
        sys.exit("bench: PyTorch runs on a reference BLAS here (BLAS_INFO=%s, %.1f GFLOP/s): not a reference to "
                 "compare against; install the PyPI CPU build (MKL + oneDNN)" % (blas, sgemm1))
    name, meta, stages_text, blob_bytes = blob_summary(args.model)
    print(f"model rows: {args.model} ({name}, {blob_bytes / 2**20:.1f} MiB): {stages_text}; prompt '{PROMPT}'")
    PIPE = ediffi.load_blob(args.model)

    port, nat = Ediff(args.portable, args.model), Ediff(args.native, args.model)
    threads = sorted({1, args.threads})
    best = {}                                # fastest peak call seen, per thread count

    def sample_peak():                       # the loop of the portable program is plain SSE2: not a peak
        for th in threads:
            for _ in range(3):
                flop, _, mn, _ = nat.run("peak", th, 0.1)
                best["native", th] = max(best.get(("native", th), 0.0), flop / mn)

    model_cases = []
    for stage in meta["stages"].split(","):
        R = meta[stage + ".resolution"]
        model_cases.append((f"UNet expert forward, {stage} {R}x{R}", f"unet:{stage}"))
        if float(meta[stage + ".cfg_scale"]) != 1:
            model_cases.append((f"  CFG pair {stage} (ediff: side by side; torch: batch 2)", f"cfg:{stage}"))
    model_cases += [(f"T5 encode ({len(PIPE.encoders.t5_tokenizer(PROMPT))} ids)", "t5"),
                    ("CLIP text encode (77 ids, + projection)", "clip")]

    # Every row first (with the peak sampled before and after, so a busy moment cannot lower it), then the table.
    sample_peak()
    rows = []
    for title, kind, cases in (("GEMM M x N x K, GFLOP/s", "gemm", [(f"{M}x{N}x{K} {l}", f"gemm:{M},{N},{K}") for l, M, N, K in GEMM]),
                               ("conv2d 3x3 C -> C, C x H x W, GFLOP/s", "conv", [(f"{C}x{H}x{W} {l}", f"conv:{C},{H},{W}") for l, C, H, W in CONV]),
                               ("attention Tq x Tk, heads x dh, GFLOP/s", "attn",
                                [(f"{Tq}x{Tk} {H}x{dh} {l}", f"attn:{Tq},{Tk},{H},{dh},{c}") for l, Tq, Tk, H, dh, c in ATTN]),
                               ("model pieces, milliseconds per call", "model", model_cases)):
        rows.append((title, kind, [(label, th) + measure(case, th, args.budget, args.rounds, port, nat)
                                   for th in threads for label, case in cases]))
        print(".", end="", file=sys.stderr, flush=True)
    sample_peak()
    port.close()
    nat.close()
    programs = {side: str(Path(path).parent / "ediff") for side, path in (("portable", args.portable), ("native", args.native))}
    images = [(th, measure_image(args.model, th, args.image_rounds, programs)) for th in threads]
    print(file=sys.stderr)

    for th in threads:
        print(f"peak, {th} thread{'s' if th > 1 else ''}: {best['native', th] / 1e9:.1f} GFLOP/s (FMA, native build)")
    print("  measured as a GEMM micro-kernel loop (a 12x32 tile: 24 AVX-512 accumulators, 2 loads and 12 broadcasts\n"
          "  per 24 multiply-adds) on L1-resident data, fastest call of six tries spread over the run: what the FMA\n"
          "  units give when nothing waits for memory.")
    print(f"ediff = `make` (portable), native = `make NATIVE=1`, torch = PyTorch {torch.__version__}; ratio = PyTorch time /\n"
          f"ediff time (> 1: ediff faster), from median times, in parentheses from the fastest calls; "
          f"{args.rounds} interleaved\nrounds of {args.budget:.2f} s per side and row. ~: on some side the median call took over "
          f"1.5x the fastest\n(a busy machine): trust the fastest-call ratio more.\n")
    W = 48
    head = f"{'thr':>3} {'ediff':>8} {'native':>8} {'torch':>8}   {'ratio':>11} {'ratio native':>12}"
    for title, kind, measured in rows:
        print(f"{title:{W}} {head}" + ("   % of peak (ediff, native)" if kind == "gemm" else ""))
        for label, th, r, flop in measured:
            ratio = lambda side: f"{r['torch'][0] / r[side][0]:5.2f} ({r['torch'][1] / r[side][1]:4.2f})"
            value = (lambda t: f"{1e3 * t:8.2f}") if kind == "model" else (lambda t: fmt_gf(flop, t))
            line = (f"{label:{W}} {th:3d} {value(r['portable'][0])} {value(r['native'][0])} "
                    f"{value(r['torch'][0])}   {ratio('portable'):>11} {ratio('native'):>12}")
            if kind == "gemm":
                line += (f"   {100 * flop / r['portable'][0] / best['native', th]:4.0f}% "
                         f"{100 * flop / r['native'][0] / best['native', th]:4.0f}%")
            if any(med > 1.5 * mn for med, mn in r.values()):
                line += "  ~"
            print(line)
        print()
    limit = blob_bytes + 64 * 2**20
    print(f"whole image, `ediff PROMPT -t N` vs Pipeline.generate: seconds (median of {args.image_rounds}, fastest) "
          f"and peak RSS;\ntime ratio = ediff / PyTorch (target <= 0.80); RSS limit = blob + 64 MiB = {limit / 2**20:.1f} MiB")
    print(f"{'':{W - 12}} {'thr':>3} {'seconds':>16} {'peak RSS':>10} {'ediff/torch':>12}")
    for th, r in images:
        for side in ("portable", "native", "torch"):
            med, fast, rss = r[side]
            label = {"portable": "ediff (make)", "native": "ediff (make NATIVE=1)", "torch": "PyTorch pipeline"}[side]
            line = f"{label:{W - 12}} {th:3d} {med:7.3f} ({fast:6.3f}) {rss / 2**20:7.1f} MiB"
            if side != "torch":
                line += (f"   {med / r['torch'][0]:5.2f} ({fast / r['torch'][1]:4.2f})"
                         f"   RSS {'within' if rss <= limit else 'OVER'} the limit")
            print(line)
    print(f"\nload average at the end {' '.join(f'{x:.2f}' for x in os.getloadavg())}; bench took {time.time() - t_start:.0f} s")


if __name__ == "__main__":
    main()
