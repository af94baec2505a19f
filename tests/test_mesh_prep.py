"""Sampling hierarchy, up/down matrices, spirals and the cache (mobrecon/mesh_prep.py)."""
import numpy as np
import pytest
import trimesh

from mobrecon import mesh_prep
from mobrecon.mesh_prep import level_sizes, ordered_rings, prepare_mesh, spiral_sequences


def test_template_is_open_778_manifold(template):
    V, F = template.vertices, template.faces
    assert V.shape == (778, 3) and F.shape[1] == 3
    t = trimesh.Trimesh(V, F, process=False)
    assert t.is_winding_consistent and not t.is_watertight
    assert 0.12 < np.ptp(V, axis=0).max() < 0.3  # a hand, in metres


def test_level_sizes(mesh):
    assert level_sizes(778, 4) == [778, 389, 195, 98, 49]
    assert mesh.sizes == [778, 389, 195, 98, 49]
    assert [s.shape for s in mesh.spirals] == [(n, 9) for n in mesh.sizes]


def test_down_is_selection_and_up_is_barycentric(mesh):
    for lvl in range(4):
        D, U = mesh.down_matrix(lvl), mesh.up_matrix(lvl)
        fine, coarse = mesh.vertices[lvl], mesh.vertices[lvl + 1]
        assert np.array_equal(D @ fine, coarse)
        assert np.all(D.getnnz(axis=1) == 1)
        w = mesh.up_w[lvl]
        assert w.shape == (len(fine), 3) and np.all(w >= 0)
        np.testing.assert_allclose(w.sum(1), 1.0, atol=1e-12)
        # the 3 coarse vertices of every row form a face of the coarse mesh
        faces = {frozenset(f) for f in mesh.faces[lvl + 1].tolist()}
        assert all(frozenset(r) in faces for r in mesh.up_idx[lvl].tolist())
        # kept vertices are reproduced exactly: D U = I
        np.testing.assert_allclose((D @ U).toarray(), np.eye(len(coarse)), atol=1e-12)
        # the others land on the coarse surface close to where they were
        err = np.linalg.norm(U @ coarse - fine, axis=1)
        assert err.mean() < 0.01 * np.ptp(fine, axis=0).max() * (lvl + 1)


def _graph_dist(faces, n, src):
    nb = [set() for _ in range(n)]
    for a, b, c in faces.tolist():
        nb[a] |= {b, c}
        nb[b] |= {a, c}
        nb[c] |= {a, b}
    d = {src: 0}
    front = [src]
    while front:
        nxt = []
        for x in front:
            for y in nb[x]:
                if y not in d:
                    d[y] = d[x] + 1
                    nxt.append(y)
        front = nxt
    return d, nb


def test_spirals_rings_in_rotational_order(mesh):
    for lvl in range(5):
        F, S = mesh.faces[lvl], mesh.spirals[lvl]
        n = len(mesh.vertices[lvl])
        directed = {(f[k], f[(k + 1) % 3], f[(k + 2) % 3]) for f in F.tolist() for k in range(3)}
        for v in range(0, n, 7):
            s = S[v].tolist()
            assert s[0] == v and len(set(s)) == 9
            dist, nb = _graph_dist(F, n, v)
            k = len(nb[v])
            ring = s[1 : 1 + min(k, 8)]
            if k <= 8:
                assert set(ring) == nb[v]  # the whole 1-ring comes first
            else:
                assert set(ring) <= nb[v]  # a 1-ring longer than the spiral fills it
            # consecutive ring vertices span a face (v, a, b) with the mesh's winding
            steps = sum((v, a, b) in directed for a, b in zip(ring, ring[1:]))
            assert steps == len(ring) - 1
            assert all(dist[x] <= 2 for x in s[1 + k :])
            # monotone rings: distances never decrease along the spiral
            ds = [dist[x] for x in s]
            assert ds == sorted(ds)


def test_ordered_rings_and_spiral_on_tiny_mesh():
    # a hexagon fan around vertex 0: the ring must follow the winding, starting at vertex 1
    F = np.array([[0, i, i % 6 + 1] for i in range(1, 7)])
    assert ordered_rings(F, 7)[0] == [1, 2, 3, 4, 5, 6]
    assert ordered_rings(F, 7)[1] == [2, 0, 6]  # boundary fan (1,2,0),(1,0,6) from its open end
    s = spiral_sequences(F, 7, 9)
    assert s[0].tolist()[:7] == [0, 1, 2, 3, 4, 5, 6]
    assert s.shape == (7, 9)  # 7-vertex component: padded by repetition
    with pytest.raises(ValueError):
        ordered_rings(np.vstack([F, [[0, 1, 2]]]), 7)  # duplicated directed edge


def test_cache_roundtrip_and_key(template, tmp_path, monkeypatch):
    a = prepare_mesh(template.vertices, template.faces, cache_dir=tmp_path)
    files = list(tmp_path.glob("*.npz"))
    assert len(files) == 1 and a.key in files[0].name

    def boom(*args, **kw):
        raise AssertionError("cache miss: decimation should not run")

    monkeypatch.setattr(mesh_prep, "collapse_to", boom)
    b = prepare_mesh(template.vertices, template.faces, cache_dir=tmp_path)
    for x, y in zip(a.spirals + a.up_idx + a.up_w + a.down_idx, b.spirals + b.up_idx + b.up_w + b.down_idx):
        assert np.array_equal(x, y)
    # a different template hashes differently (and would need a rebuild)
    V2 = template.vertices.copy()
    V2[0, 0] += 1e-6
    with pytest.raises(AssertionError, match="cache miss"):
        prepare_mesh(V2, template.faces, cache_dir=tmp_path)


def test_deterministic_without_cache(template):
    a = prepare_mesh(template.vertices, template.faces, use_cache=False)
    b = prepare_mesh(template.vertices, template.faces, use_cache=False)
    for x, y in zip(a.spirals + a.up_idx + a.down_idx, b.spirals + b.up_idx + b.down_idx):
        assert np.array_equal(x, y)
