"""The tile-sparse super-resolution path: the UNet runs on the tiles the flat-area gate keeps."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import torch.nn.functional as F  # noqa: E402
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, UNet2DModel  # noqa: E402

from nodes.unclip.models.tiles import gaussian_blur, plan_tiles  # noqa: E402
from nodes.unclip.models.upsampler import UpsamplerModel, nonflat, upsample, upscale_condition  # noqa: E402

KW = {"fix_colors": True, "color_sigma": 4.0, "flat_threshold": 0.02}


class PointwiseNet(torch.nn.Module):
    """A UNet stand-in without spatial context (a 1 × 1 convolution): tiles must reproduce it exactly."""

    def __init__(self, unet: UNet2DModel):
        super().__init__()
        self.config = unet.config
        self.conv = torch.nn.Conv2d(6, 3, 1)
        torch.manual_seed(0)
        torch.nn.init.normal_(self.conv.weight, std=0.5)

    @property
    def dtype(self):
        return torch.float32

    def forward(self, sample, timestep):
        return type("Out", (), {"sample": torch.tanh(self.conv(sample)) * (1 + float(timestep) / 1000)})()


def tiny_unet() -> UNet2DModel:
    torch.manual_seed(0)
    return UNet2DModel(sample_size=128, in_channels=6, out_channels=3, block_out_channels=(8, 16), layers_per_block=1,
                       down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
                       norm_num_groups=8, add_attention=False).eval()


def dpm() -> DPMSolverMultistepScheduler:
    return DPMSolverMultistepScheduler(beta_schedule="squaredcos_cap_v2", prediction_type="sample",
                                       timestep_spacing="trailing")


def scene(size: int = 32) -> torch.Tensor:
    """(1, 3, size, size): a flat background with a small square near a corner (most tiles flat)."""
    img = torch.empty(1, 3, size, size)
    img[:] = torch.tensor([0.2, 0.6, 0.3]).view(1, 3, 1, 1)
    img[:, :, 3:8, 22:27] = torch.tensor([0.9, 0.1, 0.1]).view(1, 3, 1, 1)
    return img


def kept(images: torch.Tensor, out: int = 128) -> torch.Tensor:
    ref = (upscale_condition(images * 2 - 1, out).clamp(-1, 1) + 1) / 2
    return (F.max_pool2d(nonflat(ref, KW["flat_threshold"]).float(), 5, 1, 2) > 0).expand(-1, 3, -1, -1)


def run(model, images, tile, seed=0, steps=2, fix_colors=True):
    with torch.inference_mode():
        return upsample(model, images, steps=steps, generator=torch.Generator().manual_seed(seed), tile=tile, halo=8,
                        **{**KW, "fix_colors": fix_colors})


@pytest.mark.parametrize("scheduler", [dpm, lambda: DDIMScheduler(beta_schedule="squaredcos_cap_v2")],
                         ids=["x0-prediction", "epsilon-prediction"])
def test_tiles_reproduce_a_network_without_spatial_context_exactly(scheduler):
    model = UpsamplerModel(PointwiseNet(tiny_unet()), None, scheduler())
    images = torch.cat([scene(), scene().flip(-1)])  # a batch: the tiles of both frames run together
    # (the colour fix's blur would see the input's enlargement where no tile ran, and the network's noise in
    # the dense run: off here)
    dense, sparse = run(model, images, 0, fix_colors=False), run(model, images, 16, fix_colors=False)
    assert torch.allclose(sparse, dense, atol=1e-5)


def test_tile_sparse_unet_matches_the_dense_run_inside_the_kept_regions():
    model = UpsamplerModel(tiny_unet(), None, dpm())
    images = scene()
    tiles = plan_tiles(kept(images)[:, :1], 16, 8, 2)
    assert tiles is not None and 0 < len(tiles.crops) < 64 // 4  # the square's tiles, not the frame's 64
    dense, sparse, other_seed = run(model, images, 0), run(model, images, 16), run(model, images, 0, seed=1)
    keep = kept(images)
    assert torch.equal(sparse[~keep], dense[~keep])  # both keep the input's enlargement there
    # the crops' own context changes the drawing less than another seed does
    assert (sparse - dense).abs()[keep].mean() < (other_seed - dense).abs()[keep].mean()


def test_a_fully_nonflat_image_runs_on_the_whole_frame():
    model = UpsamplerModel(tiny_unet(), None, dpm())
    images = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    assert plan_tiles(kept(images)[:, :1], 16, 8, 2) is None
    assert torch.equal(run(model, images, 16), run(model, images, 0))


def test_a_flat_image_needs_no_unet_pass():
    unet = tiny_unet()
    calls = []
    unet.register_forward_hook(lambda *_: calls.append(1))
    images = torch.full((2, 3, 32, 32), 0.4)
    out = run(UpsamplerModel(unet, None, dpm()), images, 16)
    assert not calls
    assert torch.allclose(out, torch.full_like(out, 0.4), atol=1e-6)


def test_tile_crops_stay_inside_the_frame_and_cover_their_tiles():
    active = torch.zeros(1, 1, 40, 72, dtype=torch.bool)
    active[0, 0, 0, 0] = active[0, 0, 39, 71] = True  # opposite corners; 72 is not a multiple of the tile
    tiles = plan_tiles(active, 16, 8, 8)
    assert tiles.size == 32 and len(tiles.crops) == 2
    for (_, y, x), (y0, y1, x0, x1) in zip(tiles.crops, tiles.tiles, strict=True):
        assert 0 <= y <= 40 - 32 and 0 <= x <= 72 - 32
        assert y <= y0 < y1 <= y + 32 and x <= x0 < x1 <= x + 32
    assert tiles.covered.sum() == 16 * 16 + 8 * 8  # a full tile and the clipped corner tile
    with pytest.raises(ValueError, match="multiples of 8"):
        plan_tiles(active, 12, 8, 8)


def test_separable_blur_equals_torchvision():
    from torchvision.transforms.functional import gaussian_blur as tv_blur

    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(gaussian_blur(images, 8.0), tv_blur(images, 49, 8.0), atol=1e-5)
    assert torch.allclose(gaussian_blur(images, 1.0, 5), tv_blur(images, 5, 1.0), atol=1e-6)
