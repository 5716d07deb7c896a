"""Unit tests of the equivariant primitives in eqtool.nn."""

from __future__ import annotations

import pytest
import torch
from e3nn import o3

from eqtool.errors import EqtoolError
from eqtool.nn import (
    BesselBasis,
    EdgeConvTP,
    ElementIndex,
    ElementIrrepsLinear,
    Gate,
    IrrepsLinear,
    NodeTP,
    PolynomialCutoff,
    ProductBasis,
    RadialBasis,
    UniformIrreps,
    scatter_sum,
)
from eqtool.nn.irreps import wigner_D

F64 = torch.float64


def _rot(seed: int, improper: bool = False) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q, r = torch.linalg.qr(torch.randn(3, 3, dtype=F64, generator=g))
    q = q * torch.sign(torch.diagonal(r))
    if torch.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return -q if improper else q


def test_polynomial_cutoff_formula_and_smoothness():
    env = PolynomialCutoff(cutoff=4.0, p=5)
    r = torch.tensor([0.0, 2.0, 3.999999, 4.0, 5.0], dtype=F64, requires_grad=True)
    u = env(r)
    d = 0.5
    expected = 1 - 21 * d**5 + 35 * d**6 - 15 * d**7  # p = 5: (p+1)(p+2)/2, p(p+2), p(p+1)/2
    assert u[0].item() == pytest.approx(1.0)
    assert u[1].item() == pytest.approx(expected, rel=1e-12)
    assert abs(u[2].item()) < 1e-12 and u[3].item() == 0.0 and u[4].item() == 0.0
    (g,) = torch.autograd.grad(u.sum(), r, create_graph=True)
    assert abs(g[2].item()) < 1e-8  # first derivative vanishes at the cutoff
    (g2,) = torch.autograd.grad(g[2], r)
    assert abs(g2[2].item()) < 1e-4  # and the second


def test_bessel_basis_formula_and_trainable():
    b = BesselBasis(cutoff=5.0, num_basis=8).to(F64)
    r = torch.tensor([0.7, 2.3], dtype=F64)
    n = torch.arange(1, 9, dtype=F64)
    expected = (2 / 5.0) ** 0.5 * torch.sin(n * torch.pi * r[:, None] / 5.0) / r[:, None]
    torch.testing.assert_close(b(r), expected)
    assert not any(True for _ in b.parameters())
    assert len(list(BesselBasis(5.0, 8, trainable=True).parameters())) == 1
    rb = RadialBasis(5.0, 8, 5)
    assert rb(torch.tensor([5.0, 6.0])).abs().max() == 0


def test_element_index_maps_and_rejects_unknown():
    idx = ElementIndex([79, 29, 29])
    assert idx.atomic_numbers.tolist() == [29, 79]
    assert idx(torch.tensor([79, 29, 79])).tolist() == [1, 0, 1]
    with pytest.raises(EqtoolError, match="Fe"):
        idx(torch.tensor([29, 26]))
    with pytest.raises(EqtoolError):
        ElementIndex([0])


def test_uniform_irreps_layout_roundtrip_and_errors():
    irs = UniformIrreps("4x0e+4x1o+4x2e")
    assert irs.channels == 4 and irs.dim == 9
    x = torch.randn(3, 9, 4)
    e3 = irs.to_e3nn(x)
    assert e3.shape == (3, irs.irreps.dim)
    torch.testing.assert_close(irs.from_e3nn(e3), x)
    # e3nn layout: the 1o block of channel c is [x_c,0 x_c,1 x_c,2]
    torch.testing.assert_close(e3[:, 4:7], x[:, 1:4, 0])
    with pytest.raises(EqtoolError):
        UniformIrreps("4x0e+2x1o")
    with pytest.raises(EqtoolError):
        UniformIrreps("not irreps")


def test_wigner_D_is_a_representation():
    R1, R2 = _rot(1), _rot(2, improper=True)
    for ir in ["1o", "2e", "3o", "1e"]:
        torch.testing.assert_close(wigner_D(ir, R1 @ R2), wigner_D(ir, R1) @ wigner_D(ir, R2))
    torch.testing.assert_close(wigner_D("1o", R1), R1)  # e3nn's 1o basis is (x, y, z)


