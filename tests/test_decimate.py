"""Properties of the subset-keeping quadric edge collapse (datagen/decimate.py)."""
from collections import Counter

import numpy as np
import pytest
import trimesh

from datagen.geometry.decimate import DecimationError, boundary_edges, collapse_to


def _edge_use(faces):
    e = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
    return Counter(map(tuple, e.tolist()))


def _directed_ok(faces):
    d = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    return len({tuple(x) for x in d.tolist()}) == len(d)  # each directed edge once


def _single_fan(faces, n):
    """Every vertex's incident faces form one edge-connected fan (no pinched vertex)."""
    inc = [[] for _ in range(n)]
    for fi, f in enumerate(faces.tolist()):
        for x in f:
            inc[x].append(fi)
    for x in range(n):
        fs = inc[x]
        if not fs:
            return False
        others = [set(faces[f]) - {x} for f in fs]
        seen, stack = {0}, [0]
        while stack:
            i = stack.pop()
            for j in range(len(fs)):
                if j not in seen and others[i] & others[j]:
                    seen.add(j)
                    stack.append(j)
        if len(seen) != len(fs):
            return False
    return True


def _euler(faces, n):
    return n - len(_edge_use(faces)) + len(faces)


def _open_tube(n_around=24, n_along=20):
    t = np.linspace(0, 2 * np.pi, n_around, endpoint=False)
    z = np.linspace(0, 3, n_along)
    V = np.array([[np.cos(a) * (1 + 0.2 * np.sin(2 * zz)), np.sin(a), zz] for zz in z for a in t])
    F = []
    for i in range(n_along - 1):
        for j in range(n_around):
            a, b = i * n_around + j, i * n_around + (j + 1) % n_around
            c, d = a + n_around, b + n_around
            F += [[a, b, d], [a, d, c]]
    return V, np.array(F)


def test_closed_sphere_properties():
    s = trimesh.creation.icosphere(subdivisions=3)
    V, F = np.asarray(s.vertices), np.asarray(s.faces)
    kept, f = collapse_to(V, F, 200)
    assert len(kept) == 200 and np.all(np.diff(kept) > 0)
    assert f.min() >= 0 and f.max() == 199
    assert set(_edge_use(f).values()) == {2}  # closed 2-manifold
    assert _directed_ok(f) and _single_fan(f, 200)
    assert _euler(f, 200) == 2
    Vk = V[kept]
    n = np.cross(Vk[f[:, 1]] - Vk[f[:, 0]], Vk[f[:, 2]] - Vk[f[:, 0]])
    assert np.all(np.einsum("ij,ij->i", n, Vk[f].mean(1)) > 0)  # no face turned inwards
    # the coarse sphere still approximates the sphere
    dec = trimesh.Trimesh(Vk, f, process=False)
    assert abs(dec.volume / s.volume - 1) < 0.06


def test_deterministic_and_subset():
    V, F = _open_tube()
    a = collapse_to(V, F, 150)
    b = collapse_to(V.copy(), F.copy(), 150)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert set(a[0].tolist()) <= set(range(len(V)))


def test_open_mesh_keeps_boundary_and_manifold():
    V, F = _open_tube()
    n0 = len(V)
    b0 = boundary_edges(F)
    for n in (300, 120, 40):
        kept, f = collapse_to(V, F, n)
        assert len(kept) == n
        uses = _edge_use(f)
        assert set(uses.values()) <= {1, 2}
        assert _directed_ok(f) and _single_fan(f, n)
        assert _euler(f, n) == _euler(F, n0)  # still a tube (two holes)
        # boundary vertices of the result were boundary vertices of the input
        bk = kept[np.unique(boundary_edges(f))]
        assert set(bk.tolist()) <= set(np.unique(b0).tolist())
        # the two rims stay at the two ends of the tube
        z = V[bk, 2]
        assert np.all((z < 1e-9) | (z > 3 - 1e-9))


def test_hand_like_irregular_mesh_no_flips():
    rng = np.random.default_rng(3)
    s = trimesh.creation.icosphere(subdivisions=3)
    V = np.asarray(s.vertices) * np.array([1.0, 0.4, 0.25]) + rng.normal(0, 0.01, (len(s.vertices), 3))
    F = np.asarray(s.faces)
    Fo = F[~np.all(V[F][:, :, 2] > 0.15, axis=1)]  # cut a hole -> open mesh
    used = np.unique(Fo)
    remap = -np.ones(len(V), int)
    remap[used] = np.arange(len(used))
    V, Fo = V[used], remap[Fo]
    n0 = np.cross(V[Fo[:, 1]] - V[Fo[:, 0]], V[Fo[:, 2]] - V[Fo[:, 0]])
    kept, f = collapse_to(V, Fo, 120)
    Vk = V[kept]
    n1 = np.cross(Vk[f[:, 1]] - Vk[f[:, 0]], Vk[f[:, 2]] - Vk[f[:, 0]])
    # every new face has a non-degenerate area and faces the way the original surface
    # does around its corners (area-weighted normal of the original faces touching them)
    assert np.all(np.linalg.norm(n1, axis=1) > 1e-10)
    vn = np.zeros_like(V)
    for k in range(3):
        np.add.at(vn, Fo[:, k], n0)
    ref = vn[kept[f]].sum(1)
    assert np.all(np.einsum("ij,ij->i", n1, ref) > 0)
    assert set(_edge_use(f).values()) <= {1, 2} and _single_fan(f, 120)
    assert len(n0) > len(f)


def test_unused_vertices_dropped_and_errors():
    V, F = _open_tube(8, 5)
    V2 = np.vstack([V, [[9.0, 9.0, 9.0]]])  # an unreferenced vertex is never kept
    kept, _ = collapse_to(V2, F, 20)
    assert len(V) not in kept
    with pytest.raises(ValueError):
        collapse_to(V, F, len(V) + 1)
    tet = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], float)
    tf = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])
    with pytest.raises(DecimationError):
        collapse_to(tet, tf, 3)  # a closed surface cannot have 3 vertices
