"""desra: detect, delete and attribute GAN super-resolution artifacts on real photos.

Importing this package is cheap: torch, basicsr, transformers and gradio are imported only
inside the modules that need them.
"""

from desra.core.errors import DesraError

__version__ = "0.1.0"
__all__ = ["DesraError", "__version__"]
