"""U-Net training with the seed's settings, resumable, with a model card beside the checkpoint.

Outputs in ``OUT`` (``work/model``):

* ``model.pt``: the checkpoint with the lowest validation loss: ``{"format", "state_dict", "card", "epoch"}``;
* ``model_card.json``: the same card (channels, normalisation, chip size, encoder, sensors,
  fingerprints, settings, test metrics of the U-Net and of the NDSI baseline);
* ``last.pt``: the resume state (model, optimizer, epoch, step within the epoch, history, early-stopping
  counters), written atomically at every epoch end and every ``checkpoint_every_s`` seconds;
* ``metrics.csv``: one row per epoch (train loss/Dice, validation loss/Dice, seconds, images/s);
* ``evaluation/``: the test-split evaluation (see :mod:`glacierwatch.model.evaluate`).

Determinism: weights are initialised after ``torch.manual_seed(seed)``; the epoch's chip order and each
step's augmentation draws come from generators seeded by (seed, epoch) and (seed, epoch, step), so a
run resumed mid-epoch draws exactly what the uninterrupted run would have drawn. Training stops by
epochs (``epochs``) and early stopping (``patience`` epochs without a better validation loss), never by
the clock unless ``max_minutes`` is set (default 0 = off), so a slower machine trains the same model.
With ``deterministic`` (default) the run sets ``torch.use_deterministic_algorithms(True, warn_only=True)``
(restored afterwards) and cuDNN's deterministic mode: two runs on the same machine with the same thread
count give bit-identical weights (checked by the tests on CPU). Across machines or thread counts the
float summation order of oneDNN/BLAS kernels may differ (fp32 rounding, not different draws), and bf16
autocast is only used where the CPU has native bf16, so on CPUs the arithmetic can differ between
machines with and without AVX512-BF16/AMX; the draws (weights, order, augmentation) never do.

On CUDA the batches are prepared (indexed, augmented, pinned) by ``loader_workers`` threads while the GPU
runs the current step and copied with ``non_blocking=True``; the draws are the same as on CPU.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import hashlib
import json
import logging
import math
import platform
import time
from collections.abc import Generator, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from glacierwatch import __version__
from glacierwatch.chips.store import ChipSet, assign_folds
from glacierwatch.config import LrSchedule, TrainConfig, choices
from glacierwatch.cpu import cpu_capability
from glacierwatch.errors import ConfigError, InputError
from glacierwatch.features import NDSI_GLACIER_THRESHOLD, Normaliser
from glacierwatch.io import atomic_path, write_json, write_table
from glacierwatch.layout import MODEL_CARD_FILE, MODEL_FILE, MODEL_METRICS_FILE, MODEL_STATE_FILE
from glacierwatch.model.card import CARD_FORMAT, usage_fields, weights_fingerprint
from glacierwatch.model.evaluate import EvaluationResult, dice_iou, evaluate_arrays, summarise
from glacierwatch.model.predict import CHECKPOINT_FORMAT, amp_dtype, autocast, resolve_device
from glacierwatch.model.unet import DECODERS, ENCODERS, UNet, load_encoder_weights

log = logging.getLogger(__name__)

STATE_FORMAT = "glacierwatch-train-state/1"
#: Settings that must be equal to resume a run (others, e.g. epochs or device, may change).
RESUME_KEYS = ("encoder", "decoder", "encoder_weights", "learning_rate", "weight_decay", "batch_size", "p_flip", "p_blur",
               "blur_sigma", "seed", "lr_schedule", "crop_px", "confounder_weight")
#: Learning-rate schedules (:func:`learning_rate_at`).
LR_SCHEDULES = choices(LrSchedule)
#: Values of keys added after the first state format that give the runs written before them.
_OLD_RUN_DEFAULTS = {"decoder": "seed", "lr_schedule": "constant", "crop_px": 0, "confounder_weight": 1.0}
#: The rows of the seed's Table I (learning rate, batch size); (1e-5, 8) appears twice there.
TABLE_I = ((1e-3, 16), (1e-4, 16), (1e-5, 16), (1e-5, 8), (1e-5, 32))


def gaussian_kernel(sigma: float, size: int = 3) -> torch.Tensor:
    r = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    g = torch.exp(-0.5 * (r / sigma) ** 2)
    g = g / g.sum()
    return torch.outer(g, g)


def augment(x: torch.Tensor, y: torch.Tensor, gen: torch.Generator, *, p_flip: float, p_blur: float,
            sigma: float, crop_px: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Per chip, each with its probability: vertical flip, horizontal flip (image and mask), 3x3 Gaussian
    blur of the image only (the seed's code blurred the mask too); then, with ``crop_px`` > 0 and smaller
    than the chip, a ``crop_px`` x ``crop_px`` window of image and mask at a random place per chip."""
    n = x.shape[0]
    r = torch.rand(n, 3, generator=gen)
    v, h, b = r[:, 0] < p_flip, r[:, 1] < p_flip, r[:, 2] < p_blur
    if v.any():
        x = torch.where(v[:, None, None, None], x.flip(-2), x)
        y = torch.where(v[:, None, None], y.flip(-2), y)
    if h.any():
        x = torch.where(h[:, None, None, None], x.flip(-1), x)
        y = torch.where(h[:, None, None], y.flip(-1), y)
    if b.any() and sigma > 0:
        c = x.shape[1]
        k = gaussian_kernel(sigma).to(x.dtype)[None, None].expand(c, 1, 3, 3)
        xb = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), k, groups=c)
        x = torch.where(b[:, None, None, None], xb, x)
    height, width = x.shape[-2:]
    if 0 < crop_px < min(height, width):  # drawn after the flips, so crop_px = 0 draws exactly as before
        rows = torch.randint(0, height - crop_px + 1, (n,), generator=gen).tolist()
        cols = torch.randint(0, width - crop_px + 1, (n,), generator=gen).tolist()
        x = torch.stack([x[i, :, r0:r0 + crop_px, c0:c0 + crop_px] for i, (r0, c0) in enumerate(zip(rows, cols, strict=True))])
        y = torch.stack([y[i, r0:r0 + crop_px, c0:c0 + crop_px] for i, (r0, c0) in enumerate(zip(rows, cols, strict=True))])
    return x, y


