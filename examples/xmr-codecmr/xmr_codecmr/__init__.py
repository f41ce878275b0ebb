"""xmr-codecmr: an example xmr plugin. Registers encoder ``codecmr:DIR``, a CodeCMR-style pair of encoders for C
source functions (its text side) and their compiled binaries (``encode_binaries``), through the ``xmr.plugins``
entry point declared in pyproject.toml. ``python -m xmr_codecmr.bench`` generates functions, compiles them with gcc
at -O0 / -O2, trains and evaluates source -> binary retrieval (R@1/5/10, MdR) over 3 seeds."""
from __future__ import annotations

__version__ = "0.1.0"


def register(registries) -> None:
    """The ``xmr.plugins`` hook: add this package's components to xmr's registries."""
    from .encoder import make_encoder

    registries.ENCODERS.register("codecmr", help="(plugin example) CodeCMR-style C source <-> compiled binary "
                                 "encoders; codecmr:DIR from python -m xmr_codecmr.bench --save DIR")(make_encoder)
