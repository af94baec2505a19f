"""An inside/outside oracle independent of ray parity, for tests of the contact kernel and the
occluder placement."""

from __future__ import annotations

import numpy as np


def winding_number(V, F, Q):
    """Generalised winding number of closed mesh (V, F) at points Q (Van Oosterom-Strackee solid
    angles): ~1 inside, ~0 outside - an oracle independent of ray parity."""
    out = np.zeros(len(Q))
    for i, q in enumerate(np.asarray(Q, float)):
        a, b, c = (V[F[:, j]] - q for j in range(3))
        la, lb, lc = (np.linalg.norm(x, axis=1) for x in (a, b, c))
        num = np.einsum("ij,ij->i", a, np.cross(b, c))
        den = la * lb * lc + np.einsum("ij,ij->i", a, b) * lc + np.einsum("ij,ij->i", b, c) * la + \
            np.einsum("ij,ij->i", c, a) * lb
        out[i] = 2 * np.arctan2(num, den).sum() / (4 * np.pi)
    return out
