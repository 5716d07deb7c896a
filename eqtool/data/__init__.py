"""Graph structure, batching and neighbour lists."""

from eqtool.data.batch import collate, split, to_device
from eqtool.data.graph import AtomGraph
from eqtool.data.neighbors import neighbor_list

__all__ = ["AtomGraph", "collate", "split", "to_device", "neighbor_list"]
