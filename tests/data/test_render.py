"""Tests of the synthrooms renderer; expected values are computed here by hand."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from mtlbench.data.synthrooms import (
    IGNORE_LABEL,
    NYU40_FURNITURE,
    NYU40_IDS,
    SURFACE_FLOOR,
    SURFACE_WALL_Z1,
    Box,
    Camera,
    Decal,
    Material,
    SceneLayout,
    camera_intrinsics,
    render_batch,
    render_layout,
    render_scene,
    scene_layout,
)

SMALL = (60, 80)

# Room used by the hand-built layouts: x in [0, 5], z in [0, 6], y in [0, 2.8].
ROOM_W, ROOM_D, ROOM_H = 5.0, 6.0, 2.8
CAM_X, CAM_Y, CAM_Z = 2.5, 1.3, 1.0


def _layout(yaw: float = 0.0, pitch: float = 0.0, **kwargs) -> SceneLayout:
    return SceneLayout(ROOM_W, ROOM_D, ROOM_H, Camera((CAM_X, CAM_Y, CAM_Z), yaw, pitch), **kwargs)


def _pixel_ray(i: int, j: int, h: int, w: int) -> tuple[float, float]:
    """Normalised image coordinates of pixel (i, j) from the NYU intrinsics, scaled by hand."""
    fx, cx = 518.86 * w / 640, 325.58 * w / 640
    fy, cy = 519.47 * h / 480, 253.74 * h / 480
    return (j + 0.5 - cx) / fx, (i + 0.5 - cy) / fy


# --------------------------------------------------------------------------------------------
# Labels and API surface
# --------------------------------------------------------------------------------------------


def test_nyu40_ids_match_names40() -> None:
    expected = {
        "wall": 0, "floor": 1, "cabinet": 2, "bed": 3, "chair": 4, "sofa": 5, "table": 6,
        "door": 7, "window": 8, "bookshelf": 9, "picture": 10, "counter": 11, "desk": 13,
        "dresser": 16, "floor mat": 19, "ceiling": 21, "refridgerator": 23, "television": 24,
        "whiteboard": 29, "night stand": 31, "otherprop": 39,
    }  # fmt: skip
    for name, idx in expected.items():
        assert NYU40_IDS[name] == idx
    assert len(NYU40_IDS) == 40
    for name, idx in NYU40_FURNITURE.items():
        assert expected[name] == idx


def test_camera_intrinsics_scale_with_width_and_height() -> None:
    fx, fy, cx, cy = camera_intrinsics((240, 320))
    assert fx == pytest.approx(259.43) and cx == pytest.approx(162.79)
    assert fy == pytest.approx(259.735) and cy == pytest.approx(126.87)
    assert camera_intrinsics(256) == camera_intrinsics((256, 256))


@pytest.mark.parametrize("size, shape", [(32, (32, 32)), ((40, 56), (40, 56)), ((1, 3), (1, 3))])
def test_size_int_and_tuple(size, shape) -> None:
    frame = render_scene(0, 1, size)
    assert frame["image"].shape == (*shape, 3) and frame["image"].dtype == np.uint8
    assert frame["depth"].shape == shape and frame["depth"].dtype == np.float32
    assert frame["seg"].shape == shape and frame["seg"].dtype == np.uint8
    assert frame["normals"].shape == (*shape, 3) and frame["normals"].dtype == np.float32


@pytest.mark.parametrize("size", [0, (10, 0), (1, 2, 3), "big"])
def test_bad_size_raises(size) -> None:
    with pytest.raises(ValueError):
        render_scene(0, 0, size)


def test_camera_outside_room_raises() -> None:
    layout = dataclasses.replace(_layout(), camera=Camera((-1.0, 1.3, 1.0)))
    with pytest.raises(ValueError, match="inside the room"):
        render_layout(layout, SMALL)


# --------------------------------------------------------------------------------------------
# Determinism
# --------------------------------------------------------------------------------------------


def _assert_frames_equal(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert a.keys() == b.keys() == {"image", "depth", "seg", "normals"}
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_same_seed_and_index_give_identical_frames() -> None:
    _assert_frames_equal(
        render_scene(3, 7, SMALL, holes=True), render_scene(3, 7, SMALL, holes=True)
    )


def test_other_index_or_seed_gives_other_frame() -> None:
    a = render_scene(3, 7, SMALL)
    for other in (render_scene(3, 8, SMALL), render_scene(4, 7, SMALL)):
        assert not np.array_equal(a["image"], other["image"])
        assert not np.array_equal(a["depth"], other["depth"])


def test_render_order_does_not_matter() -> None:
    batch = render_batch(11, range(10), SMALL, holes=True)
    assert batch["image"].shape == (10, *SMALL, 3) and batch["image"].dtype == np.uint8
    assert batch["depth"].shape == (10, *SMALL) and batch["depth"].dtype == np.float32
    assert batch["seg"].shape == (10, *SMALL) and batch["seg"].dtype == np.uint8
    assert batch["normals"].shape == (10, *SMALL, 3) and batch["normals"].dtype == np.float32
    alone = render_scene(11, 5, SMALL, holes=True)
    _assert_frames_equal(alone, {k: v[5] for k, v in batch.items()})
    reversed_batch = render_batch(11, [9, 5], SMALL, holes=True)
    _assert_frames_equal(alone, {k: v[1] for k, v in reversed_batch.items()})


def test_layout_is_independent_of_size_and_render_calls() -> None:
    before = scene_layout(2, 4)
    render_scene(2, 4, (30, 40))
    render_scene(2, 3, 64)
    assert scene_layout(2, 4) == before
    # the same scene at two sizes: labels agree on most co-located pixels (only edges differ)
    big = render_scene(2, 4, (120, 160))["seg"]
    small = render_scene(2, 4, (60, 80))["seg"]
    assert (big[::2, ::2] == small).mean() > 0.8 or (big[1::2, 1::2] == small).mean() > 0.8


def test_render_scene_equals_render_layout_of_scene_layout() -> None:
    _assert_frames_equal(render_scene(5, 2, SMALL), render_layout(scene_layout(5, 2), SMALL))


# --------------------------------------------------------------------------------------------
# Sampled layouts
# --------------------------------------------------------------------------------------------


def test_sampled_layouts_are_plausible() -> None:
    counts = []
    for index in range(200):
        lay = scene_layout(1, index)
        assert 3.0 <= lay.width <= 8.0 and 3.0 <= lay.depth <= 8.0 and 2.4 <= lay.height <= 3.2
        x, y, z = lay.camera.position
        assert 0 < x < lay.width and 0 < z < lay.depth and 1.0 <= y <= 1.6
        assert math.radians(-15) <= lay.camera.pitch <= math.radians(5)
        counts.append(len(lay.boxes))
        for box in lay.boxes:
            assert box.label in NYU40_FURNITURE.values()
            # every footprint corner inside the room
            c, s = math.cos(box.yaw), math.sin(box.yaw)
            for sx in (-1, 1):
                for sz in (-1, 1):
                    lx, lz = sx * box.size[0] / 2, sz * box.size[2] / 2
                    cx = box.center[0] + lx * c + lz * s
                    cz = box.center[1] - lx * s + lz * c
                    assert -1e-9 <= cx <= lay.width + 1e-9 and -1e-9 <= cz <= lay.depth + 1e-9
            # the camera is not inside the footprint
            dx, dz = x - box.center[0], z - box.center[1]
            assert abs(dx * c - dz * s) > box.size[0] / 2 or abs(dx * s + dz * c) > box.size[2] / 2
        for decal in lay.decals:
            u0, u1, v0, v1 = decal.rect
            assert u0 < u1 and v0 < v1
            if decal.surface == SURFACE_FLOOR:
                assert 0 <= u0 and u1 <= lay.width and 0 <= v0 and v1 <= lay.depth
            else:
                assert 0 <= v0 and v1 <= lay.height
    assert min(counts) >= 2 and max(counts) <= 8
    assert len(set(counts)) >= 4  # the count varies


def test_labels_values_and_furniture_present() -> None:
    seen: set[int] = set()
    for index in range(12):
        seg = render_scene(0, index, SMALL)["seg"]
        values = set(np.unique(seg).tolist())
        assert values <= set(range(40)) | {IGNORE_LABEL}
        assert IGNORE_LABEL not in values  # the room is closed: every ray hits something
        assert NYU40_IDS["wall"] in values
        seen |= values
    furniture = seen & set(NYU40_FURNITURE.values())
    assert len(furniture) >= 4
    assert seen & {NYU40_IDS[n] for n in ("picture", "window", "door", "floor mat")}


def test_image_has_texture_and_noise() -> None:
    frame = render_scene(0, 2, (64, 64))
    image = frame["image"].astype(np.float64)
    assert image.std() > 15
    # sensor noise: neighbouring pixels of one surface are not all equal
    assert np.abs(np.diff(image, axis=1)).mean() > 1.0
    # a flat plain wall with zero noise and no lights is perfectly uniform
    flat = dataclasses.replace(
        _layout(),
        noise_sigma=0.0,
        lights=(),
        sun_intensity=0.0,
        ambient=1.0,
        wall_material=Material((0.5, 0.5, 0.5), contrast=0.0),
    )
    wall = render_layout(flat, SMALL)
    wall_pixels = wall["image"][wall["seg"] == NYU40_IDS["wall"]]
    assert (wall_pixels == wall_pixels[0]).all()
    assert abs(int(wall_pixels[0, 0]) - round(0.5 * 255)) <= 1


# --------------------------------------------------------------------------------------------
# Metric depth
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("yaw, wall_distance", [
    (0.0, ROOM_D - CAM_Z),          # facing the wall z = depth
    (math.pi / 2, ROOM_W - CAM_X),  # facing x = width
    (math.pi, CAM_Z),               # facing z = 0
    (-math.pi / 2, CAM_X),          # facing x = 0
])  # fmt: skip
@pytest.mark.parametrize("pitch", [0.0, math.radians(-12.0), math.radians(4.0)])
def test_centre_pixel_depth_on_facing_wall(yaw: float, wall_distance: float, pitch: float) -> None:
    h, w = 240, 320
    i, j = h // 2, w // 2
    frame = render_layout(_layout(yaw, pitch), (h, w))
    _, b = _pixel_ray(i, j, h, w)
    # in the camera frame the ray is (a, b, 1); pitching tilts its component along the
    # horizontal viewing direction to cos(p) + b sin(p), and z-depth is the ray parameter
    expected = wall_distance / (math.cos(pitch) + b * math.sin(pitch))
    height_at_hit = CAM_Y + expected * (math.sin(pitch) - b * math.cos(pitch))
    assert 0 < height_at_hit < ROOM_H  # the hit is on the wall, not floor or ceiling
    assert frame["depth"][i, j] == pytest.approx(expected, abs=1e-3)
    assert frame["seg"][i, j] == NYU40_IDS["wall"]


def test_floor_pixel_depth() -> None:
    h, w = 240, 320
    pitch = math.radians(-10.0)
    frame = render_layout(_layout(0.0, pitch), (h, w))
    i, j = h - 1, 37
    _, b = _pixel_ray(i, j, h, w)
    expected = CAM_Y / (b * math.cos(pitch) - math.sin(pitch))  # drop of CAM_Y metres
    assert frame["depth"][i, j] == pytest.approx(expected, abs=1e-3)
    assert frame["seg"][i, j] == NYU40_IDS["floor"]


def test_depth_is_z_distance_not_ray_length() -> None:
    # level camera facing a wall: every pixel of that wall is at the same z-depth
    frame = render_layout(_layout(0.0, 0.0), (48, 64), max_depth=100.0)
    fx, fy, cx, cy = camera_intrinsics((48, 64))
    a = (np.arange(64) + 0.5 - cx) / fx
    bb = (np.arange(48) + 0.5 - cy) / fy
    hit_x = CAM_X + (ROOM_D - CAM_Z) * a[None, :]
    hit_y = CAM_Y - (ROOM_D - CAM_Z) * bb[:, None]
    on_wall = (hit_x > 0.01) & (hit_x < ROOM_W - 0.01) & (hit_y > 0.01) & (hit_y < ROOM_H - 0.01)
    assert on_wall.sum() > 1000
    np.testing.assert_allclose(frame["depth"][on_wall], ROOM_D - CAM_Z, atol=1e-4)


@pytest.mark.parametrize(
    "box_yaw, size",
    [(0.0, (1.0, 2.0, 0.5)), (math.pi / 2, (0.5, 2.0, 1.0)), (math.pi, (1.0, 2.0, 0.5))],
)
def test_box_front_face_depth(box_yaw: float, size: tuple[float, float, float]) -> None:
    h, w = 240, 320
    pitch = math.radians(-5.0)
    box = Box(NYU40_IDS["bookshelf"], (CAM_X, 3.0), size, box_yaw)
    frame = render_layout(_layout(0.0, pitch, boxes=(box,)), (h, w))
    i, j = h // 2, w // 2
    _, b = _pixel_ray(i, j, h, w)
    front = 3.0 - 0.25  # the box spans z in [2.75, 3.25] whichever way it is turned
    expected = (front - CAM_Z) / (math.cos(pitch) + b * math.sin(pitch))
    assert frame["depth"][i, j] == pytest.approx(expected, abs=1e-3)
    assert frame["seg"][i, j] == NYU40_IDS["bookshelf"]
    # the box hides part of the wall, nothing else
    without = render_layout(_layout(0.0, pitch), (h, w))
    changed = frame["seg"] != without["seg"]
    assert (frame["seg"][changed] == NYU40_IDS["bookshelf"]).all()
    assert (frame["depth"][changed] < without["depth"][changed]).all()
    np.testing.assert_array_equal(frame["depth"][~changed], without["depth"][~changed])


def test_box_behind_camera_is_invisible() -> None:
    box = Box(NYU40_IDS["cabinet"], (CAM_X, 0.4), (1.0, 2.0, 0.4))
    with_box = render_layout(_layout(0.0, 0.0, boxes=(box,)), SMALL)
    without = render_layout(_layout(0.0, 0.0), SMALL)
    _assert_frames_equal(with_box, without)


def test_max_depth_invalidates_far_pixels() -> None:
    lay = _layout(0.0, 0.0)
    far = render_layout(lay, SMALL, max_depth=100.0)["depth"]
    near = render_layout(lay, SMALL, max_depth=4.0)["depth"]
    assert (far > 0).all()
    np.testing.assert_array_equal(near, np.where(far <= 4.0, far, 0.0))
    assert (near == 0).any() and (near > 0).any()


# --------------------------------------------------------------------------------------------
# Decals
# --------------------------------------------------------------------------------------------


def test_picture_changes_labels_not_depth() -> None:
    h, w = 120, 160
    pitch = math.radians(-3.0)
    u0, u1, v0, v1 = 2.0, 3.2, 1.0, 1.8  # on the wall z = depth: u = x, v = y
    picture = Decal(
        NYU40_IDS["picture"],
        SURFACE_WALL_Z1,
        (u0, u1, v0, v1),
        Material((0.8, 0.2, 0.2), "picture", (0.1, 0.1, 0.1), 0.2),
    )
    plain = render_layout(_layout(0.0, pitch), (h, w))
    framed = render_layout(_layout(0.0, pitch, decals=(picture,)), (h, w))

    np.testing.assert_array_equal(plain["depth"], framed["depth"])
    changed = plain["seg"] != framed["seg"]
    assert changed.sum() > 100
    assert (framed["seg"][changed] == NYU40_IDS["picture"]).all()
    assert (plain["seg"][changed] == NYU40_IDS["wall"]).all()
    assert not np.array_equal(plain["image"][changed], framed["image"][changed])

    # where each pixel's ray meets the plane z = depth, by hand (float64)
    fx, fy, cx, cy = camera_intrinsics((h, w))
    a = ((np.arange(w) + 0.5 - cx) / fx)[None, :]
    b = ((np.arange(h) + 0.5 - cy) / fy)[:, None]
    along = math.cos(pitch) + b * math.sin(pitch)
    dist = (ROOM_D - CAM_Z) / along
    hit_x = CAM_X + dist * a
    hit_y = CAM_Y + dist * (math.sin(pitch) - b * math.cos(pitch))
    inside = (hit_x >= u0) & (hit_x <= u1) & (hit_y >= v0) & (hit_y <= v1)
    near_border = (np.minimum(np.abs(hit_x - u0), np.abs(hit_x - u1)) < 1e-4) | (
        np.minimum(np.abs(hit_y - v0), np.abs(hit_y - v1)) < 1e-4
    )
    assert ((inside == changed) | near_border).all()


def test_floor_mat_changes_labels_not_depth() -> None:
    mat = Decal(
        NYU40_IDS["floor mat"],
        SURFACE_FLOOR,
        (1.5, 3.5, 2.2, 3.5),
        Material((0.3, 0.3, 0.6), "mat"),
    )
    lay = _layout(0.0, math.radians(-14.0))
    plain = render_layout(lay, SMALL)
    with_mat = render_layout(dataclasses.replace(lay, decals=(mat,)), SMALL)
    np.testing.assert_array_equal(plain["depth"], with_mat["depth"])
    changed = plain["seg"] != with_mat["seg"]
    assert changed.any()
    assert (with_mat["seg"][changed] == NYU40_IDS["floor mat"]).all()
    assert (plain["seg"][changed] == NYU40_IDS["floor"]).all()


# --------------------------------------------------------------------------------------------
# Holes
# --------------------------------------------------------------------------------------------


def test_holes_only_touch_depth() -> None:
    for index in range(4):
        clean = render_scene(7, index, SMALL, max_depth=100.0)
        holey = render_scene(7, index, SMALL, holes=True, max_depth=100.0)
        assert (clean["depth"] > 0).all()
        assert (holey["depth"] == 0).any()
        np.testing.assert_array_equal(clean["image"], holey["image"])
        np.testing.assert_array_equal(clean["seg"], holey["seg"])
        valid = holey["depth"] > 0
        np.testing.assert_array_equal(holey["depth"][valid], clean["depth"][valid])
        assert valid.mean() > 0.5


def test_valid_depth_range() -> None:
    for index in range(6):
        depth = render_scene(8, index, SMALL, holes=bool(index % 2))["depth"]
        valid = depth[depth > 0]
        assert valid.size and (valid <= 10.0).all() and (valid > 0.05).all()
        assert np.isfinite(depth).all() and (depth >= 0).all()


def test_projector_shadow_left_of_foreground_edge() -> None:
    h, w = 120, 160
    box = Box(NYU40_IDS["cabinet"], (CAM_X, 2.5), (0.8, 2.0, 0.4))
    lay = _layout(0.0, 0.0, boxes=(box,))
    clean = render_layout(lay, (h, w))
    holey = render_layout(lay, (h, w), holes=True)
    is_box = clean["seg"] == NYU40_IDS["cabinet"]
    rows = np.flatnonzero(is_box.any(axis=1))
    left_edge = is_box[rows].argmax(axis=1)  # first box column in each row
    assert (left_edge > 0).all()
    # the background pixel just left of the box is in the projector's shadow
    shadowed = holey["depth"][rows, left_edge - 1] == 0
    assert shadowed.mean() > 0.9


# --------------------------------------------------------------------------------------------
# Exact surface normals
# --------------------------------------------------------------------------------------------


def _normal_at(frame: dict[str, np.ndarray], i: int, j: int) -> np.ndarray:
    return frame["normals"][i, j].astype(np.float64)


@pytest.mark.parametrize("holes, max_depth", [(False, 100.0), (True, 10.0), (False, 4.0), (True, 3.0)])
def test_normals_unit_and_valid_exactly_where_depth_is(holes: bool, max_depth: float) -> None:
    for index in range(4):
        frame = render_scene(9, index, SMALL, holes=holes, max_depth=max_depth)
        valid = frame["depth"] > 0
        length = np.linalg.norm(frame["normals"], axis=-1)
        assert (frame["normals"][~valid] == 0).all()
        np.testing.assert_allclose(length[valid], 1.0, atol=1e-6)
        # every visible surface faces the camera: the normal opposes the viewing ray (x, y, -1)
        fx, fy, cx, cy = camera_intrinsics(SMALL)
        a = (np.arange(SMALL[1]) + 0.5 - cx) / fx
        b = (np.arange(SMALL[0]) + 0.5 - cy) / fy
        ray = np.stack(np.broadcast_arrays(a[None, :], -b[:, None], -np.ones(SMALL)), -1)
        assert ((frame["normals"] * ray).sum(-1)[valid] < 0).all()


@pytest.mark.parametrize("pitch", [0.0, math.radians(-10.0), math.radians(4.0)])
def test_room_plane_normals_in_the_camera_frame(pitch: float) -> None:
    h, w = 120, 160
    frame = render_layout(_layout(0.0, pitch), (h, w))
    # facing the wall z = depth, whose normal -z_world points into the room: pitching the
    # camera by p turns it to (0, sin p, cos p) in the camera frame (x right, y up, z back)
    wall = frame["seg"] == NYU40_IDS["wall"]
    i, j = h // 2, w // 2
    assert wall[i, j]
    np.testing.assert_allclose(_normal_at(frame, i, j), [0.0, math.sin(pitch), math.cos(pitch)], atol=1e-6)
    # the floor's up vector becomes (0, cos p, -sin p)
    floor = frame["seg"] == NYU40_IDS["floor"]
    assert floor[-1].any()
    np.testing.assert_allclose(frame["normals"][floor].astype(np.float64),
                               np.broadcast_to([0.0, math.cos(pitch), -math.sin(pitch)], (floor.sum(), 3)), atol=1e-6)
    # the side walls x = 0 (normal +x_world) and x = width (-x_world) at the image's edges
    for col, expected in ((0, [1.0, 0.0, 0.0]), (w - 1, [-1.0, 0.0, 0.0])):
        assert wall[i, col] and frame["depth"][i, col] < frame["depth"][i, j] - 0.5  # not the far wall
        np.testing.assert_allclose(_normal_at(frame, i, col), expected, atol=1e-6)


@pytest.mark.parametrize("camera_yaw", [0.0, 0.35])
def test_box_face_normals(camera_yaw: float) -> None:
    h, w = 120, 160
    box_yaw = 0.3
    box = Box(NYU40_IDS["cabinet"], (CAM_X, 3.0), (1.0, 1.8, 0.6), box_yaw)
    frame = render_layout(_layout(camera_yaw, 0.0, boxes=(box,)), (h, w))
    cabinet = frame["seg"] == NYU40_IDS["cabinet"]
    # the face towards the camera is the box's local -z face: world (-sin b, 0, -cos b); a
    # camera turned by yaw c sees it as (-sin(b - c), 0, cos(b - c)), the top face as (0, 1, 0)
    front = np.array([-math.sin(box_yaw - camera_yaw), 0.0, math.cos(box_yaw - camera_yaw)])
    got = frame["normals"][cabinet].astype(np.float64)
    is_front = np.abs(got - front).max(-1) < 1e-6
    assert is_front.mean() > 0.5
    others = got[~is_front]
    # whatever else is visible is another face of the same box, with an exact axis-aligned normal
    faces = np.array([[math.cos(box_yaw - camera_yaw), 0.0, math.sin(box_yaw - camera_yaw)], [0.0, 1.0, 0.0]])
    faces = np.concatenate([faces, faces[:1] * [-1, 1, -1]])
    assert (np.abs(others[:, None, :] - faces[None]).max(-1).min(-1) < 1e-6).all()


def _same_plane_interior(frame: dict[str, np.ndarray], window: int) -> np.ndarray:
    """Pixels whose whole ``window`` lies on one plane (same exact normal and offset)."""
    import torch
    import torch.nn.functional as F

    n, depth = frame["normals"].astype(np.float64), frame["depth"].astype(np.float64)
    h, w = depth.shape
    fx, fy, cx, cy = camera_intrinsics((h, w))
    a = (np.arange(w) + 0.5 - cx) / fx
    b = (np.arange(h) + 0.5 - cy) / fy
    p = np.stack(np.broadcast_arrays(a[None, :] * depth, -b[:, None] * depth, -depth), -1)
    t = torch.from_numpy(np.concatenate([n, (n * p).sum(-1, keepdims=True)], -1)).permute(2, 0, 1)[None]
    r = window // 2
    spread = (F.max_pool2d(t, window, 1, r) + F.max_pool2d(-t, window, 1, r)).amax(1)[0].numpy()
    inside = (spread < 1e-4) & (depth > 0)
    inside[:r] = inside[h - r:] = False
    inside[:, :r] = inside[:, w - r:] = False
    return inside


def test_normals_from_depth_agrees_with_the_exact_normals() -> None:
    """The renderer's camera model is the one normals_from_depth assumes (pixel centres at
    j + 0.5, NYU intrinsics scaled by the size ratio): fits of its depth recover its normals."""
    import torch

    from mtlbench.data.normals import angular_error_deg, normals_from_depth

    size = (240, 320)
    for seed, index in ((2, 3), (0, 0), (5, 7)):
        frame = render_scene(seed, index, size, max_depth=100.0)  # no holes
        est = normals_from_depth(torch.from_numpy(frame["depth"])[None], *camera_intrinsics(size), window=5)
        est_hwc = est[0].permute(1, 2, 0).numpy()
        err = angular_error_deg(est_hwc, frame["normals"])
        # measured: median ~1e-4°, against 9e-3..5e-2° with cx off by half a pixel
        assert np.median(err) < 2e-3
        inside = _same_plane_interior(frame, 5)
        assert inside.mean() > 0.8
        # measured: at most 6e-4° (float32 depth), against 0.07-0.1° with cx off by half a pixel
        assert angular_error_deg(est_hwc[inside], frame["normals"][inside]).max() < 5e-3
