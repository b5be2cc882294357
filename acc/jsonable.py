"""JSON without NaN or infinity: browsers' JSON.parse rejects them and so does Starlette.

A diverged metric (inf PSNR of a perfect reconstruction, NaN similarity of zero weights) is
sent as null, which the page shows as a gap, instead of failing the whole response.
"""

from __future__ import annotations

import math


def finite(value):
    """``value`` with every non-finite float replaced by None, recursively."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value
