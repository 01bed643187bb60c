"""The U-Net, its checkpoint and model card, training (resume, time limit, grid), prediction and evaluation.

Fast tests use ResNet-18 on 32x32 / 64x64 toy chips (glacierwatch.chips.testing); the convergence
checks on a synthetic world and the real Norway chips are marked slow.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from checks import nonempty

from glacierwatch.chips import ChipSet
from glacierwatch.chips.testing import write_toy_chipset
from glacierwatch.config import ChipsConfig, TrainConfig
from glacierwatch.errors import ChannelMismatchError, ConfigError, InputError
from glacierwatch.model import (
    UNet,
    check_channels,
    evaluate,
    load_checkpoint,
    load_encoder_weights,
    predict_proba,
    read_checkpoint,
    train,
    train_grid,
    weights_fingerprint,
)
from glacierwatch.model.card import REQUIRED_KEYS
from glacierwatch.model.train import augment

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
NORWAY = SHARED / "glacierview_training_chips_norway"
FAST = TrainConfig(encoder="resnet18", learning_rate=1e-3, batch_size=8, epochs=2, patience=5)


# torch on 2 threads, whatever the machine (timings and bf16 paths as in CI)
pytestmark = pytest.mark.usefixtures("torch_two_threads")


@pytest.fixture(scope="module")
def chips32(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("chips32")
    write_toy_chipset(out, 30, size=32, seed=0)
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, chips32: Path) -> Path:
    out = tmp_path_factory.mktemp("model")
    return train(chips32, out, config=FAST, progress=False)


# ---------------------------------------------------------------- architecture

def torchvision_resnet_state_dict(depth: int = 50, in_ch: int = 3, seed: int = 0) -> dict[str, torch.Tensor]:
    """A state dict with torchvision's ResNet key names and shapes, written out independently of our
    module (torchvision itself is not installed here): conv1/bn1, layer1..4 blocks, downsample, fc."""
    g = torch.Generator().manual_seed(seed)
    sd: dict[str, torch.Tensor] = {}

    def bn(prefix: str, c: int) -> None:
        sd[f"{prefix}.weight"] = torch.rand(c, generator=g)
        sd[f"{prefix}.bias"] = torch.randn(c, generator=g)
        sd[f"{prefix}.running_mean"] = torch.randn(c, generator=g)
        sd[f"{prefix}.running_var"] = torch.rand(c, generator=g) + 0.5
        sd[f"{prefix}.num_batches_tracked"] = torch.tensor(1234)

    def conv(name: str, cout: int, cin: int, k: int) -> None:
        sd[name] = torch.randn(cout, cin, k, k, generator=g)

    blocks = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3)}[depth]
    bottleneck = depth >= 50
    exp = 4 if bottleneck else 1
    conv("conv1.weight", 64, in_ch, 7)
    bn("bn1", 64)
    inplanes = 64
    for li, (n, planes) in enumerate(zip(blocks, (64, 128, 256, 512), strict=False), start=1):
        for b in range(n):
            p = f"layer{li}.{b}"
            if bottleneck:
                conv(f"{p}.conv1.weight", planes, inplanes, 1)
                bn(f"{p}.bn1", planes)
                conv(f"{p}.conv2.weight", planes, planes, 3)
                bn(f"{p}.bn2", planes)
                conv(f"{p}.conv3.weight", planes * 4, planes, 1)
                bn(f"{p}.bn3", planes * 4)
            else:
                conv(f"{p}.conv1.weight", planes, inplanes, 3)
                bn(f"{p}.bn1", planes)
                conv(f"{p}.conv2.weight", planes, planes, 3)
                bn(f"{p}.bn2", planes)
            if b == 0 and (li > 1 or inplanes != planes * exp):
                conv(f"{p}.downsample.0.weight", planes * exp, inplanes, 1)
                bn(f"{p}.downsample.1", planes * exp)
            inplanes = planes * exp
    sd["fc.weight"] = torch.randn(1000, 512 * exp, generator=g)
    sd["fc.bias"] = torch.randn(1000, generator=g)
    return sd


def test_default_unet_shapes_and_bottleneck() -> None:
    net = UNet(encoder="resnet50", in_channels=10, num_classes=2).eval()
    seen = {}

    def hook(module: torch.nn.Module, inputs: object, output: torch.Tensor) -> None:
        seen["bottleneck"] = tuple(output.shape)

    net.encoder.layer4.register_forward_hook(hook)
    with torch.no_grad():
        y = net(torch.randn(1, 10, 128, 128))
    assert tuple(y.shape) == (1, 2, 128, 128)
    assert seen["bottleneck"] == (1, 2048, 4, 4)
    # the decoder the authors' code fixes: 2048->1024->512->256->64->32 (+10 input -> 16) -> 2
    ups = [(b.up.in_channels, b.up.out_channels) for b in net.decoder]
    assert ups == [(2048, 1024), (1024, 512), (512, 256), (256, 64), (64, 32)]
    assert net.decoder[-1].conv[0].in_channels == 42 and net.decoder[-1].conv[0].out_channels == 16
    assert (net.head.in_channels, net.head.out_channels, net.head.kernel_size) == (16, 2, (1, 1))
    assert net.encoder.conv1.in_channels == 10 and net.encoder.conv1.stride == (2, 2)


@pytest.mark.parametrize("encoder", ["resnet18", "resnet34"])
def test_small_encoders_any_size(encoder: str) -> None:
    net = UNet(encoder=encoder, in_channels=4).eval()
    with torch.no_grad():
        assert tuple(net(torch.randn(2, 4, 64, 64)).shape) == (2, 2, 64, 64)
        assert tuple(net(torch.randn(1, 4, 50, 70)).shape) == (1, 2, 50, 70)  # padded to 64x96, cropped back
    with pytest.raises(ValueError, match="expected input"):
        net(torch.randn(1, 3, 64, 64))


def test_unknown_encoder() -> None:
    with pytest.raises(ValueError, match="unknown encoder"):
        UNet(encoder="resnet101")


def _forward_flops(net: torch.nn.Module, size: int = 64) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as fc, torch.no_grad():
        net(torch.randn(1, net.in_channels, size, size))
    return float(fc.get_total_flops())


def test_light_decoder_layout_and_cost() -> None:
    from glacierwatch.model.unet import LIGHT_DECODER_CHANNELS

    for encoder in ("resnet18", "resnet50"):
        light = UNet(encoder=encoder, in_channels=10, decoder="light").eval()
        seed = UNet(encoder=encoder, in_channels=10).eval()
        assert light.decoder_name == "light" and seed.decoder_name == "seed"
        # 256/128/64/32/16 whatever the encoder, each step concatenating the matching skip
        outs = tuple(b.conv[3].out_channels for b in light.decoder)
        assert outs == LIGHT_DECODER_CHANNELS
        c0, c1, c2, c3, c4 = light.encoder.channels
        ins = [b.conv[0].in_channels for b in light.decoder]
        assert ins == [c4 + c3, 256 + c2, 128 + c1, 64 + c0, 32 + 10]
        with torch.no_grad():
            assert tuple(light(torch.randn(2, 10, 50, 70)).shape) == (2, 2, 50, 70)
        # the encoders are the same module; only the decoder costs less
        assert light.encoder.state_dict().keys() == seed.encoder.state_dict().keys()
        n_light = sum(p.numel() for p in light.parameters())
        n_seed = sum(p.numel() for p in seed.parameters())
        assert n_light < n_seed
        if encoder == "resnet50":  # where the seed decoder dominates (2048->1024 up-convolution)
            assert _forward_flops(light) < 0.5 * _forward_flops(seed) and n_light < 0.5 * n_seed


def test_unknown_decoder(tmp_path: Path, chips32: Path) -> None:
    with pytest.raises(ValueError, match="unknown decoder"):
        UNet(encoder="resnet18", decoder="tiny")
    with pytest.raises(ConfigError, match="decoder"):
        train(chips32, tmp_path / "x", config=TrainConfig(encoder="resnet18", decoder="tiny"), progress=False)


def test_decoder_is_in_the_card_and_rebuilt(tmp_path: Path, chips32: Path) -> None:
    from glacierwatch.model.predict import model_from_card

    cfg = TrainConfig(**{**FAST.__dict__, "decoder": "light", "epochs": 1})
    path = train(chips32, tmp_path / "light", config=cfg, progress=False, evaluate_test=False)
    card = json.loads((path.parent / "model_card.json").read_text())
    assert card["decoder"] == "light" and card["settings"]["decoder"] == "light"
    model, card2 = load_checkpoint(path)
    assert model.decoder_name == "light" and card2["decoder"] == "light"
    x = np.random.default_rng(0).random((3, model.in_channels, 32, 32), dtype=np.float32)
    prob = predict_proba(model, x, bf16=False)
    assert prob.shape == (3, 32, 32) and np.isfinite(prob).all()
    # a card from before the option means the seed's decoder; the light weights do not fit it
    old = {k: v for k, v in card2.items() if k != "decoder"}
    assert model_from_card(old).decoder_name == "seed"
    ckpt = torch.load(path, weights_only=True)
    torch.save({**ckpt, "card": old}, tmp_path / "old.pt")
    with pytest.raises(InputError, match="do not fit"):
        load_checkpoint(tmp_path / "old.pt")


def test_training_twice_gives_the_same_weights(tmp_path: Path, chips32: Path, trained: Path) -> None:
    assert not torch.are_deterministic_algorithms_enabled()  # the setting is the run's, restored after it
    again = train(chips32, tmp_path / "again", config=FAST, progress=False, evaluate_test=False)
    assert not torch.are_deterministic_algorithms_enabled()
    a, b = read_checkpoint(trained), read_checkpoint(again)
    assert a["card"]["fingerprint"] == b["card"]["fingerprint"]
    assert a["card"]["settings"]["deterministic"] and a["card"]["training"]["stopped"] == "max epochs"
    assert a["card"]["settings"]["max_minutes"] == 0.0  # no wall-clock limit by default


def test_prefetched_batches_are_the_same_draws(chips32: Path) -> None:
    from glacierwatch.model.train import _batch_source, _epoch_order

    cs = ChipSet(chips32)
    imgs, msks = cs.load_rows(cs.index)
    x, y = torch.from_numpy(cs.normaliser.apply(imgs)), torch.from_numpy(msks.astype(np.int64))
    order = _epoch_order(0, 3, len(x))
    cfg = TrainConfig(p_flip=0.5, p_blur=0.5)
    steps = range(1, 4)  # a resumed epoch starts mid-way
    plain = list(_batch_source(x, y, order, steps, batch_size=8, seed=0, epoch=3, config=cfg, workers=0, pin=False))
    ahead = list(_batch_source(x, y, order, steps, batch_size=8, seed=0, epoch=3, config=cfg, workers=2, pin=False))
    assert [s for s, *_ in plain] == [1, 2, 3] == [s for s, *_ in ahead]
    assert [n for _, n, *_ in plain] == [8, 8, len(x) - 24]
    for (_, _, xa, ya), (_, _, xb, yb) in zip(plain, ahead, strict=False):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_no_bf16_note_is_logged_once(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    from glacierwatch.model import predict

    monkeypatch.setattr(predict, "bf16_supported", lambda device: False)
    predict._note_no_bf16.cache_clear()
    with caplog.at_level("INFO", logger="glacierwatch.model.predict"):
        for _ in range(5):  # e.g. one segmenter per glacier in one process
            assert predict.amp_dtype(torch.device("cpu"), True) is None
    assert sum("not supported" in r.getMessage() for r in caplog.records) == 1


def test_loads_torchvision_resnet50_state_dict_strict(tmp_path: Path) -> None:
    sd = torchvision_resnet_state_dict(50)
    torch.save(sd, tmp_path / "resnet50.pth")
    channels = ["blue", "green", "red", "nir08", "swir16", "swir22", "lwir", "dem", "ndsi", "ndwi"]
    net = UNet("resnet50", in_channels=10)
    # the encoder's own keys are exactly torchvision's minus fc
    assert set(net.encoder.state_dict()) == {k for k in sd if not k.startswith("fc.")}
    report = load_encoder_weights(net, tmp_path / "resnet50.pth", channels=channels)
    assert report["dropped_keys"] == ["fc.bias", "fc.weight"] and report["source_in_channels"] == 3
    enc = net.encoder.state_dict()
    for k, v in nonempty(sd).items():
        if k.startswith("fc.") or k == "conv1.weight":
            continue
        assert torch.equal(enc[k], v), k
    w, src = enc["conv1.weight"], sd["conv1.weight"]
    assert tuple(w.shape) == (64, 10, 7, 7)
    scale = 3 / 10
    # ImageNet input order is R, G, B: copied by name, then scaled by 3/10; the rest get the mean filter
    assert torch.allclose(w[:, channels.index("red")], src[:, 0] * scale)
    assert torch.allclose(w[:, channels.index("green")], src[:, 1] * scale)
    assert torch.allclose(w[:, channels.index("blue")], src[:, 2] * scale)
    assert torch.allclose(w[:, channels.index("dem")], src.mean(1) * scale)
    # strict: a missing or an unexpected key is an error
    broken = dict(sd)
    del broken["layer3.2.bn2.running_var"]
    with pytest.raises(RuntimeError, match="running_var"):
        load_encoder_weights(UNet("resnet50"), broken)
    extra = dict(sd, **{"layer5.0.conv1.weight": torch.zeros(1)})
    with pytest.raises(RuntimeError, match="layer5"):
        load_encoder_weights(UNet("resnet50"), extra)
    # SSL4EO-L style: a 'backbone.' prefix and 6 named Landsat bands
    ssl = {f"backbone.{k}": v for k, v in torchvision_resnet_state_dict(50, in_ch=6, seed=1).items()}
    net2 = UNet("resnet50", in_channels=10)
    load_encoder_weights(net2, {"state_dict": ssl}, channels=channels,
                         source_bands=["blue", "green", "red", "nir08", "swir16", "swir22"])
    assert torch.allclose(net2.encoder.conv1.weight[:, 4], ssl["backbone.conv1.weight"][:, 4] * 6 / 10)


def test_train_from_encoder_weights_file(tmp_path: Path, chips32: Path) -> None:
    torch.save(torchvision_resnet_state_dict(18), tmp_path / "r18.pth")
    cfg = TrainConfig(encoder="resnet18", encoder_weights=str(tmp_path / "r18.pth"), learning_rate=1e-3,
                      batch_size=8, epochs=1)
    path = train(chips32, tmp_path / "m", config=cfg, progress=False, evaluate_test=False)
    card = json.loads((path.parent / "model_card.json").read_text())
    assert card["settings"]["encoder_weights_report"]["source_in_channels"] == 3


# ---------------------------------------------------------------- card, checkpoint, prediction

def test_checkpoint_and_card(trained: Path, chips32: Path) -> None:
    card = json.loads((trained.parent / "model_card.json").read_text())
    for key in REQUIRED_KEYS:
        assert key in card, key
    cs = ChipSet(chips32)
    assert card["channels"] == cs.channels == list(card["normalisation"]["channels"])
    assert card["normalisation"] == cs.header["normalisation"]
    assert card["chip_size"] == 32 and card["encoder"] == "resnet18" and card["in_channels"] == len(card["channels"]) == 11
    assert card["sensors"] == ["L5", "L8"]
    assert card["settings"]["learning_rate"] == 1e-3 and card["settings"]["p_blur"] == 0.5
    assert card["metrics"]["split"] == "test" and card["metrics"]["n_chips"] == cs.header["counts"]["test"]
    assert set(card["metrics"]) >= {"unet", "ndsi"} and 0 <= card["metrics"]["unet"]["dice"] <= 1
    model, card2 = load_checkpoint(trained)
    assert card2 == card  # the JSON beside the checkpoint is the card inside it
    assert card["fingerprint"] == weights_fingerprint(read_checkpoint(trained)["state_dict"])
    x, _, _ = cs.load("test", normalise=True)
    p = predict_proba(model, x, batch_size=4, channels=cs.channels)
    assert p.shape == (len(x), 32, 32) and p.dtype == np.float32 and 0 <= p.min() and p.max() <= 1
    p32 = predict_proba(model, x, bf16=False)
    assert np.abs(p - p32).max() < 0.15  # bf16 autocast agrees with fp32
    metrics = (trained.parent / "metrics.csv").read_text().splitlines()
    assert metrics[0].startswith("epoch,train_loss,train_dice,val_loss,val_dice") and len(metrics) == 3


def test_channel_mismatch_is_refused(trained: Path, chips32: Path, tmp_path: Path) -> None:
    model, card = load_checkpoint(trained)
    ch = list(card["channels"])
    with pytest.raises(ChannelMismatchError, match="another order"):
        check_channels(card, [ch[1], ch[0], *ch[2:]])
    seed_inference = ["ndwi", "ndwi", "ndsi", *ch[:7]]  # the seed's inference order, NDWI duplicated
    with pytest.raises(ChannelMismatchError, match="duplicated"):
        check_channels(card, seed_inference)
    with pytest.raises(ChannelMismatchError, match="missing"):
        predict_proba(model, np.zeros((1, 9, 32, 32), np.float32), channels=ch[:9])
    with pytest.raises(ChannelMismatchError):
        predict_proba(model, np.zeros((1, 9, 32, 32), np.float32))
    other = tmp_path / "other"
    write_toy_chipset(other, 8, size=32, channels=ch[::-1], seed=1)
    with pytest.raises(ChannelMismatchError):
        evaluate(other, trained)


def test_read_checkpoint_rejects_other_files(tmp_path: Path) -> None:
    torch.save({"weights": torch.zeros(1)}, tmp_path / "x.pt")
    with pytest.raises(InputError, match="state_dict"):
        load_checkpoint(tmp_path / "x.pt")


# ---------------------------------------------------------------- training behaviour

def test_augment_blurs_image_only() -> None:
    x = torch.zeros(4, 2, 8, 8)
    x[:, :, 4, 4] = 1.0
    y = torch.zeros(4, 8, 8, dtype=torch.long)
    y[:, 4, 4] = 1
    gen = torch.Generator().manual_seed(0)
    xa, ya = augment(x, y, gen, p_flip=0.0, p_blur=1.0, sigma=0.8)
    assert torch.equal(ya, y)  # the mask is never blurred
    assert 0 < float(xa[0, 0, 4, 4]) < 1 and float(xa[0, 0, 3, 4]) > 0
    assert torch.allclose(xa.sum(dim=(-2, -1)), x.sum(dim=(-2, -1)), atol=1e-5)
    xf, yf = augment(x, y, torch.Generator().manual_seed(0), p_flip=1.0, p_blur=0.0, sigma=0.8)
    assert torch.equal(yf[:, 3, 3], torch.ones(4, dtype=torch.long))  # both flips, image and mask together
    assert torch.equal(xf[:, 0, 3, 3], torch.ones(4))


def test_training_crops_take_image_and_mask_from_the_same_window() -> None:
    """``crop_px``: each chip gives a random window of that size, the mask cut where the image is; 0 (the
    seed's whole chip) leaves the flips' draws as they were."""
    from glacierwatch.model.train import augment

    n, size, crop = 6, 16, 8
    x = torch.arange(n * 2 * size * size, dtype=torch.float32).reshape(n, 2, size, size)
    y = (x[:, 0] % 3 == 0).long()
    xc, yc = augment(x, y, torch.Generator().manual_seed(3), p_flip=0.5, p_blur=0.0, sigma=0.8, crop_px=crop)
    assert xc.shape == (n, 2, crop, crop) and yc.shape == (n, crop, crop)
    assert torch.equal(yc, (xc[:, 0] % 3 == 0).long())  # the mask follows its image pixel for pixel
    assert len({float(v) for v in xc[:, 0, 0, 0] % (size * size)}) > 1  # not the same window for every chip
    xa, ya = augment(x, y, torch.Generator().manual_seed(3), p_flip=0.5, p_blur=0.0, sigma=0.8)
    xb, yb = augment(x, y, torch.Generator().manual_seed(3), p_flip=0.5, p_blur=0.0, sigma=0.8, crop_px=size)
    assert torch.equal(xa, xb) and torch.equal(ya, yb)  # a crop as large as the chip is no crop


def test_cosine_schedule_decays_from_the_learning_rate_to_one_percent() -> None:
    from glacierwatch.config import TrainConfig
    from glacierwatch.errors import ConfigError
    from glacierwatch.model.train import learning_rate_at

    constant = TrainConfig(learning_rate=1e-3, epochs=4)
    assert {learning_rate_at(constant, e, s, 10) for e in range(4) for s in range(10)} == {1e-3}
    cosine = TrainConfig(learning_rate=1e-3, epochs=4, lr_schedule="cosine")
    rates = [learning_rate_at(cosine, e, s, 10) for e in range(4) for s in range(10)]
    assert rates[0] == pytest.approx(1e-3)
    assert all(a > b for a, b in zip(rates, rates[1:], strict=False))
    assert rates[20] == pytest.approx(1e-3 * (0.01 + 0.99 * 0.5))  # half-way: half of it, above the floor
    assert learning_rate_at(cosine, 4, 0, 10) == pytest.approx(1e-5)
    with pytest.raises(ConfigError, match="lr_schedule"):
        learning_rate_at(TrainConfig(lr_schedule="step"), 0, 0, 10)


# the module (glacierwatch.model's lazy ``train`` is the function)
train_module = importlib.import_module("glacierwatch.model.train")


@pytest.mark.gpu
def test_cuda_step_and_inference_agree_with_cpu() -> None:
    """On a CUDA device the same weights give the CPU's probabilities (fp32; cuDNN may use TF32, hence
    the tolerance), and the training loop's step runs under the AMP dtype with a finite loss."""
    import copy

    from glacierwatch.model.predict import amp_dtype
    from glacierwatch.model.train import train_step

    cuda = torch.device("cuda")
    torch.manual_seed(0)
    model = UNet("resnet18", in_channels=3, num_classes=2, decoder="light").eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        on_cpu = torch.softmax(model(x), 1)
        on_gpu_model = copy.deepcopy(model).to(cuda)
        on_gpu = torch.softmax(on_gpu_model(x.to(cuda)), 1).cpu()
    assert torch.allclose(on_cpu, on_gpu, atol=1e-2), float((on_cpu - on_gpu).abs().max())
    on_gpu_model.train()
    opt = torch.optim.Adam(on_gpu_model.parameters(), lr=1e-3)
    y = torch.randint(0, 2, (2, 64, 64), device=cuda)
    loss, logits = train_step(on_gpu_model, opt, None, x.to(cuda), y, device=cuda, dtype=amp_dtype(cuda, None))
    assert torch.isfinite(loss) and tuple(logits.shape) == (2, 2, 64, 64)


