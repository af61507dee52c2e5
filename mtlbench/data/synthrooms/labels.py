"""NYU-40 class names and ids, the subsets of them the renderer draws, and the ignore label."""

from __future__ import annotations

NYU40_NAMES: tuple[str, ...] = (
    "wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door", "window", "bookshelf",
    "picture", "counter", "blinds", "desk", "shelves", "curtain", "dresser", "pillow", "mirror",
    "floor mat", "clothes", "ceiling", "books", "refridgerator", "television", "paper", "towel",
    "shower curtain", "box", "whiteboard", "person", "night stand", "toilet", "sink", "lamp",
    "bathtub", "bag", "otherstructure", "otherfurniture", "otherprop",
)  # fmt: skip
"""NYU-40 class names; the 0-based class id is the position in this tuple."""

NYU40_IDS: dict[str, int] = {name: i for i, name in enumerate(NYU40_NAMES)}
"""All NYU-40 names -> 0-based class ids."""

NYU40_STRUCTURE: dict[str, int] = {name: NYU40_IDS[name] for name in ("wall", "floor", "ceiling")}
"""Room surfaces -> 0-based NYU-40 ids."""

NYU40_FURNITURE: dict[str, int] = {
    name: NYU40_IDS[name]
    for name in (
        "cabinet", "bed", "chair", "sofa", "table", "bookshelf", "counter", "desk", "dresser",
        "refridgerator", "night stand",
    )
}  # fmt: skip
"""Box-shaped furniture classes the renderer places -> 0-based NYU-40 ids."""

NYU40_DECALS: dict[str, int] = {
    name: NYU40_IDS[name]
    for name in ("door", "window", "picture", "floor mat", "television", "whiteboard")
}
"""Flat classes drawn on walls / floor (label only, no depth change) -> 0-based NYU-40 ids."""

IGNORE_LABEL = 255
"""Label of pixels without a class (only rays that hit nothing, which a closed room has none of)."""

WALL = NYU40_IDS["wall"]
FLOOR = NYU40_IDS["floor"]
CEILING = NYU40_IDS["ceiling"]