def learning_rate_at(config: TrainConfig, epoch: int, step: int, steps_per_epoch: int) -> float:
    """The learning rate of one training step: ``config.learning_rate`` throughout (``constant``, the
    seed's), or decayed over the planned ``epochs`` along half a cosine to 1 % of it (``cosine``):
    large steps while far from a minimum, small ones at the end, so the last epoch's weights do not
    jump between minima (validation Dice then varies less from epoch to epoch)."""
    if config.lr_schedule == "constant":
        return float(config.learning_rate)
    if config.lr_schedule not in LR_SCHEDULES:
        raise ConfigError(f"train.lr_schedule must be one of {', '.join(LR_SCHEDULES)}, not {config.lr_schedule!r}")
    progress = min(1.0, (epoch * steps_per_epoch + step) / max(1, config.epochs * steps_per_epoch))
    floor = 0.01
    return float(config.learning_rate) * (floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress)))


def _step_generator(seed: int, epoch: int, step: int) -> torch.Generator:
    s = int(np.random.SeedSequence([seed, epoch, step]).generate_state(1, dtype=np.uint64)[0] % (2**63 - 1))
    return torch.Generator().manual_seed(s)


def _epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch, 7]).permutation(n)


def _batch_source(x: torch.Tensor, y: torch.Tensor, order: np.ndarray, steps: range, *, batch_size: int,
                  seed: int, epoch: int, config: TrainConfig, workers: int, pin: bool
                  ) -> Generator[tuple[int, int, torch.Tensor, torch.Tensor], None, None]:
    """(step, n images, augmented images, masks) for each step of one epoch, in order.

    With ``workers`` > 0 the next ``workers + 1`` batches are prepared by a thread pool while the caller
    runs the current one (for a GPU fed from the CPU), pinned when ``pin``; each batch is built from its own
    (seed, epoch, step) generator, so what is drawn does not depend on the threads.
    """
    n_steps_total = steps.stop

    def make(step: int) -> tuple[int, int, torch.Tensor, torch.Tensor]:
        idx = order[step * batch_size:(step + 1) * batch_size] if step < n_steps_total - 1 else order[step * batch_size:]
        idx_t = torch.from_numpy(idx)
        xb, yb = augment(x[idx_t], y[idx_t], _step_generator(seed, epoch, step), p_flip=config.p_flip,
                         p_blur=config.p_blur, sigma=config.blur_sigma, crop_px=config.crop_px)
        if pin:
            xb, yb = xb.pin_memory(), yb.pin_memory()
        return step, len(idx), xb, yb

    if workers <= 0:
        for step in steps:
            yield make(step)
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="train-batches") as pool:
        pending = [pool.submit(make, s) for s in steps[:workers + 1]]
        nxt = steps.start + len(pending)
        while pending:
            item = pending.pop(0).result()
            if nxt < steps.stop:
                pending.append(pool.submit(make, nxt))
                nxt += 1
            yield item


@contextlib.contextmanager
def deterministic_algorithms(enabled: bool) -> Iterator[None]:
    """``torch.use_deterministic_algorithms(True, warn_only=True)`` inside the block (operations with no
    deterministic implementation warn instead of failing), then the previous setting again."""
    if not enabled:
        yield
        return
    before, before_warn = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before, warn_only=before_warn)


def _settings_key(config: TrainConfig, data_fingerprint: str, channels: Sequence[str]) -> dict[str, Any]:
    d = dataclasses.asdict(config)
    key = {k: d[k] for k in RESUME_KEYS}
    key["data_fingerprint"] = data_fingerprint
    key["channels"] = list(channels)
    return key


def _save(obj: Any, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def _cpu_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in module.state_dict().items()}


def _write_metrics(history: list[dict[str, Any]], out: Path) -> None:
    if history:
        write_table(pd.DataFrame(history), out / MODEL_METRICS_FILE)


def data_fingerprint(cs: ChipSet, split: pd.Series) -> str:
    """The chip set's fingerprint combined with the split used (differs in cross-validation)."""
    h = hashlib.sha256(cs.fingerprint.encode())
    h.update(json.dumps(sorted(zip(cs.index["chip_id"].astype(str), split.astype(str), strict=False))).encode())
    return h.hexdigest()[:16]


def _new_totals() -> dict[str, Any]:
    """Running totals of the current epoch: loss x images, images, confusion counts (pixels), seconds."""
    return {"loss": 0.0, "n": 0, "tp": 0, "fp": 0, "fn": 0, "seconds": 0.0, "images": 0}


