"""Reference blobs for the blob suite (test/t_blob.c): the same tensors saved as .safetensors and as a
PyTorch .pt state dict, each converted by weights/convert.py. The C test checks that both blobs hold
the same tensor table and bytes, and uses them as the seed of its corruption tests.

    .venv/bin/python test/gen_blob.py
"""
import os
import subprocess
import sys
import tempfile

import torch
from safetensors.torch import save_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "weights"))
import blob  # noqa: E402

g = torch.Generator().manual_seed(7)
state = {
    "encoder.block.0.layer.0.SelfAttention.q.weight": torch.randn(8, 8, generator=g),
    "encoder.final_layer_norm.weight": torch.randn(8, generator=g).half(),
    "conv_in.weight": torch.randn(4, 3, 3, 3, generator=g),
    "conv_in.bias": torch.randn(4, generator=g).to(torch.bfloat16),
    "logit_scale": torch.tensor(2.6592),
    "text_model.embeddings.position_ids": torch.arange(5)[None],      # a buffer: skipped
}
with tempfile.TemporaryDirectory() as tmp:
    st, pt = os.path.join(tmp, "m.safetensors"), os.path.join(tmp, "m.pt")
    save_file(state, st)
    torch.save(state, pt)
    for src, name in ((st, "convert_st.bin"), (pt, "convert_pt.bin")):
        dst = os.path.join(ROOT, "test", "ref", name)
        subprocess.run([sys.executable, os.path.join(ROOT, "weights", "convert.py"), src, dst,
                        "--meta", "test.model=tiny"], check=True)
a, b = (blob.read_blob(os.path.join(ROOT, "test", "ref", n)) for n in ("convert_st.bin", "convert_pt.bin"))
assert set(a[1]) == set(b[1]), "tables differ"
for name in a[1]:
    assert (a[1][name] == b[1][name]).all() and a[1][name].shape == b[1][name].shape, name
print("safetensors and .pt conversions agree:", ", ".join(f"{k}{list(v.shape)}" for k, v in a[1].items()))
