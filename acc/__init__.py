"""ACC: a research workbench for studying how changes to gradient flow shape autoencoders."""

import os

# MKL's conditional numerical reproducibility, strict mode: on one CPU its results do not
# depend on the memory alignment of the arrays (nor, for gemm, on the thread count), so a
# branch computes the same bits whatever the process ran before it (a resumed branch, a
# fresh worker). MKL reads this at its first call: set here, before torch computes anything.
# A value already set is kept (an empty MKL_CBWR turns CNR off); see the README.
os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")

__version__ = "0.1.0"
