"""A stand-in for datagen.mapping in end-to-end tests: packing needs a dense -> 778 mapping, and
building the real one costs more than the tests that only check the passes' round trip."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


class ToyMapping:
    """What pack needs of datagen.mapping for the toy hand: every 8th dense vertex."""

    def __init__(self, n_dense: int):
        keep = np.arange(0, n_dense, 8)
        n = len(keep)
        self.topology = "open778"
        self.matrix = sp.csr_matrix((np.ones(n), (np.arange(n), keep)), shape=(n, n_dense))
        self.faces = np.stack([np.arange(n - 2), np.arange(1, n - 1), np.arange(2, n)], 1)
        self.joint_regressor = np.zeros((21, n))
        self.joint_regressor[np.arange(21), np.arange(21)] = 1.0
        self.quality = {"surface_mean_mm": 0.0}
        self.source = {"method": "toy subset"}

    def apply(self, dense):
        return np.asarray(self.matrix @ np.asarray(dense))
