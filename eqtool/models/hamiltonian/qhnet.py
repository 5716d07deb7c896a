"""QHNet-class DFT Hamiltonian model (Yu et al., ICML 2023, arXiv:2306.04922) with SPHNet's sparse
gates (Luo et al., ICML 2025, arXiv:2502.01171).

1. Backbone: ``num_layers`` equivariant message-passing layers over all atom pairs of each molecule
   (fully connected; ``cutoff`` only shapes the radial functions, which vanish beyond it):
   ``h_i <- Gate(Linear(sum_j R(r_ij) * Linear(h)_j (x) Y(r_ij)) / avg_num_neighbors) + Skip(h_i, Z_i)``.
2. Diagonal blocks: ``f_i = [h_i, Linear(h_i) (x) Linear(h_i)]`` -> :class:`BlockExpansion` (per element),
   plus (``onsite_env``) the neighbour environment ``e_i = sum_j R_e(r_ij) S(h_j) Y^{l <= 4}(r_ij)`` through
   its own expansion. The ``l = 3`` and ``l = 4`` harmonics of the environment are what the ``p``-``d``
   (``3o``) and ``d``-``d`` (``4e``) on-site couplings of a near-tetrahedral atom (sp3 carbon) are made
   of; features with ``l <= 2`` nearly vanish there, and so do their products.
3. Off-diagonal blocks for ordered pairs ``(i, j)``: a cheap part for every pair,
   ``R_a(r) Linear(h)_i + R_b(r) Linear(h)_j`` and ``R_Y(r) Y(r_ij)`` (``l <= 2 l_max`` of the basis),
   plus the pair tensor product ``(R_c(r) Linear(h)_i) (x) Linear(h)_j`` (all coupled irreps, 1e, 2o
   and 3e included) -- the expensive part, through a :class:`~eqtool.nn.sparse_gate.SparseNodeTP`
   whose paths the three-phase schedule prunes. Where the
   :class:`~eqtool.nn.sparse_gate.SparsePairGate` acts depends on ``pair_layers``: with 1 only the
   pairs it keeps run the product (weighted by their gate); with 2 (SPHNet's layout: the pair gate
   sits in the second pair-construction layer only) every pair runs a first product and the kept
   pairs add a second one, with its own weights, on top. ``pair_tp_copies = k`` runs each product
   over ``k`` copies of the hidden irreps (``k^2`` times the paths, for the TP gate to choose from).
4. ``H = S (B + B^T) / 2 + mean`` per block: symmetric (``H_ij = H_ji^T``), ``scale`` times the
   network output ``B`` plus a fitted per-element invariant diagonal ``mean``, then each element's
   AOs are taken out of the 14-AO layout (zero padding beyond its AO count).
5. With a ``baseline`` (Δ-learning, :mod:`eqtool.dft.baseline`) the network predicts ``F - F0`` and
   the output is ``H + F0``: the batch carries ``F0`` as ``hamiltonian_baseline`` pair blocks.

Output: ``{"hamiltonian": [sum n_i^2, 14, 14]}`` in Hartree, PySCF AO order, pair level (row-major
over (i, j) per molecule, as :data:`eqtool.data.keys.HAMILTONIAN`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from e3nn import o3
from torch import nn

from eqtool.data import keys as K
from eqtool.errors import EqtoolError
from eqtool.models.hamiltonian.basis import FULL_SHELLS, MAX_AO, check_basis, shells
from eqtool.models.hamiltonian.expansion import BlockExpansion, expansion_irreps
from eqtool.nn import (
    MLP,
    EdgeConvTP,
    ElementEmbedding,
    ElementIndex,
    ElementIrrepsLinear,
    Gate,
    IrrepsLinear,
    NodeTP,
    RadialBasis,
    UniformIrreps,
)
from eqtool.nn.sparse_gate import SparseNodeTP, SparsePairGate

__all__ = ["QHNet", "all_pairs"]


def all_pairs(n_atoms: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every ordered pair of each system, row-major over (i, j) (the ``pair`` level of data/keys.py).

    Returns:
        ``(i [Q], j [Q], rev [Q])`` with ``Q = sum n_b^2``: global atom indices and, for each pair,
        the index of ``(j, i)``.
    """
    n = n_atoms.long()
    sq = n * n
    B = n.shape[0]
    system = torch.repeat_interleave(torch.arange(B, device=n.device), sq)  # [Q]
    start = torch.cumsum(sq, 0) - sq
    atom_start = torch.cumsum(n, 0) - n
    k = torch.arange(int(sq.sum()), device=n.device) - start[system]
    nb = n[system]
    a, c = k // nb, k % nb
    return atom_start[system] + a, atom_start[system] + c, start[system] + c * nb + a


