"""One copy of shared inputs per run tree: a run and its ``compare/<preset>`` runs (comparisons and an
ensemble's members) score the same held-out cells on the same split, so their real.h5ad, meta.pt
(vocabularies and retrieval database) and saved stage-1 index are often byte for byte the same,
and so are the predictions of an ensemble that kept its backbone and the backbone's.

When a run of a tree finishes, each such file that is identical (sha256) to a finished sibling's is
replaced by a hard link to it: every folder still holds all its files and reads on its own (``ptrag
report``, ``ptrag predict --run``, cell-eval), and the disk holds one copy. Where hard links are
impossible (another filesystem, no permission) the copy stays. Nothing is ever written through a
link: ptrag writes every file under a temporary name and renames it over the old one, which
replaces the link, and ``--overwrite`` unlinks names, never the data another run's name holds.
"""

from __future__ import annotations

from pathlib import Path

from ..files import link_if_identical
from .folder import FINISHED

#: files (and folders of files) that runs of one tree may share
SHAREABLE = ("real.h5ad", "meta.pt", "retriever", "predictions.h5ad")


def tree_of(run_dir: Path) -> list[Path]:
    """The finished runs of ``run_dir``'s tree other than itself: the top run and its compare/ runs."""
    run_dir = Path(run_dir)
    top = run_dir.parent.parent if run_dir.parent.name == "compare" else run_dir
    runs = [top, *sorted(p for p in (top / "compare").glob("*") if p.is_dir())]
    return [r for r in runs if r != run_dir and (r / FINISHED).is_file()]


def _files(run_dir: Path) -> list[Path]:
    out = []
    for name in SHAREABLE:
        path = run_dir / name
        if path.is_file():
            out.append(path)
        elif path.is_dir():
            out += sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
    return out


def share_with_tree(run_dir: Path) -> list[Path]:
    """Hard-link this finished run's shareable files to identical ones of its tree; the files linked."""
    run_dir = Path(run_dir)
    siblings = tree_of(run_dir)
    linked = []
    for path in _files(run_dir):
        relative = path.relative_to(run_dir)
        if link_if_identical(path, [s / relative for s in siblings]) is not None:
            linked.append(path)
    return linked
