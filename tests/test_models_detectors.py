"""M2TR and MAT: tiny configs on real face crops, default-config sizes, and the pieces
whose behaviour the spec pins down (RIL centres, AGDA masks, SDPA fusion, DCT bands)."""

from __future__ import annotations

import importlib
import subprocess
import sys

import numpy as np
import pytest
import scipy.fft
import skimage.data
import torch
from matplotlib import cbook
from PIL import Image

from dfpipe.models import registry
from dfpipe.models.blocks import IMAGENET_MEAN, IMAGENET_STD
from dfpipe.models.m2tr import CrossModalityFusion, DCTBands, M2TRConfig, fusion_scale
from dfpipe.models.mat import AGDA, MATConfig, RegionalIndependenceLoss
from dfpipe.models.registry import count_parameters, create_model

torch.set_num_threads(1)
MODELS = ["m2tr", "mat"]


def _crop(img: np.ndarray, box: tuple[int, int, int, int], size: int) -> torch.Tensor:
    y0, y1, x0, x1 = box
    face = Image.fromarray(img[y0:y1, x0:x1]).resize((size, size), Image.BILINEAR)
    t = torch.from_numpy(np.asarray(face, dtype=np.float32) / 255).permute(2, 0, 1)
    return (t - torch.tensor(IMAGENET_MEAN)[:, None, None]) / torch.tensor(IMAGENET_STD)[:, None, None]


@pytest.fixture(scope="module")
def faces() -> torch.Tensor:
    """Two real public-domain faces and their mirror images, normalized, 64 px."""
    astronaut = skimage.data.astronaut()
    with cbook.get_sample_data("grace_hopper.jpg") as f:
        hopper = np.asarray(Image.open(f).convert("RGB"))
    a = _crop(astronaut, (20, 220, 140, 340), 64)
    h = _crop(hopper, (70, 370, 110, 410), 64)
    return torch.stack([a, h, a.flip(-1), h.flip(-1)])