@dataclass
class TrainState:
    """A run's progress: what ``last.pt`` holds besides the weights and the optimizer state.

    ``epoch``: epochs finished; ``step``: steps finished in the current epoch; ``best_loss`` /
    ``best_epoch`` / ``bad_epochs``: early stopping (validation cross-entropy, 1-based epoch);
    ``elapsed_s``: training seconds of earlier calls (a resumed run adds its own); ``acc``: the
    current epoch's totals (:func:`_new_totals`); ``stopped``: ``"epochs"`` while training goes on,
    else why it stopped.
    """

    epoch: int = 0
    step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    best_loss: float = math.inf
    best_epoch: int = -1
    bad_epochs: int = 0
    elapsed_s: float = 0.0
    acc: dict[str, Any] = field(default_factory=_new_totals)
    encoder_report: Any = None
    stopped: str = "epochs"

    @classmethod
    def from_saved(cls, saved: Mapping[str, Any]) -> TrainState:
        return cls(epoch=int(saved["epoch"]), step=int(saved["step"]), history=list(saved["history"]),
                   best_loss=float(saved["best_loss"]), best_epoch=int(saved["best_epoch"]),
                   bad_epochs=int(saved["bad_epochs"]), elapsed_s=float(saved["elapsed_s"]), acc=dict(saved["acc"]),
                   encoder_report=saved.get("encoder_report"))


@dataclass
class _Run:
    """What stays fixed while one call trains (data, model, optimizer, where it writes, the clock)."""

    cs: ChipSet
    config: TrainConfig
    channels: list[str]
    key: dict[str, Any]
    dfp: str
    out: Path
    state_path: Path
    model_path: Path
    device: torch.device
    dtype: torch.dtype | None
    channels_last: bool
    model: UNet
    opt: torch.optim.Optimizer
    scaler: torch.amp.GradScaler | None
    x_tr: torch.Tensor
    y_tr: torch.Tensor
    x_va: torch.Tensor
    y_va: torch.Tensor
    rows_tr: pd.DataFrame
    rows_va: pd.DataFrame
    rows_all: pd.DataFrame
    loader_workers: int
    steps_per_epoch: int
    max_minutes: float
    progress: bool
    checkpoint_every_s: float
    t_start: float
    deadline: float | None
    last_checkpoint: float
    confounders: ConfounderWeight | None = None


