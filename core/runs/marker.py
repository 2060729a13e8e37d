"""A folder is ptrag's when it holds ``.ptrag-run``, a marker that only ptrag writes.

The marker (JSON) says which ptrag made the folder, for what (``kind``: a run, a prediction, an
ablation grid), its id, when, and ``files``: every entry ptrag wrote into the folder (a file, or a
folder such as ``retriever/`` or ``compare/``). It is created when a run begins; each name is added
(the marker rewritten whole, under a temporary name) *before* its entry is written, so after a
crash at any moment the marker lists all of ptrag's entries (a name whose file never came is
harmless). While a process holds a marked folder (runs/folder.py: ``occupied``) every write that
``ptrag.core.files`` announces into it is listed, and a write over an entry the marker does not
list is refused: a grid folder may hold the user's own files, and ptrag never replaces them.

What it decides (runs/folder.py):

- a folder without the marker is never a run: not reused, resumed or overwritten. A run folder
  of a ptrag from before markers stays readable (``ptrag report``, ``ptrag predict --run``) and
  is refused, in one line, for everything that would write into it;
- ``--overwrite`` removes exactly the listed entries, and refuses, naming them, when the folder
  holds anything else (a notebook, figures): the user's files never end up beside a new run.
"""

from __future__ import annotations

import contextlib
import os
import threading
import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from .. import __version__
from ..errors import RunFolderError
from ..files import before_write, read_json, temporary_name, write_json
from . import lock

MARKER = ".ptrag-run"
#: RunFolder identities' kinds, a grid, a report folder and a run's saved retriever (its own files)
KINDS = ("run", "prediction", "knockdowns", "ablation", "report", "retriever")
#: kinds that --overwrite may replace with one another (a folder of one run's results)
REPLACEABLE = ("run", "prediction", "knockdowns")
#: ptrag's own bookkeeping in any folder: the marker and the lock (runs/lock.py)
BOOKKEEPING = frozenset({MARKER, lock.LOCK, lock.HOLDER})


@dataclass
class Marker:
    kind: str
    run_id: str
    created: str
    ptrag: str
    files: list[str] = field(default_factory=list)


def bookkeeping(name: str) -> bool:
    """The marker or the lock: never content of a folder."""
    return name in BOOKKEEPING


def ptrags(name: str, mark: Marker) -> bool:
    """An entry the marker lists, or the half-written file of one (``temporary_name``: a crash
    while writing it), ptrag's to remove."""
    return name in mark.files or name in {temporary_name(Path(n)).name for n in mark.files}


def _plain(name: object) -> bool:
    """A name inside the folder: no separator, not . or .. (a marker never points elsewhere)."""
    return isinstance(name, str) and name not in ("", ".", "..") and not any(c in name for c in "/\\\0")


def read(folder: Path, flag: str = "--out") -> Marker | None:
    """The folder's marker; None when it has none; one line when it holds something else there."""
    path = Path(folder) / MARKER
    if not path.exists() and not path.is_symlink():
        return None
    body = read_json(path) if path.is_file() and not path.is_symlink() else None
    files = body.get("files") if isinstance(body, dict) else None
    if not isinstance(body, dict) or body.get("kind") not in KINDS or not isinstance(files, list) or \
            not all(_plain(name) for name in files):
        raise RunFolderError(f"{flag} {folder}: its {MARKER} is not one ptrag wrote (not a marker of a run, a "
                             "prediction or a grid, or it names entries outside the folder); choose another folder")
    return Marker(body["kind"], str(body.get("run_id", "")), str(body.get("created", "")),
                  str(body.get("ptrag", "")), list(dict.fromkeys(files)))


# --------------------------------------------------------------------------- writing it

_LOCK = threading.Lock()
_HELD: dict[str, list] = {}  # resolved folder held by this process -> [holds, listed names or None]


def _key(folder: Path) -> str:
    return str(Path(folder).resolve())


def _write(folder: Path, mark: Marker) -> None:
    write_json(Path(folder) / MARKER, asdict(mark))
    held = _HELD.get(_key(folder))
    if held is not None:
        held[1] = set(mark.files)


def create(folder: Path, kind: str) -> Marker:
    """A new marker (a new run id, nothing listed yet) in ``folder``."""
    mark = Marker(kind, uuid.uuid4().hex, datetime.now(timezone.utc).isoformat(timespec="seconds"), __version__)
    with _LOCK:
        _write(folder, mark)
    return mark