def test_linear_equivariance_and_missing_irrep_zero():
    irs_in = UniformIrreps("3x0e+3x1o")
    out = UniformIrreps("5x0e+5x1o+5x2e")
    lin = IrrepsLinear(irs_in.irs, 3, out).to(F64)
    x = torch.randn(4, 4, 3, dtype=F64)
    R = _rot(0, improper=True)
    y = lin(x)
    assert y[:, 4:].abs().max() == 0  # 2e has no input path
    torch.testing.assert_close(lin(irs_in.wigner_D(R) @ x), out.wigner_D(R) @ y)
    el = ElementIrrepsLinear(irs_in, UniformIrreps("2x0e+2x1o"), num_elements=3).to(F64)
    z = torch.tensor([0, 2, 1, 2])
    y = el(x, z)
    torch.testing.assert_close(el(irs_in.wigner_D(R) @ x, z), UniformIrreps("2x0e+2x1o").wigner_D(R) @ y)
    # element dependence: swapping an atom's element changes its output only
    z2 = z.clone()
    z2[0] = 1
    y2 = el(x, z2)
    assert not torch.allclose(y2[0], y[0]) and torch.allclose(y2[1:], y[1:])


def test_edge_conv_equivariance_and_scalar_paths():
    node = UniformIrreps("4x0e+4x1o")
    tp = EdgeConvTP(node.irs, 3, [o3.Irrep(l, (-1) ** l) for l in range(4)])
    sh = o3.SphericalHarmonics(list(range(4)), normalize=True, normalization="component")
    n, e = 5, 12
    g = torch.Generator().manual_seed(0)
    h = torch.randn(n, 4, 4, generator=g, dtype=F64)
    vec = torch.randn(e, 3, generator=g, dtype=F64)
    send, recv = torch.randint(0, n, (e,), generator=g), torch.randint(0, n, (e,), generator=g)
    w = torch.randn(e, tp.n_paths, 4, generator=g, dtype=F64)
    out = tp(h[send], sh(vec), w, recv, n)
    R = _rot(3, improper=True)
    D_out = torch.block_diag(*[wigner_D(ir, R) for ir in tp.irs_out])
    rot = tp((node.wigner_D(R) @ h)[send], sh(vec @ R.T), w, recv, n)
    torch.testing.assert_close(rot, D_out @ out)
    # a 0e (x) Y_l -> l path is exactly h_j * w * Y_l (CG of 0 x l -> l is the identity)
    p = tp.paths.index((0, 2, o3.Irrep("2e")))
    row = sum(ir.dim for ir in tp.irs_out[:p])
    expected = scatter_sum(h[send][:, :1, :] * w[:, p, None, :] * sh(vec)[:, 4:9, None], recv, n)
    torch.testing.assert_close(out[:, row: row + 5], expected)


def test_node_tp_symmetric_matches_full():
    irs = [o3.Irrep(l, (-1) ** l) for l in range(4)]
    target = [o3.Irrep("0e"), o3.Irrep("1o"), o3.Irrep("2e"), o3.Irrep("2o")]
    full = NodeTP(irs, irs, target, symmetric=False)
    sym = NodeTP(irs, irs, target, symmetric=True)
    assert sym.n_paths < full.n_paths and bool((sym.I <= sym.J).all())  # upper-triangle pairs only
    x = torch.randn(3, 16, 2, dtype=F64)
    of, os_ = full(x, x), sym(x, x)

    def block(tp, out, path):
        p = tp.paths.index(path)
        start = sum(ir.dim for ir in tp.irs_out[:p])
        return out[:, start: start + path[2].dim]

    for path in sym.paths:
        torch.testing.assert_close(block(sym, os_, path), block(full, of, path))
    # dropped antisymmetric path: 1o x 1o -> 1e vanishes for equal inputs
    v = NodeTP([o3.Irrep("1o")], [o3.Irrep("1o")], [o3.Irrep("1e")])(x[:, 1:4], x[:, 1:4])
    assert v.abs().max() < 1e-12


