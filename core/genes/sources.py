"""Where the gene facts come from: Bioconductor's org.Hs.eg.db and GO.db SQLite files.

Debian ships both as architecture-independent packages (``r-bioc-org.hs.eg.db``,
``r-bioc-go.db``); ``apt-get download`` + ``dpkg -x`` yields the SQLite files without R. The
versions and source dates found here go into the output's provenance.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DataError

ORGDB_FILE = "org.Hs.eg.sqlite"
GODB_FILE = "GO.sqlite"
DEBIAN_PACKAGES = {"orgdb": "r-bioc-org.hs.eg.db", "godb": "r-bioc-go.db"}
FILE_OF = {"orgdb": ORGDB_FILE, "godb": GODB_FILE}


def default_cache_dir() -> Path:
    """``$PTRAG_CACHE_DIR/genes`` or ``~/.cache/ptrag/genes``: where ``--fetch`` unpacks."""
    base = os.environ.get("PTRAG_CACHE_DIR") or Path.home() / ".cache" / "ptrag"
    return Path(base) / "genes"


@dataclass
class AnnotationSources:
    """The two SQLite files and what is known about where they came from."""

    orgdb: Path
    godb: Path
    debian: dict[str, dict[str, str]] = field(default_factory=dict)  # key -> {package, version, deb, size}
    how: str = "paths"

    def provenance(self, checksums: bool = True) -> dict:
        out = {}
        for key, path in (("orgdb", self.orgdb), ("godb", self.godb)):
            entry = {"file": path.name, "metadata": read_metadata(path)}
            if checksums:
                entry["sha256"] = sha256_of(path)
            if key in self.debian:
                entry["debian"] = self.debian[key]
            out[key] = entry
        out["located_by"] = self.how
        return out


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_metadata(path: Path) -> dict[str, str]:
    """The ``metadata`` table (source names, URLs, dates, schema version) of an AnnotationDbi file."""
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as con:
            return {str(k): str(v) for k, v in con.execute("SELECT name, value FROM metadata")}
    except sqlite3.Error:
        return {}


def _find(folder: Path, name: str) -> Path | None:
    hits = sorted(folder.rglob(name))
    return hits[0] if hits else None


def _debian_info(folder: Path) -> dict[str, dict[str, str]]:
    """Package name/version of the .deb files kept beside an unpacked tree (from their file names)."""
    info = {}
    for key, package in DEBIAN_PACKAGES.items():
        debs = sorted(folder.glob(f"{package}_*.deb"))
        if debs:
            deb = debs[-1]
            info[key] = {"package": package, "version": deb.name.split("_")[1], "deb": deb.name,
                         "deb_bytes": str(deb.stat().st_size), "deb_sha256": sha256_of(deb)}
    return info


def _from_folder(folder: Path, how: str) -> AnnotationSources | None:
    if not folder.is_dir():
        return None
    for deb in sorted(folder.glob("*.deb")):  # a folder of downloaded .debs: unpack them once
        if any(deb.name.startswith(p + "_") for p in DEBIAN_PACKAGES.values()):
            if not (folder / "unpacked" / deb.stem).exists():
                _unpack(deb, folder / "unpacked")
    orgdb, godb = _find(folder, ORGDB_FILE), _find(folder, GODB_FILE)
    if orgdb is None or godb is None:
        return None
    return AnnotationSources(orgdb, godb, _debian_info(folder), how)


def _unpack(deb: Path, dest: Path) -> None:
    if shutil.which("dpkg") is None:
        raise DataError(f"{deb}: unpacking a .deb needs `dpkg` (Debian/Ubuntu); unpack it by hand "
                        f"(`ar x` then `tar xf data.tar.xz`) and pass the folder with --from")
    dest.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["dpkg", "-x", str(deb), str(dest)], capture_output=True, text=True)
    if done.returncode != 0:
        raise DataError(f"{deb}: `dpkg -x` failed: {done.stderr.strip().splitlines()[-1:] or done.returncode}")
    (dest / deb.stem).touch()  # marker: this .deb is unpacked


def fetch_debian(folder: Path) -> None:
    """``apt-get download`` the two Debian packages into ``folder`` and unpack them there."""
    if shutil.which("apt-get") is None:
        raise DataError("--fetch needs Debian/Ubuntu `apt-get`; download "
                        f"{' and '.join(DEBIAN_PACKAGES.values())} from packages.debian.org and pass "
                        "their folder with --from DIR (or the SQLite files with --orgdb/--godb)")
    folder.mkdir(parents=True, exist_ok=True)
    for package in DEBIAN_PACKAGES.values():
        if sorted(folder.glob(f"{package}_*.deb")):
            continue
        done = subprocess.run(["apt-get", "download", package], cwd=folder, capture_output=True, text=True)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no message"])[-1]
            hint = " (run `apt-get update` first)" if "locate package" in last else ""
            raise DataError(f"`apt-get download {package}` failed: {last}{hint}")
    for deb in sorted(folder.glob("*.deb")):
        if any(deb.name.startswith(p + "_") for p in DEBIAN_PACKAGES.values()):
            _unpack(deb, folder / "unpacked")


def locate_sources(orgdb: Path | None = None, godb: Path | None = None, from_dir: Path | None = None,
                   fetch: bool = False, cache_dir: Path | None = None) -> AnnotationSources:
    """Explicit paths win; then ``from_dir``; then the cache; then ``fetch`` into the cache (or from_dir)."""
    if orgdb is not None or godb is not None:
        if orgdb is None or godb is None:
            raise DataError("pass both --orgdb (org.Hs.eg.sqlite) and --godb (GO.sqlite), or a folder with --from")
        for flag, path in (("--orgdb", orgdb), ("--godb", godb)):
            if not Path(path).is_file():
                raise DataError(f"{flag} {path}: file not found")
        return AnnotationSources(Path(orgdb), Path(godb), how="paths")
    target = Path(from_dir) if from_dir is not None else Path(cache_dir or default_cache_dir())
    found = _from_folder(target, "folder" if from_dir is not None else "cache")
    if found is not None:
        return found
    if fetch:
        fetch_debian(target)
        found = _from_folder(target, "fetch")
        if found is not None:
            return found
        raise DataError(f"{target}: fetched the Debian packages but found no {ORGDB_FILE} / {GODB_FILE} inside")
    where = f"--from {from_dir}: no {ORGDB_FILE} and {GODB_FILE} below it" if from_dir is not None \
        else f"no gene annotation in the cache {target}"
    raise DataError(f"{where}; pass --orgdb PATH --godb PATH, --from DIR, or --fetch "
                    f"(apt-get download {' '.join(DEBIAN_PACKAGES.values())})")