def record(folder: Path, names: Iterable[str]) -> None:
    """List ``names`` in the folder's marker (before they are written); no marker: nothing to do."""
    with _LOCK:
        mark = read(folder)
        new = [n for n in names if mark is not None and n not in mark.files and not bookkeeping(n)]
        if new:
            mark.files += new
            _write(folder, mark)


#: the folders ``ptrag report`` and ``ptrag predict`` make inside a run by default
DERIVED = ("report", "predict-", "knockdowns-")


def adopt(folder: Path) -> None:
    """A new folder that ``ptrag report`` or ``ptrag predict`` makes in a run folder by default
    (``<run>/report``, ``<run>/predict-<data>``, ``<run>/knockdowns-<line>``) goes with that run:
    listed in its marker, so ``--overwrite`` of the run removes it instead of refusing it. Any
    other folder made there is not the run's (``--overwrite`` names it and refuses)."""
    folder = Path(folder)
    if folder.exists() or not any(folder.name == d or (d.endswith("-") and folder.name.startswith(d))
                                  for d in DERIVED):
        return
    with contextlib.suppress(RunFolderError):  # not a marker ptrag wrote: the run folder is only read
        if (mark := read(folder.parent)) is not None and mark.kind == "run":
            record(folder.parent, [folder.name])


def seal(folder: Path, kind: str) -> None:
    """After a component wrote ``folder`` (a run's ``retriever/``): a marker listing what is there
    now, so that a file added later (the user's) is told apart from the component's files."""
    folder = Path(folder)
    if folder.is_dir():
        names = sorted(e.name for e in _scan(folder))
        with _LOCK:
            _write(folder, Marker(kind, uuid.uuid4().hex, datetime.now(timezone.utc).isoformat(timespec="seconds"),
                                  __version__, names))


def listed_in_parent(folder: Path) -> bool:
    """``folder`` is an entry its parent's (readable) marker lists: ptrag wrote it there."""
    try:
        mark = read(Path(folder).parent)
    except RunFolderError:
        return False
    return mark is not None and Path(folder).name in mark.files


def take(folder: Path, kind: str, flag: str = "--out") -> None:
    """Mark a folder that holds one output of ``kind`` (a report) beside whatever else is there:
    refused when ptrag marked it for something else; a folder ptrag made before such markers
    (a run's ``report/``, listed in the run's marker) is marked with what it holds. Its files are
    then listed as they are written, and a write over a file it does not list is refused."""
    mark = read(folder, flag)
    if mark is not None and mark.kind != kind:
        raise RunFolderError(f"{flag} {folder}: holds a ptrag {mark.kind}; a {kind} goes in a folder of its own "
                             f"(ptrag's default: <first run>/{kind})")
    if mark is None:
        seal(folder, kind) if listed_in_parent(folder) else create(folder, kind)


def enclosing(path: Path) -> tuple[Path, Marker | None] | None:
    """The nearest folder above ``path`` that ptrag marked, and its marker (None: a marker ptrag
    did not write), or None."""
    for parent in Path(path).absolute().parents:
        if (parent / MARKER).exists() or (parent / MARKER).is_symlink():
            try:
                return parent, read(parent)
            except RunFolderError:
                return parent, None
    return None


def derived(path: Path, kind: str) -> bool:
    """``path`` is a folder ptrag's own defaults make directly inside a ``kind`` folder
    (``<run>/report``, ``<run>/predict-<data>``, ``<grid>/report``, ...)."""
    return kind in ("run", "ablation") and any(path.name == d or (d.endswith("-") and path.name.startswith(d))
                                               for d in DERIVED)


def require_outside(path: str | Path, flag: str = "--out") -> None:
    """Refuse a new output (a folder this invocation makes its own, or a new file) inside an
    entry that ptrag wrote into a marked folder (a run's ``compare/`` or ``retriever/``, a grid's
    runs), unless this process holds that folder (a run's comparisons, a grid's runs) or the output
    is the entry itself as ptrag's defaults make it (``<run>/report``): a grid written into a run's
    compare/ or a report into its retriever/ would mix it. Beside ptrag's entries (``<run>/mine``)
    an output is the user's, which --overwrite of the run then names and keeps."""
    given, path = path, Path(path).absolute()
    if (path / MARKER).is_file():
        return  # ptrag's own folder: its marker decides what may happen there
    found = enclosing(path)
    if found is None:
        return
    top, mark = found
    entry = path.relative_to(top).parts[0]
    if _key(top) in _HELD or (mark is not None and (not ptrags(entry, mark) or
                                                    (path.parent == top and derived(path, mark.kind)))):
        return
    what = f"a ptrag {mark.kind}" if mark is not None else "a folder with a .ptrag-run marker ptrag did not write"
    raise RunFolderError(f"{flag} {given}: {top / entry} belongs to {top} ({what}), and ptrag adds nothing to it; "
                         f"choose a path outside {top}, or beside its entries")


