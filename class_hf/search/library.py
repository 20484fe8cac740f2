"""Read a molecule library (CSV, TSV, SDF, parquet, a ``datasets`` dataset or a ChEBI-20 source) into plain columns.

Every library becomes the same columns, one entry per input row, in input order:

- ``row`` (int): the row's 0-based position among the data rows of the source (header excluded; for SDF the
  record number), used in every message about the row;
- ``line`` (int | None): the 1-based line of the file where the row ends (CSV/TSV only), so a chemist can open the
  file at the right place;
- ``smiles`` (str | None), ``cid`` (str | None), ``name`` (str | None), ``description`` (str | None);
- ``split`` (str | None) when the source has splits (a ``DatasetDict``, a ChEBI-20 folder, or a file with a
  ``split`` column).

Column names are matched case-insensitively, ignoring everything but letters and digits, against
:data:`COLUMN_ALIASES` (``CanonicalSMILES``, ``Title``, ``CID``, ``desc`` ...). SMILES written with doubled
backslashes (MolT5 and ChEBI-20's derived tables) are un-doubled: ``\\\\`` is never valid SMILES. Nothing is
validated here: :class:`~class_hf.search.index.MoleculeIndex` parses every SMILES and reports the rows it skips.

With ``split``, a source with splits gives only that split's rows (keeping their ``row`` and ``line`` in the whole
source); :func:`read_library` also says how many rows were left out. Asking a source without splits (a file without a
``split`` column) for one is an error, and so is a split that matches no row: never all rows under a split's name.
"""

from __future__ import annotations

import csv
import logging
import os
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..data.chebi20 import undouble_backslashes
from ..data.sources import is_saved_dataset
from ..data.text_io import iter_records

logger = logging.getLogger(__name__)

__all__ = ["COLUMN_ALIASES", "LIBRARY_COLUMNS", "bundled_library", "read_library", "read_molecules"]

LIBRARY_COLUMNS: tuple[str, ...] = ("row", "line", "smiles", "cid", "name", "description", "split")

COLUMN_ALIASES: dict[str, tuple[str, ...]] = {
    "smiles": ("smiles", "canonicalsmiles", "isomericsmiles", "pubchemopeneyeisosmiles", "pubchemopeneyecansmiles"),
    "cid": ("cid", "pubchemcompoundcid", "pubchemcid", "chebiid", "compoundid", "id", "moleculeid"),
    "name": ("name", "title", "chebiname", "moleculename", "pubchemiupacname", "iupacname"),
    "description": ("description", "desc", "text", "caption", "definition"),
}

_DELIMITERS = {".csv": ",", ".tsv": "\t", ".txt": "\t"}


def _key(name: str) -> str:
    return re.sub(r"[^0-9a-z]", "", str(name).lower())


def _match_columns(names: Sequence[str], where: str) -> dict[str, str]:
    """Canonical column -> the source's column name, for every canonical column the source has."""
    by_key: dict[str, str] = {}
    for name in names:
        by_key.setdefault(_key(name), name)
    found = {}
    for canonical, aliases in COLUMN_ALIASES.items():
        for alias in aliases:
            if alias in by_key:
                found[canonical] = by_key[alias]
                break
    if "smiles" not in found:
        raise ValueError(
            f"{where} has no SMILES column (columns: {list(names)}). Name the column holding the SMILES `smiles` "
            f"(accepted names: {', '.join(COLUMN_ALIASES['smiles'])}, any case)."
        )
    logger.debug("%s: columns %s", where, found)
    return found


def _split_column(names: Sequence[str]) -> str | None:
    """The source's column named ``split`` (in any case), or None."""
    return next((name for name in names if _key(name) == "split"), None)


def _only_split(columns: dict[str, list[Any]], split: str, where: str) -> tuple[dict[str, list[Any]], int]:
    """The rows of ``columns`` whose ``split`` is ``split``, and how many other rows were left out.

    Raises:
        ValueError: no row has a split (the source has no ``split`` column), or none has this one; the message lists
            the splits there are.
    """
    present = Counter(value for value in columns["split"] if value is not None)
    if not present:
        raise ValueError(
            f"{where} has no `split` column, so the split {split!r} (--split) cannot be chosen from it; leave out "
            "--split to read every row, or add a `split` column."
        )
    keep = [i for i, value in enumerate(columns["split"]) if value == split]
    if not keep:
        values = ", ".join(f"{value!r} ({count} rows)" for value, count in sorted(present.items())[:20])
        more = f" and {len(present) - 20} more" if len(present) > 20 else ""
        raise ValueError(f"The split {split!r} (--split) matches no row of {where}; its splits are {values}{more}.")
    return {name: [values[i] for i in keep] for name, values in columns.items()}, len(columns["row"]) - len(keep)


