"""Which items to render: id selections, items files and array-job slices.

An item is one (pose id, view id) pair; item id = pose_id * n_views + view_id.  Selections are
always ordered pose-major (pose, then view) so a renderer changes the mesh only when the pose
changes.

Selection syntax (command line):
- ids: ``all``, ``7``, ``0-31`` (inclusive), lists ``0-3,10,200-215``; an empty or blank
  selection is an error, never "everything" (an unset shell variable must not launch the
  whole dataset);
- shard ``k/N``: the k-th (0-based) of N contiguous, balanced slices of the ordered selection
  (contiguous keeps a pose's views together);
- items file: one item per line - an item id (``70000``), ``pose view`` (``324 16``), or a JSON
  object ``{"pose_id": 324, "view_id": 16}`` / ``{"item_id": 70000}``; ``#`` starts a comment.

numpy only: the renderer imports it inside Blender's own Python.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np


class SelectionError(ValueError):
    """An item selection is malformed or out of range; the message says which token."""


def parse_ids(text: str, n: int, what: str) -> np.ndarray:
    """'all' | '5' | '0-31' | '0-3,10,200-215' -> sorted unique ids in [0, n).

    An empty selection is refused: ``--poses "$P"`` with P unset must not mean "all".
    """
    text = "" if text is None else str(text).strip()
    if not text:
        raise SelectionError(f"{what} ids: the selection is empty (an unset shell variable?); "
                             f"give 'all' for every {what}, or ids such as 0-31")
    if text.lower() in ("all", "*"):
        return np.arange(n)
    out: list[int] = []
    for tok in text.split(","):
        tok = tok.strip()
        m = re.fullmatch(r"(\d+)(?:\s*-\s*(\d+))?", tok)
        if not m:
            raise SelectionError(f"{what} ids: cannot parse {tok!r} in {text!r} "
                                 f"(use 'all', 'N', 'A-B' or comma-separated lists)")
        a = int(m.group(1))
        b = int(m.group(2)) if m.group(2) is not None else a
        if a > b:
            raise SelectionError(f"{what} ids: range {tok!r} runs backwards")
        if b >= n:
            raise SelectionError(f"{what} id {b} in {tok!r} is out of range: valid {what} ids are 0..{n - 1}")
        out.extend(range(a, b + 1))
    return np.unique(np.asarray(out, dtype=np.int64))


def parse_shard(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(text))
    if not m:
        raise SelectionError(f"shard {text!r}: use k/N with 0 <= k < N, e.g. 0/8")
    k, n = int(m.group(1)), int(m.group(2))
    if n < 1 or not 0 <= k < n:
        raise SelectionError(f"shard {text!r}: need 0 <= k < N")
    return k, n


def shard_slice(items: list, k: int, n: int) -> list:
    total = len(items)
    return items[k * total // n : (k + 1) * total // n]


def select(n_poses: int, n_views: int, poses: str = "all", views: str = "all",
           shard: str | None = None) -> list[tuple[int, int]]:
    """Pose-major list of (pose_id, view_id) for a pose x view selection, optionally sharded."""
    P = parse_ids(poses, n_poses, "pose")
    V = parse_ids(views, n_views, "view")
    items = [(int(p), int(v)) for p in P for v in V]
    if shard:
        items = shard_slice(items, *parse_shard(shard))
    return items


def parse_item_line(line: str, n_poses: int, n_views: int, where: str = "") -> tuple[int, int] | None:
    """One items-file / stdin line -> (pose, view), None for blank/comment lines."""
    s = line.split("#", 1)[0].strip() if not line.lstrip().startswith("{") else line.strip()
    if not s:
        return None
    try:
        if s.startswith("{"):
            obj = json.loads(s)
            if "item_id" in obj and "pose_id" not in obj:
                p, v = divmod(int(obj["item_id"]), n_views)
            else:
                p, v = int(obj["pose_id"]), int(obj["view_id"])
        else:
            parts = re.split(r"[\s,]+", s)
            if len(parts) == 1:
                p, v = divmod(int(parts[0]), n_views)
            elif len(parts) == 2:
                p, v = int(parts[0]), int(parts[1])
            else:
                raise ValueError("expected an item id, 'pose view' or a JSON object")
    except (ValueError, KeyError, TypeError) as exc:
        raise SelectionError(f"{where}cannot parse item {line.strip()!r}: {exc}") from None
    if not 0 <= p < n_poses:
        raise SelectionError(f"{where}pose id {p} is out of range 0..{n_poses - 1} ({line.strip()!r})")
    if not 0 <= v < n_views:
        raise SelectionError(f"{where}view id {v} is out of range 0..{n_views - 1} ({line.strip()!r})")
    return p, v


def read_items_file(path: str | Path, n_poses: int, n_views: int) -> list[tuple[int, int]]:
    """Items listed in a file, deduplicated and ordered pose-major."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as exc:
        raise SelectionError(f"items file {path}: {exc.strerror}") from None
    items = set()
    for i, line in enumerate(lines, 1):
        it = parse_item_line(line, n_poses, n_views, where=f"{path}:{i}: ")
        if it is not None:
            items.add(it)
    if not items:
        raise SelectionError(f"items file {path} lists no items")
    return sorted(items)
