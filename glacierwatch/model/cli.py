"""``glacierwatch train`` and ``glacierwatch evaluate``."""

from __future__ import annotations

import argparse
import dataclasses
import json

from glacierwatch.config import Config, TrainConfig
from glacierwatch.layout import MODEL_CARD_FILE


def _float_list(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v.strip()]


def _int_list(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    d = TrainConfig()
    t = subparsers.add_parser("train", help="train the U-Net on a chip set (resumable); writes model.pt + model_card.json")
    t.add_argument("--chips", required=True, help="chip-set folder (glacierwatch chips build/import)")
    t.add_argument("--out", required=True, help="model folder (model.pt, model_card.json, last.pt, metrics.csv)")
    t.add_argument("--config", help="TOML configuration; its [train] table is used")
    t.add_argument("--encoder", choices=["resnet18", "resnet34", "resnet50"], help=f"default {d.encoder}")
    t.add_argument("--decoder", choices=["seed", "light"], help=f"default {d.decoder} (docs/model.md)")
    t.add_argument("--encoder-weights", metavar="FILE",
                   help="torchvision-layout ResNet state dict (ImageNet or SSL4EO-L) to start the encoder from")
    t.add_argument("--encoder-weights-bands", metavar="NAMES",
                   help="band names of that file's first conv, comma-separated (default: red,green,blue for 3 bands)")
    t.add_argument("--lr", type=float, help=f"Adam learning rate (default {d.learning_rate:g})")
    t.add_argument("--weight-decay", type=float, help=f"default {d.weight_decay:g}")
    t.add_argument("--batch-size", type=int, help=f"default {d.batch_size}")
    t.add_argument("--epochs", type=int, help=f"default {d.epochs}")
    t.add_argument("--patience", type=int, help=f"early stopping patience, epochs (default {d.patience})")
    t.add_argument("--max-minutes", type=float, help="wall-clock cap of this run, minutes (0 = none)")
    t.add_argument("--device", help="auto, cpu or cuda (default auto)")
    t.add_argument("--no-bf16", action="store_true", help="train in fp32 (default: bf16 autocast where supported)")
    t.add_argument("--seed", type=int, help=f"default {d.seed}")
    t.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    t.add_argument("--restart", action="store_true", help="discard a previous run in --out instead of resuming it")
    t.add_argument("--grid", action="store_true",
                   help="the seed's Table I: train each (learning rate, batch size) and tabulate validation loss")
    t.add_argument("--grid-lr", type=_float_list, metavar="LRS", help="with --grid: learning rates (comma-separated)")
    t.add_argument("--grid-batch", type=_int_list, metavar="SIZES", help="with --grid: batch sizes (comma-separated)")
    t.add_argument("--cv", type=int, metavar="K", help="K-fold cross-validation by glacier instead of one run")
    t.add_argument("--no-progress", action="store_true")
    t.set_defaults(func=_train)

    e = subparsers.add_parser("evaluate", help="Dice/IoU (overall, per region, per sensor) and area errors on a split")
    e.add_argument("--chips", required=True, help="chip-set folder")
    e.add_argument("--model", help="model.pt (or its folder); needed for --segmenter unet/both")
    e.add_argument("--segmenter", choices=["both", "unet", "ndsi"], default=None,
                   help="default: both with --model, ndsi without")
    e.add_argument("--split", default="test", help="train, val, test or all (default test)")
    e.add_argument("--out", help="folder for metrics.json, per_glacier.csv, summary.txt")
    e.add_argument("--device", default="cpu")
    e.add_argument("--batch-size", type=int, default=32)
    e.add_argument("--threshold", type=float, default=0.5, help="glacier probability threshold")
    e.set_defaults(func=_evaluate)


def _train_config(args: argparse.Namespace) -> TrainConfig:
    if args.config:
        from glacierwatch.cpu import cap_cpu_instructions

        whole = Config.from_toml(args.config)
        cap_cpu_instructions(whole.cpu_instructions)  # before the training loads PyTorch
        cfg = whole.train
    else:
        cfg = TrainConfig()
    over = {k: v for k, v in {
        "encoder": args.encoder, "decoder": args.decoder, "encoder_weights": args.encoder_weights, "learning_rate": args.lr,
        "weight_decay": args.weight_decay, "batch_size": args.batch_size, "epochs": args.epochs,
        "patience": args.patience, "max_minutes": args.max_minutes, "device": args.device, "seed": args.seed,
    }.items() if v is not None}
    if args.no_bf16:
        over["bf16"] = False
    return dataclasses.replace(cfg, **over)


def _train(args: argparse.Namespace) -> int:
    from glacierwatch.model.train import TABLE_I, cross_validate, train, train_grid

    config = _train_config(args)
    bands = [b.strip() for b in args.encoder_weights_bands.split(",")] if args.encoder_weights_bands else None
    kw = {"progress": not args.no_progress, "resume": not args.restart, "encoder_weights_bands": bands,
          "num_threads": args.threads}
    if args.grid:
        if args.grid_lr or args.grid_batch:
            lrs = args.grid_lr or [config.learning_rate]
            sizes = args.grid_batch or [config.batch_size]
            pairs = [(lr, b) for lr in lrs for b in sizes]
        else:
            pairs = list(TABLE_I)
        table = train_grid(args.chips, args.out, config=config, pairs=pairs, **kw)
        print(table[["learning_rate", "batch_size", "val_cross_entropy", "val_dice", "best_epoch"]].to_string(index=False))
        print(f"table: {args.out}/grid.md")
        return 0
    if args.cv:
        res = cross_validate(args.chips, args.out, folds=args.cv, config=config, **kw)
        print(f"{args.cv}-fold CV: U-Net Dice {res['unet_dice_mean']:.3f} ± {res['unet_dice_sd']:.3f}, "
              f"NDSI Dice {res['ndsi_dice_mean']:.3f} ± {res['ndsi_dice_sd']:.3f} (pooled: U-Net "
              f"{res['pooled']['unet']['dice']:.3f}, NDSI {res['pooled']['ndsi']['dice']:.3f}) -> {args.out}/cv.json")
        return 0
    path = train(args.chips, args.out, config=config, **kw)
    card = json.loads((path.parent / MODEL_CARD_FILE).read_text(encoding="utf-8"))
    m = card.get("metrics", {})
    line = f"model: {path} (fingerprint {card['fingerprint']}, {card['training']['stopped']}, best epoch {card['training']['best_epoch']})"
    print(line)
    if "unet" in m:
        print(f"test ({m['n_chips']} chips): U-Net Dice {m['unet']['dice']:.3f} IoU {m['unet']['iou']:.3f}; "
              f"NDSI>0.4 Dice {m['ndsi']['dice']:.3f} IoU {m['ndsi']['iou']:.3f}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from glacierwatch.model.evaluate import evaluate, format_summary

    seg = {"both": ("unet", "ndsi"), "unet": ("unet",), "ndsi": ("ndsi",), None: None}[args.segmenter]
    split = ["train", "val", "test"] if args.split == "all" else args.split
    result = evaluate(args.chips, args.model, split=split, segmenters=seg, threshold=args.threshold,
                      batch_size=args.batch_size, device=args.device, out_dir=args.out)
    print(format_summary(result))
    if args.out:
        print(f"written: {args.out}/metrics.json, per_glacier.csv")
    return 0
