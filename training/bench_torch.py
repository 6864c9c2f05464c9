"""PyTorch side of ``npm run bench:perf``: the reference a researcher would time.

``python3 -m training.bench_torch COMMAND``:

- ``checkpoint``: saves a random-init model of a preset size as a float32 state dict, which
  ``python3 -m training export --checkpoint`` turns into the ONNX towers, so that ONNX Runtime
  and PyTorch run identical weights. The token table follows the vocabulary file, so any
  vocabulary (the CLIP one or a small generated one) exports; it does not change the speed.
- ``image``: times ``encode_image`` (eval, no_grad, fp32) on raw float32 pixels written by the
  TypeScript side, at several batch sizes, and writes the embeddings of the first images so
  the caller can check both engines agree.
- ``matmul``: the machine's fp32 matmul rate through PyTorch, and an ONNX file holding one
  MatMul for timing the same product through ONNX Runtime.
- ``quant``: dynamic int8 quantisation of the image tower's Linear layers in PyTorch, timed
  against fp32 on the same inputs, with the cosine between the two outputs.

The int8 ONNX towers are made by ``python3 -m training quantize`` (training/export/quantize.py).

Every command prints one JSON object on stdout; progress goes to stderr.
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from .model.checkpoint import load_checkpoint
from .model.clip import CLIP, model_config
from .model.tokenizer import count_merges


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _timed_runs(fn, warmup: int, runs: int) -> list:
    for _ in range(warmup):
        fn()
    seconds = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - started)
    return seconds


def make_checkpoint(size: str, vocab: Path, out: Path, seed: int) -> dict:
    config = model_config(size)
    # The exporter requires vocab_size = 512 + merges + 2; the table size does not affect speed.
    config.vocab_size = 512 + count_merges(vocab, None) + 2
    torch.manual_seed(seed)
    model = CLIP.random_init(config).float().eval()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    torch.save(model.state_dict(), str(tmp))
    tmp.replace(out)
    return {"checkpoint": str(out), "size": size, "vocab_size": config.vocab_size}


def _read_pixels(path: Path, resolution: int) -> torch.Tensor:
    data = np.fromfile(path, dtype="<f4")
    per_image = 3 * resolution * resolution
    if data.size == 0 or data.size % per_image:
        raise ValueError(f"{path} does not hold whole [3,{resolution},{resolution}] images")
    return torch.from_numpy(data.reshape(-1, 3, resolution, resolution).copy())


def time_image(args) -> dict:
    model, _ = load_checkpoint(args.checkpoint)
    model.eval()
    pixels = _read_pixels(args.pixels, model.config.image_resolution)
    result = {"threads": torch.get_num_threads(), "torch": torch.__version__, "batches": []}
    with torch.no_grad():
        check = model.encode_image(pixels[: args.check_images]).numpy()
        check.astype("<f4").tofile(args.embeddings)
        for batch in args.batches:
            if batch > pixels.shape[0]:
                raise ValueError(f"batch {batch} needs {batch} images, {args.pixels} has fewer")
            inputs = pixels[:batch]
            _log(f"torch image tower: batch {batch}, {args.warmup} warm-up + {args.runs} runs")
            seconds = _timed_runs(lambda: model.encode_image(inputs), args.warmup, args.runs)
            median = statistics.median(seconds)
            result["batches"].append(
                {
                    "batch": batch,
                    "seconds": seconds,
                    "median_s": median,
                    "images_per_s": batch / median,
                }
            )
    return result


def time_matmul(args) -> dict:
    import onnx
    from onnx import TensorProto, helper

    n = args.n
    a, b = torch.randn(n, n), torch.randn(n, n)
    seconds = _timed_runs(lambda: torch.mm(a, b), args.warmup, args.runs)
    median = statistics.median(seconds)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["c"])],
        "matmul",
        [
            helper.make_tensor_value_info("a", TensorProto.FLOAT, [n, n]),
            helper.make_tensor_value_info("b", TensorProto.FLOAT, [n, n]),
        ],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, [n, n])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(model)
    onnx.save(model, str(args.onnx_out))
    return {
        "n": n,
        "threads": torch.get_num_threads(),
        "seconds": seconds,
        "median_s": median,
        "gflops": 2 * n**3 / min(seconds) / 1e9,
        "median_gflops": 2 * n**3 / median / 1e9,
        "onnx": str(args.onnx_out),
    }


def time_quant(args) -> dict:
    model, _ = load_checkpoint(args.checkpoint)
    model.eval()
    visual = model.visual
    pixels = _read_pixels(args.pixels, model.config.image_resolution)[: args.batch]
    # nn.MultiheadAttention keeps its in-projection as a bare parameter, so only out_proj,
    # c_fc and c_proj (about 2/3 of the matmul FLOPs) become int8 here.
    quantized = torch.quantization.quantize_dynamic(visual, {torch.nn.Linear}, dtype=torch.qint8)
    with torch.no_grad():
        _log(f"torch fp32 vs dynamic int8 image tower, batch {args.batch}")
        fp32 = _timed_runs(lambda: visual(pixels), args.warmup, args.runs)
        int8 = _timed_runs(lambda: quantized(pixels), args.warmup, args.runs)
        a, b = visual(pixels), quantized(pixels)
    cosine = torch.nn.functional.cosine_similarity(a, b, dim=-1)
    return {
        "batch": args.batch,
        "fp32_images_per_s": args.batch / statistics.median(fp32),
        "int8_images_per_s": args.batch / statistics.median(int8),
        "cosine_min": float(cosine.min()),
        "cosine_mean": float(cosine.mean()),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m training.bench_torch")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: all cores)")
    commands = parser.add_subparsers(dest="command", required=True)

    ckpt = commands.add_parser("checkpoint", help="save a random-init float32 state dict")
    ckpt.add_argument("--size", choices=["ViT-B/16", "ViT-L/14", "tiny"], required=True)
    ckpt.add_argument("--vocab", type=Path, required=True)
    ckpt.add_argument("--out", type=Path, required=True)
    ckpt.add_argument("--seed", type=int, default=0)

    image = commands.add_parser("image", help="time encode_image at several batch sizes")
    image.add_argument("--checkpoint", type=Path, required=True)
    image.add_argument("--pixels", type=Path, required=True, help="raw little-endian float32")
    image.add_argument("--batches", type=lambda s: [int(v) for v in s.split(",")], required=True)
    image.add_argument("--warmup", type=int, default=1)
    image.add_argument("--runs", type=int, default=3)
    image.add_argument("--check-images", type=int, default=4)
    image.add_argument("--embeddings", type=Path, required=True, help="raw float32 output")

    matmul = commands.add_parser("matmul", help="fp32 matmul rate and a MatMul ONNX file")
    matmul.add_argument("--n", type=int, default=2048)
    matmul.add_argument("--warmup", type=int, default=2)
    matmul.add_argument("--runs", type=int, default=5)
    matmul.add_argument("--onnx-out", type=Path, required=True)

    quant = commands.add_parser("quant", help="int8 dynamic quantisation of the image tower")
    quant.add_argument("--checkpoint", type=Path, required=True)
    quant.add_argument("--pixels", type=Path, required=True)
    quant.add_argument("--batch", type=int, default=8)
    quant.add_argument("--warmup", type=int, default=1)
    quant.add_argument("--runs", type=int, default=3)

    args = parser.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    try:
        if args.command == "checkpoint":
            result = make_checkpoint(args.size, args.vocab, args.out, args.seed)
        elif args.command == "image":
            result = time_image(args)
        elif args.command == "matmul":
            result = time_matmul(args)
        else:
            result = time_quant(args)
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
