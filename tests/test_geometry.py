"""The geometry kernel (datagen/geometry): one oracle test per routine - trimesh where it has
the operation, brute force (an independent formulation) where it has not - plus the kernel's
import rules (numpy only; the network depends on nothing else of datagen).

The rasteriser (tests/test_raster.py, analytic planes) and the decimator
(tests/test_decimate.py) have their own files.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import trimesh

from datagen.geometry.alignment import similarity_align, umeyama
from datagen.geometry.closest_point import closest_barycentric, closest_points
from datagen.geometry.frustum import frustum_halfspaces, segments_in_frustum
from datagen.geometry.joint_regressor import apply_joint_regressor, fit_joint_regressor
from datagen.geometry.normals import cross, face_normals, triangle_normals, vertex_normals
from datagen.geometry.projection import project, project_world, unproject
from datagen.geometry.mesh_contact import mesh_contact, points_inside
from datagen.geometry.raster import front_facing, rasterize
from datagen.geometry.triangle_crossings import ray_triangle, segment_crossings
from support.winding import winding_number

REPO = Path(__file__).resolve().parent.parent


def _rot(axis, angle):
    a = np.asarray(axis, float) / np.linalg.norm(axis)
    S = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + np.sin(angle) * S + (1 - np.cos(angle)) * S @ S


@pytest.fixture(scope="module")
def blob():
    """A closed, curved mesh in metres: an icosphere squashed into a 6 x 4 x 3 cm ellipsoid."""
    m = trimesh.creation.icosphere(subdivisions=3)
    return np.asarray(m.vertices) * [0.03, 0.02, 0.015] + [0.01, 0.05, 0.3], np.asarray(m.faces, np.int64)


# ------------------------------------------------------------------------------- normals
def test_normals_match_trimesh_and_np_cross(blob):
    V, F = blob
    rng = np.random.default_rng(0)
    for dt in (np.float64, np.float32):
        u, v = rng.normal(size=(2, 1000, 3)).astype(dt)
        assert np.array_equal(cross(u, v), np.cross(u, v))  # bit-identical, faster
    m = trimesh.Trimesh(V, F, process=False)
    fn = face_normals(V, F)
    np.testing.assert_allclose(np.linalg.norm(fn, axis=1), 2 * m.area_faces, rtol=1e-12)
    np.testing.assert_allclose(face_normals(V, F, unit=True), m.face_normals, atol=1e-12)
    np.testing.assert_array_equal(triangle_normals(*V[F].transpose(1, 0, 2)), fn)
    # vertex normals: brute force - per vertex, the sum of its faces' area-weighted normals
    brute = np.zeros_like(V)
    for i in range(len(V)):
        on = (F == i).any(1)
        n = (m.face_normals[on] * (2 * m.area_faces[on, None])).sum(0)
        brute[i] = n / np.linalg.norm(n)
    vn = vertex_normals(V, F)
    np.testing.assert_allclose(vn, brute, atol=1e-12)
    assert (np.einsum("ij,ij->i", vn, V - V.mean(0)) > 0).all()  # outward on a convex blob
    # batched (poses) = one by one; a degenerate face and an unused vertex give 0, not nan
    posed = np.stack([V, V @ _rot([0, 0, 1], 0.4).T, 2 * V])
    np.testing.assert_array_equal(vertex_normals(posed, F)[1], vertex_normals(posed[1], F))
    V2 = np.vstack([V, [[9.0, 9.0, 9.0]]])
    F2 = np.vstack([F, [[0, 0, 1]]])
    assert np.all(vertex_normals(V2, F2)[-1] == 0) and np.all(face_normals(V2, F2, unit=True)[-1] == 0)
    with pytest.raises(ValueError):
        face_normals(V, F[:, :2])


# ---------------------------------------------------------------------------- projection
def test_projection_matches_homogeneous_brute_force():
    rng = np.random.default_rng(1)
    pts = rng.uniform([-0.1, -0.1, 0.2], [0.1, 0.1, 0.6], size=(50, 3))
    K = np.array([[373.35, 0.0, 128.0], [0.0, 373.35, 128.0], [0.0, 0.0, 1.0]])
    skewed = K + [[0, 2.5, 0], [0, 0, 0], [0, 0, 0]]
    c, s = np.cos(0.7), np.sin(0.7)
    crop = np.array([[0.5 * c, -0.5 * s, -20], [0.5 * s, 0.5 * c, -10], [0, 0, 1]]) @ K  # K[1, 0] != 0
    for k in (K, skewed, crop):
        h = pts @ k.T
        np.testing.assert_allclose(project(pts, k), h[:, :2] / h[:, 2:], rtol=1e-13)
    # the former label formula (x/z) f + c, bit for bit, when K has no skew
    assert np.array_equal(project(pts, K), pts[:, :2] / pts[:, 2:] * [K[0, 0], K[1, 1]] + K[:2, 2])
    # batched K with batched points
    both = project(np.stack([pts, pts]), np.stack([K, crop]))
    np.testing.assert_array_equal(both[1], project(pts, crop))
    # world points and the inverse
    R, t = _rot([1, 2, 3], 0.5), np.array([0.01, -0.02, 0.4])
    uv, z = project_world(pts, skewed, R, t)
    np.testing.assert_allclose(unproject(uv, z, skewed, R, t), pts, atol=1e-12)
    with pytest.raises(ValueError, match="last row"):
        project(pts, np.ones((3, 3)))


def test_segments_in_frustum_match_dense_sampling():
    # Brute force: a segment is in frame when one of many points along it projects into the
    # image in front of the camera (project + bounds; an independent formulation).
    rng = np.random.default_rng(4)
    K = np.array([[373.35, 0.0, 128.0], [0.0, 373.35, 128.0], [0.0, 0.0, 1.0]])
    skewed = np.array([[300.0, 3.0, 100.0], [0.0, 320.0, 140.0], [0.0, 0.0, 1.0]])
    a = rng.uniform([-0.4, -0.4, -0.2], [0.4, 0.4, 0.6], size=(400, 3))
    b = rng.uniform([-0.4, -0.4, -0.2], [0.4, 0.4, 0.6], size=(400, 3))
    s = np.linspace(0.0, 1.0, 4001)[:, None, None]
    pts = a[None] + s * (b - a)[None]  # (S, N, 3)
    for k, (w, h) in ((K, (256, 256)), (skewed, (200, 300))):
        with np.errstate(divide="ignore", invalid="ignore"):
            uv = project(pts, k)
        inside = (pts[..., 2] > 0) & (uv[..., 0] >= 0) & (uv[..., 0] <= w) & (uv[..., 1] >= 0) & (uv[..., 1] <= h)
        brute = inside.any(0)
        got = segments_in_frustum(a, b, k, w, h)
        assert brute.sum() > 50 and (~brute).sum() > 50  # both kinds occur
        assert np.array_equal(got, brute)
        # the half-spaces agree with the projection on the sampled points in front of the camera
        n, c = frustum_halfspaces(k, w, h)
        front = pts[..., 2] > 0
        assert np.array_equal(((pts @ n.T + c) >= 0).all(-1)[front], inside[front])
    # batched shapes, a segment behind the camera, one through it, one on the optical axis
    assert segments_in_frustum(np.zeros((2, 3, 3)), np.ones((2, 3, 3)), K, 256, 256).shape == (2, 3)
    assert not segments_in_frustum([0, 0, -1.0], [0.01, 0, -0.5], K, 256, 256)
    assert segments_in_frustum([0, 0, -1.0], [0, 0, 1.0], K, 256, 256)
    assert not segments_in_frustum([0, 0, -1.0], [0, 0, 1.0], K, 256, 256, near=2.0)
    with pytest.raises(ValueError, match="near"):
        segments_in_frustum([0, 0, 1.0], [0, 0, 2.0], K, 256, 256, near=-1)


# ------------------------------------------------------------------------- closest point
def test_closest_points_match_trimesh(blob):
    V, F = blob
    m = trimesh.Trimesh(V, F, process=False)
    rng = np.random.default_rng(2)
    Q = V[rng.integers(0, len(V), 300)] + rng.normal(0, 0.004, (300, 3))
    Q = np.vstack([Q, V[:5], V[F[:5]].mean(1)])  # on vertices and on faces: distance 0
    face, bary, dist = closest_points(V, F, Q)
    _, d_ref, _ = trimesh.proximity.closest_point_naive(m, Q)
    np.testing.assert_allclose(dist, d_ref, atol=1e-12)
    np.testing.assert_allclose(np.einsum("nk,nkc->nc", bary, V[F[face]]), trimesh.proximity.closest_point_naive(m, Q)[0],
                               atol=1e-9)
    assert bary.min() >= 0 and np.allclose(bary.sum(1), 1)
    # closest_barycentric, pairwise, against trimesh's closest point on a triangle
    tri = V[F[face]]
    np.testing.assert_allclose(np.einsum("nk,nkc->nc", closest_barycentric(Q, *tri.transpose(1, 0, 2)), tri),
                               trimesh.triangles.closest_point(tri, Q), atol=1e-12)
    # the normal-restricted search never crosses to a face turned away from the query's normal
    n_q = -face_normals(V, F, unit=True)[face]
    f2, _, d2 = closest_points(V, F, Q, normals=n_q, min_cos=0.5)
    assert (np.einsum("ij,ij->i", face_normals(V, F, unit=True)[f2], n_q) >= 0.5).all() and (d2 >= dist - 1e-15).all()


# --------------------------------------------------------------------- triangle crossings
def test_ray_triangle_and_segment_crossings_match_brute_force():
    rng = np.random.default_rng(3)
    v0, v1, v2 = rng.normal(size=(3, 400, 3))
    o, d = rng.normal(size=(2, 400, 3))
    t, u, v, inside = ray_triangle(o, d, v0, v1, v2)
    # brute force: solve o + t d = v0 + u (v1 - v0) + v (v2 - v0) as a 3x3 system
    M = np.stack([-d, v1 - v0, v2 - v0], axis=-1)
    tuv = np.linalg.solve(M, (o - v0)[..., None])[..., 0]
    np.testing.assert_allclose(np.stack([t, u, v], 1), tuv, rtol=1e-9, atol=1e-9)
    np.testing.assert_array_equal(inside, (tuv[:, 1] >= 0) & (tuv[:, 2] >= 0) & (tuv[:, 1:].sum(1) <= 1))
    # one direction for every triangle (the fingertip ray) = the same ray repeated
    t1, _, _, in1 = ray_triangle(o[0], d[0], v0, v1, v2)
    t2, _, _, in2 = ray_triangle(np.broadcast_to(o[0], o.shape), np.broadcast_to(d[0], d.shape), v0, v1, v2)
    np.testing.assert_allclose(t1, t2, rtol=1e-12)
    np.testing.assert_array_equal(in1, in2)
    # a closed box 1 m in front of the camera: a segment to its centre crosses 1 face, through it 2
    box = trimesh.creation.box(extents=(0.2, 0.2, 0.2))
    V, F = np.asarray(box.vertices) + [0, 0, 1.0], np.asarray(box.faces)
    targets = np.array([[0.01, 0.013, 1.0], [0.01, 0.013, 2.0], [0.5, 0.5, 1.0]])
    K = np.array([[100.0, 0, 32], [0, 100.0, 32], [0, 0, 1]])
    for k in (None, K):  # brute force and the projected-bounding-box filter agree
        counts, back_m = segment_crossings(V, F, targets, 0.0, k)
        assert counts.tolist() == [1, 2, 0]
        assert back_m[0] == pytest.approx(0.1 * np.linalg.norm(targets[0]) / 1.0, rel=1e-9) and np.isinf(back_m[2])
    counts, _ = segment_crossings(V, F, targets, np.array([0.2, 0.0, 0.0]), K)
    assert counts.tolist() == [0, 2, 0]  # the tolerance skips the box's face 0.1 m in front of the centre


# ----------------------------------------------------------------------------- alignment
def test_umeyama_matches_trimesh_procrustes():
    rng = np.random.default_rng(4)
    src = rng.normal(size=(21, 3))
    R, s, t = _rot([1, 2, 3], 0.8), 1.7, np.array([0.3, -2.0, 5.0])
    dst = s * src @ R.T + t
    s_, R_, t_ = umeyama(src, dst)
    np.testing.assert_allclose([float(s_)], [s], rtol=1e-12)
    np.testing.assert_allclose(R_, R, atol=1e-12)
    np.testing.assert_allclose(t_, t, atol=1e-12)
    # noisy: the rotation is trimesh's (its own scale is a ratio of spreads, not least squares),
    # scale and translation then the linear least-squares solution for that rotation
    noisy = dst + rng.normal(size=dst.shape) * 0.1
    s_, R_, t_ = umeyama(src, noisy)
    M, _, _ = trimesh.registration.procrustes(src, noisy, reflection=False, scale=False)
    np.testing.assert_allclose(R_, M[:3, :3], atol=1e-10)
    A = np.concatenate([(src @ R_.T)[..., None], np.broadcast_to(np.eye(3), (len(src), 3, 3))], -1).reshape(-1, 4)
    st = np.linalg.lstsq(A, noisy.ravel(), rcond=None)[0]
    np.testing.assert_allclose(np.r_[float(s_), t_], st, atol=1e-10)
    np.testing.assert_allclose(similarity_align(src, noisy), float(s_) * src @ R_.T + t_, atol=1e-12)
    # batched = one by one; a mirror image is not undone unless reflections are allowed
    batch = similarity_align(np.stack([src, src]), np.stack([noisy, dst]))
    np.testing.assert_allclose(batch[0], similarity_align(src, noisy), atol=1e-12)
    mirror = dst * [-1, 1, 1]
    assert np.abs(similarity_align(src, mirror, allow_reflection=True) - mirror).max() < 1e-10
    assert np.abs(similarity_align(src, mirror) - mirror).max() > 0.1


# ------------------------------------------------------------------------ joint regressor
def test_joint_regressor_recovers_known_weights():
    rng = np.random.default_rng(5)
    P, V = 40, 60
    verts = rng.normal(size=(P, V, 3)) * 0.05
    truth = np.zeros((3, V))
    truth[0, [3, 7, 11]] = [0.2, 0.5, 0.3]  # a convex combination
    truth[1, 20] = 1.0  # a joint on a vertex
    truth[2, [30, 31]] = [1.4, -0.4]  # outside the hull of its support: needs signed weights
    joints = apply_joint_regressor(truth, verts)
    np.testing.assert_allclose(joints, np.einsum("jv,pvc->pjc", truth, verts))
    R, signed = fit_joint_regressor(verts, joints, k=V, signed_above_mm=0.5)  # every vertex in the support
    np.testing.assert_allclose(R[:2], truth[:2], atol=1e-9)
    assert signed == [2] and np.abs(apply_joint_regressor(R, verts)[:, 2] - joints[:, 2]).max() < 1e-3
    assert (R[:2] >= 0).all() and np.allclose(R.sum(1), 1)
    # without signed rows the outside joint keeps its best convex row (non-negative)
    R2, signed2 = fit_joint_regressor(verts, joints, k=V)
    assert signed2 == [] and (R2 >= 0).all()
    # one pose with the locality term (many exact convex combinations): the constrained optimum,
    # as a general-purpose solver (SLSQP, w >= 0, sum w = 1 exactly) finds it
    from scipy.optimize import minimize

    square = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [3, 3, 0]], float) * 0.01
    centre = np.array([0.005, 0.005, 0.0])
    R1, _ = fit_joint_regressor(square, centre[None], k=5, locality=1e-2)
    d2 = ((square - centre) ** 2).sum(1)
    ref = minimize(lambda w: ((w @ square - centre) ** 2).sum() + 1e-2 * (w ** 2 * d2).sum(), np.full(5, 0.2),
                   method="SLSQP", bounds=[(0, None)] * 5, constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1}],
                   options={"ftol": 1e-16, "maxiter": 1000}).x
    np.testing.assert_allclose(R1[0], ref, atol=1e-5)
    np.testing.assert_allclose(R1 @ square, centre[None], atol=1e-6)  # the locality term costs < 1 um
    with pytest.raises(ValueError):
        fit_joint_regressor(verts, joints[:5])


# --------------------------------------------------------------------------- import rules
def test_points_inside_and_contact_on_spheres():
    """Two icospheres: apart, overlapping, nested - contact and inside flags as geometry says."""
    s = trimesh.creation.icosphere(subdivisions=2)
    V, F = np.asarray(s.vertices), np.asarray(s.faces)
    q = np.random.default_rng(1).uniform(-1.2, 1.2, (400, 3))
    assert np.array_equal(points_inside(V, F, q), winding_number(V, F, q) > 0.5)
    assert not mesh_contact(V, F, V * 0.5 + [2.2, 0, 0], F).intersects
    over = mesh_contact(V, F, V * 0.5 + [1.2, 0, 0], F)
    assert over.intersects and over.crossings > 0
    nested = mesh_contact(V, F, V * 0.3, F)
    assert nested.intersects and nested.crossings == 0 and nested.b_inside_a.all() and not nested.a_inside_b.any()


def test_front_facing_faces_rasterise_like_the_whole_closed_mesh(blob):
    V, F = blob
    K = np.array([[300.0, 0, 64], [0, 300.0, 64], [0, 0, 1]])
    front = front_facing(V, F)
    assert 0.3 < front.mean() < 0.7
    a, b = rasterize(V, F, K, 128, 128), rasterize(V, F[front], K, 128, 128)
    assert np.array_equal(a.mask, b.mask) and np.array_equal(a.depth, b.depth)


def test_kernel_imports_only_numpy():
    """Blender's Python has numpy only: importing every kernel module must pull in no scipy,
    torch or trimesh, and nothing of datagen outside datagen.geometry."""
    mods = sorted(p.stem for p in (REPO / "datagen" / "geometry").glob("*.py") if p.stem != "__init__")
    code = ("import sys\n" + "".join(f"import datagen.geometry.{m}\n" for m in mods)
            + "bad = [m for m in sys.modules if m.split('.')[0] in ('scipy', 'torch', 'trimesh', 'cv2')\n"
            "       or (m.startswith('datagen.') and not m.startswith('datagen.geometry'))]\n"
            "print(','.join(bad))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == "", out.stdout


def test_network_depends_only_on_the_kernel():
    """mobrecon/ imports nothing from datagen except datagen.geometry (requirement of issue 10)."""
    found = []
    for path in sorted((REPO / "mobrecon").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else []
            found += [(path.name, n) for n in names if n.split(".")[0] == "datagen"]
    assert found and all(n == "datagen.geometry" or n.startswith("datagen.geometry.") for _, n in found), found


def test_mirror_flip_K_and_image_agree_with_projection():
    """A camera-space reflection x -> -x is seen at u -> W - u by flip_K(K, W) (brute force on
    random points and a skewed, off-centre K), and flip_image moves pixel centre j to W - 1 - j."""
    from datagen.geometry.mirror import flip_image, flip_K, flip_uv, mirror_mesh, mirror_points, reverse_winding
    from datagen.geometry.normals import face_normals
    from datagen.geometry.projection import project

    rng = np.random.default_rng(4)
    W = 200
    K = np.array([[310.0, 3.0, 91.5], [0.7, 305.0, 120.0], [0.0, 0.0, 1.0]])
    p = rng.normal(size=(50, 3)) * 0.05 + [0, 0, 0.4]
    assert np.allclose(project(mirror_points(p), flip_K(K, W)), flip_uv(project(p, K), W), atol=1e-9)
    Kc = np.array([[300.0, 0, W / 2], [0, 300.0, 80.0], [0, 0, 1]])
    assert np.array_equal(flip_K(Kc, W), Kc)  # principal point at the centre: the same camera
    img = rng.integers(0, 255, size=(3, W, 3))
    assert np.array_equal(flip_image(img)[:, W - 1 - 17], img[:, 17])
    assert flip_uv(np.array([[17.5, 1.0]]), W)[0, 0] == W - 1 - 17 + 0.5
    assert np.array_equal(flip_image(img.transpose(2, 0, 1), axis=2), flip_image(img).transpose(2, 0, 1))
    v = rng.normal(size=(30, 3))
    f = rng.integers(0, 30, size=(40, 3))
    mv, mf = mirror_mesh(v, f)
    assert np.allclose(face_normals(mv, mf), mirror_points(face_normals(v, f)))
    assert np.array_equal(reverse_winding(f)[:, [2, 1, 0]], f) and mirror_points(np.float32([[1, 2, 3]])).dtype == np.float32