def _positive_int(name: str, value, lo: int = 1) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < lo:
        raise EqtoolError(f"'{name}' must be an integer >= {lo}, got {value!r}", source="model")
    return value


class _Layer(nn.Module):
    """Message passing ``[N, D_in, C] -> [N, D_hidden, C]`` (convolution, gate, element skip)."""

    def __init__(self, irs_in, hidden: UniformIrreps, lmax: int, num_basis: int, radial_mlp,
                 num_elements: int, avg_num_neighbors: float):
        super().__init__()
        c = hidden.channels
        irreps_in = UniformIrreps(irs_in, c)
        self.linear_up = IrrepsLinear(irreps_in.irs, c, irreps_in)
        self.conv = EdgeConvTP(irreps_in.irs, lmax, hidden.irs)
        self.radial = MLP([num_basis, *radial_mlp, self.conv.n_paths * c])
        self.linear_msg = IrrepsLinear(self.conv.irs_out, c, hidden)
        self.n_gated = sum(1 for ir in hidden.irs if ir != o3.Irrep("0e"))
        self.linear_gate = IrrepsLinear(self.conv.irs_out, c, UniformIrreps(["0e"], c * max(self.n_gated, 1)))
        self.gate = Gate(hidden.irs)
        self.skip = ElementIrrepsLinear(irreps_in, hidden, num_elements)
        self.inv_avg = 1.0 / avg_num_neighbors
        self.channels = c

    def forward(self, h, Y, radial, sender, receiver, elem):
        n, e, c = h.shape[0], Y.shape[0], self.channels
        x = self.linear_up(h)  # [N, D_in, C]
        w = self.radial(radial).view(e, self.conv.n_paths, c)  # [E, n_paths, C]
        a = self.conv(x[sender], Y, w, receiver, n) * self.inv_avg  # [N, D_paths, C]
        g = self.linear_gate(a).view(n, -1, c)[:, : self.n_gated]  # [N, n_gated, C]
        m = self.gate(torch.cat([self.linear_msg(a), g], dim=1))  # [N, D_hidden, C]
        return m + self.skip(h, elem)


