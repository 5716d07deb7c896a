"""eqtool: E(3)-equivariant machine learning for molecules and materials."""

__version__ = "0.1.0"

__all__ = ["__version__", "load_model", "EqCalculator"]


def __getattr__(name):
    # lazy: `import eqtool` stays light (the CLI imports torch only when a command needs it)
    if name == "load_model":
        from eqtool.models.files import load_model

        return load_model
    if name == "EqCalculator":
        from eqtool.calculator import EqCalculator

        return EqCalculator
    raise AttributeError(f"module 'eqtool' has no attribute {name!r}")
