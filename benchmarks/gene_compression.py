"""What shipping a gene table small costs: size and cosine-neighbour fidelity of compression options.

Given a full float32 table (`ptrag genes build --fetch --types protein-coding-only -o full.npz`),
prints for each option the .npz size (names included, aliases not) and, against the full
vectors, the top-32 neighbour overlap (mean, 5th percentile, min over 2,000 seeded genes), the
Spearman correlation of each gene's similarities to all others, and the cosine of each decoded
vector to its full one -- the figures `ptrag genes build --compress` writes into a table's
provenance. With the shipped human table installed it is compared too (aligned by name), and so is
the demo table: the three are one vector space.

    python benchmarks/gene_compression.py full.npz [--dims 96,128,192,256,320] [--sample 2000]
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import numpy as np

from ptrag.core.data.codec import decode, encode, principal_axes
from ptrag.core.data.embeddings import BUILTIN_EMBEDDINGS, HUMAN_EMBEDDINGS, read_gene_embeddings
from ptrag.core.genes import read_table
from ptrag.core.genes.compress import neighbour_fidelity


def npz_bytes(names: list[str], **arrays: np.ndarray) -> int:
    buf = io.BytesIO()
    np.savez_compressed(buf, names=np.asarray(names, dtype=str), **arrays)
    return buf.tell()


def line(label: str, nbytes: int | None, fid: dict) -> str:
    size = f"{nbytes / 1e6:6.2f} MB" if nbytes is not None else "     -   "
    return (f"| {label} | {size} | {fid['top_k_overlap_mean']:.3f} | {fid['top_k_overlap_p5']:.3f} | "
            f"{fid['top_k_overlap_min']:.3f} | {fid['spearman_mean']:.4f} | {fid['cosine_to_full_mean']:.4f} / "
            f"{fid['cosine_to_full_min']:.4f} |")


def options(names: list[str], full: np.ndarray, dims: list[int], sample: int) -> None:
    print(f"{len(names)} genes x {full.shape[1]} dims; top-{min(32, len(names) - 1)} neighbours of {sample} genes\n")
    print("| option | .npz | top-32 overlap: mean | 5th pct | min | Spearman (mean) | cosine to full (mean / min) |\n"
          "|---|---|---|---|---|---|---|")
    print(line("float32 (none)", npz_bytes(names, embeddings=full), neighbour_fidelity(full, full, sample=sample)))
    half = full.astype(np.float16)
    print(line("float16", npz_bytes(names, embeddings=half), neighbour_fidelity(full, half, sample=sample)))
    scale = np.abs(full).max() / 127
    codes = np.clip(np.rint(full / scale), -127, 127).astype(np.int8)
    print(line("int8, one scale per table", npz_bytes(names, embeddings=codes, scale=np.float32(scale)),
               neighbour_fidelity(full, codes * scale, sample=sample)))
    for d in dims:
        arrays, share = encode(full, d)
        print(line(f"pca:{d} int8 ({share.sum():.1%} of the variance)", npz_bytes(names, **arrays),
                   neighbour_fidelity(full, decode(arrays), sample=sample)))
    for d in (max(dims), full.shape[1]):  # the alternative: one step for every component, deflate allocates bits
        mean, basis, _ = principal_axes(full, d)
        coords = (full.astype(np.float64) - mean) @ basis.T
        step = np.abs(coords).max() / 127
        arrays = {"codes": np.clip(np.rint(coords / step), -127, 127).astype(np.int8),
                  "scale": np.full(d, step, dtype=np.float32), "basis": basis.astype(np.float32),
                  "mean": mean.astype(np.float32)}
        print(line(f"pca:{d} int8, one step for all components", npz_bytes(names, **arrays),
                   neighbour_fidelity(full, decode(arrays), sample=sample)))


def shipped(names: list[str], full: np.ndarray, sample: int) -> None:
    human = read_gene_embeddings(HUMAN_EMBEDDINGS)
    index = {n: i for i, n in enumerate(names)}
    both = [n for n in human.names if n in index]
    print(f"\nshipped {HUMAN_EMBEDDINGS.name} ({HUMAN_EMBEDDINGS.stat().st_size / 1e6:.2f} MB, "
          f"{len(human.names)} genes; {len(both)} in the full table)")
    rows = [index[n] for n in both]
    print(line("shipped", None, neighbour_fidelity(full[rows], human.lookup(both)[0], sample=sample)))
    demo = read_gene_embeddings(BUILTIN_EMBEDDINGS)
    shared = [n for n in demo.names if human.has(n)]
    cos = (demo.lookup(shared)[0] * human.lookup(shared)[0]).sum(1)
    print(f"demo table vs shipped human table on their {len(shared)} shared genes: cosine mean {cos.mean():.4f}, "
          f"min {cos.min():.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("full", type=Path, help="a float32 table from `ptrag genes build` (.npz/.pkl)")
    parser.add_argument("--dims", default="96,128,192,256,320", help="PCA dimensions to try (comma-separated)")
    parser.add_argument("--sample", type=int, default=2000, help="genes whose neighbours are compared")
    args = parser.parse_args()
    names, full, _ = read_table(args.full)
    full = np.asarray(full, dtype=np.float32)
    options(names, full, [int(d) for d in args.dims.split(",")], args.sample)
    if HUMAN_EMBEDDINGS.is_file():
        shipped(names, full, args.sample)


if __name__ == "__main__":
    main()
