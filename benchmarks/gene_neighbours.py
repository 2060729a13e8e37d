"""Does a gene-embedding table carry biology? Nearest neighbours of genes from known complexes.

For RPL7, MED14, POLR2G, NDUFS3, PSMD9, MCM4, EIF2S1, SF3A3, CDK9 and SUPT5H this prints the k
nearest genes by cosine similarity, in a full table (e.g. the ~22.5k genes of
`ptrag genes build --fetch -o genes.npz`), in the shipped human protein-coding table (compressed,
builtin:human) and within the built-in dataset's genes (the shipped demo table), and the fraction
that are complex partners. The reference is ptrag.core.data.gene_modules
.GENE_MODULES, which is PARTIAL (e.g. 20 of the ~47 large-subunit ribosomal proteins): a real
partner missing from it counts as a miss, so the fractions are lower bounds. Chance level is what
k random genes of the same table would give.

    python benchmarks/gene_neighbours.py [FULL_TABLE.npz|.pkl] [--k 10]
"""

from __future__ import annotations

import argparse
from importlib import resources
from pathlib import Path

import numpy as np

from ptrag.core.data.gene_modules import GENE_MODULES, module_of
from ptrag.core.genes import read_table

QUERIES = ("RPL7", "MED14", "POLR2G", "NDUFS3", "PSMD9", "MCM4", "EIF2S1", "SF3A3", "CDK9", "SUPT5H")
SHIPPED = resources.files("ptrag.core.data") / "resources" / "builtin_gene_embeddings.npz"
HUMAN = resources.files("ptrag.core.data") / "resources" / "human_gene_embeddings.npz"


def neighbours(names: list[str], emb: np.ndarray, k: int) -> tuple[dict[str, list[tuple[str, float]]], float, float]:
    """Top-k neighbours per query, the mean partner fraction, and its chance level."""
    e = emb.astype(np.float32)
    e /= np.linalg.norm(e, axis=1, keepdims=True).clip(min=1e-12)
    index = {n.upper(): i for i, n in enumerate(names)}
    out, fractions, chance = {}, [], []
    for query in QUERIES:
        i = index.get(query)
        if i is None:
            print(f"  {query}: not in the table")
            continue
        sims = e @ e[i]
        sims[i] = -np.inf
        top = np.argsort(-sims)[:k]
        out[query] = [(names[j], float(sims[j])) for j in top]
        partners = set(GENE_MODULES[module_of(query)]) - {query}
        fractions.append(sum(names[j].upper() in partners for j in top) / k)
        chance.append(sum(p in index for p in partners) / (len(names) - 1))
    return out, float(np.mean(fractions)), float(np.mean(chance))


def report(title: str, names: list[str], emb: np.ndarray, k: int) -> None:
    print(f"## {title}: {len(names)} genes, k={k}")
    table, mean, chance = neighbours(names, emb, k)
    for query, hits in table.items():
        partners = set(GENE_MODULES[module_of(query)])
        marked = ", ".join(f"{n}{'*' if n.upper() in partners else ''} {s:.2f}" for n, s in hits)
        frac = sum(n.upper() in partners for n, _ in hits) / k
        print(f"{query:7s} ({module_of(query)}) partners {frac:.1f}: {marked}")
    print(f"mean fraction of complex partners among the top {k}: {mean:.2f} (chance {chance:.3f}); "
          "* = partner in GENE_MODULES (partial reference)\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("full", nargs="?", type=Path, help="a full table from `ptrag genes build` (.npz/.pkl)")
    parser.add_argument("--k", type=int, default=10)
    args = parser.parse_args()
    if args.full is not None:
        names, emb, prov = read_table(args.full)
        report(f"full table {args.full.name} ({prov.get('model', {}).get('name', '?')})", names, emb, args.k)
    with resources.as_file(HUMAN) as path:
        if path.is_file():
            names, emb, prov = read_table(path)
            report(f"shipped human_gene_embeddings.npz ({prov['compression']['method']} int8)", names, emb, args.k)
    with resources.as_file(SHIPPED) as path:
        names, emb, _ = read_table(path)
    report("built-in perturbed genes (shipped builtin_gene_embeddings.npz)", names, emb, args.k)


if __name__ == "__main__":
    main()
