"""Inference speed-ups of the time-series segmenter give the same numbers: BatchNorm folded into the
convolutions, bf16 weights, near-equal batches (glacierwatch.model.predict)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from glacierwatch.features import DEFAULT_CHANNELS, Normaliser, compute_channels, fill_nan
from glacierwatch.model import UNet, predict_proba, weights_fingerprint
from glacierwatch.model.predict import batch_bounds, bf16_supported, fold_batchnorm, prepare_for_inference
from glacierwatch.timeseries import UNetSegmenter

# torch on 2 threads, whatever the machine (timings and bf16 paths as in CI)
pytestmark = pytest.mark.usefixtures("torch_two_threads")


def _unet(encoder: str, seed: int = 0) -> UNet:
    """A U-Net whose BatchNorms have non-trivial statistics and affine parameters (fresh ones are the
    identity, which would hide a wrong fold)."""
    torch.manual_seed(seed)
    model = UNet(encoder=encoder, in_channels=len(DEFAULT_CHANNELS), num_classes=2)
    gen = torch.Generator().manual_seed(seed + 1)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            n = module.num_features
            module.running_mean.copy_(torch.rand(n, generator=gen) * 0.4 - 0.2)
            module.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
            module.weight.data.copy_(torch.rand(n, generator=gen) + 0.5)
            module.bias.data.copy_(torch.rand(n, generator=gen) * 0.2 - 0.1)
    return model.eval()


def _batchnorms(model: nn.Module) -> int:
    return sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())


@pytest.mark.parametrize("encoder", ["resnet18", "resnet50"])
def test_fold_batchnorm_keeps_the_function(encoder: str) -> None:
    model = _unet(encoder)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    n_bn = _batchnorms(model)
    folded = fold_batchnorm(model)
    # every conv -> BN pair is folded; the decoder's five BNs (after ConvTranspose -> ReLU) stay
    assert _batchnorms(folded) == 5 and n_bn > 5
    assert all(isinstance(b.bn, nn.BatchNorm2d) for b in folded.decoder)
    assert isinstance(folded.encoder.bn1, nn.Identity) and folded.encoder.conv1.bias is not None
    x = torch.rand(2, len(DEFAULT_CHANNELS), 64, 64, generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        ref, out = model(x), folded(x)
    scale = float(ref.abs().max())
    assert float((ref - out).abs().max()) <= 1e-5 * max(scale, 1.0)
    # the original is left as it was
    assert _batchnorms(model) == n_bn
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_prepared_model_gives_the_unprepared_probabilities() -> None:
    model = _unet("resnet18", seed=4)
    x = np.random.default_rng(5).random((5, len(DEFAULT_CHANNELS), 64, 64), dtype=np.float32)
    ref32 = predict_proba(model, x, bf16=False)
    fp32 = prepare_for_inference(model, bf16=False)
    assert next(fp32.parameters()).dtype == torch.float32
    assert np.abs(predict_proba(fp32, x, bf16=False) - ref32).max() <= 1e-5
    prepared = prepare_for_inference(model, bf16=True)
    if bf16_supported(torch.device("cpu")):
        assert next(prepared.parameters()).dtype == torch.bfloat16
        ref16 = predict_proba(model, x, bf16=True)  # the unprepared model under bf16 autocast
        out = predict_proba(prepared, x)
        # bf16 keeps 8 bits of mantissa: probabilities agree to about 1e-3 (random weights give
        # probabilities near 0.5 with a spread of ~0.006, so also compare with that spread)
        assert np.abs(out - ref16).max() <= 5e-3 and np.abs(out - ref32).max() <= 5e-3
        assert np.abs(out - ref32).mean() <= 0.2 * float(ref32.std())
    else:
        assert next(prepared.parameters()).dtype == torch.float32


def test_batches_are_near_equal_and_do_not_change_the_result() -> None:
    for n in range(0, 70):
        for size in (1, 3, 32):
            bounds = batch_bounds(n, size)
            assert len(bounds) == math.ceil(n / size)
            # contiguous, covering 0..n
            edges = [0] + [b for _, b in bounds]
            assert [a for a, _ in bounds] == edges[:-1] and edges[-1] == n
            sizes = [b - a for a, b in bounds]
            assert all(1 <= s <= size for s in sizes) and (not sizes or max(sizes) - min(sizes) <= 1)
    assert batch_bounds(33, 32) == [(0, 16), (16, 33)]
    model = fold_batchnorm(_unet("resnet18", seed=6))
    x = np.random.default_rng(7).random((7, len(DEFAULT_CHANNELS), 32, 32), dtype=np.float32)
    whole = predict_proba(model, x, batch_size=7, bf16=False)
    assert np.abs(predict_proba(model, x, batch_size=3, bf16=False) - whole).max() <= 1e-6


def test_unet_segmenter_runs_the_prepared_model(tmp_path: Path) -> None:
    model = _unet("resnet18", seed=8)
    state = model.state_dict()
    lows, highs = [0.0] * 6 + [250.0, 0.0, -1.0, -1.0, -10.0], [1.0] * 6 + [300.0, 5000.0, 1.0, 1.0, 10.0]
    card = {
        "format": "glacierwatch-model-card/1", "channels": list(DEFAULT_CHANNELS),
        "normalisation": Normaliser(DEFAULT_CHANNELS, tuple(lows), tuple(highs)).to_dict(),
        "chip_size": 32, "encoder": "resnet18", "in_channels": len(DEFAULT_CHANNELS), "num_classes": 2,
        "fingerprint": weights_fingerprint(state), "data_fingerprint": "test", "settings": {}, "metrics": {},
        "sensors": ["L8"],
    }
    torch.save({"state_dict": state, "card": card}, tmp_path / "model.pt")
    seg = UNetSegmenter(str(tmp_path / "model.pt"), batch_size=4, bf16=False)
    assert _batchnorms(seg.model) == 5 and seg.fingerprint == card["fingerprint"]
    rng = np.random.default_rng(9)
    bands = {b: rng.random((6, 32, 32), dtype=np.float32) * 0.8 for b in ("blue", "green", "red", "nir08",
                                                                           "swir16", "swir22")}
    bands["lwir"] = 260.0 + 20.0 * rng.random((6, 32, 32), dtype=np.float32)
    dem = np.linspace(2000.0, 3000.0, 32 * 32, dtype=np.float32).reshape(32, 32)
    out = seg(bands, dem, glims_id="G000000E00000N", dates=list(range(6)))
    x = Normaliser.from_dict(card["normalisation"]).apply(fill_nan(compute_channels(bands, DEFAULT_CHANNELS, dem=dem)))
    ref = predict_proba(model, x, bf16=False)
    assert out.shape == (6, 32, 32) and np.abs(out - ref).max() <= 1e-5


def test_light_decoder_folds_every_batchnorm() -> None:
    torch.manual_seed(0)
    model = UNet(encoder="resnet18", in_channels=len(DEFAULT_CHANNELS), num_classes=2, decoder="light")
    gen = torch.Generator().manual_seed(1)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.copy_(torch.rand(module.num_features, generator=gen) * 0.4 - 0.2)
            module.running_var.copy_(torch.rand(module.num_features, generator=gen) + 0.5)
    model.eval()
    folded = fold_batchnorm(model)
    assert _batchnorms(folded) == 0  # its BNs all follow a Conv2d
    x = torch.rand(2, len(DEFAULT_CHANNELS), 64, 64, generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        ref, out = model(x), folded(x)
    assert float((ref - out).abs().max()) <= 1e-5 * max(float(ref.abs().max()), 1.0)


def test_segmenter_prefetching_inputs_gives_the_same_probabilities(tmp_path: Path) -> None:
    model = _unet("resnet18", seed=10)
    state = model.state_dict()
    lows, highs = [0.0] * 6 + [250.0, 0.0, -1.0, -1.0, -10.0], [1.0] * 6 + [300.0, 5000.0, 1.0, 1.0, 10.0]
    card = {
        "format": "glacierwatch-model-card/1", "channels": list(DEFAULT_CHANNELS),
        "normalisation": Normaliser(DEFAULT_CHANNELS, tuple(lows), tuple(highs)).to_dict(),
        "chip_size": 32, "encoder": "resnet18", "in_channels": len(DEFAULT_CHANNELS), "num_classes": 2,
        "fingerprint": weights_fingerprint(state), "data_fingerprint": "test", "settings": {}, "metrics": {},
        "sensors": ["L8"],
    }
    torch.save({"state_dict": state, "card": card}, tmp_path / "model.pt")
    plain = UNetSegmenter(str(tmp_path / "model.pt"), batch_size=3, bf16=False)
    ahead = UNetSegmenter(str(tmp_path / "model.pt"), batch_size=3, bf16=False, prefetch_workers=2)
    assert plain.prefetch_workers == 0 and ahead.prefetch_workers == 2  # CPU default: none
    rng = np.random.default_rng(11)
    bands = {b: rng.random((8, 32, 32), dtype=np.float32) * 0.8 for b in ("blue", "green", "red", "nir08",
                                                                           "swir16", "swir22")}
    bands["lwir"] = 260.0 + 20.0 * rng.random((8, 32, 32), dtype=np.float32)
    bands["red"][2, :5, :5] = np.nan  # filled per batch as for the whole call
    dem = np.linspace(2000.0, 3000.0, 32 * 32, dtype=np.float32).reshape(32, 32)
    a = plain(bands, dem, glims_id="G000000E00000N", dates=list(range(8)))
    b = ahead(bands, dem, glims_id="G000000E00000N", dates=list(range(8)))
    assert a.shape == (8, 32, 32) and np.abs(a - b).max() <= 1e-6