def _batch(faces: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    target = torch.tensor([0.0, 1.0, 0.0, 1.0])  # astronaut "real", Hopper "fake"
    mask = torch.zeros(4, 1, 64, 64)
    mask[1, :, 16:48, 16:48] = 1  # the fake's "manipulated" centre
    mask[3] = float("nan")  # a fake whose mask is unknown
    return faces, target, mask


@pytest.mark.parametrize("name", MODELS)
def test_tiny_forward_backward(name: str, faces: torch.Tensor) -> None:
    torch.manual_seed(0)
    model = create_model(name, tiny=True)
    x, target, mask = _batch(faces)
    model.train()
    out = model(x, target=target, mask=mask)
    assert out["logit"].shape == (4,)
    assert out["loss"].dim() == 0 and torch.isfinite(out["loss"])
    assert all(torch.isfinite(v) and not v.requires_grad for v in out["losses"].values())
    out["loss"].backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(g.abs().sum() for g in grads) > 0
    if name == "m2tr":
        assert out["mask_logits"].shape == (4, 1, 64, 64)
        assert set(out["losses"]) == {"ce", "seg", "con"}
    else:
        assert set(out["losses"]) == {"ce", "ril"}
    model.eval()
    with torch.no_grad():
        ev = model(x, target=target)
    assert "loss" not in ev and ev["logit"].shape == (4,)
    assert model.default_cfg["input_size"] == (3, 64, 64) and len(model.default_cfg["mean"]) == 3


@pytest.mark.parametrize("name,cfg", [("m2tr", {}), ("m2tr", {"freq": "fft-filter", "loss": "focal",
                                                                   "attn_scale": "official"}),
                                      ("mat", {}), ("mat", {"loss": "official", "agda": "hard",
                                                            "margins": "official"})])
def test_loss_decreases_on_real_faces(name: str, cfg: dict, faces: torch.Tensor) -> None:
    torch.manual_seed(0)
    model = create_model(name, tiny=True, drop=0.0, **cfg)
    model.train()
    x, target, mask = _batch(faces)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses, cls = [], []
    for _ in range(12):
        out = model(x, target=target, mask=mask)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        losses.append(out["loss"].item())
        cls.append(next(iter(out["losses"].values())).item())  # the classification term alone
    assert np.isfinite(losses).all()
    assert np.mean(losses[-3:]) < 0.8 * np.mean(losses[:3]), losses
    assert np.mean(cls[-3:]) < 0.5 * np.mean(cls[:3]), cls


def test_create_model_from_the_package_and_no_torch_on_import() -> None:
    """`from dfpipe.models import create_model`, as `timm.create_model`; importing the
    package (the Dask client checks DETECTOR_MODELS) loads no torch."""
    from dfpipe.models import create_model as from_package

    assert from_package is create_model
    code = ("import sys, dfpipe.models; from dfpipe.models import DETECTOR_MODELS, create_model, list_models; "
            "list_models(); assert 'torch' not in sys.modules, 'torch imported'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_catalogue_is_what_the_modules_register() -> None:
    for module in {entry.module for entry in registry.CATALOGUE.values()}:
        importlib.import_module(module)
    assert set(registry._MODELS) == set(registry.CATALOGUE)
    assert registry.list_models(kind="detector") == ["m2tr", "m2tr_tiny", "mat", "mat_tiny"]
    assert registry.list_models(kind="harmonizer") == ["dovenet"]
    with pytest.raises(ValueError, match="unknown model 'xception'"):
        create_model("xception")


def test_config_by_name_and_errors() -> None:
    assert create_model("m2tr_tiny").cfg == M2TRConfig.tiny()
    assert create_model("mat_tiny", num_maps=2).cfg.num_maps == 2
    with pytest.raises(ValueError, match="unknown M2TRConfig option"):
        create_model("m2tr", tiny=True, dept=2)
    with pytest.raises(ValueError, match="freq"):
        create_model("m2tr", tiny=True, freq="wavelet")
    with pytest.raises(ValueError, match="divisible"):
        create_model("m2tr", tiny=True, input_size=72)  # 18 x 18 features, 4 heads


@pytest.mark.parametrize("name,cfg,expected", [("m2tr", {"freq": "fft-filter"}, 18.6e6), ("mat", {}, 18.8e6)])
def test_default_parameter_counts(name: str, cfg: dict, expected: float) -> None:
    with torch.device("meta"):
        model = create_model(name, **cfg)
    n = count_parameters(model)
    assert abs(n - expected) / expected < 0.10, n
    assert model.default_cfg["input_size"] == ((3, 320, 320) if name == "m2tr" else (3, 380, 380))


def test_m2tr_sizes_follow_the_input() -> None:
    with torch.device("meta"):
        model = create_model("m2tr")  # paper default: DCT bands
    assert model.feature_size == (80, 80)
    assert model.blocks[0].mt.patches == [(80, 80), (40, 40), (20, 20), (10, 10)]
    assert 17.55e6 < count_parameters(model) < 18.6e6
    tiny = create_model("m2tr", tiny=True)
    assert tiny.blocks[0].mt.patches == [(16, 16), (8, 8), (4, 4), (2, 2)]
    with torch.device("meta"):
        mat = create_model("mat")
    assert mat.attention_size == (24, 24)


def test_dct_bands_match_scipy(faces: torch.Tensor) -> None:
    x = faces[:1].double()
    bands = DCTBands((64, 64)).double()(x)
    assert bands.shape == (1, 9, 64, 64)
    assert torch.allclose(bands[:, :3] + bands[:, 3:6] + bands[:, 6:], x, atol=1e-9)
    spec = scipy.fft.dctn(x[0].numpy(), axes=(1, 2), norm="ortho")
    i, j = np.meshgrid(np.arange(64), np.arange(64), indexing="ij")
    low = scipy.fft.idctn(spec * (i + j < 4), axes=(1, 2), norm="ortho")
    mid = scipy.fft.idctn(spec * ((i + j >= 4) & (i + j < 8)), axes=(1, 2), norm="ortho")
    assert np.allclose(bands[0, :3].numpy(), low, atol=1e-5)  # float32 DCT basis
    assert np.allclose(bands[0, 3:6].numpy(), mid, atol=1e-5)


@pytest.mark.parametrize("scale", ["paper", "official", 3.0])
def test_sdpa_fusion_equals_plain_softmax(scale) -> None:
    torch.manual_seed(0)
    cfg = M2TRConfig(attn_scale=scale)
    s = fusion_scale(cfg, tokens=8 * 8, channels=16)
    assert s == {"paper": 32.0, "official": 4.0}.get(scale, 3.0)
    fused = CrossModalityFusion(16, s).double()
    fs, fmt, ffq = (torch.randn(2, 16, 8, 8, dtype=torch.float64) * 3 for _ in range(3))
    q = fused.q(fs).flatten(2).transpose(1, 2)
    k, v = (t.flatten(2).transpose(1, 2) for t in fused.kv(ffq).chunk(2, dim=1))
    reference = torch.softmax(q @ k.transpose(1, 2) / s, dim=-1) @ v  # plain softmax(QK^T/s)V
    assert torch.allclose(fused.attend(q, k, v), reference, atol=1e-10)
    fused.plain = True
    plain = fused(fs, fmt, ffq)
    fused.plain = False
    assert torch.allclose(fused(fs, fmt, ffq), plain, atol=1e-10)


def test_ril_centres_move_toward_real_mean_and_rate_decays() -> None:
    torch.manual_seed(0)
    cfg = MATConfig(alpha=0.05)
    ril = RegionalIndependenceLoss(4, 8, cfg).train()
    ril.centers.copy_(torch.randn(4, 8))
    v = torch.randn(6, 4, 8)
    target = torch.tensor([0, 1, 0, 1, 0, 0.0])
    real_mean = v[target == 0].mean(0)
    before = ril.centers.clone()
    loss = ril(v.requires_grad_(), target)
    loss.backward()
    assert torch.allclose(ril.centers, before + 0.05 * (real_mean - before), atol=1e-6)
    assert (ril.centers - real_mean).norm() < (before - real_mean).norm()
    assert v.grad is not None and v.grad.abs().sum() > 0
    fakes_only = ril.centers.clone()
    ril(torch.randn(2, 4, 8), torch.ones(2))
    assert torch.equal(ril.centers, fakes_only)  # only real samples move the centres
    ril.eval()
    ril(torch.randn(2, 4, 8), torch.zeros(2))
    assert torch.equal(ril.centers, fakes_only)  # no updates outside training

    model = create_model("mat", tiny=True, alpha=0.05)
    for epoch in range(1, 4):
        model.on_epoch_end()
        assert model.ril.alpha.item() == pytest.approx(0.05 * 0.9**epoch)


def test_agda_masks_and_degradation(faces: torch.Tensor) -> None:
    torch.manual_seed(0)
    agda = AGDA(MATConfig.tiny())
    a = torch.linspace(0, 1, 101)[None, None, None, :].repeat(3, 1, 1, 1)
    m = agda.soft_mask(a)
    assert m.min() >= 0 and m.max() <= 1 + 1e-6
    assert torch.all(m[..., 0] == 0) and torch.all(m[..., -1] > 0.5)
    assert torch.all(m[..., 1:] > m[..., :-1])  # strictly increasing in the attention

    attention = torch.zeros(4, 4, 8, 8)
    attention[:, :, 2:5, 1:4] = torch.rand(4, 4, 3, 3) + 0.1  # zero outside one region
    x = faces
    out, index = agda(x, attention)
    assert index.shape == (4,) and index.max() < 4
    a_norm, _ = agda.pick(attention)
    soft = agda.mask(a_norm, (64, 64))
    changed = (out - x).abs().amax(1) > 0
    assert changed.any()
    assert not changed[soft[:, 0] == 0].any()  # untouched wherever the mask is 0
    agda.cfg.agda = "hard"
    hard = agda.mask(a_norm, (64, 64))
    assert set(hard.unique().tolist()) <= {0.0, 1.0} and hard.sum() > 0
    # one map only, so the pick is deterministic and the mask can be recomputed
    single = attention[:, :1]
    out = agda(x, single)[0]
    hard = agda.mask(agda.pick(single)[0], (64, 64))[:, 0]
    changed = (out - x).abs().amax(1) > 0
    assert torch.equal(changed, hard > 0)


def test_fusion_takes_the_fused_kernel() -> None:
    """The N x N matrix must never be materialised: SDPA's fused CPU kernel, no softmax op
    (a strided or 3-D input silently falls back to the math path)."""
    from torch.profiler import ProfilerActivity, profile

    cmf = CrossModalityFusion(8, 4.0)
    fs = torch.randn(2, 8, 16, 16, requires_grad=True)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        cmf(fs, fs, fs).sum().backward()
    names = {e.name for e in prof.events()}
    assert "aten::_scaled_dot_product_flash_attention_for_cpu" in names
    assert not any("softmax" in n for n in names), sorted(n for n in names if "softmax" in n)


def _ril_rank(rank: int, world: int, init: str, out: str) -> None:
    torch.distributed.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    ril = RegionalIndependenceLoss(2, 3, MATConfig(alpha=0.5)).train()
    v = torch.full((2, 2, 3), float(rank + 1))  # rank 0 reals are all 1, rank 1 reals all 2
    target = torch.tensor([0.0, 0.0]) if rank == 0 else torch.tensor([0.0, 1.0])
    ril(v, target)
    torch.save(ril.centers, f"{out}.{rank}")
    torch.distributed.destroy_process_group()


def test_ril_centres_all_reduced_under_ddp(tmp_path) -> None:
    """Two gloo ranks with different real samples end with the same centres: the update
    uses the mean over all ranks' reals (two 1s and one 2 -> 4/3), scaled by a = 0.5."""
    import torch.multiprocessing as mp

    out = str(tmp_path / "centers")
    # fork: the children need no re-import of this module (the heavy part of a spawn)
    mp.start_processes(_ril_rank, args=(2, f"file://{tmp_path / 'store'}", out), nprocs=2, join=True,
                       start_method="fork")
    c0, c1 = torch.load(f"{out}.0"), torch.load(f"{out}.1")
    assert torch.equal(c0, c1)
    assert torch.allclose(c0, torch.full((2, 3), 0.5 * 4 / 3))
