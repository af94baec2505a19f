"""MobRecon network: shapes, gradients, DSConv vs. a naive reference, ONNX, costs."""
import numpy as np
import pytest
import torch
from torch import nn

from mobrecon.blocks import ConvBNReLU, Reorg
from mobrecon.complexity import count
from mobrecon.decoder import SpiralDecoder
from mobrecon.densestack import DenseStack
from mobrecon.dsconv import DSConv, SpiralConvPP, Upsample
from mobrecon.export import export_onnx, fold_batchnorm, onnx_max_error, ort_session, warm_bn_stats_
from mobrecon.ghoststack import GhostStack
from mobrecon.mesh_prep import spiral_sequences
from mobrecon.model import MobRecon

torch.set_num_threads(1)  # robust timing on a shared 2-core machine


def _model(template, mesh, enc="densestack", dec="dsconv", seed=0):
    torch.manual_seed(seed)
    return MobRecon(template, enc, dec, mesh=mesh)


@pytest.mark.parametrize("enc_cls", [DenseStack, GhostStack])
def test_encoder_shapes(enc_cls):
    out = enc_cls().eval()(torch.randn(2, 3, 128, 128))
    assert out["latent"].shape == (2, 256, 4, 4)
    assert out["feat2d"].shape == (2, 24, 16, 16)


@pytest.mark.parametrize("conv", ["dsconv", "spiralpp"])
def test_decoder_shapes(mesh, conv):
    dec = SpiralDecoder(mesh, conv=conv)
    assert dec(torch.randn(3, 49, 256)).shape == (3, 778, 3)


@pytest.mark.parametrize("enc", ["densestack", "ghoststack"])
def test_model_outputs_and_gradients(template, mesh, enc):
    m = _model(template, mesh, enc).train()
    out = m(torch.rand(2, 3, 128, 128) * 2 - 1)
    assert out["verts"].shape == (2, 778, 3)
    assert out["uv"].shape == (2, 21, 2)
    assert out["maps"].shape == (2, 21, 16, 16)
    assert out["latent"].shape == (2, 256, 4, 4)
    loss = out["verts"].abs().mean() + out["uv"].abs().mean()
    loss.backward()
    missing = [n for n, p in m.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, missing
    # gradient reaches the first layer, PVL and every decoder conv
    assert m.encoder.stem[0][0].weight.grad.abs().sum() > 0
    assert m.pvl.weight.grad.abs().sum() > 0
    assert all(c.depthwise.grad.abs().sum() > 0 for c in m.decoder.convs)
    # uv gradient path: the MapReg MLP gets gradient from the uv loss only
    assert m.mapreg.mlp[0].weight.grad.abs().sum() > 0


def _tiny_mesh():
    # an octahedron: 6 vertices, closed, every vertex of valence 4
    V = np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], float)
    F = np.array([[0, 2, 4], [2, 1, 4], [1, 3, 4], [3, 0, 4], [2, 0, 5], [1, 2, 5], [3, 1, 5], [0, 3, 5]])
    return V, F


def test_dsconv_matches_naive_per_vertex_loop():
    V, F = _tiny_mesh()
    sp = spiral_sequences(F, len(V), 5)
    torch.manual_seed(1)
    conv = DSConv(4, 3, sp)
    x = torch.randn(2, len(V), 4)
    got = conv(x).detach().numpy()
    w_d = conv.depthwise.detach().numpy()  # (S, Cin)
    w_p = conv.pointwise.weight.detach().numpy()  # (Cout, Cin)
    xn = x.numpy()
    ref = np.zeros((2, len(V), 3))
    for b in range(2):
        for v in range(len(V)):
            d = np.zeros(4)
            for s, u in enumerate(sp[v]):
                for c in range(4):
                    d[c] += xn[b, u, c] * w_d[s, c]
            ref[b, v] = w_p @ d
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)
    # and the parameter count of the paper: S*Cin + Cin*Cout
    assert sum(p.numel() for p in conv.parameters()) == 5 * 4 + 4 * 3


def test_spiralconvpp_and_upsample_match_references(mesh):
    V, F = _tiny_mesh()
    sp = spiral_sequences(F, len(V), 5)
    conv = SpiralConvPP(4, 3, sp)
    x = torch.randn(1, len(V), 4)
    W, b = conv.layer.weight.detach().numpy(), conv.layer.bias.detach().numpy()
    ref = np.stack([W @ x[0, sp[v]].numpy().reshape(-1) + b for v in range(len(V))])
    np.testing.assert_allclose(conv(x)[0].detach().numpy(), ref, rtol=1e-5, atol=1e-6)
    up = Upsample(mesh.up_idx[0], mesh.up_w[0])
    xc = torch.randn(1, 389, 7, dtype=torch.float32)
    ref = mesh.up_matrix(0) @ xc[0].numpy().astype(np.float64)
    np.testing.assert_allclose(up(xc)[0].numpy(), ref, rtol=1e-5, atol=1e-5)


