"""Graph structure, batching and neighbour lists."""

from eqtool.data.batch import collate, split, to_device
from eqtool.data.graph import AtomGraph
from eqtool.data.neighbors import (
    batch_neighbor_list,
    neighbor_list,
    torch_neighbor_list,
)

__all__ = [
    "AtomGraph", "collate", "split", "to_device",
    "neighbor_list", "batch_neighbor_list", "torch_neighbor_list",
]