def _text(value: Any) -> str | None:
    """A cell as a stripped string, or None when missing or blank."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    text = str(value).strip()
    return text or None


def _empty_columns() -> dict[str, list[Any]]:
    return {name: [] for name in LIBRARY_COLUMNS}


def _append(columns: dict[str, list[Any]], row: int, line: int | None, values: Mapping[str, Any]) -> None:
    columns["row"].append(row)
    columns["line"].append(line)
    columns["smiles"].append(undouble_backslashes(_text(values.get("smiles"))))
    for name in ("cid", "name", "description", "split"):
        columns[name].append(_text(values.get(name)))


def _read_delimited(path: Path) -> dict[str, list[Any]]:
    delimiter = _DELIMITERS[path.suffix.lower()]
    # ChEBI-20's TSV files quote nothing (descriptions contain bare quotes); CSV files use RFC-4180 quoting.
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    columns = _empty_columns()
    records = iter_records(path, delimiter=delimiter, quoting=quoting)  # UTF-8 with or without BOM, as everywhere
    _, header = next(records, (0, None))
    if header is None:
        raise ValueError(f"{path} is empty: expected a header line naming the columns (e.g. cid, smiles, name).")
    found = _match_columns(header, str(path))
    positions = {canonical: header.index(name) for canonical, name in found.items()}
    split_column = _split_column(header)
    if split_column is not None:
        positions["split"] = header.index(split_column)
    for row, (line, fields) in enumerate(records):
        if len(fields) != len(header):
            raise ValueError(
                f"{path}, line {line}: {len(fields)} fields where the header has {len(header)} "
                f"(delimiter {delimiter!r}). Fix the line, or quote fields that contain the delimiter."
            )
        for canonical in ("cid", "smiles"):
            if canonical in positions and re.search(r"[\r\n]", fields[positions[canonical]]):
                raise ValueError(
                    f"{path}, line {line}: the {found[canonical]!r} field of the record ending here holds a line "
                    "break, so a quote left open joined several lines into one record. Close the quote (or remove "
                    "the stray one)."
                )
        _append(columns, row, line, {c: fields[i] for c, i in positions.items()})
    return columns


def _read_sdf(path: Path) -> dict[str, list[Any]]:
    """SDF records; a record RDKit cannot read gets ``smiles=None`` (reported and skipped by the index)."""
    from rdkit import Chem

    from ..data.graphs import rdkit_logs_muted

    columns = _empty_columns()
    with rdkit_logs_muted():
        supplier = Chem.SDMolSupplier(str(path))
        for record in range(len(supplier)):
            mol = supplier[record]
            if mol is None:
                title = supplier.GetItemText(record).split("\n", 1)[0].strip()
                _append(columns, record, None, {"name": title})
                continue
            props = mol.GetPropsAsDict(includePrivate=False, includeComputed=False)
            keys = {_key(name): name for name in props}
            found = {
                canonical: next((props[keys[a]] for a in aliases if a in keys), None)
                for canonical, aliases in COLUMN_ALIASES.items()
            }
            found["split"] = props[keys["split"]] if "split" in keys else None
            if found["name"] is None and mol.HasProp("_Name"):
                found["name"] = mol.GetProp("_Name")
            found["smiles"] = found["smiles"] or Chem.MolToSmiles(mol)
            _append(columns, record, None, found)
    return columns


def _from_table(table: Any, where: str, split: str | None = None, columns: dict | None = None) -> dict[str, list]:
    """Columns of a ``datasets.Dataset`` or a ``pyarrow.Table`` (anything with ``column_names`` and columns)."""
    columns = columns if columns is not None else _empty_columns()
    found = _match_columns(table.column_names, where)
    split_column = _split_column(table.column_names)
    if split_column is not None and split is None:
        found["split"] = split_column
    values = {canonical: _column_list(table, name) for canonical, name in found.items()}
    start = len(columns["row"])
    for i in range(len(values["smiles"])):
        cells = {canonical: column[i] for canonical, column in values.items()}
        cells.setdefault("split", split)
        _append(columns, start + i, None, cells)
    return columns


def _column_list(table: Any, name: str) -> list[Any]:
    column = table[name]
    return column.to_pylist() if hasattr(column, "to_pylist") else list(column)


def _from_datasets(data: Any, where: str, split: str | None) -> tuple[dict[str, list[Any]], int]:
    from datasets import DatasetDict

    if isinstance(data, DatasetDict):
        if split is not None:
            if split not in data:
                raise ValueError(f"split {split!r} is not in {where}; its splits are {list(data)}.")
            outside = sum(len(part) for name, part in data.items() if name != split)
            return _from_table(data[split], f"{where} [{split}]", split), outside
        columns = _empty_columns()
        for name, part in data.items():
            _from_table(part, f"{where} [{name}]", name, columns)
        return columns, 0
    columns = _from_table(data, where)
    return (columns, 0) if split is None else _only_split(columns, split, where)


def bundled_library():
    """All 33,010 ChEBI-20 molecules shipped with class-hf, as a ``Dataset`` (``cid``, ``smiles``, ``split``,
    ``description``): the description of the 6,562 bundled pairs where the molecule has one, else None."""
    from ..data.chebi20 import BUNDLED, load_chebi20, load_chebi20_molecules

    molecules = load_chebi20_molecules(BUNDLED)
    described = {}
    for part in load_chebi20(BUNDLED).values():
        described.update(zip(part["cid"], part["description"], strict=True))
    return molecules.add_column("description", [described.get(cid) for cid in molecules["cid"]])


def read_molecules(source: Any, *, split: str | None = None) -> dict[str, list[Any]]:
    """Reads a molecule library into the columns of :data:`LIBRARY_COLUMNS` (see the module docstring).

    Args:
        source: a ``.csv`` / ``.tsv`` / ``.txt`` (tab-separated) file with a header, an ``.sdf`` file, a ``.parquet``
            file, a ``datasets.Dataset`` / ``DatasetDict``, a ``save_to_disk`` folder, a ChEBI-20 folder that
            :func:`~class_hf.data.chebi20.load_chebi20` reads (its own validation drops and reports bad pairs), or
            ``"bundled"``: every ChEBI-20 molecule shipped with class-hf (:func:`bundled_library`).
        split (str | None): read only this split: of a ``DatasetDict`` or a folder of splits, or the rows of a file
            (or the bundled library) whose ``split`` column holds it (default: every row, with its split in
            ``split`` where the source has them).

    Returns:
        dict[str, list]: the columns ``row``, ``line``, ``smiles``, ``cid``, ``name``, ``description``, ``split``.

    Raises:
        FileNotFoundError: ``source`` is a path that does not exist.
        ValueError: the source has no SMILES column, a delimited line has the wrong number of fields or a malformed
            quote, the file type is not supported (the message says which are), or ``split`` is given for a source
            without splits or matches no row (the message lists the splits there are).
    """
    return read_library(source, split=split)[0]


def read_library(source: Any, *, split: str | None = None) -> tuple[dict[str, list[Any]], int]:
    """As :func:`read_molecules`, also counting the rows that ``split`` left out.

    Returns:
        tuple: the columns, and the number of rows of the source outside ``split`` (0 without ``split``).
    """
    import datasets

    if isinstance(source, (datasets.Dataset, datasets.DatasetDict)):
        return _from_datasets(source, "the dataset", split)
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(
            f"`molecules` must be a file path, a folder or a datasets.Dataset, got {type(source).__name__}."
        )
    if source == "bundled" and not os.path.exists(source):
        return _from_datasets(bundled_library(), "the bundled ChEBI-20 molecules", split)
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(
            f"`molecules` {str(path)!r} does not exist; pass a CSV/TSV/SDF/parquet file or folder."
        )
    if is_saved_dataset(path):
        return _from_datasets(datasets.load_from_disk(str(path)), str(path), split)
    if path.is_dir():
        from ..data.chebi20 import load_chebi20

        return _from_datasets(load_chebi20(str(path)), str(path), split)
    suffix = path.suffix.lower()
    if suffix in _DELIMITERS:
        columns = _read_delimited(path)
    elif suffix == ".sdf":
        columns = _read_sdf(path)
    elif suffix == ".parquet":
        import pyarrow.parquet as pq

        columns = _from_table(pq.read_table(path), str(path))
    else:
        raise ValueError(
            f"`molecules` {str(path)!r}: unsupported file type {suffix!r}; use .csv, .tsv, .txt (tab-separated), "
            ".sdf, .parquet, a `save_to_disk` folder or a ChEBI-20 folder."
        )
    return (columns, 0) if split is None else _only_split(columns, split, str(path))