def require_new_file(path: str | Path, flag: str = "-o") -> None:
    """An output file a command writes (a screen, a split, a table) is a new file, outside any
    folder ptrag marked: ptrag never writes over a file, the user's or a run's."""
    path = Path(path)
    if path.exists() or path.is_symlink():
        raise RunFolderError(f"{flag} {path}: exists; ptrag never overwrites a file: give a new name (or move the "
                             "old file away first)")
    require_outside(path, flag)


def hold(folder: Path) -> None:
    """This process writes into ``folder`` until :func:`release`: list what it writes there."""
    with _LOCK:
        _HELD.setdefault(_key(folder), [0, None])[0] += 1


def release(folder: Path) -> None:
    with _LOCK:
        held = _HELD.get(_key(folder))
        if held is not None:
            held[0] -= 1
            if not held[0]:
                del _HELD[_key(folder)]


def _listed(folder: Path, held: list) -> set[str] | None:
    if held[1] is None:
        mark = read(folder)
        held[1] = set(mark.files) if mark is not None else None
    return held[1]


def _before_write(path: Path) -> None:
    """ptrag.core.files' hook: a write into a held, marked folder is listed first; a write over
    an entry that the marker does not list (the user's) is refused."""
    if not _HELD or bookkeeping(path.name):
        return
    folder = path.parent
    held = _HELD.get(_key(folder))
    if held is None:
        return
    with _LOCK:
        listed = _listed(folder, held)
    if listed is None or path.name in listed:
        return
    if path.exists() or path.is_symlink():
        raise RunFolderError(f"{path}: exists and ptrag did not write it (it is not listed in {folder / MARKER}); "
                             "move it away or choose another --out")
    record(folder, [path.name])


before_write(_before_write)


# --------------------------------------------------------------------------- what else a folder holds


def _scan(folder: Path) -> list[os.DirEntry]:
    with os.scandir(folder) as entries:
        return sorted((e for e in entries if not bookkeeping(e.name)), key=lambda e: e.name)


def not_ptrags(folder: Path, mark: Marker) -> list[str]:
    """Entries in ``folder`` (paths relative to it) that ptrag did not write: not in the marker,
    or inside a listed folder that holds run folders (``compare/``), beside them."""
    out = []
    for entry in _scan(folder):
        if not ptrags(entry.name, mark):
            out.append(entry.name + ("/" if entry.is_dir(follow_symlinks=False) else ""))
        elif entry.is_dir(follow_symlinks=False):
            out += [f"{entry.name}/{inner}" for inner in _inside(Path(entry.path))]
    return out


#: listed folders that ptrag versions before inner markers left without one: their writer's
UNMARKED = ("retriever", "report")


def _inside(folder: Path) -> list[str]:
    """A marked folder (a comparison, a report, a saved retriever) answers for itself; a folder
    of marked folders (``compare/``) holds only those (and folders left empty); a ``retriever/``
    or ``report/`` of a ptrag before inner markers is its writer's. Anything else inside a
    listed entry (a file ptrag wrote, now a folder of the user's) is the user's."""
    mark = read(folder)
    if mark is not None:
        return not_ptrags(folder, mark)
    entries = _scan(folder)
    marked = [e for e in entries if e.is_dir(follow_symlinks=False) and (Path(e.path) / MARKER).is_file()]
    if not marked and folder.name in UNMARKED:
        return []
    out = []
    for entry in entries:
        if entry in marked:
            out += [f"{entry.name}/{inner}" for inner in _inside(Path(entry.path))]
        elif not (entry.is_dir(follow_symlinks=False) and not _scan(Path(entry.path))):
            out.append(entry.name + ("/" if entry.is_dir(follow_symlinks=False) else ""))
    return out


def shown(names: list[str], k: int = 4) -> str:
    return ", ".join(names[:k]) + (f" and {len(names) - k} more" if len(names) > k else "")
