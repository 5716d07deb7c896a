"""eqtool: E(3)-equivariant machine learning for molecules and materials."""

__version__ = "0.1.0"

__all__ = ["__version__"]
