"""Throughput of the glacierwatch U-Net: training and inference images per second for ResNet-18/34/50
encoders with the seed's and the light decoder, in fp32 and bf16 autocast, contiguous (NCHW) and
channels-last, and the achieved GFLOP/s as a fraction of a large matrix multiply's GFLOP/s (sgemm for
fp32) measured in the same run (same device, threads and dtype).

    python benchmarks/bench_model.py                        # all encoders and decoders, all settings (slow on 2 cores)
    python benchmarks/bench_model.py --quick                # fewer repeats, channels-last only
    python benchmarks/bench_model.py --encoders resnet18,resnet50 --decoders seed,light --fp32-only --json b.json
    ONEDNN_MAX_CPU_ISA=AVX2 python benchmarks/bench_model.py --fp32-only ...   # a CPU without AVX-512/bf16
    python benchmarks/bench_model.py --device cuda --batch-infer 256 --batch-train 64   # a GPU (AMP bf16/fp16)

FLOPs are counted with torch.utils.flop_counter (2 per multiply-add, convolutions and matrix
products only) for one forward pass, and for one forward + backward pass for training; the Adam step
is timed but not counted. Headline timings are the best of the repeats after warm-up (the machine may
be shared: the fastest repeat is the one least disturbed by other jobs); medians are in the JSON too.
Key figures in the JSON, per encoder ENC and decoder DEC: ``ENC_DEC_infer_img_s`` (best setting),
``ENC_DEC_train_img_s`` (best setting), ``ENC_DEC_flops_fraction_of_matmul`` (inference at the best
setting, over the matmul GFLOP/s of that setting's dtype), ``ENC_DEC_forward_gflop_per_img``,
``ENC_DEC_params_millions``; the keys without DEC (``resnet50_infer_img_s`` ...) are the seed decoder's,
as before the decoder option. ``models["ENC/DEC"]`` holds every setting. On CUDA the "bf16" settings
use AMP in bf16 where the GPU has it, else fp16.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from glacierwatch.model.predict import bf16_supported  # noqa: E402
from glacierwatch.model.train import train_step  # noqa: E402
from glacierwatch.model.unet import DECODERS, UNet  # noqa: E402

SETTINGS = {  # name -> (autocast bf16, channels-last)
    "fp32_nchw": (False, False),
    "fp32_channels_last": (False, True),
    "bf16_nchw": (True, False),
    "bf16_channels_last": (True, True),
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _time(fn, *, warmup: int, repeats: int, device: torch.device) -> list[float]:
    for _ in range(warmup):
        fn()
    _sync(device)
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        _sync(device)
        out.append(time.perf_counter() - t)
    return out


def matmul_gflops(n: int, dtype: torch.dtype, device: torch.device, repeats: int) -> float:
    """GFLOP/s of an n x n by n x n matrix multiply (2 n^3 FLOPs), best of ``repeats``."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    times = _time(lambda: torch.mm(a, b), warmup=1, repeats=repeats, device=device)
    return 2 * n ** 3 / min(times) / 1e9


def count_flops(encoder: str, channels: int, size: int, decoder: str = "seed") -> tuple[float, float]:
    """(forward, forward + backward) FLOPs per image."""
    from torch.utils.flop_counter import FlopCounterMode

    model = UNet(encoder, in_channels=channels, decoder=decoder).train()
    x = torch.randn(2, channels, size, size)
    y = torch.randint(0, 2, (2, size, size))
    with FlopCounterMode(display=False) as fc:
        with torch.no_grad():
            model(x)
    fwd = fc.get_total_flops() / 2
    with FlopCounterMode(display=False) as fc:
        F.cross_entropy(model(x), y).backward()
    return fwd, fc.get_total_flops() / 2


def low_precision(device: torch.device) -> torch.dtype:
    """The autocast dtype of the "bf16" settings: bf16, or fp16 on a GPU without bf16."""
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16


def count_encoder_flops(encoder: str, channels: int, size: int) -> float:
    """Forward FLOPs per image of the encoder alone (the decoder's are the rest)."""
    from torch.utils.flop_counter import FlopCounterMode

    model = UNet(encoder, in_channels=channels).eval()
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        model.encoder(torch.randn(2, channels, size, size))
    return fc.get_total_flops() / 2