class _Interrupted(Exception):
    """Stands for a kill of the training process between two steps."""


def test_resume_after_interruption_is_exact(tmp_path: Path, chips32: Path, trained: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    a = trained  # the same settings, uninterrupted
    batches = train_module._batch_source

    def killed_after_two_steps(*args: Any, **kwargs: Any) -> Any:
        for i, item in enumerate(batches(*args, **kwargs)):
            if i == 2:
                raise _Interrupted("killed after 2 steps")
            yield item

    with monkeypatch.context() as m:  # checkpoint after every step, then the run dies before its third
        m.setattr(train_module, "_batch_source", killed_after_two_steps)
        with pytest.raises(_Interrupted):
            train(chips32, tmp_path / "b", config=FAST, progress=False, evaluate_test=False, checkpoint_every_s=0.0)
    state = torch.load(tmp_path / "b" / "last.pt", weights_only=True)
    assert (state["epoch"], state["step"]) == (0, 2) and not state["finished"]
    b = train(chips32, tmp_path / "b", config=FAST, progress=False, evaluate_test=False)
    sa, sb = read_checkpoint(a), read_checkpoint(b)
    assert sa["card"]["fingerprint"] == sb["card"]["fingerprint"]
    for k in nonempty(sa["state_dict"]):
        assert torch.equal(sa["state_dict"][k], sb["state_dict"][k]), k
    # a finished run is not trained again; other settings in the same folder are refused
    assert train(chips32, tmp_path / "b", config=FAST, progress=False) == b
    other = TrainConfig(**{**FAST.__dict__, "learning_rate": 1e-4, "epochs": 1})
    with pytest.raises(ConfigError, match="learning_rate"):
        train(chips32, tmp_path / "b", config=other, progress=False)
    # ... unless the caller (the pipeline, having decided to retrain) asks to start over
    train(chips32, tmp_path / "b", config=other, progress=False, evaluate_test=False, restart_if_changed=True)
    card = json.loads((tmp_path / "b" / "model_card.json").read_text())
    assert card["settings"]["learning_rate"] == 1e-4 and card["training"]["epochs_run"] == 1


def test_killed_training_process_resumes(tmp_path: Path, chips32: Path) -> None:
    out = tmp_path / "run"
    script = textwrap.dedent(f"""
        import torch
        torch.set_num_threads(1)
        from glacierwatch.config import TrainConfig
        from glacierwatch.model import train
        cfg = TrainConfig(encoder="resnet18", learning_rate=1e-3, batch_size=4, epochs=50, patience=50)
        train({str(chips32)!r}, {str(out)!r}, config=cfg, progress=False, checkpoint_every_s=0.0)
    """)
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    proc = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    state_file = out / "last.pt"
    try:
        deadline = time.time() + 120
        while not state_file.exists() and time.time() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert state_file.exists(), proc.stderr.read().decode() if proc.poll() is not None else "no checkpoint"
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
    state = torch.load(state_file, weights_only=True)
    done = state["epoch"] * 100 + state["step"]
    assert done > 0 and not state["finished"]
    before = list(state["history"])
    cfg = TrainConfig(encoder="resnet18", learning_rate=1e-3, batch_size=4, epochs=state["epoch"] + 1, patience=50)
    path = train(chips32, out, config=cfg, progress=False, evaluate_test=False)
    final = torch.load(state_file, weights_only=True)
    assert final["finished"] and len(final["history"]) == state["epoch"] + 1
    assert final["history"][:len(before)] == before  # the epochs done before the kill are kept, not redone
    assert path.exists()


def test_time_limit_stops_with_a_checkpoint(tmp_path: Path, chips32: Path) -> None:
    cfg = TrainConfig(encoder="resnet18", learning_rate=1e-3, batch_size=4, epochs=100, max_minutes=0.0001)
    path = train(chips32, tmp_path / "t", config=cfg, progress=False, evaluate_test=False)
    card = json.loads((path.parent / "model_card.json").read_text())
    assert card["training"]["stopped"] == "time limit" and card["training"]["epochs_run"] <= 1


def test_grid_writes_table_one_layout(tmp_path: Path, chips32: Path) -> None:
    cfg = TrainConfig(encoder="resnet18", epochs=1)
    table = train_grid(chips32, tmp_path / "grid", config=cfg, pairs=[(1e-3, 8), (1e-4, 16)], progress=False)
    assert list(table["learning_rate"]) == [1e-3, 1e-4] and table["val_cross_entropy"].notna().all()
    md = (tmp_path / "grid" / "grid.md").read_text()
    assert md.startswith("| Learning rate | Batch size | Cross-entropy loss |")


# ---------------------------------------------------------------- evaluation and CLI

def test_evaluate_reports_unet_and_ndsi(trained: Path, chips32: Path, tmp_path: Path) -> None:
    res = evaluate(chips32, trained, split="test", out_dir=tmp_path / "ev")
    segs = res.summary["segmenters"]
    assert set(segs) == {"unet", "ndsi"}
    for s in segs.values():
        assert set(s["per_region"]) == {"Himalaya", "Swiss Alps"} and set(s["per_sensor"]) <= {"L5", "L8"}
        assert 0 <= s["overall"]["dice"] <= 1 and 0 <= s["overall"]["iou"] <= s["overall"]["dice"]
    pc = res.per_chip
    assert {"area_error_km2", "area_error_pct", "true_area_km2", "pred_area_km2"} <= set(pc.columns)
    row = pc.iloc[0]
    assert row["area_error_km2"] == pytest.approx(row["pred_area_km2"] - row["true_area_km2"])
    assert (tmp_path / "ev" / "metrics.json").exists() and (tmp_path / "ev" / "per_glacier.csv").exists()
    # the baseline alone needs no model
    only = evaluate(chips32, None, split=["train", "val", "test"])
    assert set(only.summary["segmenters"]) == {"ndsi"} and only.summary["n_chips"] == 30


def test_ndsi_baseline_matches_features(chips32: Path) -> None:
    from glacierwatch.features import ndsi_mask
    from glacierwatch.model import ndsi_probability

    cs = ChipSet(chips32)
    x, _, _ = cs.load("test")
    ch = cs.channels
    p = ndsi_probability(x, ch)
    ref = ndsi_mask({"green": x[:, ch.index("green")], "swir16": x[:, ch.index("swir16")]})
    assert np.mean(p.astype(bool) == ref) > 0.98  # resized ndsi channel vs ndsi of resized bands


def test_cli_train_and_evaluate(tmp_path: Path, chips32: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from glacierwatch.cli import main

    rc = main(["train", "--chips", str(chips32), "--out", str(tmp_path / "m"), "--encoder", "resnet18", "--lr", "1e-3",
               "--batch-size", "8", "--epochs", "1", "--no-progress"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "U-Net Dice" in out and "NDSI>0.4 Dice" in out
    rc = main(["evaluate", "--chips", str(chips32), "--model", str(tmp_path / "m" / "model.pt"),
               "--out", str(tmp_path / "ev")])
    assert rc == 0 and "ndsi" in capsys.readouterr().out
    rc = main(["evaluate", "--chips", str(chips32), "--segmenter", "unet"])
    assert rc == 2 and "needs a model checkpoint" in capsys.readouterr().err


# ---------------------------------------------------------------- slow: convergence

@pytest.mark.slow
def test_synthetic_world_unet_beats_ndsi(tmp_path: Path) -> None:
    """ResNet-18 at lr 1e-3 (the demo's setting) on toy scenes built into chips: Dice >= 0.95, > NDSI."""
    from glacierwatch.chips import build_chips
    from glacierwatch.chips.testing import write_toy_world

    world = write_toy_world(tmp_path / "w", 120, shape=(64, 64), seed=3, cloud_fraction=0.15)
    build_chips(world.selection, world.inventory, dem_dir=world.dem_dir, out_dir=tmp_path / "chips",
                config=ChipsConfig(size=64, val_fraction=0.15, test_fraction=0.2), progress=False)
    cfg = TrainConfig(encoder="resnet18", learning_rate=1e-3, batch_size=16, epochs=25, patience=6)
    path = train(tmp_path / "chips", tmp_path / "m", config=cfg, progress=False)
    m = json.loads((path.parent / "model_card.json").read_text())["metrics"]
    assert m["unet"]["dice"] >= 0.95, m
    assert m["unet"]["dice"] > m["ndsi"]["dice"], m


@pytest.mark.slow
@pytest.mark.skipif(not NORWAY.exists(), reason=f"real Norway chips not present at {NORWAY}")
def test_norway_chips_cross_validation(tmp_path: Path) -> None:
    from glacierwatch.chips import import_chips
    from glacierwatch.model import cross_validate

    import_chips([NORWAY], out_dir=tmp_path / "chips", region="Norway", progress=False)
    # 3 folds of a few epochs: the test is that cross-validation runs on real chips and pools its folds
    # (5 folds of 15 epochs cost 8x more: 231 s of the suite)
    cfg = TrainConfig(encoder="resnet18", learning_rate=1e-3, batch_size=8, epochs=4, patience=5)
    res = cross_validate(tmp_path / "chips", tmp_path / "cv", folds=3, config=cfg, progress=False)
    assert len(res["per_fold"]) == 3
    assert 0 < res["pooled"]["unet"]["dice"] <= 1 and 0 < res["pooled"]["ndsi"]["dice"] <= 1


def test_confounder_weight_weighs_the_pixels_the_ndsi_rule_gets_wrong() -> None:
    """``[train] confounder_weight``: the loss is the cross-entropy with weight w on the pixels where
    NDSI > 0.4 and the mask disagree (debris on ice, snow off it), 1 elsewhere; 1 is the plain loss."""
    import torch.nn.functional as F

    from glacierwatch.features import Normaliser
    from glacierwatch.model.train import ConfounderWeight

    channels = ("green", "ndsi")
    norm = Normaliser(channels, (0.0, -1.0), (1.0, 1.0))  # ndsi: (x + 1) / 2, so 0.4 -> 0.7
    assert ConfounderWeight.for_training(TrainConfig(), channels, norm) is None
    cw = ConfounderWeight.for_training(TrainConfig(confounder_weight=4.0), channels, norm)
    assert cw is not None and cw.channel == 1 and cw.threshold == pytest.approx(0.7)
    x = torch.zeros(1, 2, 2, 2)
    x[0, 1] = torch.tensor([[0.9, 0.9], [0.1, 0.1]])  # NDSI 0.8 (rule: glacier) on top, -0.8 below
    y = torch.tensor([[[1, 0], [1, 0]]])  # glacier on the left: (0,1) snow off it, (1,0) debris on it
    logits = torch.randn(1, 2, 2, 2, generator=torch.Generator().manual_seed(0))
    per_pixel = F.cross_entropy(logits, y, reduction="none")[0]
    weights = torch.tensor([[1.0, 4.0], [4.0, 1.0]])
    expected = (per_pixel * weights).sum() / weights.sum()
    assert float(cw.loss(logits, x, y)) == pytest.approx(float(expected), rel=1e-6)
    with pytest.raises(InputError, match="needs the ndsi channel"):
        ConfounderWeight.for_training(TrainConfig(confounder_weight=4.0), ("green", "red"), norm)


def test_confounder_weight_below_one_is_refused_on_load(tmp_path: Path) -> None:
    from glacierwatch.config import Config

    bad = tmp_path / "c.toml"
    bad.write_text("[train]\nconfounder_weight = 0.5\n")
    with pytest.raises(ConfigError, match="confounder_weight"):
        Config.from_toml(bad)
