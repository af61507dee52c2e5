"""BatchPipeline's batched augmentation: each behaviour against an expectation computed another way."""

from __future__ import annotations

import math

import kornia.enhance as KE
import pytest
import torch
import torch.nn.functional as F
from torch.profiler import profile

from mtlbench.data.pipeline import AugmentParams, BatchPipeline
from mtlbench.errors import MtlbenchError
from mtlbench.registry import TASKS
from mtlbench.tasks import DatasetInfo
from mtlbench.tasks.edge import boundary_map, depth_edges, label_edges

CPU = torch.device("cpu")
SYNCS = {"aten::item", "aten::_local_scalar_dense", "aten::nonzero", "aten::is_nonzero"}


def raw_batch(n: int = 6, size: int = 32, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random frames: labels in 4×4 blocks (255 among them), depth distinct per pixel with holes (0)."""
    g = torch.Generator().manual_seed(seed)
    blocks = torch.randint(0, 6, (n, size // 4, size // 4), generator=g, dtype=torch.uint8)
    blocks[blocks == 5] = 255
    seg = blocks.repeat_interleave(4, 1).repeat_interleave(4, 2)
    depth = 0.5 + torch.rand(n, size, size, generator=g) * 9
    depth[torch.rand(n, size, size, generator=g) < 0.1] = 0.0
    image = torch.randint(0, 256, (n, size, size, 3), generator=g, dtype=torch.uint8)
    return {"image": image, "depth": depth, "seg": seg, "index": torch.arange(n)}


def part(raw: dict[str, torch.Tensor], start: int, stop: int) -> dict[str, torch.Tensor]:
    return {k: v[start:stop] for k, v in raw.items()}


def params(n: int, flip: bool = False, box: tuple[float, float, float, float] = (0, 0, 32, 32),
           color: tuple[float, float, float, float] = (1, 1, 1, 0)) -> AugmentParams:
    return AugmentParams(torch.full((n,), flip), torch.tensor([box], dtype=torch.float32).repeat(n, 1),
                         torch.tensor([color], dtype=torch.float32).repeat(n, 1))


def edges(**options):
    """The edge task as the pipeline derives its targets, with ``options`` ([task_options.edge])."""
    return [TASKS.build("edge", DatasetInfo(), **options)]


def unit_image(raw: dict[str, torch.Tensor]) -> torch.Tensor:
    return raw["image"].permute(0, 3, 1, 2).float() / 255


def test_slices_with_their_span_reproduce_the_whole_batch_exactly():
    raw = raw_batch(8)
    pipe = BatchPipeline(CPU, 24, scale=(0.4, 1.0), color_jitter=0.3, tasks=edges(depth_edges=0.3))
    whole = pipe(raw, train=True, seed=1234)
    for cuts in ([0, 4, 8], [0, 1, 2, 3, 4, 5, 6, 7, 8], [0, 3, 8], [0, 7, 8]):
        parts = [pipe(part(raw, a, b), train=True, seed=1234, span=(a, 8)) for a, b in zip(cuts, cuts[1:])]
        for key in ("image", "depth", "seg", "edge", "index"):
            assert torch.equal(torch.cat([p[key] for p in parts]), whole[key]), (cuts, key)


def test_a_seed_fixes_the_augmentation_and_another_seed_changes_it():
    raw = raw_batch()
    pipe = BatchPipeline(CPU, 24)
    torch.manual_seed(0)
    first = pipe(raw, train=True, seed=7)
    torch.manual_seed(1)  # the global generator plays no part once a seed is given
    again = pipe(raw, train=True, seed=7)
    other = pipe(raw, train=True, seed=8)
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not torch.equal(first["image"], other["image"])
    torch.manual_seed(5)  # no seed: the global generator, as before
    unseeded = pipe(raw, train=True)
    torch.manual_seed(5)
    assert torch.equal(pipe(raw, train=True)["image"], unseeded["image"])


def test_a_span_that_does_not_hold_the_batch_is_refused():
    pipe = BatchPipeline(CPU, 32)
    with pytest.raises(ValueError, match="span"):
        pipe(raw_batch(4), train=True, seed=0, span=(2, 5))


def test_drawn_parameters_stay_in_their_ranges():
    pipe = BatchPipeline(CPU, 32, scale=(0.25, 0.81), color_jitter=0.2)
    p = pipe.sample_params(4000, 40, 50, torch.Generator().manual_seed(0))
    side = p.box[:, 2]
    assert torch.equal(p.box[:, 2], p.box[:, 3])  # square crops
    assert side.min() >= round(math.sqrt(0.25 * 2000)) and side.max() <= round(math.sqrt(0.81 * 2000))
    assert (p.box[:, :2] >= 0).all() and (p.box[:, 0] + side <= 50).all() and (p.box[:, 1] + side <= 40).all()
    assert p.box[:, 0].max() == 50 - side[p.box[:, 0].argmax()]  # the last offset is reachable
    assert abs(p.flip.float().mean() - 0.5) < 0.03
    jittered = (p.color != torch.tensor([1.0, 1.0, 1.0, 0.0])).any(1)
    assert abs(jittered.float().mean() - 0.8) < 0.03
    c = p.color[jittered]
    assert (c[:, :3] >= 0.8).all() and (c[:, :3] <= 1.2).all() and c[:, 3].abs().max() <= 0.02
    off = BatchPipeline(CPU, 32, flip=False, scale=(1.0, 1.0), color_jitter=0.0).sample_params(100, 40, 50)
    assert not off.flip.any() and (off.box == torch.tensor([0.0, 0.0, 50, 40])).all()
    assert (off.color == torch.tensor([1.0, 1.0, 1.0, 0.0])).all()


@pytest.mark.parametrize("scale", [(1.0, 1.0), (0.5, 1.0)], ids=["flip only", "flip through the crop"])
def test_a_forced_flip_is_torch_flip(scale):
    raw = raw_batch(4)
    pipe = BatchPipeline(CPU, 32, flip=True, scale=scale, color_jitter=0.0, normalize=False)
    out = pipe.apply(raw, params(4, flip=True))
    assert torch.equal(out["depth"][:, 0], raw["depth"].flip(-1))
    assert torch.equal(out["seg"], raw["seg"].long().flip(-1))
    if scale[0] == 1.0:
        assert torch.equal(out["image"], unit_image(raw).flip(-1))
    else:  # resampled through the grid: the same pixels up to float rounding of the coordinates
        torch.testing.assert_close(out["image"], unit_image(raw).flip(-1), rtol=0, atol=1e-5)


@pytest.mark.parametrize("box", [(0, 0, 16, 16), (5, 11, 16, 16)])
@pytest.mark.parametrize("flip", [False, True])
def test_a_known_crop_is_the_slice_resized(box, flip):
    raw = raw_batch(4)
    pipe = BatchPipeline(CPU, 32, flip=True, scale=(0.2, 1.0), color_jitter=0.0, normalize=False)
    out = pipe.apply(raw, params(4, flip=flip, box=box))
    x, y, w, h = box
    mirror = (lambda t: t.flip(-1)) if flip else (lambda t: t)

    def doubled(t: torch.Tensor) -> torch.Tensor:  # nearest upsampling by 2, by hand
        return t[..., y:y + h, x:x + w].repeat_interleave(2, -2).repeat_interleave(2, -1)

    assert torch.equal(out["depth"][:, 0], mirror(doubled(raw["depth"])))
    assert torch.equal(out["seg"], mirror(doubled(raw["seg"].long())))
    crop = unit_image(raw)[..., y:y + h, x:x + w]
    expected = F.interpolate(crop, size=(32, 32), mode="bilinear", align_corners=False)
    torch.testing.assert_close(out["image"], mirror(expected), rtol=0, atol=1e-5)


def test_crops_only_copy_depths_and_labels_of_their_frame():
    raw = raw_batch(8)
    pipe = BatchPipeline(CPU, 40, scale=(0.2, 0.9), color_jitter=0.0)  # upsampling as well as shrinking
    out = pipe(raw, train=True, seed=3)
    assert out["depth"].shape == (8, 1, 40, 40) and out["seg"].shape == (8, 40, 40)
    for i in range(8):
        assert torch.isin(out["depth"][i], raw["depth"][i]).all()
        assert torch.isin(out["seg"][i], raw["seg"][i].long()).all()
    assert (out["seg"] == 255).any() and (out["depth"] == 0).any()  # the ignore label and holes survive


def test_colour_jitter_matches_kornias_functional_ops_image_by_image():
    raw = raw_batch(5)
    factors = torch.tensor([[1.0, 1.0, 1.0, 0.0],  # an image left alone
                            [1.2, 0.8, 1.2, 0.02],
                            [0.8, 1.2, 0.8, -0.02],
                            [1.1, 0.9, 1.15, -0.01],
                            [0.85, 1.05, 0.9, 0.015]])
    pipe = BatchPipeline(CPU, 32, flip=False, scale=(1.0, 1.0), color_jitter=0.2, normalize=False)
    out = pipe.apply(raw, AugmentParams(torch.zeros(5, dtype=torch.bool), params(5).box, factors))
    image = unit_image(raw)
    for i in range(5):
        b, c, s, h = factors[i]
        x = KE.adjust_brightness(image[i:i + 1], b - 1)  # ColorJiggle's re-basing of the factor
        x = KE.adjust_contrast(x, c)
        x = KE.adjust_saturation(x, s)
        x = KE.adjust_hue(x, h * 2 * math.pi)  # ColorJiggle's hue is in turns
        torch.testing.assert_close(out["image"][i:i + 1], x.clamp(0, 1), rtol=0, atol=1e-5)
    assert torch.equal(out["depth"][:, 0], raw["depth"]) and torch.equal(out["seg"], raw["seg"].long())


def test_a_training_call_never_reads_back_from_the_device():
    raw = raw_batch(4)
    pipe = BatchPipeline(CPU, 24, scale=(0.5, 1.0), color_jitter=0.2, tasks=edges(depth_edges=0.3))
    pipe(raw, train=True, seed=0)  # warm-up: lazy initialisation is not the steady state
    with profile() as prof:
        pipe(raw, train=True, seed=1)
    names = {e.name for e in prof.events()}
    assert "aten::grid_sampler_2d" in names or "aten::grid_sampler" in names  # the profile saw the work
    assert not names & SYNCS


@pytest.mark.parametrize("thickness", [1, 2])
def test_edges_are_those_of_the_returned_labels_and_depth(thickness):
    raw = raw_batch(4)
    plain = BatchPipeline(CPU, 24, tasks=edges(thickness=thickness))
    out = plain(raw, train=True, seed=4)
    assert torch.equal(out["edge"], label_edges(out["seg"][:, None], thickness))
    with_depth = BatchPipeline(CPU, 24, tasks=edges(thickness=thickness, depth_edges=0.3))
    out = with_depth(raw, train=True, seed=4)
    expected = torch.maximum(label_edges(out["seg"][:, None], thickness), depth_edges(out["depth"], 0.3))
    assert torch.equal(out["edge"], expected)


def test_evaluation_ignores_seed_and_matches_an_unaugmented_pipeline():
    raw = raw_batch(4)
    out = BatchPipeline(CPU, 24)(raw, train=False, seed=3)
    plain = BatchPipeline(CPU, 24, augment=False)(raw, train=True)
    assert all(torch.equal(out[k], plain[k]) for k in out)
    assert out["image"].shape == (4, 3, 32, 32)  # no crop, no resize


# -- normals, the dataset's own edges, one-sided targets, depth scaled with the zoom ---------------

def with_normals(raw: dict[str, torch.Tensor], seed: int = 1) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    n, h, w = raw["depth"].shape
    normals = F.normalize(torch.randn(n, h, w, 3, generator=g), dim=-1)
    normals[raw["depth"] == 0] = 0.0
    edge = (torch.rand(n, h, w, generator=g) < 0.1).to(torch.uint8)
    return {**raw, "normals": normals.to(torch.float16), "edge": edge}


def test_a_flip_mirrors_normals_and_turns_their_x_component():
    raw = with_normals(raw_batch(4))
    pipe = BatchPipeline(CPU, 32, scale=(1.0, 1.0), color_jitter=0.0)
    for flip in (False, True):
        out = pipe.apply(raw, params(4, flip=flip))
        expect = raw["normals"].float().permute(0, 3, 1, 2)
        if flip:
            expect = expect.flip(-1) * torch.tensor([-1.0, 1.0, 1.0]).view(1, 3, 1, 1)
        assert torch.equal(out["normals"], expect)
        assert torch.equal(out["edge"][:, 0], raw["edge"].float().flip(-1) if flip else raw["edge"].float())


def test_a_crop_moves_normals_and_edges_with_the_labels_and_flips_x_through_the_affine_too():
    raw = with_normals(raw_batch(3))
    pipe = BatchPipeline(CPU, 16, scale=(0.25, 1.0), color_jitter=0.0)
    box = (8.0, 4.0, 16.0, 16.0)  # a 16-px crop shown at 16 px: an exact cut-out
    for flip in (False, True):
        out = pipe.apply(raw, params(3, flip=flip, box=box))
        cut = raw["normals"].float()[:, 4:20, 8:24].permute(0, 3, 1, 2)
        seg = raw["seg"][:, 4:20, 8:24].long()
        edge = raw["edge"][:, 4:20, 8:24].float()
        if flip:
            cut, seg, edge = cut.flip(-1) * torch.tensor([-1.0, 1.0, 1.0]).view(1, 3, 1, 1), seg.flip(-1), edge.flip(-1)
        assert torch.equal(out["seg"], seg)
        assert torch.equal(out["normals"], cut)
        assert torch.equal(out["edge"][:, 0], edge)  # the dataset's own edges, not label boundaries


def test_depth_is_divided_by_the_crop_zoom_only_when_asked():
    raw = raw_batch(2)
    box = (0.0, 0.0, 16.0, 16.0)  # half the 32-px side shown at 32 px: zoom 2
    plain = BatchPipeline(CPU, 32, scale=(0.25, 1.0), color_jitter=0.0).apply(raw, params(2, box=box))
    zoomed = BatchPipeline(CPU, 32, scale=(0.25, 1.0), color_jitter=0.0, depth_zoom=True).apply(raw, params(2, box=box))
    assert torch.equal(zoomed["depth"], plain["depth"] * 0.5)
    assert torch.equal(zoomed["seg"], plain["seg"])
    whole = BatchPipeline(CPU, 32, scale=(0.25, 1.0), color_jitter=0.0, depth_zoom=True).apply(raw, params(2))
    assert torch.equal(whole["depth"], raw["depth"][:, None])  # the whole frame: zoom 1


def test_one_sided_targets_are_bsds_boundaries_and_both_sided_ones_their_superset():
    raw = raw_batch(2)
    one = BatchPipeline(CPU, 32, augment=False, tasks=edges(targets="one_side"))(raw, train=False)
    both = BatchPipeline(CPU, 32, augment=False, tasks=edges())(raw, train=False)
    assert torch.equal(one["edge"], boundary_map(raw["seg"].long()[:, None]))
    assert bool((one["edge"] <= both["edge"]).all()) and one["edge"].sum() < both["edge"].sum()
    with pytest.raises(MtlbenchError, match="must be one of both_sides, one_side, got 'thick'"):
        edges(targets="thick")


def test_boundary_map_marks_one_side_of_each_label_change_as_seg2bmap():
    seg = torch.zeros(1, 1, 5, 6, dtype=torch.long)
    seg[..., :, 3:] = 1
    seg[..., 3:, :] = 2
    # hand-drawn from BSDS seg2bmap: a pixel is marked where its right, lower or lower-right
    # neighbour differs; the last row looks right only, the last column down only
    expect = torch.tensor([[0, 0, 1, 0, 0, 0],
                           [0, 0, 1, 0, 0, 0],
                           [1, 1, 1, 1, 1, 1],
                           [0, 0, 0, 0, 0, 0],
                           [0, 0, 0, 0, 0, 0]], dtype=torch.float32)
    assert torch.equal(boundary_map(seg)[0, 0], expect)
    assert boundary_map(torch.full((1, 1, 4, 4), 3))[0, 0].sum() == 0
