"""Channel-uniform irreps: every irrep has the same multiplicity ``C`` (as in MACE).

Features are stored channels-last as ``[N, D, C]`` with ``D = sum(2l + 1)`` over the irreps (the
``m``-components of irrep ``k`` are rows ``slices[k]``). Keeping the channel axis innermost makes
every elementwise product, broadcast and channel-mixing matmul run over contiguous memory, which is
what makes the CPU implementation fast. e3nn stores the same data mul-major per irrep,
``[N, sum(C * (2l + 1))]``; :meth:`UniformIrreps.to_e3nn` / ``from_e3nn`` convert.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from e3nn import o3

from eqtool.errors import EqtoolError

__all__ = ["UniformIrreps", "wigner_D"]


class UniformIrreps:
    """Irreps ``C x (ir_1 + ir_2 + ...)`` with a single multiplicity ``C``.

    Args:
        irreps: e3nn irreps string/object with equal multiplicities (``"32x0e+32x1o"``), or a
            sequence of irreps without multiplicity (then ``channels`` is required).
        channels: multiplicity ``C`` when ``irreps`` has none.
    """

    def __init__(self, irreps: str | o3.Irreps | Sequence, channels: int | None = None):
        if isinstance(irreps, (str, o3.Irreps)):
            try:
                parsed = o3.Irreps(irreps).simplify()
            except (ValueError, AssertionError) as exc:
                raise EqtoolError(f"cannot parse irreps {str(irreps)!r}: {exc}") from None
            muls = {mul for mul, _ in parsed}
            if len(muls) != 1:
                raise EqtoolError(f"irreps {str(irreps)!r} must all have the same multiplicity")
            channels = muls.pop()
            irs = [ir for _, ir in parsed]
        else:
            irs = [o3.Irrep(ir) for ir in irreps]
            if channels is None:
                raise ValueError("channels is required when irreps carry no multiplicity")
        if len(set(irs)) != len(irs):
            raise EqtoolError(f"irreps {irs} are repeated")
        self.channels = int(channels)
        self.irs: list[o3.Irrep] = irs
        self.dims = [ir.dim for ir in irs]
        starts = [sum(self.dims[:i]) for i in range(len(irs))]
        self.slices = [slice(s, s + d) for s, d in zip(starts, self.dims, strict=False)]
        self.dim = sum(self.dims)

    @property
    def irreps(self) -> o3.Irreps:
        """The e3nn irreps with multiplicity, e.g. ``32x0e+32x1o``."""
        return o3.Irreps([(self.channels, ir) for ir in self.irs])

    def __repr__(self) -> str:
        return str(self.irreps)

    def __eq__(self, other) -> bool:
        return isinstance(other, UniformIrreps) and other.irs == self.irs and other.channels == self.channels

    def index(self, ir) -> int:
        return self.irs.index(o3.Irrep(ir))

    def to_e3nn(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, D, C]`` -> e3nn layout ``[N, sum C*(2l+1)]``."""
        n = x.shape[0]
        return torch.cat([x[:, s, :].transpose(1, 2).reshape(n, -1) for s in self.slices], dim=-1)

    def from_e3nn(self, x: torch.Tensor) -> torch.Tensor:
        """e3nn layout ``[N, sum C*(2l+1)]`` -> ``[N, D, C]``."""
        n, c, out, i = x.shape[0], self.channels, [], 0
        for d in self.dims:
            out.append(x[:, i: i + c * d].reshape(n, c, d).transpose(1, 2))
            i += c * d
        return torch.cat(out, dim=1)

    def wigner_D(self, R: torch.Tensor) -> torch.Tensor:
        """Block-diagonal ``[D, D]`` matrix of the (possibly improper) rotation ``R``; acts as ``D @ x``."""
        return torch.block_diag(*[wigner_D(ir, R) for ir in self.irs])


def wigner_D(ir, R: torch.Tensor) -> torch.Tensor:
    """``[2l+1, 2l+1]`` representation of the 3x3 (possibly improper) rotation ``R`` on irrep ``ir``.

    Solved from ``Y(R x) = D Y(x)`` on random points in float64, which is exact to ~1e-15
    (e3nn's ``D_from_matrix`` goes through float32 constants and is only ~1e-7 accurate).
    """
    ir = o3.Irrep(ir)
    R64 = R.detach().to(torch.float64)
    det = torch.linalg.det(R64)
    proper = R64 * det.sign()
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(4 * ir.dim + 8, 3, dtype=torch.float64, generator=gen)
    y = o3.spherical_harmonics(ir.l, x, normalize=True)
    y_rot = o3.spherical_harmonics(ir.l, x @ proper.T, normalize=True)
    D = torch.linalg.lstsq(y, y_rot).solution.T
    if det < 0 and ir.p == -1:
        D = -D
    return D.to(R.dtype)