def bench_setting(encoder: str, bf16: bool, channels_last: bool, *, channels: int, size: int, batch_infer: int,
                  batch_train: int, device: torch.device, warmup: int, repeats: int,
                  decoder: str = "seed") -> dict[str, float]:
    torch.manual_seed(0)
    model = UNet(encoder, in_channels=channels, decoder=decoder).to(device)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    low = low_precision(device)
    amp = torch.autocast(device_type=device.type, dtype=low, enabled=bf16)
    scaler = torch.amp.GradScaler("cuda") if (bf16 and low == torch.float16) else None
    xi = torch.randn(batch_infer, channels, size, size, device=device).contiguous(memory_format=fmt)
    model.eval()

    def infer() -> None:
        with torch.inference_mode(), amp:
            model(xi)

    ti = _time(infer, warmup=warmup, repeats=repeats, device=device)
    model.train()
    xt = torch.randn(batch_train, channels, size, size, device=device).contiguous(memory_format=fmt)
    yt = torch.randint(0, 2, (batch_train, size, size), device=device)
    try:
        opt = torch.optim.Adam(model.parameters(), lr=1e-5, weight_decay=1e-5, fused=True)
    except (RuntimeError, TypeError):
        opt = torch.optim.Adam(model.parameters(), lr=1e-5, weight_decay=1e-5)

    def step() -> None:  # the training loop's own step (forward, loss, backward, Adam)
        train_step(model, opt, scaler, xt, yt, device=device, dtype=low if bf16 else None)

    tt = _time(step, warmup=max(1, warmup), repeats=repeats, device=device)
    return {"infer_img_s": batch_infer / min(ti), "infer_img_s_median": batch_infer / statistics.median(ti),
            "train_img_s": batch_train / min(tt), "train_img_s_median": batch_train / statistics.median(tt)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--encoders", default="resnet18,resnet34,resnet50")
    p.add_argument("--decoders", default=",".join(DECODERS), help=f"subset of {','.join(DECODERS)}")
    p.add_argument("--fp32-only", action="store_true",
                   help="fp32 settings only (what a CPU without bf16 runs; combine with ONEDNN_MAX_CPU_ISA=AVX2)")
    p.add_argument("--settings", default=",".join(SETTINGS), help=f"subset of {','.join(SETTINGS)}")
    p.add_argument("--size", type=int, default=128, help="chip size (default 128)")
    p.add_argument("--channels", type=int, default=10)
    p.add_argument("--batch-infer", type=int, default=16)
    p.add_argument("--batch-train", type=int, default=8)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--matmul-n", type=int, default=4096, help="size of the reference square matmul")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--quick", action="store_true", help="2 repeats, no NCHW settings")
    p.add_argument("--json", metavar="FILE", help="write the figures as JSON")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if (args.device == "auto" and torch.cuda.is_available()) else
                          ("cpu" if args.device == "auto" else args.device))
    settings = [s for s in args.settings.split(",") if s]
    if args.quick:
        args.repeats = 2
        settings = [s for s in settings if s.endswith("channels_last")]
    if args.fp32_only:
        settings = [s for s in settings if s.startswith("fp32")]
    unknown = [s for s in settings if s not in SETTINGS]
    if unknown:
        p.error(f"unknown setting(s) {unknown}")
    if not bf16_supported(device):
        print(f"note: bf16 is not fast on this {device.type} (no AVX512-BF16/AMX or bf16 GPU); bf16 figures are emulated")
    encoders = [e for e in args.encoders.split(",") if e]
    decoders = [d for d in args.decoders.split(",") if d]
    if any(d not in DECODERS for d in decoders):
        p.error(f"unknown decoder in {decoders}; choose from {sorted(DECODERS)}")

    def measure_matmul() -> None:  # the reference is the best seen over the run (the machine may be shared)
        dtypes = [("fp32_gflop_s", torch.float32)] + ([] if args.fp32_only else [("bf16_gflop_s", low_precision(device))])
        for key, dtype in dtypes:
            mm[key] = max(mm.get(key, 0.0), matmul_gflops(args.matmul_n, dtype, device, max(2, args.repeats)))

    mm: dict[str, Any] = {"n": args.matmul_n}
    measure_matmul()
    result: dict[str, Any] = {
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        "cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
        "torch": str(torch.__version__), "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA", ""),
        "bf16_native": bf16_supported(device), "chip_size": args.size, "channels": args.channels,
        "batch_infer": args.batch_infer, "batch_train": args.batch_train, "repeats": args.repeats,
        "timing": "best of repeats after warm-up (medians under *_median)",
        "matmul": mm, "models": {},
    }
    print(f"device {result['device']}, {result['threads']} threads, torch {result['torch']}; chips "
          f"{args.channels}x{args.size}x{args.size}, batch {args.batch_infer} (inference) / {args.batch_train} (training)")
    header = (f"{'model':15} {'setting':20} {'infer img/s':>11} {'train img/s':>11} {'infer GFLOP/s':>13} "
              f"{'train GFLOP/s':>13}")
    print(header)
    for enc, dec in [(e, d) for e in encoders for d in decoders]:
        label = f"{enc}/{dec}"
        fwd, fwdbwd = count_flops(enc, args.channels, args.size, dec)
        net = UNet(enc, in_channels=args.channels, decoder=dec)
        params = sum(p.numel() for p in net.parameters())
        dec_params = sum(p.numel() for p in net.decoder.parameters()) + sum(p.numel() for p in net.head.parameters())
        enc_fwd = count_encoder_flops(enc, args.channels, args.size)
        entry: dict[str, Any] = {"encoder": enc, "decoder": dec, "params_millions": params / 1e6,
                                 "decoder_params_millions": dec_params / 1e6, "forward_gflop_per_img": fwd / 1e9,
                                 "decoder_forward_gflop_per_img": (fwd - enc_fwd) / 1e9,
                                 "train_gflop_per_img": fwdbwd / 1e9, "settings": {}}
        for name in settings:
            bf16, cl = SETTINGS[name]
            r = bench_setting(enc, bf16, cl, channels=args.channels, size=args.size, batch_infer=args.batch_infer,
                              batch_train=args.batch_train, device=device, warmup=args.warmup, repeats=args.repeats,
                              decoder=dec)
            r["infer_gflop_s"] = r["infer_img_s"] * fwd / 1e9
            r["train_gflop_s"] = r["train_img_s"] * fwdbwd / 1e9
            entry["settings"][name] = r
            print(f"{label:15} {name:20} {r['infer_img_s']:11.1f} {r['train_img_s']:11.2f} {r['infer_gflop_s']:13.1f} "
                  f"{r['train_gflop_s']:13.1f}", flush=True)
        result["models"][label] = entry
        print(f"{label}: {params / 1e6:.1f} M parameters ({dec_params / 1e6:.1f} M decoder), {fwd / 1e9:.2f} GFLOP "
              f"per image forward ({(fwd - enc_fwd) / 1e9:.2f} decoder), {fwdbwd / 1e9:.2f} forward+backward")
        measure_matmul()
    print(f"reference matmul {args.matmul_n}^2 (best over the run): fp32 {mm['fp32_gflop_s']:.1f} GFLOP/s"
          + (f", bf16 {mm['bf16_gflop_s']:.1f} GFLOP/s" if "bf16_gflop_s" in mm else ""))
    print(f"{'model':15} {'best inference':20} {'img/s':>7} {'of matmul':>9} | {'best training':20} {'img/s':>7} "
          f"{'of matmul':>9}")
    for label, entry in result["models"].items():
        s = entry["settings"]
        for name, r in s.items():
            ref = mm["bf16_gflop_s"] if SETTINGS[name][0] else mm["fp32_gflop_s"]
            r["infer_flops_fraction_of_matmul"] = r["infer_gflop_s"] / ref
            r["train_flops_fraction_of_matmul"] = r["train_gflop_s"] / ref
        best_i = max(s, key=lambda k: s[k]["infer_img_s"])
        best_t = max(s, key=lambda k: s[k]["train_img_s"])
        entry["best_infer_setting"], entry["best_train_setting"] = best_i, best_t
        enc, dec = entry["encoder"], entry["decoder"]
        for prefix in [f"{enc}_{dec}"] + ([enc] if dec == "seed" else []):
            result[f"{prefix}_infer_img_s"] = s[best_i]["infer_img_s"]
            result[f"{prefix}_infer_best_setting"] = best_i
            result[f"{prefix}_train_img_s"] = s[best_t]["train_img_s"]
            result[f"{prefix}_train_best_setting"] = best_t
            result[f"{prefix}_flops_fraction_of_matmul"] = s[best_i]["infer_flops_fraction_of_matmul"]
            result[f"{prefix}_train_flops_fraction_of_matmul"] = s[best_t]["train_flops_fraction_of_matmul"]
            result[f"{prefix}_forward_gflop_per_img"] = entry["forward_gflop_per_img"]
            result[f"{prefix}_params_millions"] = entry["params_millions"]
            if "fp32_nchw" in s and "bf16_channels_last" in s:
                result[f"{prefix}_train_speedup_bf16_channels_last_vs_fp32_nchw"] = \
                    s["bf16_channels_last"]["train_img_s"] / s["fp32_nchw"]["train_img_s"]
                result[f"{prefix}_infer_speedup_bf16_channels_last_vs_fp32_nchw"] = \
                    s["bf16_channels_last"]["infer_img_s"] / s["fp32_nchw"]["infer_img_s"]
        print(f"{label:15} {best_i:20} {s[best_i]['infer_img_s']:7.1f} {s[best_i]['infer_flops_fraction_of_matmul']:9.2f} | "
              f"{best_t:20} {s[best_t]['train_img_s']:7.2f} {s[best_t]['train_flops_fraction_of_matmul']:9.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