def test_reorg_plus_1x1_equals_strided_2x2_conv():
    torch.manual_seed(0)
    one = nn.Conv2d(4 * 5, 7, 1, bias=False)
    two = nn.Conv2d(5, 7, 2, 2, bias=False)
    two.weight.data.copy_(one.weight.data.view(7, 5, 2, 2))
    x = torch.randn(1, 5, 8, 8)
    torch.testing.assert_close(one(Reorg()(x)), two(x))


def test_joint_regressor(template, mesh):
    m = _model(template, mesh, "ghoststack")
    V = torch.as_tensor(template.vertices, dtype=torch.float32)[None]
    J = m.joints(V)
    assert J.shape == (1, 21, 3)
    assert np.abs(J[0].numpy() - template.joints).max() < 3e-3  # within 3 mm (the wrist)
    assert torch.allclose(m.joints(V + 1.0), J + 1.0, atol=1e-5)  # convex rows: translation-equivariant
    R = m.joint_regressor
    assert torch.all(R >= 0) and torch.allclose(R.sum(1), torch.ones(21))
    assert ((R > 0).sum(1) <= 24).all()  # sparse


def test_complexity_counter_basics():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = ConvBNReLU(3, 8, 3)
            self.fc = nn.Linear(8, 4)
            self.unused = nn.Linear(100, 100)

        def forward(self, x):
            return self.fc(self.conv(x).mean((2, 3)))

    c = count(Net(), torch.randn(1, 3, 8, 8))
    assert c.mult_adds == 8 * 8 * 8 * 3 * 9 + 8 * 4
    assert c.params == 8 * 3 * 9 + 2 * 8 + 8 * 4 + 4  # the unused layer does not count


# paper Table 4 / Sec. 3.1 (M Mult-Adds, M params), 128x128 input
PAPER = {
    ("densestack", "dsconv"): (439.9, 8.1),
    ("ghoststack", "dsconv"): (123.5, 5.3),
    ("densestack", "spiralpp"): (579.4, 9.0),
    ("ghoststack", "spiralpp"): (263.1, 6.2),
}


@pytest.mark.parametrize("key", list(PAPER))
def test_costs_within_3_percent_of_paper(template, mesh, key):
    m = _model(template, mesh, *key)
    c = count(m, torch.randn(1, 3, 128, 128), groups={"up2d": m.encoder.up2d, "encoder": m.encoder})
    macs, params = PAPER[key]
    assert abs(c.macs_m / macs - 1) < 0.03, c.macs_m
    assert abs(c.params_m / params - 1) < 0.03, c.params_m
    enc_m = (c.by_group["encoder"][0] - c.by_group["up2d"][0]) / 1e6
    enc_p = (c.by_group["encoder"][1] - c.by_group["up2d"][1]) / 1e6
    want = {"densestack": (373.0, 6.6), "ghoststack": (96.2, 5.0)}[key[0]]
    assert abs(enc_m / want[0] - 1) < 0.03 and abs(enc_p / want[1] - 1) < 0.03, (enc_m, enc_p)


@pytest.mark.parametrize("enc", ["densestack", "ghoststack"])
def test_onnx_roundtrip(template, mesh, enc):
    pytest.importorskip("onnxruntime")
    m = warm_bn_stats_(_model(template, mesh, enc))
    x = torch.rand(2, 3, 128, 128) * 2 - 1
    with torch.no_grad():
        ref = m(x)
    assert ref["verts"].abs().max() > 1e-2  # non-trivial outputs, so the check means something
    sess = ort_session(export_onnx(m), threads=1)
    assert onnx_max_error(m, sess, x) < 1e-4
    # BN folding for the eager path gives the same outputs
    f = fold_batchnorm(m)
    assert not any(isinstance(x_, nn.BatchNorm2d) for x_ in f.modules())
    with torch.no_grad():
        torch.testing.assert_close(f(x)["verts"], ref["verts"], atol=1e-4, rtol=1e-4)


def test_template_offset_starts_from_the_template(template):
    """With template_offset the decoder's output is an offset from the root-relative template."""
    import numpy as np
    import torch

    from mobrecon.model import MobRecon

    torch.manual_seed(0)
    net = MobRecon(template, "ghoststack", template_offset=True).eval()
    with torch.no_grad():
        for p in net.decoder.head.parameters():
            p.zero_()  # a zero head: the output is exactly the template
        out = net(torch.zeros(1, 3, 128, 128))
    V = np.asarray(template.vertices)
    root = template.joint_regressor()[0] @ V
    assert np.allclose(out["verts"][0].numpy(), (V - root) / 0.2, atol=1e-5)
