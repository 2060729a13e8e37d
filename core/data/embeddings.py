"""Gene-embedding tables: symbol -> vector, and the policy for genes without one."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import DataError


@dataclass
class GeneEmbeddings:
    names: list[str]
    matrix: np.ndarray  # [V,E] float32
    source: str = "<memory>"

    def __post_init__(self) -> None:
        self.matrix = np.asarray(self.matrix, dtype=np.float32)
        self._index = {name.upper(): i for i, name in enumerate(self.names)}

    @property
    def dim(self) -> int:
        return int(self.matrix.shape[1])

    def has(self, gene: str) -> bool:
        return gene.upper() in self._index

    def lookup(self, genes: list[str], policy: str = "error") -> tuple[np.ndarray, list[str]]:
        """Vectors for ``genes`` [len(genes),E] and the names that had none.

        ``zero`` fills missing rows with zeros; ``drop`` fills them with zeros too and leaves it to
        the caller to remove the reported names; ``error`` raises naming the first ones.
        """
        missing = [g for g in genes if not self.has(g)]
        if missing and policy == "error":
            raise DataError(
                f"{self.source}: {len(missing)} perturbed gene(s) have no embedding "
                f"(first: {', '.join(missing[:5])}); set data.missing_embedding to drop or zero"
            )
        out = np.zeros((len(genes), self.dim), dtype=np.float32)
        for i, gene in enumerate(genes):
            j = self._index.get(gene.upper())
            if j is not None:
                out[i] = self.matrix[j]
        return out, missing


def random_embeddings(genes: list[str], dim: int = 64, seed: int = 0) -> GeneEmbeddings:
    """A clearly labelled stand-in with no biology in it (used until a real table is given)."""
    rng = np.random.default_rng(seed)
    return GeneEmbeddings(list(genes), rng.standard_normal((len(genes), dim)).astype(np.float32),
                          source="random stand-in embedding (no gene semantics)")
