"""Reference: PyTorch time per training step for the shared benchmark workloads.

Part of wgrad: same source and licence (MIT OR Apache-2.0) as the rest of the project.

Run it right after wgrad's own benchmark on the same machine to get a ratio. From the
root of a clone of the repository:
  python3 -m venv torch-ref && torch-ref/bin/pip install torch   (about 3 GB, a few minutes)
  torch-ref/bin/python tools/torch_reference.py                  # CPU
  python3 tools/torch_reference.py --device cuda                 # on a machine with an NVIDIA GPU
  python3 tools/torch_reference.py --matmul 1024 4096 --json torch.json   # products too; JSON out
(`python3 tools/torch_reference.py` works as written wherever python3 can import torch.)

Workloads (must match the ones the project's benchmarks use):
  mlp: 784-256-128-10 ReLU MLP, batch 128, softmax cross-entropy, SGD momentum 0.9
  cnn: conv(1->16,3x3,pad1)-relu-maxpool2 - conv(16->32,3x3,pad1)-relu-maxpool2 - linear(32*7*7->10), batch 64, 28x28 input
  rnn: Elman RNN hidden 128 over 32 steps of one-hot vocab 65, batch 32, CE on every step
  transformer: decoder-only character model: vocab 76, context 64, batch 32, token + learned
    position embeddings (d_model 128), 2 pre-norm layers (nn.TransformerEncoderLayer, 4 heads,
    feed-forward 512, GELU, dropout 0, causal), final LayerNorm, Linear(128->76), CE on every
    position, AdamW lr 3e-4 (the other workloads use SGD momentum 0.9)
  matmul N (with --matmul): f32 N x N x N product, TF32 off, GFLOP/s
Prints median ms/step of 30 timed steps after 5 warm-ups (the device synced inside every timed step).
"""
import argparse, json, statistics, time, torch
import torch.nn as nn

ap = argparse.ArgumentParser()
ap.add_argument("--device", default="cpu")
ap.add_argument("--matmul", type=int, nargs="*", default=[], help="also time f32 matmul at these sizes")
ap.add_argument("--json", help="also write the figures to this file")
args = ap.parse_args()
dev = torch.device(args.device)
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
torch.manual_seed(0)

def sync():
    if dev.type == "cuda":
        torch.cuda.synchronize()

def time_steps(model, make_batch, loss_fn, steps=30, warm=5, adamw=False):
    model = model.to(dev)
    opt = (torch.optim.AdamW(model.parameters(), lr=3e-4) if adamw
           else torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9))
    x, y = (t.to(dev) for t in make_batch())
    ts = []
    for i in range(warm + steps):
        sync(); t = time.perf_counter()
        opt.zero_grad(); loss = loss_fn(model(x), y); loss.backward(); opt.step()
        sync()
        if i >= warm: ts.append((time.perf_counter() - t) * 1e3)
    return statistics.median(ts)

out = {"device": str(dev), "torch": torch.__version__}
if dev.type == "cuda":
    out["gpu"] = torch.cuda.get_device_name(0)
ce = nn.CrossEntropyLoss()
mlp = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10))
out["mlp_ms"] = time_steps(mlp, lambda: (torch.randn(128, 784), torch.randint(0, 10, (128,))), ce)
cnn = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(32 * 7 * 7, 10))
out["cnn_ms"] = time_steps(cnn, lambda: (torch.randn(64, 1, 28, 28), torch.randint(0, 10, (64,))), ce)
class CharRNN(nn.Module):
    def __init__(s): super().__init__(); s.rnn = nn.RNN(65, 128, batch_first=True); s.out = nn.Linear(128, 65)
    def forward(s, x): h, _ = s.rnn(x); return s.out(h).reshape(-1, 65)
def rnn_batch():
    idx = torch.randint(0, 65, (32, 32)); return nn.functional.one_hot(idx, 65).float(), torch.randint(0, 65, (32 * 32,))
out["rnn_ms"] = time_steps(CharRNN(), rnn_batch, ce)
class CharTransformer(nn.Module):
    def __init__(s, vocab=76, ctx=64, d=128, heads=4, layers=2, ff=512):
        super().__init__()
        s.tok, s.pos = nn.Embedding(vocab, d), nn.Embedding(ctx, d)
        s.layers = nn.ModuleList(nn.TransformerEncoderLayer(d, heads, ff, dropout=0.0, activation="gelu",
                                                            batch_first=True, norm_first=True) for _ in range(layers))
        s.norm, s.head = nn.LayerNorm(d), nn.Linear(d, vocab)
        s.register_buffer("mask", nn.Transformer.generate_square_subsequent_mask(ctx))
    def forward(s, x):
        h = s.tok(x) + s.pos(torch.arange(x.shape[1], device=x.device))
        for l in s.layers:
            h = l(h, src_mask=s.mask, is_causal=True)
        return s.head(s.norm(h)).reshape(-1, 76)
def tf_batch():
    return torch.randint(0, 76, (32, 64)), torch.randint(0, 76, (32 * 64,))
out["transformer_ms"] = time_steps(CharTransformer(), tf_batch, ce, adamw=True)
for n in args.matmul:
    a, b = torch.randn(n, n, device=dev), torch.randn(n, n, device=dev)
    for _ in range(3): a @ b
    ts = []
    for _ in range(10):
        sync(); t = time.perf_counter(); a @ b; sync(); ts.append(time.perf_counter() - t)
    out[f"matmul_{n}_gflops"] = 2 * n ** 3 / statistics.median(ts) / 1e9
for k in ("mlp", "cnn", "rnn", "transformer"):
    print(f"{k} ms/step", round(out[f"{k}_ms"], 3))
for n in args.matmul:
    print(f"matmul {n} GFLOP/s", round(out[f"matmul_{n}_gflops"], 1))
if args.json:
    with open(args.json, "w") as f:
        json.dump(out, f, indent=1)
