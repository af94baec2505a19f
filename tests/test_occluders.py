"""Occluders (datagen/scene/occluders.py): meshes, seeded placement that never intersects the
hand, labels with objects (visible-hand silhouette, depth with objects, part_mask 3,
occluded_by_object), config, the sparse depth codec; with real Blender (slow): the labels vs
Cycles' own coverage and depth with an object, and render -> pack -> verify -> read.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import trimesh

from support.winding import winding_number as _winding

from datagen.config import ConfigError, config_from_dict
from datagen.geometry.mesh_contact import mesh_contact
from datagen.scene.occluders import KINDS, SIZES, object_mesh, place


def _dims(kind, at=0.5):
    return {k: lo + at * (hi - lo) for k, (lo, hi) in SIZES[kind].items()}


@pytest.mark.parametrize("kind", KINDS)
def test_object_meshes_are_closed_outward_and_centred(kind):
    V, F = object_mesh(kind, _dims(kind))
    m = trimesh.Trimesh(V, F, process=False)
    assert m.is_watertight and m.is_winding_consistent and m.volume > 0, kind
    assert np.allclose((V.min(0) + V.max(0)) / 2, 0, atol=1e-9)
    d = _dims(kind)
    expect = {"box": d.get("x", 0) * d.get("y", 0) * d.get("z", 0),
              "sphere": 4 / 3 * np.pi * d.get("radius", 0) ** 3,
              "cylinder": np.pi * d.get("radius", 0) ** 2 * d.get("height", 0)}.get(kind)
    if expect:  # tessellated: within a few percent of the analytic volume
        assert abs(m.volume - expect) / expect < 0.08, (kind, m.volume, expect)


@pytest.fixture(scope="module")
def tables(config, prepared, cache_dir):
    from datagen.poses.tables import ensure_tables

    return ensure_tables(config, cache_dir)


@pytest.fixture(scope="module")
def views(config, tables):
    from datagen.cameras import views_for

    return views_for(config.cameras, tables)


def _occ_cfg(**kw):
    return config_from_dict({"occluders": {"share": 1.0, **kw}}).occluders


def _place(cfg, tables, views, pose, view, seed=0):
    from datagen.scene.items import OCCLUDER_STREAM, item_stream

    return place(cfg, item_stream(seed, pose, view, OCCLUDER_STREAM), tables.dense_vertices(pose),
                 tables.dense_faces, tables.dense_part, views.K, views.R[view], views.t[view], views.width,
                 views.height)


def test_placements_never_intersect_the_hand_and_cover_it_partly(tables, views):
    """Property over 24 seeded items: every placed object is apart from the hand (exhaustive
    contact test; no object vertex inside the hand by an independent count, trimesh's ray
    parity), front objects hide 10-60% of the silhouette, held ones touch (gap 0.5-2 mm)."""
    from datagen.geometry.closest_point import closest_points

    cfg = _occ_cfg()
    rng = np.random.default_rng(7)
    placed = {"front": 0, "held": 0}
    for _ in range(24):
        p, v = int(rng.integers(1520)), int(rng.integers(216))
        pl = _place(cfg, tables, views, p, v)
        assert pl.drawn
        dense = tables.dense_vertices(p)
        for o in pl.objects:
            placed[o.placement] += 1
            c = mesh_contact(o.vertices, o.faces, dense, tables.dense_faces)
            assert not c.intersects, (p, v, o.kind)
            # an independent inside test (winding numbers) on the object's 8 vertices nearest the hand
            _, _, dist = closest_points(dense, tables.dense_faces, o.vertices)
            near = o.vertices[np.argsort(dist)[:8]]
            assert (_winding(dense, tables.dense_faces, near) < 0.5).all(), (p, v, o.kind)
            lo, hi = cfg.coverage
            assert o.coverage <= hi
            if o.placement == "front":
                assert o.coverage >= lo
            else:  # touching: put `gap` (0.5-2 mm) above a contact vertex; another part of the
                # mesh (the forearm) may come a little closer, never into it
                assert 0.0002 < dist.min() <= 0.002 + 1e-9, (p, v, o.kind, dist.min())
    assert placed["front"] >= 4 and placed["held"] >= 4, placed


def test_draws_are_seeded_per_item_and_leave_other_streams_alone(tables, views):
    from datagen.scene.items import make_spec

    cfg = _occ_cfg()
    a, b = _place(cfg, tables, views, 40, 17), _place(cfg, tables, views, 40, 17)
    assert json.dumps(a.record()) == json.dumps(b.record())
    assert json.dumps(a.record()) != json.dumps(_place(cfg, tables, views, 40, 17, seed=1).record())
    off = _place(_occ_cfg(share=0.0), tables, views, 40, 17)
    assert not off.drawn and off.mesh() is None
    # The item's other draws are the ones the first three child streams always gave.
    base = config_from_dict({})
    spec, spec_on = make_spec(base, 9, 40, 17, 216), make_spec(config_from_dict({"occluders": {"share": 1.0}}), 9,
                                                               40, 17, 216)
    env, skin, render = np.random.SeedSequence([0, 40, 17]).spawn(3)
    r = np.random.default_rng(env)
    assert spec.hdri_index == int(r.integers(9)) and spec == spec_on
    assert spec.cycles_seed == int(render.generate_state(1, np.uint32)[0] & 0x7FFFFFFF)
    # share: about the configured share of items draw an object
    half = _occ_cfg(share=0.5)
    from datagen.scene.items import OCCLUDER_STREAM, item_stream

    drawn = [np.random.default_rng(item_stream(0, p, 3, OCCLUDER_STREAM)).random() < half.share for p in range(400)]
    assert 0.42 < np.mean(drawn) < 0.58


def test_labels_with_an_object_composite_exactly(tables, views):
    from scipy.ndimage import binary_dilation

    from datagen.dataset.verify import Report, check_occluded
    from datagen.labels.visibility import visibility_contract
    from datagen.geometry.raster import rasterize
    from datagen.labels.passes import LABEL_PASSES
    from datagen.labels.visibility import compute_labels

    cfg = _occ_cfg(held_share=0.0)
    found = tampered = 0
    for p, v in ((100, 150), (700, 3), (5, 90), (300, 40)):
        pl = _place(cfg, tables, views, p, v)
        if not pl.objects:
            continue
        dense, F, kp = tables.dense_vertices(p), tables.dense_faces, tables.keypoints[p]
        K, R, t = views.K, views.R[v], views.t[v]
        V, Fo = pl.mesh()
        L = compute_labels(dense, F, kp, K, R, t, 256, 256, objects=(V, Fo), occluders=pl.record(),
                           wrist_joint=tables.wrist_joint)
        # the composite is the rasterisation of hand + object together
        both = rasterize(np.concatenate([dense, V]) @ R.T + t, np.concatenate([F, Fo + len(dense)]), K, 256, 256)
        assert np.array_equal(L.depth, both.depth)
        assert np.array_equal(L.mask, (both.face >= 0) & (both.face < len(F)))
        assert np.array_equal(L.object_mask, both.face >= len(F))
        alone = compute_labels(dense, F, kp, K, R, t, 256, 256, wrist_joint=tables.wrist_joint)
        assert np.array_equal(L.hand_depth, alone.depth)
        assert (L.mask <= alone.mask).all() and L.mask.sum() < alone.mask.sum()  # the object hides some hand
        # occluded keypoints: hidden, and the object is on their ray; visible = alone minus occluded
        assert not (L.occluded_by_object & L.visible).any()
        assert np.array_equal(L.visible, alone.visible & ~L.occluded_by_object)
        # an object on the keypoint's ray: the winding number of the object around the ray's
        # points changes sign between camera and keypoint iff the ray enters the object
        oc = V @ R.T + t
        for k in np.nonzero(L.in_frame)[0]:
            kc = L.keypoints_cam[k]
            inside = _winding(oc, Fo, np.linspace(0.0, 1.0, 200)[:, None] * kc) > 0.5
            if inside.any():
                assert L.occluded_by_object[k], (p, v, k)
        for k in np.nonzero(L.occluded_by_object)[0]:
            ij = np.floor(L.keypoints_2d[k]).astype(int)
            assert L.object_mask[max(0, ij[1] - 2):ij[1] + 3, max(0, ij[0] - 2):ij[0] + 3].any()
        pm = LABEL_PASSES.get("part_mask").hook("compute")(
            type("C", (), {"labels": L, "tables": tables})())
        assert set(np.unique(pm)) <= {0, 1, 2, 3} and np.array_equal(pm == 3, L.object_mask)
        arrays = {"part_mask": pm, "mask": L.mask, "depth": L.depth, "hand_depth": L.hand_depth}
        for name in ("part_mask", "depth", "hand_depth"):
            assert LABEL_PASSES.get(name).problems(arrays) == [], name
        bad = dict(arrays, depth=np.where(L.object_mask, 0, L.depth).astype(np.float32))
        assert LABEL_PASSES.get("depth").problems(bad)
        # verify's occluder checks pass on these labels and catch a flag set or cleared by hand
        rep = Report()
        check = (L.visible, L.in_frame, L.keypoints_2d, L.keypoints_cam, arrays,
                 visibility_contract(tables.wrist_joint), rep)
        check_occluded("x", L.occluded_by_object, *check)
        assert rep.ok, rep.text()
        # tamper with a visible keypoint (one the hand hides may be behind an object as well)
        far = np.nonzero(L.visible & ~L.occluded_by_object & ~binary_dilation(L.object_mask, iterations=4)[
            np.clip(np.floor(L.keypoints_2d[:, 1]).astype(int), 0, 255),
            np.clip(np.floor(L.keypoints_2d[:, 0]).astype(int), 0, 255)])[0]
        if far.size:
            occ = L.occluded_by_object.copy()
            occ[far[0]] = True
            check_occluded("x", occ, L.visible & ~occ, *check[1:])
            assert "occluders" in rep.problems
            tampered += 1
        rep.problems.clear()
        shown = np.nonzero(L.occluded_by_object & L.object_mask[
            np.floor(L.keypoints_2d[:, 1]).astype(int).clip(0, 255), np.floor(L.keypoints_2d[:, 0]).astype(int).clip(0, 255)])[0]
        if shown.size:  # a keypoint under the object's pixels, its flag cleared
            occ = L.occluded_by_object.copy()
            occ[shown[0]] = False
            check_occluded("x", occ, *check)
            assert "occluders" in rep.problems
            tampered += 1
        found += int(L.occluded_by_object.any())
    assert found >= 1 and tampered >= 2


def test_without_occluders_labels_are_unchanged(tables, views):
    from datagen.labels.visibility import compute_labels, label_record
    from datagen.geometry.raster import rasterize

    p, v = 31, 100
    dense, F, kp = tables.dense_vertices(p), tables.dense_faces, tables.keypoints[p]
    a = compute_labels(dense, F, kp, views.K, views.R[v], views.t[v], 256, 256)
    r = rasterize(dense @ views.R[v].T + views.t[v], F, views.K, 256, 256)
    b = compute_labels(dense, F, kp, views.K, views.R[v], views.t[v], 256, 256, hand_raster=r)
    for f in ("depth", "mask", "face", "visible", "depth_gap", "crossings"):
        assert np.array_equal(getattr(a, f), getattr(b, f), equal_nan=f == "depth_gap")
    assert a.object_mask is None and a.occluded_by_object is None and a.hand_depth is None
    spec = type("S", (), {"pose_id": p, "view_id": v, "item_id": p * 216 + v, "seed": (0, p, v),
                          "skin": type("K", (), {"record": lambda self: {}})()})()
    assert "occluded_by_object" not in label_record(spec, a, views.K, views.R[v], views.t[v], {}, {}, {})


def test_config_keys_validated_and_default_digest_unchanged():
    d = config_from_dict({})
    assert d.occluders.share == 0.0
    assert "occluders" not in json.dumps(
        __import__("datagen.config", fromlist=["canonical_dict"]).canonical_dict(d.to_dict()))
    alone = {"hand": {"forearm": False}, "render": {"label_passes": []}}  # the hand alone: no part mask ...
    assert "part_mask" not in config_from_dict(alone).render.label_passes
    on = config_from_dict(dict(alone, occluders={"share": 0.5}))  # ... until an object needs one
    assert "part_mask" in on.render.label_passes and on.digest() != d.digest()
    for key, bad in (("share", 1.5), ("held_share", -0.1), ("kinds", ["box", "teapot"]), ("coverage", [0.5, 0.2]),
                     ("max_attempts", 0), ("kinds", [])):
        with pytest.raises(ConfigError, match=f"occluders.{key}"):
            config_from_dict({"occluders": {"share": 0.5, key: bad}})
    with pytest.raises(ConfigError, match="occluders.colour"):
        config_from_dict({"occluders": {"colour": 1}})


def test_sparse_depth_codec_round_trips_exactly():
    from datagen.dataset.codecs import DEPTH_CODECS

    c = DEPTH_CODECS["f32-sparse-zlib"]
    rng = np.random.default_rng(0)
    d = np.where(rng.random((37, 53)) < 0.3, rng.random((37, 53)) + 0.2, 0).astype(np.float32)
    buf, off = c.encode(d)
    assert np.array_equal(c.decode(buf, off, d.shape), d) and not c.needs_mask
    z = np.zeros((5, 7), np.float32)
    assert np.array_equal(c.decode(c.encode(z)[0], None, z.shape), z)


# ---------------------------------------------------------------------------------------------
# With real Blender
# ---------------------------------------------------------------------------------------------

@pytest.mark.blender
@pytest.mark.slow
def test_cycles_sees_the_labelled_object_and_the_pack_round_trip(config, prepared, cache_dir, tmp_path):
    from scipy.ndimage import binary_erosion
    from support.mapping import ToyMapping
    from support.renders import write_render_config

    from blender_scripts.scene import SceneRenderer
    from datagen.cameras import views_for
    from datagen.cameras.jitter import view_camera
    from datagen.config import REPO_ROOT, load_config
    from datagen.dataset.pack import pack
    from datagen.dataset.reader import HandShards
    from datagen.dataset.verify import verify
    from datagen.labels.visibility import compute_labels
    from datagen.poses.tables import ensure_tables
    from datagen.scene.hdri import discover
    from datagen.labels.handedness import handed_mesh, handed_points
    from datagen.scene.items import make_spec
    from datagen.scene.occluders import rebuild

    path = write_render_config(tmp_path / "occ.toml", size=96)
    path.write_text(path.read_text() + "label_passes = [\"hand_depth\"]\n[occluders]\nshare = 1.0\nheld_share = 0.0\n"
                    "[hand]\nleft_share = 0.5\n")  # item 12/66 is a left hand: its object in the mirrored frame
    cfg = load_config(path)
    assert cfg.render.label_passes == ("hand_depth", "part_mask")
    tables = ensure_tables(cfg, cache_dir)
    views = views_for(cfg.cameras, tables)
    hdris, _ = discover(cfg.hdri.sources, REPO_ROOT)
    renderer = SceneRenderer(cfg, tables, views, hdris[:2])
    out = tmp_path / "r"
    items = [(700, 3), (100, 150), (12, 66)]
    seen = lefts = 0
    for p, v in items:
        spec = make_spec(cfg, 2, p, v, len(views))
        renderer.render_item(spec, out)
        rec = json.loads((out / "items" / f"{p:05d}" / f"v{v:03d}.json").read_text())
        assert len(rec["occluded_by_object"]) == 21 and rec["occluders"]["drawn"]
        if not rec["occluders"]["objects"]:
            continue
        # Cycles' own coverage and depth (object included) equal the labels' depth support
        alpha, cdepth = renderer.cycles_coverage_depth(spec, tmp_path)
        right, _ = renderer.item_mesh(spec, view_camera(views, v))  # the item's own arm
        dense, faces = handed_mesh(right, tables.dense_faces, spec.handedness)
        V, Fo = rebuild(rec["occluders"]["objects"][0])
        L = compute_labels(dense, faces, handed_points(tables.keypoints[p], spec.handedness), views.K, views.R[v],
                           views.t[v], 96, 96, objects=(V, Fo), occluders=rec["occluders"],
                           wrist_joint=tables.wrist_joint)
        lefts += spec.left
        fg = L.depth > 0
        cmask = alpha > 0.5
        assert (cmask & fg).sum() / (cmask | fg).sum() > 0.97
        inner = (alpha > 0.999) & fg
        diff = np.abs(cdepth[inner] - L.depth[inner])
        # (at 96 px, item 100/150's fingers seen edge-on give the hand alone a 90th percentile of 1.05 mm)
        assert np.median(diff) < 2e-4 and np.percentile(diff, 90) < 1.5e-3
        # the object's own pixels, off its outline (where Cycles' pixel filter mixes in what is behind)
        obj = inner & binary_erosion(L.object_mask)
        assert obj.sum() > 80 and np.percentile(np.abs(cdepth[obj] - L.depth[obj]), 90) < 1e-3
        assert rec["visible"] == L.visible.tolist() and rec["occluded_by_object"] == L.occluded_by_object.tolist()
        seen += 1
    assert seen >= 2 and lefts == 1
    # write the run files the packer needs, as render.py does
    from blender_scripts.render import run_record, write_run_files

    write_run_files(out, run_record(cfg, tables, views, hdris[:2], [], renderer), tables, views, False)
    ds = tmp_path / "ds"
    manifest = pack(out, ds, progress=False, mapping=ToyMapping(tables.n_dense), log=lambda *a: None)
    assert manifest["encodings"]["depth"]["codec"] == "f32-sparse-zlib"
    rep = verify(ds)
    assert rep.ok, rep.text()
    r = HandShards(ds)
    got = {int(s["item_id"]): s for s in (r.read_sample(i) for i in range(len(r)))}
    for p, v in items:
        rec = json.loads((out / "items" / f"{p:05d}" / f"v{v:03d}.json").read_text())
        s = got[p * 216 + v]
        assert s["occluded_by_object"].tolist() == rec["occluded_by_object"]
        depth = np.load(out / "items" / f"{p:05d}" / f"v{v:03d}.depth.npy")
        assert np.array_equal(s["depth"], depth) and np.array_equal(s["part_mask"] == 3, (depth > 0) & ~s["mask"])
        assert np.array_equal(s["hand_depth"], np.load(out / "items" / f"{p:05d}" / f"v{v:03d}.hand_depth.npy"))


def test_report_command_refuses_bad_input(tmp_path, capsys):
    from datagen.config import REPO_ROOT
    from datagen.occluders import main

    assert main(["--report"]) == 2 and "share = 0" in capsys.readouterr().err  # the default has none
    assert main(["--report", "--items", "0", "--config", str(REPO_ROOT / "configs" / "occluders.toml")]) == 2
    bad = tmp_path / "bad.toml"
    bad.write_text("[occluders]\nshare = 2.0\n")
    assert main(["--report", "--config", str(bad)]) == 2 and "occluders.share" in capsys.readouterr().err


def test_label_item_is_the_renderers_geometry_for_right_left_and_objects(tables, views):
    """datagen.labels.item.label_item: a left item's hand is the mirror (reversed faces), the
    objects are the item's own placement draw, and the labels count them (what the renderer uses)."""
    from datagen.cameras.jitter import view_camera
    from datagen.labels.item import label_item
    from datagen.scene.items import make_spec

    pose, view = 100, 150
    right = tables.dense_vertices(pose)
    cam = view_camera(views, view)
    plain = config_from_dict({})
    spec = make_spec(plain, 1, pose, view, len(views.R))
    g = label_item(plain, tables, spec, right, cam, views.width, views.height)
    assert g.placement is None and np.array_equal(g.dense, right) and np.array_equal(g.faces, tables.dense_faces)
    left = dataclasses.replace(spec, handedness="left")
    gl = label_item(plain, tables, left, right, cam, views.width, views.height)
    assert np.array_equal(gl.dense[:, 0], -right[:, 0]) and np.array_equal(gl.faces, tables.dense_faces[:, ::-1])
    occ = config_from_dict({"occluders": {"share": 1.0}})
    go = label_item(occ, tables, make_spec(occ, 1, pose, view, len(views.R)), right, cam, views.width, views.height)
    again = _place(occ.occluders, tables, views, pose, view)
    assert go.placement is not None and go.placement.record() == again.record()
    assert go.placement.record()["objects"]  # this item draws an object (share 1)
    assert (go.labels.depth > 0).sum() > (g.labels.depth > 0).sum() or go.labels.object_mask.any()
