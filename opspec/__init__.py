"""opspec: neural operators trained with spectral optimizers.

Data flows one way: canonical HDF5 file -> Dataset -> model -> optimizer -> checkpoint;
`opspec.train` composes them and `opspec.evaluate` reads a checkpoint back.
"""

from opspec.core.errors import OpspecError

__version__ = "0.1.0"
__all__ = ["OpspecError", "__version__"]
