"""Tile a large image, decide which tile owns each instance, merge cross-tile duplicates.

The grid
    Tiles of ``tile x tile`` pixels (smaller only when the image is) overlap their neighbours by
    at least ``overlap`` pixels. Tiles keep their full size at the image borders: the last tile
    of a row or column ends at the border, and the starts are spread evenly.
Ownership
    Each tile has a *core*: its extent minus half of the overlap with each neighbour (up to the
    image border on the outside). The cores partition the image exactly. An instance belongs to
    the tile whose core contains its box centre; copies of it seen by other tiles are dropped.
    When ``overlap`` is at least the largest object diameter plus a margin, an owned instance
    lies wholly inside its tile, so it is never cut.
Merging
    The same cell seen by two tiles can have its box centre predicted on either side of a core
    border (context changes the prediction slightly); both copies are then owned. Among owned
    instances of neighbouring tiles, a pair whose masks overlap by IoU >= ``merge_iou`` is one
    cell: the higher score is kept (greedy NMS, class-agnostic).

Coordinates are pixels of the tiled image, boxes ``(x0, y0, x1, y1)``. Tiles are processed in
row-major order; :class:`Stitcher` keeps only the owned instances of the last two tile rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from napari_hrs.engine.masks import box_iou, mask_overlap

__all__ = ["Instance", "Stitcher", "Tile", "TileGrid", "axis_starts"]


def axis_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Tile start positions along one axis: first 0, last ``length - tile``, evenly spread so
    that consecutive tiles overlap by at least ``overlap`` pixels (one tile when it fits)."""
    if tile <= 0 or overlap < 0 or overlap >= tile:
        raise ValueError(f"need tile > overlap >= 0 pixels, got tile={tile}, overlap={overlap}")
    if length <= tile:
        return [0]
    n = max(2, math.ceil((length - overlap) / (tile - overlap)))
    while True:
        starts = [round(i * (length - tile) / (n - 1)) for i in range(n)]
        if all(a + tile - b >= overlap for a, b in zip(starts, starts[1:], strict=False)):
            return starts
        n += 1


