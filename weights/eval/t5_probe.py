"""What the trained T5 understands: the t5 phase's encoder-decoder (RUN/t5.pt, EMA) rewrites fresh
captions into their canonical description (world.canonical); exact-match accuracy, greedy decoding, on
training-combination and held-out prompts (world.eval_prompts, 500 each).

    python weights/eval/t5_probe.py --run /work/ckpt/run3
"""
import argparse
import json
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parent / "train"))
import ediffi  # noqa: E402
import train  # noqa: E402
import world  # noqa: E402


@torch.no_grad()
def probe(model, split, n=500, seed=3):
    tok = ediffi.T5Tokenizer()
    cases = world.eval_prompts(split, n, seed=seed)
    ids = torch.zeros(len(cases), ediffi.T5_MAX_TOKENS, dtype=torch.long)
    for i, (text, _) in enumerate(cases):
        t = tok(text)
        ids[i, :len(t)] = torch.tensor(t)
    out = model.generate(input_ids=ids, attention_mask=(ids != 0).long(), max_new_tokens=train.T5Phase.TARGET_TOKENS,
                         do_sample=False, num_beams=1)
    decoded = [tok.sp.DecodeIds([t for t in row.tolist() if t > 1]) for row in out]
    wrong = [(c[0], d) for c, d in zip(cases, decoded) if d != expected(c[1])]
    return 1 - len(wrong) / len(cases), wrong[:5]


def expected(spec):
    """world.canonical of an eval prompt's spec."""
    ident = lambda o: (o[0], o[1], o[2])
    objs = spec["objects"]
    if len(objs) == 1:
        return world.canonical(("single", ident(objs[0])))
    if spec["relation"] is None:
        return world.canonical(("and",) + tuple(sorted([ident(objs[0]), ident(objs[1])])))
    a, b = ident(objs[0]), ident(objs[1])
    rel = spec["relation"]
    top_left, other = (b, a) if rel in ("below", "right") else (a, b)
    return world.canonical(("relation", top_left, "vertical" if rel in ("above", "below") else "horizontal", other))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True)
    args = ap.parse_args()
    torch.set_num_threads(2)
    phase = train.T5Phase.__new__(train.T5Phase)
    phase.seed = 0
    model = phase.build()
    path = Path(args.run) / "t5.pt"
    state = torch.load(path if path.exists() else Path(args.run) / "t5.ckpt.pt", weights_only=False)
    model.load_state_dict(state["ema"])
    model.eval()
    for split in ("train", "heldout"):
        acc, wrong = probe(model["t5"], split)
        print(f"{split}: canonical description exact {acc:.3f}", json.dumps(wrong[:3]))


if __name__ == "__main__":
    main()