class QHNet(nn.Module):
    """Hamiltonian model ``forward(batch) -> {"hamiltonian": [sum n_i^2, 14, 14]}`` (Hartree).

    Args:
        atomic_numbers: supported elements (each needs a ``basis`` entry).
        basis: AO basis of the predicted matrix (``"def2-svp"``).
        channels: feature multiplicity ``C``.
        lmax: maximum ``l`` of the backbone features and edge harmonics (natural parity).
        num_layers: message-passing layers.
        cutoff: radius of the radial functions, Å (pairs farther apart get zero off-diagonal blocks).
        num_basis: Bessel functions; ``radial_mlp``: hidden widths of the radial MLPs.
        avg_num_neighbors: messages are divided by it.
        sparsity: SPHNet sparse gates on the pair tensor product (0 = off, dense; 0.7 = keep 30 %
            of the pairs and of the CG paths).
        pair_sparsity, tp_sparsity: set the pair gate and the TP gate apart (``None``: ``sparsity``),
            e.g. to measure what each gate costs.
        tp_random_steps, tp_adaptive_steps: lengths (optimiser steps) of the ``random`` and
            ``adaptive`` phases of the TP-gate schedule (then ``fixed``).
        pair_layers: pair tensor products summed per pair (1 or 2); the pair gate selects the
            pairs of the last one, so with 2 every pair keeps a full first product.
        tp2_sparsity: TP-gate sparsity of the second (pair-gated) product (``pair_layers: 2``;
            ``None``: ``tp_sparsity``). ``0`` keeps all its paths for the few pairs that run it.
        pair_tp_channels: channels of the (first) pair tensor product (``None``: ``channels``); a
            narrower product is cheaper, its output is zero-padded to ``channels``.
        pair_tp_copies: ``k``: the pair products see their inputs as ``k`` copies of the hidden
            irreps (``C / k`` channels each; :class:`~eqtool.nn.sparse_gate.SparseNodeTP`'s
            ``copies``): ``k^2`` times the CG paths (19 -> 76 at ``k = 2``), ``k`` times the dense
            work; more, partly redundant paths for the TP gate to choose from (SPHNet prunes
            products of many paths). ``1``: the plain product.
        onsite_env: add the ``l <= 4`` neighbour environment to the on-site blocks (see the module
            docstring). Without it an sp3 carbon's on-site ``p``-``d`` and ``d``-``d`` blocks cannot be
            learned (ethanol: ~3000 µHa on-site error even when over-fitting one conformer).
            Model files written before this option existed load with the term present but zero
            (:meth:`_migrate_state_dict`), i.e. exactly as they were trained.
        baseline: ``None`` or ``"promolecule"``: add the physics baseline ``F0`` the batch carries
            (``hamiltonian_baseline``; :func:`eqtool.models.hamiltonian.predict.model_batch` computes
            it with PySCF) to the output; the network then only learns ``F - F0``.
    """

    kind = "hamiltonian"

    def __init__(self, atomic_numbers: Sequence[int] = (1, 6, 7, 8, 9), basis: str = "def2-svp",
                 channels: int = 32, lmax: int = 2, num_layers: int = 3, cutoff: float = 10.0,
                 num_basis: int = 16, radial_mlp: Sequence[int] = (64,), avg_num_neighbors: float = 6.0,
                 sparsity: float = 0.0, tp_random_steps: int = 1000, tp_adaptive_steps: int = 2000,
                 onsite_env: bool = True, pair_sparsity: float | None = None,
                 tp_sparsity: float | None = None, pair_layers: int = 1, tp2_sparsity: float | None = None,
                 pair_tp_channels: int | None = None, baseline: str | None = None, pair_tp_copies: int = 1):
        super().__init__()
        from eqtool.dft.baseline import check_baseline

        basis = check_basis(basis)
        self.baseline = check_baseline(baseline)
        pair_tp_channels = channels if pair_tp_channels is None else pair_tp_channels
        for name, value, lo in (("channels", channels, 1), ("lmax", lmax, 1), ("num_layers", num_layers, 1),
                                ("num_basis", num_basis, 1), ("tp_random_steps", tp_random_steps, 0),
                                ("tp_adaptive_steps", tp_adaptive_steps, 0),
                                ("pair_tp_channels", pair_tp_channels, 1),
                                ("pair_tp_copies", pair_tp_copies, 1)):
            _positive_int(name, value, lo)
        if pair_tp_channels > channels:
            raise EqtoolError(f"'pair_tp_channels' ({pair_tp_channels}) must be <= 'channels' ({channels})",
                              source="model")
        for name, width in (("pair_tp_channels", pair_tp_channels), ("channels", channels)):
            if width % pair_tp_copies:
                raise EqtoolError(f"'{name}' ({width}) must be a multiple of 'pair_tp_copies' "
                                  f"({pair_tp_copies})", source="model")
        if pair_layers not in (1, 2) or isinstance(pair_layers, bool):
            raise EqtoolError(f"'pair_layers' must be 1 or 2, got {pair_layers!r}", source="model")
        pair_sparsity = sparsity if pair_sparsity is None else pair_sparsity
        tp_sparsity = sparsity if tp_sparsity is None else tp_sparsity
        tp2_sparsity = tp_sparsity if tp2_sparsity is None else tp2_sparsity
        for name, value in (("sparsity", sparsity), ("pair_sparsity", pair_sparsity),
                            ("tp_sparsity", tp_sparsity), ("tp2_sparsity", tp2_sparsity)):
            if not (isinstance(value, (int, float)) and 0.0 <= float(value) < 1.0):
                raise EqtoolError(f"'{name}' must be in [0, 1), got {value!r}", source="model")
        if not cutoff > 0 or not avg_num_neighbors > 0:
            raise EqtoolError("'cutoff' and 'avg_num_neighbors' must be > 0", source="model")
        self.elements = ElementIndex(atomic_numbers)
        zs = self.elements.atomic_numbers.tolist()
        n_el = len(zs)
        # each element's AOs inside the full 14-AO layout; MAX_AO marks padding (a zero column)
        full_starts = [sum(2 * l + 1 for l in FULL_SHELLS[:i]) for i in range(len(FULL_SHELLS))]
        ao_index = torch.full((n_el, MAX_AO), MAX_AO, dtype=torch.long)
        for e, z in enumerate(zs):
            idx, used = [], [False] * len(FULL_SHELLS)
            for l in shells(basis, z):  # match shells in order to the first unused full shell of that l
                s = next(s for s, ls in enumerate(FULL_SHELLS) if ls == l and not used[s])
                used[s] = True
                idx += range(full_starts[s], full_starts[s] + 2 * l + 1)
            ao_index[e, : len(idx)] = torch.tensor(idx)
        self.register_buffer("ao_index", ao_index, persistent=False)
        self.register_buffer("diag_mean", torch.zeros(n_el, MAX_AO, MAX_AO))  # fitted, Hartree
        self.register_buffer("scale", torch.ones(()))  # fitted, Hartree
        self.cutoff = float(cutoff)
        c = channels
        hidden = UniformIrreps([o3.Irrep(l, (-1) ** l) for l in range(lmax + 1)], c)
        self.hidden = hidden
        self.embedding = ElementEmbedding(n_el, c)
        self.radial = RadialBasis(cutoff, num_basis)
        self.sh = o3.SphericalHarmonics(list(range(lmax + 1)), normalize=True, normalization="component")
        layers, irs = [], [o3.Irrep("0e")]
        for _ in range(num_layers):
            layers.append(_Layer(irs, hidden, lmax, num_basis, radial_mlp, n_el, avg_num_neighbors))
            irs = hidden.irs
        self.layers = nn.ModuleList(layers)
        exp_irs = expansion_irreps()
        l_pair = max(ir.l for ir in exp_irs)
        # diagonal head
        self.node_a = IrrepsLinear(hidden.irs, c, hidden)
        self.node_b = IrrepsLinear(hidden.irs, c, hidden)
        self.node_tp = NodeTP(hidden.irs, hidden.irs, exp_irs)
        self.node_expansion = BlockExpansion(hidden.irs + self.node_tp.irs_out, c, n_el)
        self.onsite_env = bool(onsite_env)
        if self.onsite_env:  # [E, l_pair + 1, C] radial x neighbour weights, summed to the centre atom
            self.env_radial = MLP([num_basis, *radial_mlp, (l_pair + 1) * c])
            self.env_scalar = MLP([c, (l_pair + 1) * c], bias=True)
            self.env_expansion = BlockExpansion([o3.Irrep(l, (-1) ** l) for l in range(l_pair + 1)], c, n_el)
            self.inv_avg = 1.0 / float(avg_num_neighbors)
        self._register_load_state_dict_pre_hook(self._migrate_state_dict)
        # off-diagonal head
        n_irs = len(hidden.irs)
        self.pair_sh = o3.SphericalHarmonics(list(range(l_pair + 1)), normalize=True,
                                             normalization="component")
        self.pair_irs_y = [o3.Irrep(l, (-1) ** l) for l in range(l_pair + 1)]
        self.pair_a = IrrepsLinear(hidden.irs, c, hidden)
        self.pair_b = IrrepsLinear(hidden.irs, c, hidden)
        narrow = UniformIrreps(hidden.irs, pair_tp_channels)
        self.pair_c = IrrepsLinear(hidden.irs, c, narrow)
        self.pair_d = IrrepsLinear(hidden.irs, c, narrow)
        self.pair_tp_channels = pair_tp_channels
        self.pair_layers = pair_layers
        self.pair_radial = MLP([num_basis, *radial_mlp, ((2 + pair_layers) * n_irs + l_pair + 1) * c])
        # block irreps the cheap part cannot give (1e, 2o, 3e: unnatural parity) keep a TP path each
        tp_only = [ir for ir in exp_irs if ir not in hidden.irs and ir not in self.pair_irs_y]
        k = pair_tp_copies
        self.pair_tp = SparseNodeTP(hidden.irs, hidden.irs, exp_irs, tp_sparsity, required=tp_only, copies=k)
        if pair_layers == 2:  # the gated second product: its own node linears and TP-gate
            self.pair_e = IrrepsLinear(hidden.irs, c, hidden)
            self.pair_f = IrrepsLinear(hidden.irs, c, hidden)
            self.pair_tp2 = SparseNodeTP(hidden.irs, hidden.irs, exp_irs, tp2_sparsity, required=tp_only,
                                         copies=k)
        self.pair_gate = SparsePairGate(2 * c + num_basis, pair_sparsity)
        self.pair_expansion = BlockExpansion(hidden.irs + self.pair_irs_y + self.pair_tp.irs_out, c,
                                             n_el * n_el)
        rows = [k for k, ir in enumerate(hidden.irs) for _ in range(ir.dim)]
        self.register_buffer("irrep_of_row", torch.tensor(rows, dtype=torch.long), persistent=False)
        rows_y = [l for l in range(l_pair + 1) for _ in range(2 * l + 1)]
        self.register_buffer("l_of_y_row", torch.tensor(rows_y, dtype=torch.long), persistent=False)
        self.num_elements = n_el
        self.sparsity = float(sparsity)
        self.config = {
            "name": "qhnet", "atomic_numbers": zs, "basis": basis, "channels": channels, "lmax": lmax,
            "num_layers": num_layers, "cutoff": float(cutoff), "num_basis": num_basis,
            "radial_mlp": list(radial_mlp), "avg_num_neighbors": float(avg_num_neighbors),
            "sparsity": float(sparsity), "tp_random_steps": tp_random_steps,
            "tp_adaptive_steps": tp_adaptive_steps, "onsite_env": self.onsite_env,
            "pair_sparsity": float(pair_sparsity), "tp_sparsity": float(tp_sparsity),
            "pair_layers": pair_layers, "tp2_sparsity": float(tp2_sparsity),
            "pair_tp_channels": pair_tp_channels, "baseline": self.baseline,
        }
        if pair_tp_copies > 1:  # files of models without copies keep their config as it was
            self.config["pair_tp_copies"] = pair_tp_copies

    @property
    def atomic_numbers(self) -> torch.Tensor:
        return self.elements.atomic_numbers

    @property
    def basis(self) -> str:
        return self.config["basis"]

    def n_ao(self) -> torch.Tensor:
        """AO count per model element ``[n_elements]``."""
        return (self.ao_index < MAX_AO).sum(1)

    # ------------------------------------------------------------------ forward
    def backbone(self, batch: Mapping[str, torch.Tensor], i: torch.Tensor, j: torch.Tensor):
        """Node features ``[N, D, C]`` from messages over the off-diagonal pairs ``j -> i``."""
        elem = self.elements(batch[K.ATOMIC_NUMBERS])  # [N]
        pos = batch[K.POSITIONS]
        vec = pos[j] - pos[i]  # [E, 3] Å
        r = torch.linalg.vector_norm(vec, dim=-1)  # [E]
        radial = self.radial(r)  # [E, num_basis]
        Y = self.sh(vec)  # [E, (lmax+1)^2]
        h = self.embedding(elem).unsqueeze(1)  # [N, 1, C]
        for layer in self.layers:
            h = layer(h, Y, radial, j, i, elem)
        return h, elem, vec, radial

    def forward(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        n_atoms = batch[K.N_ATOMS]
        pi, pj, prev = all_pairs(n_atoms)  # [Q]
        off = (pi != pj).nonzero().squeeze(-1)  # [E] positions of the off-diagonal pairs
        i, j = pi[off], pj[off]
        h, elem, vec, radial = self.backbone(batch, i, j)
        c, n_el = self.hidden.channels, self.num_elements
        E = off.numel()
        # ---- diagonal blocks [N, 14, 14]
        node_f = torch.cat([h, self.node_tp(self.node_a(h), self.node_b(h))], dim=1)
        diag = self.node_expansion(node_f, elem)
        pair_y = self.pair_sh(vec)  # [E, (l_pair+1)^2]
        if self.onsite_env:
            we = self.env_radial(radial).view(E, -1, c) * self.env_scalar(h[j, 0]).view(E, -1, c)
            env = pair_y.unsqueeze(-1) * we[:, self.l_of_y_row]  # [E, (l_pair+1)^2, C]
            env = h.new_zeros(h.shape[0], env.shape[1], c).index_add(0, i, env) * self.inv_avg
            diag = diag + self.env_expansion(env, elem)  # [N, 14, 14]
        # ---- off-diagonal blocks [E, 14, 14]
        n_irs = len(self.hidden.irs)
        L = self.pair_layers
        rw = self.pair_radial(radial).view(E, -1, c)  # [E, (2 + L) n_irs + l_pair + 1, C]
        ra, rb, rc, rc2, ry = rw.split([n_irs, n_irs, n_irs, (L - 1) * n_irs,
                                        rw.shape[1] - (2 + L) * n_irs], dim=1)
        rows = self.irrep_of_row
        cheap = self.pair_a(h)[i] * ra[:, rows] + self.pair_b(h)[j] * rb[:, rows]  # [E, D, C]
        y = pair_y.unsqueeze(-1) * ry[:, self.l_of_y_row]  # [E, D_Y, C]
        c1 = self.pair_tp_channels
        xi = self.pair_c(h)[i] * rc[:, rows, :c1]  # [E, D, C1]
        xj = self.pair_d(h)[j]

        def widen(t):  # [*, D_tp, C1] -> [*, D_tp, C] (zero channels)
            return t if c1 == c else torch.nn.functional.pad(t, (0, c - c1))

        keep, weight = self._kept_pairs(h, i, j, radial, batch[K.BATCH])
        gate = weight[:, None, None].to(h.dtype)  # [K, 1, 1]
        if L == 1:  # the pair gate decides who runs the only product
            tp = widen(self.pair_tp(xi[keep], xj[keep])) * gate  # [K, D_tp, C]
            tp_full = h.new_zeros(E, tp.shape[1], c).index_copy(0, keep, tp)  # [E, D_tp, C]
        else:  # every pair runs the first product, the kept ones add the second
            x2i = self.pair_e(h)[i[keep]] * rc2[keep][:, rows]  # [K, D, C]
            tp2 = self.pair_tp2(x2i, self.pair_f(h)[j[keep]]) * gate  # [K, D_tp, C]
            tp_full = widen(self.pair_tp(xi, xj)).index_add(0, keep, tp2)  # [E, D_tp, C]
        pair_type = elem[i] * n_el + elem[j]
        offd = self.pair_expansion(torch.cat([cheap, y, tp_full], dim=1), pair_type)  # [E, 14, 14]
        # ---- assemble [Q, 14, 14]: symmetrise, scale, add the mean, take each element's AOs
        Q = pi.numel()
        blocks = h.new_zeros(Q, MAX_AO, MAX_AO)
        blocks = blocks.index_copy(0, off, offd)
        diag_pos = (pi == pj).nonzero().squeeze(-1)
        blocks = blocks.index_copy(0, diag_pos, diag[pi[diag_pos]])
        blocks = 0.5 * (blocks + blocks[prev].transpose(1, 2)) * self.scale
        blocks = blocks.index_add(0, diag_pos, self.diag_mean[elem[pi[diag_pos]]].to(h.dtype))
        padded = torch.nn.functional.pad(blocks, (0, 1, 0, 1))  # [Q, 15, 15], row/col 14 = 0
        ri = self.ao_index[elem[pi]]  # [Q, 14]
        ci = self.ao_index[elem[pj]]
        out = padded.gather(1, ri[:, :, None].expand(-1, -1, MAX_AO + 1))  # rows
        out = out.gather(2, ci[:, None, :].expand(-1, MAX_AO, -1))  # cols -> [Q, 14, 14]
        if self.baseline is not None:
            base = batch.get(K.HAMILTONIAN_BASELINE)
            if base is None:
                raise EqtoolError(f"this model predicts H on top of the '{self.baseline}' baseline, but the "
                                  f"batch has no '{K.HAMILTONIAN_BASELINE}' blocks (compute them with "
                                  "eqtool.models.hamiltonian.predict.model_batch)", source="model")
            out = out + base.to(out.dtype)
        return {K.HAMILTONIAN: out}

    def _kept_pairs(self, h, i, j, radial, batch_index):
        """Ordered off-diagonal pairs (indices into ``i``/``j``) that run the pair TP, and their gate."""
        E = i.numel()
        if self.pair_gate.score is None:
            return torch.arange(E, device=i.device), h.new_ones(E)
        # unordered pairs i < j with symmetric invariant descriptors; (j, i) follows (i, j)
        lower = (i < j).nonzero().squeeze(-1)  # [U]
        s_i, s_j = h[i[lower], 0, :], h[j[lower], 0, :]  # [U, C] 0e channels
        desc = torch.cat([s_i + s_j, s_i * s_j, radial[lower]], dim=-1)  # [U, 2C + num_basis]
        keep_u, gate = self.pair_gate(desc, batch_index[i[lower]])
        # index of (j, i) among the off-diagonal pairs: same system, swapped local indices
        n_total = int(batch_index.numel())
        code = i * n_total + j  # unique key per ordered pair; off pairs are sorted by it
        kept = lower[keep_u]
        partner = torch.searchsorted(code, j[kept] * n_total + i[kept])
        return torch.cat([kept, partner]), torch.cat([gate, gate])

    def _migrate_state_dict(self, state_dict, prefix, *args) -> None:
        """Files from before ``onsite_env`` (no ``env_*`` weights): add the term with zero weights, so the
        model computes exactly what it was trained to."""
        if not self.onsite_env or any(k.startswith(prefix + "env_") for k in state_dict):
            return
        for name, tensor in self.state_dict(prefix=prefix).items():
            if name[len(prefix):].startswith("env_"):
                state_dict[name] = torch.zeros_like(tensor)

    def extra_repr(self) -> str:
        base = f", baseline={self.baseline}" if self.baseline else ""
        head = f"basis={self.basis}, elements={self.config['atomic_numbers']}, sparsity={self.sparsity}"
        return head + base + (
            f" (pairs {self.config['pair_sparsity']}, TP paths {self.config['tp_sparsity']})"
            if self.config["pair_sparsity"] != self.config["tp_sparsity"] else "")