@dataclass(frozen=True)
class ConfounderWeight:
    """``[train] confounder_weight``: pixels where the NDSI rule (NDSI > 0.4 is glacier) and the mask
    disagree weigh ``weight`` in the loss, the others 1. ``channel``: the index of ``ndsi`` in the
    model's inputs; ``threshold``: 0.4 in that channel's normalised units."""

    channel: int
    threshold: float
    weight: float

    @classmethod
    def for_training(cls, config: TrainConfig, channels: Sequence[str], normaliser: Normaliser
                     ) -> ConfounderWeight | None:
        if config.confounder_weight == 1.0:
            return None
        if "ndsi" not in channels:
            raise InputError(f"train.confounder_weight = {config.confounder_weight:g} needs the ndsi channel; "
                             f"the chips have {list(channels)}")
        i = list(channels).index("ndsi")
        low, high = normaliser.low[i], normaliser.high[i]
        return cls(i, (NDSI_GLACIER_THRESHOLD - low) / max(high - low, 1e-12), float(config.confounder_weight))

    def loss(self, logits: torch.Tensor, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        """The weighted mean cross-entropy of a batch (fp32)."""
        per_pixel = F.cross_entropy(logits, yb, reduction="none")
        rule = xb[:, self.channel].float() > self.threshold
        weights = torch.where(rule != (yb == 1), self.weight, 1.0).to(per_pixel.dtype)
        return (per_pixel * weights).sum() / weights.sum()


def train_step(model: torch.nn.Module, opt: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None,
               xb: torch.Tensor, yb: torch.Tensor, *, device: torch.device, dtype: torch.dtype | None,
               lr: float | None = None, confounders: ConfounderWeight | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimisation step on a batch (images ``xb``, class masks ``yb`` on ``device``): forward under
    autocast to ``dtype`` (None: fp32), cross-entropy in fp32 (weighted by ``confounders`` when given),
    backward (scaled when ``scaler``), Adam with learning rate ``lr`` (None: the optimizer's as it is).
    Returns (loss, logits)."""
    with autocast(device, dtype):
        logits = model(xb)
    if confounders is None:
        loss = F.cross_entropy(logits.float(), yb)
    else:
        loss = confounders.loss(logits.float(), xb, yb)
    opt.zero_grad(set_to_none=True)
    if lr is not None:
        for group in opt.param_groups:
            group["lr"] = lr
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
    else:
        loss.backward()
        opt.step()
    return loss, logits


def _counts(logits: torch.Tensor, y: torch.Tensor) -> tuple[int, int, int]:
    """(true positives, false positives, false negatives) of the glacier class (1) in pixels."""
    pred = logits.argmax(1) == 1
    t = y == 1
    return int((pred & t).sum()), int((pred & ~t).sum()), int((~pred & t).sum())


def _validate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int,
              device: torch.device, dtype: torch.dtype | None, channels_last: bool) -> tuple[float, float]:
    """Mean cross-entropy (per pixel) and micro Dice on (x, y), no augmentation."""
    model.eval()
    loss_sum, n_pix, tp, fp, fn = 0.0, 0, 0, 0, 0
    with torch.inference_mode():
        for s in range(0, x.shape[0], batch_size):
            xb = x[s:s + batch_size].to(device, non_blocking=True)
            yb = y[s:s + batch_size].to(device, non_blocking=True).long()
            if channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            with autocast(device, dtype):
                logits = model(xb)
            logits = logits.float()
            loss_sum += float(F.cross_entropy(logits, yb, reduction="sum"))
            n_pix += yb.numel()
            btp, bfp, bfn = _counts(logits, yb)
            tp, fp, fn = tp + btp, fp + bfp, fn + bfn
    model.train()
    return loss_sum / max(n_pix, 1), dice_iou(tp, fp, fn)[0]


def _save_state(run: _Run, st: TrainState, finished: bool = False, reason: str | None = None) -> None:
    """Write ``last.pt`` atomically. A finished run keeps only its bookkeeping (the weights are in
    model.pt): no 1 GB Adam state left behind."""
    _save({"format": STATE_FORMAT, "settings_key": run.key, "model": {} if finished else _cpu_state(run.model),
           "optimizer": {} if finished else run.opt.state_dict(), "epoch": st.epoch, "step": st.step,
           "history": st.history, "best_loss": st.best_loss, "best_epoch": st.best_epoch,
           "bad_epochs": st.bad_epochs, "elapsed_s": st.elapsed_s + time.perf_counter() - run.t_start,
           "acc": st.acc, "finished": finished, "stopped_reason": reason, "encoder_report": st.encoder_report},
          run.state_path)


def _card(run: _Run, st: TrainState, metrics: dict[str, Any] | None, weights: Mapping[str, torch.Tensor],
          reason: str | None) -> dict[str, Any]:
    return _make_card(cs=run.cs, config=run.config, channels=run.channels, weights=weights, dfp=run.dfp,
                      metrics=metrics, device=run.device, dtype=run.dtype, channels_last=run.channels_last,
                      history=st.history, best_epoch=st.best_epoch, best_loss=st.best_loss, reason=reason,
                      rows={"train": run.rows_tr, "val": run.rows_va}, enc_report=st.encoder_report,
                      max_minutes=run.max_minutes)


def _save_model(run: _Run, st: TrainState, weights: Mapping[str, torch.Tensor], epoch: int | None,
                reason: str | None, metrics: dict[str, Any] | None = None) -> None:
    """Write ``model.pt``: the weights with their card."""
    _save({"format": CHECKPOINT_FORMAT, "state_dict": weights, "card": _card(run, st, metrics, weights, reason),
           "epoch": epoch}, run.model_path)


def _train_epoch(run: _Run, st: TrainState) -> None:
    """Train the steps of epoch ``st.epoch`` from step ``st.step`` on; checkpoint ``last.pt`` every
    ``checkpoint_every_s`` seconds; stop mid-epoch at the time limit (``st.stopped``, state saved)."""
    config, bs, n = run.config, run.config.batch_size, len(run.x_tr)
    step0 = st.step
    order = _epoch_order(config.seed, st.epoch, n)
    bar = tqdm(total=run.steps_per_epoch, initial=step0, desc=f"epoch {st.epoch + 1}/{config.epochs}", unit="batch",
               disable=not run.progress, leave=False)
    t_epoch = time.perf_counter()
    acc = st.acc
    batches = contextlib.closing(_batch_source(
        run.x_tr, run.y_tr, order, range(step0, run.steps_per_epoch), batch_size=bs, seed=config.seed,
        epoch=st.epoch, config=config, workers=run.loader_workers, pin=run.device.type == "cuda"))
    with batches as batch_iter:
        for step, n_batch, xb, yb in batch_iter:
            st.step = step
            xb, yb = xb.to(run.device, non_blocking=True), yb.to(run.device, non_blocking=True)
            if run.channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            loss, logits = train_step(run.model, run.opt, run.scaler, xb, yb, device=run.device, dtype=run.dtype,
                                      lr=learning_rate_at(config, st.epoch, step, run.steps_per_epoch),
                                      confounders=run.confounders)
            with torch.no_grad():
                tp, fp, fn = _counts(logits, yb)
                acc["tp"] += tp
                acc["fp"] += fp
                acc["fn"] += fn
            acc["loss"] += float(loss.detach()) * n_batch
            acc["n"] += n_batch
            acc["images"] += n_batch
            dice = dice_iou(acc["tp"], acc["fp"], acc["fn"])[0]
            bar.set_postfix(loss=f"{acc['loss'] / acc['n']:.4f}", dice=f"{dice:.3f}")
            bar.update(1)
            now = time.perf_counter()
            if now - run.last_checkpoint > run.checkpoint_every_s and step + 1 < run.steps_per_epoch:
                st.step = step + 1  # the state after this step: a resumed run starts at the next one
                acc["seconds"] += now - t_epoch
                t_epoch = now
                _save_state(run, st)
                st.step = step
                run.last_checkpoint = now
            if run.deadline is not None and now > run.deadline and step + 1 < run.steps_per_epoch:
                st.stopped = "time limit"
                st.step = step + 1
                break
    bar.close()
    acc["seconds"] += time.perf_counter() - t_epoch
    if st.stopped != "epochs":
        _save_state(run, st)


def _end_epoch(run: _Run, st: TrainState) -> None:
    """After an epoch's steps: validation, the history row, ``model.pt`` when the validation loss
    improved, ``metrics.csv``, early stopping and the time limit, ``last.pt``."""
    config, acc = run.config, st.acc
    row: dict[str, Any] = {"epoch": st.epoch + 1, "train_loss": acc["loss"] / max(acc["n"], 1),
                           "train_dice": dice_iou(acc["tp"], acc["fp"], acc["fn"])[0]}
    if len(run.x_va):
        row["val_loss"], row["val_dice"] = _validate(run.model, run.x_va, run.y_va,
                                                     batch_size=max(config.batch_size, 16), device=run.device,
                                                     dtype=run.dtype, channels_last=run.channels_last)
    else:
        row["val_loss"], row["val_dice"] = row["train_loss"], row["train_dice"]
    row["seconds"] = acc["seconds"]
    row["train_images_per_s"] = acc["images"] / max(acc["seconds"], 1e-9)
    improved = row["val_loss"] < st.best_loss
    row["best"] = bool(improved)
    st.history.append(row)
    if run.progress or log.isEnabledFor(logging.INFO):
        msg = (f"epoch {row['epoch']}: train loss {row['train_loss']:.4f} dice {row['train_dice']:.3f} | "
               f"val loss {row['val_loss']:.4f} dice {row['val_dice']:.3f} | {row['train_images_per_s']:.1f} img/s"
               + (" *" if improved else ""))
        (tqdm.write if run.progress else log.info)(msg)
    if improved:
        st.best_loss, st.best_epoch, st.bad_epochs = row["val_loss"], st.epoch + 1, 0
        _save_model(run, st, _cpu_state(run.model), st.epoch + 1, None)
    else:
        st.bad_epochs += 1
    st.epoch += 1
    st.step = 0
    st.acc = _new_totals()
    _write_metrics(st.history, run.out)
    if st.bad_epochs >= config.patience:
        st.stopped = "early stopping"
    elif run.deadline is not None and time.perf_counter() > run.deadline and st.epoch < config.epochs:
        st.stopped = "time limit"
    _save_state(run, st)
    run.last_checkpoint = time.perf_counter()


def train(chips_dir: str | Path, out_dir: str | Path, *, config: TrainConfig | None = None, progress: bool = True,
          max_minutes: float | None = None, resume: bool = True, split_override: Mapping[str, str] | None = None,
          encoder_weights_bands: Sequence[str] | None = None, channels_last: bool | None = None,
          checkpoint_every_s: float = 120.0, evaluate_test: bool = True, num_threads: int | None = None,
          restart_if_changed: bool = False) -> Path:
    """Train the U-Net on a chip set; return the path of ``model.pt`` (the best checkpoint).

    ``max_minutes`` (default ``config.max_minutes``; 0 = none) caps the wall-clock time of this call.
    With ``resume`` (default) an unfinished run in ``out_dir`` with the same settings continues from its
    last state; a finished one is returned as is. A run with other settings (learning rate, batch size,
    augmentation, seed, encoder, data, channels) is an error, or is discarded with ``restart_if_changed``
    (what a pipeline that has decided to retrain wants). ``resume=False`` always starts over.
    ``split_override`` maps chip_id -> train/val/test/unused. ``checkpoint_every_s``: seconds between
    mid-epoch checkpoints of ``last.pt``. With ``config.deterministic`` the run uses deterministic
    algorithms (:func:`deterministic_algorithms`; the global setting is restored afterwards).

    The parts: :func:`_open_run` (settings, data, model, the state to resume), then per epoch
    :func:`_train_epoch` (steps: :func:`train_step`) and :func:`_end_epoch` (validation, checkpoints),
    then :func:`_finish` (test metrics, model card).
    """
    config = config or TrainConfig()
    if config.deterministic and torch.cuda.is_available():
        # cuBLAS is deterministic only with a fixed workspace; must be set before its first use
        import os
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    with deterministic_algorithms(config.deterministic):
        opened = _open_run(chips_dir, out_dir, config=config, progress=progress, max_minutes=max_minutes,
                           resume=resume, split_override=split_override, encoder_weights_bands=encoder_weights_bands,
                           channels_last=channels_last, checkpoint_every_s=checkpoint_every_s,
                           num_threads=num_threads, restart_if_changed=restart_if_changed)
        if isinstance(opened, Path):  # finished earlier
            return opened
        run, st = opened
        run.model.train()
        while st.epoch < config.epochs and st.stopped == "epochs":
            _train_epoch(run, st)
            if st.stopped != "epochs":
                break
            _end_epoch(run, st)
        if st.stopped == "epochs":
            st.stopped = "max epochs"
        return _finish(run, st, chips_dir=chips_dir, evaluate_test=evaluate_test)


def _resume_state(out: Path, state_path: Path, model_path: Path, key: dict[str, Any], *, resume: bool,
                  restart_if_changed: bool) -> dict[str, Any] | Path | None:
    """The saved state of an unfinished run with the same settings (None: start afresh), or the path of
    the model of a finished one. Removes an earlier run's files when it is not resumed."""
    if not state_path.exists():
        return None
    if not resume:
        state_path.unlink()
        model_path.unlink(missing_ok=True)
        return None
    state: dict[str, Any] = torch.load(state_path, map_location="cpu", weights_only=True)
    if isinstance(state.get("settings_key"), dict):  # runs from before an option: its old value
        for option, old_value in _OLD_RUN_DEFAULTS.items():
            state["settings_key"].setdefault(option, old_value)
    if state.get("format") != STATE_FORMAT or state.get("settings_key") != key:
        old = state.get("settings_key", {})
        diff = sorted(k for k in set(old) | set(key) if old.get(k) != key.get(k))
        if not restart_if_changed:
            raise ConfigError(f"{out} holds a training run with other settings ({', '.join(diff)}); "
                              "train into another folder or pass --restart to start over")
        log.warning("train: %s holds a run with other settings (%s); starting over", out, ", ".join(diff))
        state_path.unlink()
        model_path.unlink(missing_ok=True)
        return None
    if state.get("finished"):
        if model_path.exists():
            log.info("train: %s already finished (%s); nothing to do (--restart to train again)",
                     out, state.get("stopped_reason"))
            return model_path
        log.warning("train: %s finished earlier but its model.pt is gone; training again", out)
        return None
    log.info("train: resuming %s at epoch %d, step %d", out, state["epoch"] + 1, state["step"])
    return state


def _open_run(chips_dir: str | Path, out_dir: str | Path, *, config: TrainConfig, progress: bool,
              max_minutes: float | None, resume: bool, split_override: Mapping[str, str] | None,
              encoder_weights_bands: Sequence[str] | None, channels_last: bool | None, checkpoint_every_s: float,
              num_threads: int | None, restart_if_changed: bool) -> tuple[_Run, TrainState] | Path:
    """Check the settings, load the chips, build the model and optimizer, and restore the state of
    an unfinished run (see :func:`train`); a finished run's ``model.pt`` path instead."""
    if config.encoder not in ENCODERS:
        raise ConfigError(f"train.encoder must be one of {sorted(ENCODERS)}, not {config.encoder!r}")
    if config.decoder not in DECODERS:
        raise ConfigError(f"train.decoder must be one of {sorted(DECODERS)}, not {config.decoder!r}")
    if config.lr_schedule not in LR_SCHEDULES:
        raise ConfigError(f"train.lr_schedule must be one of {', '.join(LR_SCHEDULES)}, not {config.lr_schedule!r}")
    if config.batch_size < 1 or config.learning_rate <= 0 or config.epochs < 1:
        raise ConfigError("train: batch_size and epochs must be >= 1 and learning_rate > 0")
    if num_threads:
        torch.set_num_threads(int(num_threads))
    max_minutes = config.max_minutes if max_minutes is None else max_minutes
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cs = ChipSet(chips_dir)
    channels = cs.channels
    split = cs.index["split"].astype(str)
    if split_override is not None:
        split = cs.index["chip_id"].map(split_override).fillna("unused").astype(str)
    dfp = data_fingerprint(cs, split)
    key = _settings_key(config, dfp, channels)
    state_path, model_path = out / MODEL_STATE_FILE, out / MODEL_FILE

    saved = _resume_state(out, state_path, model_path, key, resume=resume, restart_if_changed=restart_if_changed)
    if isinstance(saved, Path):
        return saved
    if saved is None:  # a fresh run: nothing of an earlier run in this folder may be taken for ours
        for stale in (model_path, out / MODEL_CARD_FILE, out / MODEL_METRICS_FILE):
            stale.unlink(missing_ok=True)
    device = resolve_device(config.device)
    dtype = amp_dtype(device, None) if config.bf16 else None
    use_cl = True if channels_last is None else bool(channels_last)
    norm = cs.normaliser
    rows_all = cs.index.assign(split=split.to_numpy())

    def load(name: str) -> tuple[torch.Tensor, torch.Tensor, pd.DataFrame]:
        rows = rows_all[rows_all["split"] == name].reset_index(drop=True)
        imgs, msks = cs.load_rows(rows)
        return torch.from_numpy(norm.apply(imgs)), torch.from_numpy(msks.astype(np.int64)), rows

    x_tr, y_tr, rows_tr = load("train")
    x_va, y_va, rows_va = load("val")
    if len(x_tr) < 2:
        raise InputError(f"{chips_dir}: {len(x_tr)} training chip(s); at least 2 are needed")
    if len(x_va) == 0:
        log.warning("train: no validation chips; the checkpoint is chosen on the training loss")
    loader_workers = max(0, int(config.loader_workers)) if device.type == "cuda" else 0
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = not config.deterministic
        torch.backends.cudnn.deterministic = bool(config.deterministic)

    torch.manual_seed(config.seed)
    model = UNet(config.encoder, in_channels=len(channels), num_classes=2, decoder=config.decoder)
    enc_report = None
    if config.encoder_weights and saved is None:
        try:
            enc_report = load_encoder_weights(model, config.encoder_weights, channels=channels,
                                              source_bands=encoder_weights_bands)
        except (OSError, ValueError, RuntimeError) as exc:
            raise InputError(f"encoder weights {config.encoder_weights}: {exc}") from exc
    model.to(device)
    if use_cl:
        model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # torch's Module.to overloads omit memory_format
    try:  # the fused kernel is much faster than the per-tensor loop (20x for ResNet-50 on CPU)
        opt = torch.optim.Adam(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay,
                               fused=device.type in ("cpu", "cuda"))
    except (RuntimeError, TypeError):
        opt = torch.optim.Adam(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    scaler = torch.amp.GradScaler("cuda") if (device.type == "cuda" and dtype == torch.float16) else None

    st = TrainState(encoder_report=enc_report)
    if saved is not None:
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["optimizer"])
        st = TrainState.from_saved(saved)
    n, bs = len(x_tr), config.batch_size
    steps_per_epoch = max(1, n // bs if n % bs == 1 else math.ceil(n / bs))  # no batch of 1 (batch norm)
    t_start = time.perf_counter()
    deadline = t_start + 60 * max_minutes if max_minutes and max_minutes > 0 else None
    run = _Run(cs=cs, config=config, channels=list(channels), key=key, dfp=dfp, out=out, state_path=state_path,
               model_path=model_path, device=device, dtype=dtype, channels_last=use_cl, model=model, opt=opt,
               scaler=scaler, x_tr=x_tr, y_tr=y_tr, x_va=x_va, y_va=y_va, rows_tr=rows_tr, rows_va=rows_va,
               rows_all=rows_all, loader_workers=loader_workers, steps_per_epoch=steps_per_epoch,
               max_minutes=max_minutes, progress=progress, checkpoint_every_s=checkpoint_every_s, t_start=t_start,
               deadline=deadline, last_checkpoint=t_start,
               confounders=ConfounderWeight.for_training(config, channels, norm))
    return run, st


def _finish(run: _Run, st: TrainState, *, chips_dir: str | Path, evaluate_test: bool) -> Path:
    """The end of a run: ``model.pt`` with the best weights, their test metrics and the final card
    (``model_card.json``), the evaluation folder, and ``last.pt`` marked finished."""
    stopped, model_path = st.stopped, run.model_path
    if not model_path.exists():
        # stopped (time limit) before the first epoch ended: keep what there is
        _save_model(run, st, _cpu_state(run.model), st.epoch, stopped)
    ckpt = torch.load(model_path, map_location="cpu", weights_only=True)
    best = UNet(run.config.encoder, in_channels=len(run.channels), num_classes=2, decoder=run.config.decoder)
    best.load_state_dict(ckpt["state_dict"])
    best.eval()
    metrics: dict[str, Any] = {"split": "test", "n_chips": 0, "note": "no test chips"}
    test_rows = run.rows_all[run.rows_all["split"] == "test"].reset_index(drop=True)
    if evaluate_test and len(test_rows):
        imgs, msks = run.cs.load_rows(test_rows)
        provisional = _card(run, st, None, ckpt["state_dict"], stopped)
        per_chip = evaluate_arrays(imgs, msks, test_rows, run.channels, model=best, card=provisional,
                                   batch_size=max(run.config.batch_size, 16), device=str(run.device),
                                   bf16=run.dtype is not None)
        summ = summarise(per_chip)
        metrics = {"split": "test", "n_chips": int(len(test_rows)),
                   **{name: s["overall"] for name, s in summ.items()},
                   "per_region": {name: {r: m["dice"] for r, m in s["per_region"].items()} for name, s in summ.items()},
                   "per_sensor": {name: {r: m["dice"] for r, m in s["per_sensor"].items()} for name, s in summ.items()}}
        EvaluationResult(per_chip=per_chip, summary={"split": "test", "n_chips": int(len(test_rows)),
                                                     "chipset": str(run.cs.path), "chipset_fingerprint": run.cs.fingerprint,
                                                     "threshold": 0.5, "segmenters": summ},
                         split="test").write(run.out / "evaluation")
    elif not evaluate_test:
        metrics = {"split": "test", "n_chips": int(len(test_rows)), "note": "not evaluated"}
    final_card = _card(run, st, metrics, ckpt["state_dict"], stopped)
    _save({"format": CHECKPOINT_FORMAT, "state_dict": ckpt["state_dict"], "card": final_card,
           "epoch": ckpt.get("epoch")}, model_path)
    write_json(run.out / MODEL_CARD_FILE, final_card)
    st.step = 0
    _save_state(run, st, finished=True, reason=stopped)
    log.info("train: %s (best epoch %d, val loss %.4f) -> %s", stopped, st.best_epoch, st.best_loss, model_path)
    return model_path


def _make_card(*, cs: ChipSet, config: TrainConfig, channels: Sequence[str], weights: Mapping[str, torch.Tensor],
               dfp: str, metrics: dict[str, Any] | None, device: torch.device, dtype: torch.dtype | None,
               channels_last: bool, history: list[dict[str, Any]], best_epoch: int, best_loss: float,
               reason: str | None, rows: Mapping[str, pd.DataFrame], enc_report: Any,
               max_minutes: float | None) -> dict[str, Any]:
    best = next((h for h in history if h["epoch"] == best_epoch), None)
    card = {
        "format": CARD_FORMAT,
        "model": "unet",
        "encoder": config.encoder,
        "decoder": config.decoder,
        "in_channels": len(channels),
        "num_classes": 2,
        "class_names": ["background", "glacier"],
        "channels": list(channels),
        "channel_units": {c: cs.header.get("units", {}).get(c, "") for c in channels},
        "normalisation": cs.header["normalisation"],
        "input": "physical-unit channels (features.compute_channels) -> fill_nan -> resize_stack to chip_size "
                 "-> Normaliser.from_dict(card['normalisation']).apply -> model; output class 1 = glacier",
        "chip_size": int(cs.size),
        "sensors": list(cs.header.get("sensors", [])),
        "regions": sorted({str(r) for r in rows["train"]["region"]}) if len(rows["train"]) else [],
        "fingerprint": weights_fingerprint(weights),
        "data_fingerprint": dfp,
        "chipset": str(cs.path.resolve()),
        "chipset_fingerprint": cs.fingerprint,
        "n_chips": {k: int(len(v)) for k, v in rows.items()},
        "settings": {**dataclasses.asdict(config), "max_minutes": max_minutes, "device": str(device),
                     "autocast": str(dtype).replace("torch.", "") if dtype else "none",
                     "channels_last": channels_last, "threads": torch.get_num_threads(),
                     "encoder_weights_report": enc_report},
        "training": {"best_epoch": best_epoch, "best_val_loss": best_loss if math.isfinite(best_loss) else None,
                     "best_val_dice": best["val_dice"] if best else None, "epochs_run": len(history),
                     "stopped": reason, "seconds": float(sum(h.get("seconds", 0.0) for h in history))},
        "metrics": metrics or {},
        "software": {"glacierwatch": __version__, "torch": str(torch.__version__), "python": platform.python_version(),
                     "cpu_capability": cpu_capability(), "machine": platform.machine()},
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    card.update(usage_fields(card))  # intended use and limitations, with the sensors and regions seen
    # plain JSON types only (the checkpoint is loaded with weights_only=True)
    return json.loads(json.dumps(card, default=str))


# ---------------------------------------------------------------- Table I grid and cross-validation

def train_grid(chips_dir: str | Path, out_dir: str | Path, *, config: TrainConfig | None = None,
               pairs: Sequence[tuple[float, int]] | None = None, progress: bool = True,
               max_minutes: float | None = None, **kwargs: Any) -> pd.DataFrame:
    """The seed's Table I: best validation cross-entropy for each (learning rate, batch size).

    ``pairs`` default: Table I's rows. Each run trains into ``OUT/runs/lr<lr>_bs<bs>/`` (resumable);
    ``max_minutes`` applies to each run. Writes ``OUT/grid.csv`` and ``OUT/grid.md``.
    """
    config = config or TrainConfig()
    out = Path(out_dir)
    rows = []
    for lr, bsz in list(dict.fromkeys(pairs or TABLE_I)):
        cfg = dataclasses.replace(config, learning_rate=float(lr), batch_size=int(bsz))
        run = out / "runs" / f"lr{lr:g}_bs{bsz}"
        t0 = time.perf_counter()
        path = train(chips_dir, run, config=cfg, progress=progress, max_minutes=max_minutes,
                     evaluate_test=False, **kwargs)
        card = json.loads((path.parent / MODEL_CARD_FILE).read_text(encoding="utf-8"))
        tr = card["training"]
        rows.append({"learning_rate": lr, "batch_size": bsz, "val_cross_entropy": tr["best_val_loss"],
                     "val_dice": tr["best_val_dice"], "best_epoch": tr["best_epoch"], "epochs_run": tr["epochs_run"],
                     "stopped": tr["stopped"], "minutes": (time.perf_counter() - t0) / 60, "run": str(run)})
    table = pd.DataFrame(rows)
    write_table(table, out / "grid.csv")
    lines = ["| Learning rate | Batch size | Cross-entropy loss |", "|---|---|---|"]
    best = table["val_cross_entropy"].idxmin() if len(table) else None
    for i, r in table.iterrows():
        b = "**" if i == best else ""
        lr_text = np.format_float_positional(float(r["learning_rate"]), trim="-")  # 0.00001 as in the paper
        lines.append(f"| {b}{lr_text}{b} | {b}{r['batch_size']}{b} | {b}{r['val_cross_entropy']:.2f}{b} |")
    lines += ["", f"Validation cross-entropy (lowest over epochs) on {chips_dir}; encoder {config.encoder}."]
    (out / "grid.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return table


def cross_validate(chips_dir: str | Path, out_dir: str | Path, *, folds: int = 5, config: TrainConfig | None = None,
                   val_fraction: float = 0.15, progress: bool = True, max_minutes: float | None = None,
                   **kwargs: Any) -> dict[str, Any]:
    """K-fold cross-validation by glacier (folds stratified by region): U-Net and NDSI Dice per fold.

    For fold k the test set is fold k; ``val_fraction`` of the other glaciers (at least one) choose the
    checkpoint. Writes ``OUT/fold<k>/`` (each a training run), ``OUT/cv.csv`` and ``OUT/cv.json``.
    """
    config = config or TrainConfig()
    cs = ChipSet(chips_dir)
    groups = cs.index[["glims_id", "region"]].drop_duplicates("glims_id")
    fold_of = assign_folds(groups, folds=folds, seed=config.seed)
    out = Path(out_dir)
    rows, pooled = [], []
    for k in range(folds):
        rest = [g for g in groups["glims_id"] if fold_of[g] != k]
        rng = np.random.default_rng([config.seed, k])
        n_val = max(1, int(round(val_fraction * len(rest))))
        val = set(rng.choice(rest, size=min(n_val, len(rest) - 2), replace=False)) if len(rest) > 3 else set()
        gsplit = {g: "test" if fold_of[g] == k else "val" if g in val else "train" for g in groups["glims_id"]}
        override = dict(zip(cs.index["chip_id"], cs.index["glims_id"].map(gsplit), strict=False))
        path = train(chips_dir, out / f"fold{k}", config=config, progress=progress, max_minutes=max_minutes,
                     split_override=override, **kwargs)
        card = json.loads((path.parent / MODEL_CARD_FILE).read_text(encoding="utf-8"))
        m = card["metrics"]
        per_chip = pd.read_csv(path.parent / "evaluation" / "per_glacier.csv")
        per_chip["fold"] = k
        pooled.append(per_chip)
        rows.append({"fold": k, "n_test": m.get("n_chips", 0), "n_train": card["n_chips"]["train"],
                     "n_val": card["n_chips"]["val"], "unet_dice": m.get("unet", {}).get("dice"),
                     "ndsi_dice": m.get("ndsi", {}).get("dice"), "unet_iou": m.get("unet", {}).get("iou"),
                     "ndsi_iou": m.get("ndsi", {}).get("iou"), "best_epoch": card["training"]["best_epoch"],
                     "epochs_run": card["training"]["epochs_run"]})
    table = pd.DataFrame(rows)
    write_table(table, out / "cv.csv")
    all_chips = pd.concat(pooled, ignore_index=True)
    summ = summarise(all_chips)
    result = {
        "folds": folds, "chipset": str(cs.path), "chipset_fingerprint": cs.fingerprint,
        "encoder": config.encoder, "learning_rate": config.learning_rate, "batch_size": config.batch_size,
        "per_fold": rows,
        "unet_dice_mean": float(table["unet_dice"].mean()), "unet_dice_sd": float(table["unet_dice"].std(ddof=1)),
        "ndsi_dice_mean": float(table["ndsi_dice"].mean()), "ndsi_dice_sd": float(table["ndsi_dice"].std(ddof=1)),
        "pooled": {name: s["overall"] for name, s in summ.items()},
    }
    write_json(out / "cv.json", result)
    write_table(all_chips, out / "cv_per_chip.csv")
    return result


__all__ = ["TABLE_I", "TrainState", "augment", "cross_validate", "train", "train_grid", "train_step"]
