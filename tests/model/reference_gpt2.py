#!/usr/bin/env python3
"""Independent numpy reference implementation of the GPT-2 forward pass.

The C++ tests use it as an oracle for the project's own GPT-2 engine: they run
this script on the same Hugging Face model folder (config.json +
model.safetensors) and compare its output with the engine's.

  reference_gpt2.py logits --model DIR --tokens 464,2068,318 --out FILE
      Full forward over the tokens (no KV cache); writes the logits of every
      position to FILE as raw little-endian float32, row-major [T, vocab].
  reference_gpt2.py greedy --model DIR --tokens 464,2068 -n 32
      Greedy generation of n tokens (full forward each step, argmax with the
      first index winning ties); prints the generated ids as a JSON list.

Everything is computed in float64. Only the standard library and numpy are
used; safetensors is parsed by hand. Errors go to stderr with exit code 2.
"""
import argparse
import json
import os
import struct
import sys

import numpy as np


class RefError(Exception):
    pass


def load_safetensors(path):
    """Returns {name: float64 array} for every F32/F16/BF16 tensor in the file."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise RefError(f"cannot read {path}: {e.strerror}")
    if len(data) < 8:
        raise RefError(f"{path}: too short for a safetensors file")
    (n,) = struct.unpack("<Q", data[:8])
    if 8 + n > len(data):
        raise RefError(f"{path}: header length {n} exceeds file size")
    header = json.loads(data[8:8 + n].decode("utf-8"))
    body = memoryview(data)[8 + n:]
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        raw, dtype, shape = body[begin:end], info["dtype"], info["shape"]
        if dtype == "F32":
            arr = np.frombuffer(raw, dtype="<f4")
        elif dtype == "F16":
            arr = np.frombuffer(raw, dtype="<f2")
        elif dtype == "BF16":
            arr = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
        elif name.split(".")[-2:] in (["attn", "bias"], ["attn", "masked_bias"]):
            continue  # causal-mask buffers, unused
        else:
            raise RefError(f"{path}: tensor {name} has unsupported dtype {dtype}")
        tensors[name] = arr.astype(np.float64).reshape(shape)
    return tensors


def load_model(model_dir):
    cfg_path = os.path.join(model_dir, "config.json")
    try:
        with open(cfg_path) as f:
            cfg = json.load(f)
    except OSError as e:
        raise RefError(f"cannot read {cfg_path}: {e.strerror}")
    tensors = load_safetensors(os.path.join(model_dir, "model.safetensors"))

    def get(name):
        for key in (name, "transformer." + name):
            if key in tensors:
                return tensors[key]
        raise RefError(f"model.safetensors: missing tensor {name}")

    n_layer = cfg["n_layer"]
    layers = []
    for i in range(n_layer):
        p = f"h.{i}."
        layers.append({k: get(p + k) for k in (
            "ln_1.weight", "ln_1.bias", "attn.c_attn.weight", "attn.c_attn.bias",
            "attn.c_proj.weight", "attn.c_proj.bias", "ln_2.weight", "ln_2.bias",
            "mlp.c_fc.weight", "mlp.c_fc.bias", "mlp.c_proj.weight", "mlp.c_proj.bias")})
    return {
        "n_head": cfg["n_head"],
        "n_positions": cfg.get("n_positions", cfg.get("n_ctx")),
        "eps": cfg.get("layer_norm_epsilon", 1e-5),
        "wte": get("wte.weight"), "wpe": get("wpe.weight"),
        "ln_f.weight": get("ln_f.weight"), "ln_f.bias": get("ln_f.bias"),
        "layers": layers,
    }


def layer_norm(x, w, b, eps):
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * w + b


def gelu(x):
    return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x ** 3)))


def attention(x, L, n_head):
    T, C = x.shape
    D = C // n_head
    qkv = x @ L["attn.c_attn.weight"] + L["attn.c_attn.bias"]           # [T, 3C]
    q, k, v = (qkv[:, i * C:(i + 1) * C].reshape(T, n_head, D).transpose(1, 0, 2)
               for i in range(3))                                        # [H, T, D]
    scores = q @ k.transpose(0, 2, 1) / np.sqrt(D)                       # [H, T, T]
    scores = np.where(np.tril(np.ones((T, T), dtype=bool)), scores, -np.inf)
    scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
    probs = scores / scores.sum(axis=-1, keepdims=True)
    out = (probs @ v).transpose(1, 0, 2).reshape(T, C)
    return out @ L["attn.c_proj.weight"] + L["attn.c_proj.bias"]


def forward(model, tokens):
    """Logits [T, vocab] (float64) for every position of the token list."""
    vocab = model["wte"].shape[0]
    if not tokens:
        raise RefError("empty token sequence")
    if len(tokens) > model["n_positions"]:
        raise RefError(f"sequence length {len(tokens)} exceeds n_positions {model['n_positions']}")
    if any(t < 0 or t >= vocab for t in tokens):
        raise RefError(f"token id out of range [0, {vocab})")
    eps = model["eps"]
    x = model["wte"][tokens] + model["wpe"][:len(tokens)]
    for L in model["layers"]:
        x = x + attention(layer_norm(x, L["ln_1.weight"], L["ln_1.bias"], eps), L, model["n_head"])
        h = layer_norm(x, L["ln_2.weight"], L["ln_2.bias"], eps)
        h = gelu(h @ L["mlp.c_fc.weight"] + L["mlp.c_fc.bias"])
        x = x + h @ L["mlp.c_proj.weight"] + L["mlp.c_proj.bias"]
    x = layer_norm(x, model["ln_f.weight"], model["ln_f.bias"], eps)
    return x @ model["wte"].T


def main(argv):
    ap = argparse.ArgumentParser(description="numpy reference GPT-2 forward pass")
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("logits", "greedy"):
        sp = sub.add_parser(name)
        sp.add_argument("--model", required=True, help="Hugging Face GPT-2 folder")
        sp.add_argument("--tokens", required=True, help="comma-separated token ids")
        if name == "logits":
            sp.add_argument("--out", required=True, help="output file (float32 [T, vocab])")
        else:
            sp.add_argument("-n", type=int, required=True, help="number of tokens to generate")
    args = ap.parse_args(argv)
    try:
        try:
            tokens = [int(t) for t in args.tokens.split(",") if t.strip()]
        except ValueError:
            raise RefError(f"bad --tokens value: {args.tokens!r}")
        model = load_model(args.model)
        if args.cmd == "logits":
            logits = forward(model, tokens).astype("<f4")
            try:
                with open(args.out, "wb") as f:
                    f.write(logits.tobytes(order="C"))
            except OSError as e:
                raise RefError(f"cannot write {args.out}: {e.strerror}")
        else:
            generated = []
            for _ in range(args.n):
                nxt = int(np.argmax(forward(model, tokens + generated)[-1]))
                generated.append(nxt)
            print(json.dumps(generated))
    except KeyError as e:
        print(f"reference_gpt2.py: error: missing key {e} in config.json or header", file=sys.stderr)
        return 2
    except (RefError, ValueError) as e:
        print(f"reference_gpt2.py: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