@pytest.mark.parametrize("copies", [1, 2])
def test_node_tp_matches_einsum_reference(copies):
    """Every output row of ``NodeTP`` (block form, with copies) against a direct CG contraction:
    path ``(i1, i2, L)`` of channel block ``a = i1 // n1`` is ``x_i1 (x) y_i2`` over the channels of
    block ``a`` of ``x`` and block ``i2 // n2`` of ``y``; a path subset zeroes the other rows."""
    from eqtool.nn import clebsch_gordan

    irs1 = [o3.Irrep(s) for s in ("0e", "1o", "2e")]
    irs2 = [o3.Irrep(s) for s in ("0e", "1o")]
    tp = NodeTP(irs1, irs2, [o3.Irrep(s) for s in ("0e", "1o", "1e", "2e", "3o")], copies=copies)
    c = 3
    x, y = torch.randn(4, 9, copies * c, dtype=F64), torch.randn(4, 4, copies * c, dtype=F64)
    o1, o2 = [0, 1, 4, 9], [0, 1, 4]
    keep = [p for p in range(tp.n_paths) if p % 3 != 1]
    full, part = tp(x, y), tp.blockwise(x, y, keep, torch.full((tp.n_paths,), 2.0, dtype=F64))
    assert full.shape == (4, sum(ir.dim for ir in tp.irs_out), copies * c)
    seen = torch.zeros(full.shape[1], copies, dtype=torch.long)
    for p, (i1, i2, ir3) in enumerate(tp.paths):
        a, b = i1 // 3, i2 // 2
        j1, j2 = i1 % 3, i2 % 2
        xs = x[:, o1[j1]: o1[j1 + 1], a * c: (a + 1) * c]
        ys = y[:, o2[j2]: o2[j2 + 1], b * c: (b + 1) * c]
        ref = torch.einsum("ijk,nic,njc->nkc", clebsch_gordan(irs1[j1], irs2[j2], ir3), xs, ys)
        _, r0, r1 = tp.path_rows[p]
        torch.testing.assert_close(full[:, r0:r1, a * c: (a + 1) * c], ref, rtol=0, atol=1e-12)
        want = 2 * ref if p in keep else torch.zeros_like(ref)
        torch.testing.assert_close(part[:, r0:r1, a * c: (a + 1) * c], want, rtol=0, atol=1e-12)
        seen[r0:r1, a] += 1
    assert bool((seen == 1).all())  # every output row belongs to exactly one path
    with pytest.raises(ValueError, match="copies"):
        NodeTP(irs1, irs1, irs1, symmetric=True, copies=2)


@pytest.mark.parametrize("correlation", [1, 2, 3])
def test_product_basis_equivariant_and_polynomial(correlation):
    irs_a = UniformIrreps("3x0e+3x1o+3x2e+3x3o")
    target = UniformIrreps("3x0e+3x1o")
    pb = ProductBasis(irs_a.irs, target.irs, correlation, 3, num_elements=2).to(F64)
    a = torch.randn(4, 16, 3, dtype=F64)
    z = torch.tensor([0, 1, 1, 0])
    R = _rot(5, improper=True)
    out = pb(a, z)
    torch.testing.assert_close(pb(irs_a.wigner_D(R) @ a, z), target.wigner_D(R) @ out)
    # out(t A) is a polynomial of degree `correlation` in t: finite difference of that order + 1 is 0
    ts = torch.arange(correlation + 2, dtype=F64)
    vals = torch.stack([pb(t * a, z) for t in ts])
    diff = vals
    for _ in range(correlation + 1):
        diff = diff[1:] - diff[:-1]
    assert diff.abs().max() < 1e-9 * vals.abs().max()
    lower = vals
    for _ in range(correlation):
        lower = lower[1:] - lower[:-1]
    assert lower.abs().max() > 1e-3  # really of that degree


def test_gate_equivariance():
    irs = UniformIrreps("2x0e+2x1o+2x2e")
    gate = Gate(irs.irs)
    assert gate.n_gated == 2
    x = torch.randn(3, irs.dim + 2, 2, dtype=F64)
    R = _rot(7, improper=True)
    xr = torch.cat([irs.wigner_D(R) @ x[:, :9], x[:, 9:]], dim=1)
    torch.testing.assert_close(gate(xr), irs.wigner_D(R) @ gate(x))


def test_scatter_sum():
    src = torch.arange(12.0).view(6, 2)
    out = scatter_sum(src, torch.tensor([0, 2, 0, 2, 2, 1]), 4)
    assert out.tolist() == [[4.0, 6.0], [10.0, 11.0], [16.0, 19.0], [0.0, 0.0]]
