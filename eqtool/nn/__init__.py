"""Equivariant building blocks on channel-uniform features ``[N, D, C]``, channels last (:mod:`.irreps`)."""

from eqtool.nn.embedding import ElementEmbedding, ElementIndex
from eqtool.nn.gate import Gate
from eqtool.nn.irreps import UniformIrreps
from eqtool.nn.linear import ElementIrrepsLinear, IrrepsLinear
from eqtool.nn.mlp import MLP, normalized_silu
from eqtool.nn.product import ProductBasis
from eqtool.nn.radial import BesselBasis, PolynomialCutoff, RadialBasis
from eqtool.nn.scatter import scatter_sum
from eqtool.nn.tensor_product import EdgeConvTP, NodeTP, clebsch_gordan

__all__ = [
    "BesselBasis", "PolynomialCutoff", "RadialBasis", "ElementEmbedding", "ElementIndex",
    "UniformIrreps", "IrrepsLinear", "ElementIrrepsLinear", "EdgeConvTP", "NodeTP",
    "clebsch_gordan", "ProductBasis", "Gate", "MLP", "normalized_silu", "scatter_sum",
]