def _core_bounds(starts: list[int], tile: int, length: int) -> list[int]:
    """``n + 1`` core boundaries: 0, the midpoints of the overlaps, ``length``."""
    mids = [(b + min(a + tile, length)) // 2 for a, b in zip(starts, starts[1:], strict=False)]
    return [0, *mids, length]


@dataclass(frozen=True)
class Tile:
    """One tile: its grid position, pixel extent and core (all half-open, image pixels)."""

    index: int
    row: int
    col: int
    y0: int
    y1: int
    x0: int
    x1: int
    core: tuple[int, int, int, int]  # (cy0, cy1, cx0, cx1)

    @property
    def shape(self) -> tuple[int, int]:
        return self.y1 - self.y0, self.x1 - self.x0

    def owns(self, cy: np.ndarray, cx: np.ndarray) -> np.ndarray:
        """Whether points ``(cy, cx)`` (image pixels) lie in this tile's core."""
        y0, y1, x0, x1 = self.core
        return (cy >= y0) & (cy < y1) & (cx >= x0) & (cx < x1)


class TileGrid:
    """Overlapping tiles covering an image of ``shape`` ``(H, W)`` pixels.

    Parameters
    ----------
    shape : (H, W)
        Image size in pixels.
    tile : int
        Tile edge in pixels (tiles are smaller only where the image is).
    overlap : int
        Minimum overlap of neighbouring tiles in pixels (``0 <= overlap < tile``).
    """

    def __init__(self, shape: tuple[int, int], tile: int, overlap: int) -> None:
        self.shape = (int(shape[0]), int(shape[1]))
        self.tile, self.overlap = int(tile), int(overlap)
        h, w = self.shape
        self.ys = axis_starts(h, self.tile, self.overlap)
        self.xs = axis_starts(w, self.tile, self.overlap)
        self.core_y = _core_bounds(self.ys, self.tile, h)
        self.core_x = _core_bounds(self.xs, self.tile, w)
        self.tiles: list[Tile] = []
        for r, y in enumerate(self.ys):
            for c, x in enumerate(self.xs):
                self.tiles.append(
                    Tile(
                        index=len(self.tiles), row=r, col=c,
                        y0=y, y1=min(y + self.tile, h), x0=x, x1=min(x + self.tile, w),
                        core=(self.core_y[r], self.core_y[r + 1], self.core_x[c], self.core_x[c + 1]),
                    )
                )  # fmt: skip

    @property
    def n_rows(self) -> int:
        return len(self.ys)

    @property
    def n_cols(self) -> int:
        return len(self.xs)

    def __len__(self) -> int:
        return len(self.tiles)

    def __iter__(self):
        return iter(self.tiles)

    def row(self, r: int) -> list[Tile]:
        """The tiles of grid row ``r``, left to right."""
        return self.tiles[r * self.n_cols : (r + 1) * self.n_cols]

    def owner(self, y: float, x: float) -> Tile:
        """The tile whose core contains image point ``(y, x)``."""
        r = int(np.searchsorted(self.core_y, y, side="right")) - 1
        c = int(np.searchsorted(self.core_x, x, side="right")) - 1
        r = min(max(r, 0), self.n_rows - 1)
        c = min(max(c, 0), self.n_cols - 1)
        return self.tiles[r * self.n_cols + c]

    def __repr__(self) -> str:
        return (
            f"TileGrid(shape={self.shape}, tile={self.tile}, overlap={self.overlap}, "
            f"{self.n_rows} x {self.n_cols} tiles)"
        )


@dataclass
class Instance:
    """One detected instance in image coordinates, its mask pasted into its box's extent."""

    box: np.ndarray  # (4,) float64, x0 y0 x1 y1
    score: float
    class_id: int
    mask: np.ndarray  # (h, w) bool
    offset: tuple[int, int]  # (y0, x0) of mask[0, 0]
    tile: int = -1
    id: int = 0
    area: int = field(init=False)

    def __post_init__(self) -> None:
        self.area = int(np.count_nonzero(self.mask))

    @property
    def centre(self) -> tuple[float, float]:
        """Box centre ``(y, x)`` in pixels."""
        x0, y0, x1, y1 = self.box
        return (y0 + y1) / 2.0, (x0 + x1) / 2.0

    @property
    def y_end(self) -> int:
        """One past the last image row the mask covers."""
        return self.offset[0] + self.mask.shape[0]


def owned(tile: Tile, instances: list[Instance]) -> list[Instance]:
    """The instances whose box centre lies in ``tile``'s core."""
    if not instances:
        return []
    boxes = np.stack([i.box for i in instances])
    keep = tile.owns((boxes[:, 1] + boxes[:, 3]) / 2.0, (boxes[:, 0] + boxes[:, 2]) / 2.0)
    return [inst for inst, k in zip(instances, keep, strict=True) if k]


class Stitcher:
    """Collect owned instances tile by tile (row-major) and release them once final.

    Within a tile, owned instances whose masks overlap by IoU >= ``merge_iou`` are one cell (the
    model's NMS is per class): the higher score is kept. Across tiles, see below.

    After all tiles of row ``r`` were added, :meth:`end_row` merges cross-tile duplicates between
    row ``r`` and rows ``r`` / ``r - 1``, and returns the instances of row ``r - 1``, now final
    (no later tile can duplicate them), in a deterministic order (tile, then descending score).
    Only two rows of instances are held at any time.

    Parameters
    ----------
    grid : TileGrid
    merge_iou : float
        Mask IoU from which two instances of neighbouring tiles are one cell.
    """

    def __init__(self, grid: TileGrid, merge_iou: float = 0.5) -> None:
        self.grid = grid
        self.merge_iou = float(merge_iou)
        self._rows: dict[int, dict[int, list[Instance]]] = {}
        self.n_merged = 0
        self.n_suppressed = 0
        self.n_not_owned = 0
        self.max_pending_tiles = 0

    def add(self, tile: Tile, instances: list[Instance]) -> None:
        """Keep the instances of ``tile`` (image coordinates) that it owns."""
        mine = owned(tile, instances)
        self.n_not_owned += len(instances) - len(mine)
        for inst in mine:
            inst.tile = tile.index
        # one instance per cell: the model's NMS is per class, so the same cell can come
        # back under two classes; keep the higher score (class-agnostic, like across tiles)
        edges = self._duplicates(mine, mine, same=True)
        if edges:
            removed = self._suppressed(edges)
            self.n_suppressed += len(removed)
            mine = [i for i in mine if id(i) not in removed]
        self._rows.setdefault(tile.row, {})[tile.col] = mine
        self.max_pending_tiles = max(self.max_pending_tiles, self.pending_tiles)

    @property
    def pending_tiles(self) -> int:
        """Number of tiles whose instances are held."""
        return sum(len(cols) for cols in self._rows.values())

    @property
    def pending_instances(self) -> int:
        return sum(len(v) for cols in self._rows.values() for v in cols.values())

    def end_row(self, r: int) -> list[Instance]:
        """Merge row ``r`` with its neighbours; return the (now final) instances of row r - 1."""
        self._merge_row(r)
        return self._release(r - 1)

    def flush(self) -> list[Instance]:
        """Release everything still held (end of image, or a cancelled run), in row order."""
        out: list[Instance] = []
        for r in sorted(self._rows):
            out += self._release(r)
        return out

    # ---------------------------------------------------------------------------------------
    def _release(self, r: int) -> list[Instance]:
        cols = self._rows.pop(r, {})
        out: list[Instance] = []
        for c in sorted(cols):
            out += sorted(cols[c], key=lambda i: (-i.score, i.box[1], i.box[0], i.class_id))
        return out

    def _neighbour_pairs(self, r: int) -> list[tuple[list[Instance], list[Instance]]]:
        """(row r tile, neighbour tile) instance lists: right neighbour in row r, and the three
        tiles above (row r - 1)."""
        row = self._rows.get(r, {})
        above = self._rows.get(r - 1, {})
        pairs = []
        for c, mine in row.items():
            for other in (row.get(c + 1), above.get(c - 1), above.get(c), above.get(c + 1)):
                if mine and other:
                    pairs.append((mine, other))
        return pairs

    def _duplicates(self, a_list: list[Instance], b_list: list[Instance], same: bool
                    ) -> list[tuple[Instance, Instance]]:  # fmt: skip
        """Pairs (a, b) whose masks overlap by IoU >= merge_iou (boxes pre-filter)."""
        if not a_list or not b_list:
            return []
        ious = box_iou(np.stack([a.box for a in a_list]), np.stack([b.box for b in b_list]))
        out = []
        for i, j in zip(*np.nonzero(ious > 0.1), strict=True):
            if same and j <= i:
                continue
            a, b = a_list[i], b_list[j]
            inter = mask_overlap(a.mask, a.offset, b.mask, b.offset)
            union = a.area + b.area - inter
            if union > 0 and inter / union >= self.merge_iou:
                out.append((a, b))
        return out

    @staticmethod
    def _suppressed(edges: list[tuple[Instance, Instance]]) -> set[int]:
        """Greedy NMS over the instances in ``edges``: the highest score suppresses its
        duplicates (ties: lower tile index, then position, class). Returns ``id()``s."""
        involved = {id(x): x for e in edges for x in e}
        order = sorted(
            involved.values(), key=lambda i: (-i.score, i.tile, i.box[1], i.box[0], i.class_id)
        )
        dup: dict[int, list[Instance]] = {}
        for a, b in edges:
            dup.setdefault(id(a), []).append(b)
            dup.setdefault(id(b), []).append(a)
        removed: set[int] = set()
        for inst in order:
            if id(inst) not in removed:
                removed.update(id(o) for o in dup[id(inst)])
        return removed

    def _merge_row(self, r: int) -> None:
        edges = []
        for a_list, b_list in self._neighbour_pairs(r):
            edges += self._duplicates(a_list, b_list, same=False)
        if not edges:
            return
        removed = self._suppressed(edges)
        self.n_merged += len(removed)
        for rr in (r - 1, r):
            for c, lst in self._rows.get(rr, {}).items():
                self._rows[rr][c] = [i for i in lst if id(i) not in removed]
