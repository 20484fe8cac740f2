"""Load and validate ChEBI-20 text-molecule pairs into a `datasets.DatasetDict`.

ChEBI-20 (Edwards, Zhai & Ji, EMNLP 2021) circulates in several layouts, all read here into the same canonical
columns ``cid`` (string), ``smiles`` (string, RDKit-parsable, backslashes un-doubled) and ``description`` (string,
non-empty), plus any extra column of the source (ORMA's ``Title`` becomes ``title``):

- **MolT5** TSV (``train.tsv``/``validation.tsv``/``test.tsv`` or ``.txt``): header ``CID\\tSMILES\\tdescription``, no
  quoting, every backslash of a SMILES written twice.
- **ORMA** CSV (``training.csv``|``train.csv``, ``val.csv``|``validation.csv``, ``test.csv``): header
  ``CID,CanonicalSMILES,Title,Description``, RFC-4180 quoting.
- **Text2Mol** (``training.txt``, ``val.txt``, ``test.txt``): tab-separated ``cid, mol2vec, desc`` without header and
  without SMILES, joined by CID to a CID -> SMILES table (``cid_split_smiles.tsv``).
- Parquet or CSV written by :func:`save_chebi20`, and any Hub dataset with recognisable column names.

Validation (:func:`validate_pairs`) drops rows whose CID is missing or repeated, whose SMILES is missing or does not
parse with RDKit, or whose description is empty; every dropped row is counted in a :class:`ValidationReport` and
logged once per call.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import math
import os
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import datasets
from datasets import Dataset, DatasetDict, Features, Value

from .sources import DATA_EXTENSIONS, is_hub_id
from .text_io import first_line, iter_records

logger = logging.getLogger(__name__)

__all__ = [
    "BUNDLED",
    "ValidationIssue",
    "ValidationReport",
    "bundled_chebi20_dir",
    "load_chebi20",
    "load_chebi20_molecules",
    "resplit_by_cid",
    "save_chebi20",
    "undouble_backslashes",
    "validate_pairs",
]

CANONICAL_COLUMNS: tuple[str, str, str] = ("cid", "smiles", "description")
SPLITS: tuple[str, str, str] = ("train", "validation", "test")

# File stems and Hub split names accepted for each canonical split.
SPLIT_ALIASES: dict[str, str] = {
    "train": "train",
    "training": "train",
    "validation": "validation",
    "valid": "validation",
    "val": "validation",
    "dev": "validation",
    "test": "test",
    "testing": "test",
}
# Source column names (compared case-insensitively) for each canonical column, in order of preference.
COLUMN_ALIASES: dict[str, tuple[str, ...]] = {
    "cid": ("cid", "pubchem_cid", "compound_id"),
    "smiles": ("smiles", "canonicalsmiles", "canonical_smiles", "isomericsmiles", "isomeric_smiles"),
    "description": ("description", "desc", "text", "caption"),
}
# Tables mapping CID -> SMILES that are picked up automatically next to Text2Mol files.
SMILES_TABLE_NAMES: tuple[str, ...] = ("cid_split_smiles.tsv", "cid_smiles.tsv")
MOLT5_COLUMNS: tuple[str, str, str] = ("CID", "SMILES", "description")

# Validation reasons, in the order they are checked; a row is reported once, under the first reason that applies.
MISSING_CID = "missing_cid"
MISSING_SMILES = "missing_smiles"
INVALID_SMILES = "invalid_smiles"
EMPTY_DESCRIPTION = "empty_description"
DUPLICATE_CID = "duplicate_cid"
REASONS: tuple[str, ...] = (MISSING_CID, MISSING_SMILES, INVALID_SMILES, EMPTY_DESCRIPTION, DUPLICATE_CID)

_MAX_LISTED = 50  # offending rows named in a log message or an error before "... and N more"
BUNDLED = "bundled"  # load_chebi20(BUNDLED): the ChEBI-20 pairs shipped with class-hf


# --------------------------------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------------------------------


class ValidationIssue(NamedTuple):
    """One dropped row: its split, its 0-based row number within that split as loaded, its CID and the reason."""

    split: str
    row: int
    cid: str | None
    reason: str
    detail: str = ""

    def __str__(self) -> str:
        detail = f" ({self.detail})" if self.detail else ""
        return f"{self.split} row {self.row} (CID {self.cid!r}): {self.reason}{detail}"


@dataclass
class ValidationReport:
    """What validation found: rows checked and kept per split, and every dropped row with its reason.

    Attributes:
        num_rows (dict[str, int]): rows checked, per split.
        num_kept (dict[str, int]): rows that passed, per split.
        issues (list[ValidationIssue]): one entry per dropped row, as ``(split, row, cid, reason, detail)``; ``row``
            is the 0-based position in the split before anything was dropped.
    """

    num_rows: dict[str, int] = field(default_factory=dict)
    num_kept: dict[str, int] = field(default_factory=dict)
    issues: list[ValidationIssue] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        """Dropped rows per reason, over all splits (reasons with no row are left out)."""
        counts = Counter(issue.reason for issue in self.issues)
        return {reason: counts[reason] for reason in REASONS if counts[reason]}

    @property
    def counts_by_split(self) -> dict[str, dict[str, int]]:
        """Dropped rows per split and reason (splits with no dropped row are left out)."""
        out: dict[str, dict[str, int]] = {}
        for split in self.num_rows:
            counts = Counter(issue.reason for issue in self.issues if issue.split == split)
            if counts:
                out[split] = {reason: counts[reason] for reason in REASONS if counts[reason]}
        return out

    @property
    def num_dropped(self) -> dict[str, int]:
        """Dropped rows per split (every split, zeros included)."""
        return {split: self.num_rows[split] - self.num_kept.get(split, 0) for split in self.num_rows}

    @property
    def dropped_cids(self) -> list[str | None]:
        """CIDs of the dropped rows, in the order they were found."""
        return [issue.cid for issue in self.issues]

    def summary(self) -> str:
        """One line per split: rows kept of rows checked and the dropped counts per reason."""
        by_split = self.counts_by_split
        lines = []
        for split, total in self.num_rows.items():
            reasons = ", ".join(f"{r}={n}" for r, n in by_split.get(split, {}).items()) or "nothing dropped"
            lines.append(f"{split}: kept {self.num_kept.get(split, 0)} of {total} ({reasons})")
        return "\n".join(lines)

    @property
    def ok(self) -> bool:
        """True when nothing was dropped."""
        return not self.issues


def _column(dataset: Dataset, name: str) -> list[Any]:
    return list(dataset[name]) if name in dataset.column_names else [None] * len(dataset)


def _find_issues(
    splits: Mapping[str, Dataset], *, require_description: bool
) -> tuple[ValidationReport, dict[str, list[int]]]:
    """Check every row of every split; return the report and the row indices to keep per split."""
    from rdkit import Chem, rdBase

    report = ValidationReport()
    keep: dict[str, list[int]] = {}
    first_seen: dict[str, tuple[str, int]] = {}
    with rdBase.BlockLogs():  # RDKit's parse errors are muted here only: the report carries them
        for split, dataset in splits.items():
            cids = _column(dataset, "cid")
            smiles_column = _column(dataset, "smiles")
            descriptions = _column(dataset, "description") if require_description else None
            kept: list[int] = []
            for row, (cid, smiles) in enumerate(zip(cids, smiles_column, strict=True)):
                cid = None if cid is None else str(cid).strip()
                reason, detail = None, ""
                if not cid:
                    reason = MISSING_CID
                elif smiles is None or not str(smiles).strip():
                    reason = MISSING_SMILES
                elif Chem.MolFromSmiles(str(smiles)) is None:
                    reason, detail = INVALID_SMILES, f"SMILES {smiles!r} does not parse with RDKit"
                elif descriptions is not None and (descriptions[row] is None or not str(descriptions[row]).strip()):
                    reason = EMPTY_DESCRIPTION
                elif cid in first_seen:
                    reason = DUPLICATE_CID
                    detail = "first seen in {} row {}".format(*first_seen[cid])
                if reason is None:
                    first_seen[cid] = (split, row)
                    kept.append(row)
                else:
                    report.issues.append(ValidationIssue(split, row, cid or None, reason, detail))
            report.num_rows[split] = len(dataset)
            report.num_kept[split] = len(kept)
            keep[split] = kept
    return report, keep


def _listed(issues: Sequence[ValidationIssue]) -> str:
    listed = "; ".join(str(issue) for issue in issues[:_MAX_LISTED])
    if len(issues) > _MAX_LISTED:
        listed += f"; ... and {len(issues) - _MAX_LISTED} more (see the ValidationReport)"
    return listed


def _apply_report(report: ValidationReport, *, strict: bool, what: str) -> None:
    """Raise (strict) or log the outcome of a validation, once."""
    total = sum(report.num_rows.values())
    if report.issues and strict:
        raise ValueError(
            f"{what}: {len(report.issues)} of {total} rows failed validation (strict=True): {_listed(report.issues)}. "
            "Fix or remove these rows, or pass strict=False to drop them and get them counted in the report."
        )
    if report.issues:
        logger.warning(
            "%s: dropped %d of %d rows (%s). Offending rows: %s",
            what,
            len(report.issues),
            total,
            "; ".join(
                f"{split}: " + ", ".join(f"{r}={n}" for r, n in counts.items())
                for split, counts in report.counts_by_split.items()
            ),
            _listed(report.issues),
        )
    else:
        logger.info("%s: all %d rows valid (%s)", what, total, dict(report.num_rows))


def _validate(
    splits: Mapping[str, Dataset], *, strict: bool, require_description: bool, what: str
) -> tuple[dict[str, Dataset], ValidationReport]:
    report, keep = _find_issues(splits, require_description=require_description)
    _apply_report(report, strict=strict, what=what)
    cleaned = {
        split: dataset if len(keep[split]) == len(dataset) else dataset.select(keep[split])
        for split, dataset in splits.items()
    }
    return cleaned, report


def validate_pairs(
    dataset_dict: DatasetDict | Dataset, strict: bool = False
) -> tuple[DatasetDict | Dataset, ValidationReport]:
    """Validate text-molecule pairs with the canonical columns and drop the bad rows.

    A row is dropped when its ``cid`` is missing, its ``smiles`` is missing or does not parse with RDKit, its
    ``description`` is empty after stripping, or its CID already appeared earlier (CIDs must be unique across the
    whole `DatasetDict`, splits taken in order). Each dropped row is reported once, under the first reason that
    applies, in that order. The counts and the offending CIDs are logged with one ``logger.warning`` per call.

    Args:
        dataset_dict (DatasetDict | Dataset): pairs with ``cid``, ``smiles`` and ``description`` columns. A single
            `Dataset` is reported under the split name ``"dataset"``.
        strict (bool): raise instead of dropping.

    Returns:
        tuple: the cleaned pairs (same type as the input, extra columns kept) and the :class:`ValidationReport`.

    Raises:
        ValueError: a canonical column is missing, or ``strict=True`` and some rows are bad (all of them are named
            with split, row number, CID and reason).
    """
    single = isinstance(dataset_dict, Dataset)
    splits = {"dataset": dataset_dict} if single else dict(dataset_dict)
    for split, dataset in splits.items():
        missing = [c for c in CANONICAL_COLUMNS if c not in dataset.column_names]
        if missing:
            raise ValueError(
                f"validate_pairs: split {split!r} lacks the column(s) {missing} (it has {dataset.column_names}); "
                "load the data with load_chebi20 or rename the columns to cid/smiles/description."
            )
    cleaned, report = _validate(splits, strict=strict, require_description=True, what="ChEBI-20 validation")
    return (cleaned["dataset"] if single else DatasetDict(cleaned)), report


# --------------------------------------------------------------------------------------------------------------------
# Reading the layouts
# --------------------------------------------------------------------------------------------------------------------


@dataclass
class _RawSplit:
    """One split as read from its source: column name -> values, plus the source's feature types if it had any."""

    columns: dict[str, list[Any]]
    features: Features | None = None


def undouble_backslashes(smiles: Any) -> Any:
    """A SMILES with its doubled backslashes un-doubled (anything that is not a string is returned as it is).

    MolT5 and the derived ChEBI-20 tables write every SMILES backslash twice; ``\\\\`` is never valid SMILES.
    """
    return smiles.replace("\\\\", "\\") if isinstance(smiles, str) else smiles


def _snake_case(name: str) -> str:
    name = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name.strip())
    name = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    return re.sub(r"\W+", "_", name).strip("_").lower()


def _normalise_split_name(name: str) -> str:
    return SPLIT_ALIASES.get(name.strip().lower(), name.strip())


def _check_header(path: Path, line: int, names: Sequence[str]) -> None:
    """A header naming a column twice (compared as the readers look names up: stripped, any case; two blank names
    too) is an error naming the file and the repeated names: one column would silently hide the other."""
    positions: dict[str, list[int]] = {}
    for position, name in enumerate(names, start=1):
        positions.setdefault(name.strip().lower(), []).append(position)
    repeated = [at for at in positions.values() if len(at) > 1]
    if repeated:
        listed = "; ".join(" and ".join(f"{names[i - 1]!r} (column {i})" for i in at) for at in repeated)
        raise ValueError(
            f"{path}, line {line}: the header names a column more than once: {listed}. Give every column its own "
            "name (or remove the repeated column)."
        )


def _read_delimited(
    path: Path, *, delimiter: str, quoting: int, header: bool
) -> tuple[list[str] | None, list[list[str]], list[int]]:
    """Read a delimited file: its header (None without one), its records and the line each record ends on.

    Blank lines are skipped; a record with the wrong number of fields, or a header that repeats a column name, is an
    error naming the file and the line.
    """
    names: list[str] | None = None
    rows: list[list[str]] = []
    lines: list[int] = []
    for line, row in iter_records(path, delimiter=delimiter, quoting=quoting):
        if header and names is None:
            _check_header(path, line, row)
            names = row
            continue
        width = len(names) if names is not None else len(rows[0]) if rows else len(row)
        if len(row) != width:
            raise ValueError(
                f"{path}, line {line}: {len(row)} fields where {width} were expected (delimiter "
                f"{delimiter!r}). Check that the file is in one of the ChEBI-20 layouts and is not truncated."
            )
        rows.append(row)
        lines.append(line)
    if header and names is None:
        raise ValueError(f"{path} is empty: expected a header line.")
    return names, rows, lines


def _names_cid_and_smiles(fields: Sequence[str]) -> bool:
    lowered = [name.strip().lower() for name in fields]
    return any(a in lowered for a in COLUMN_ALIASES["cid"]) and any(a in lowered for a in COLUMN_ALIASES["smiles"])


def _is_number_vector(field: str) -> bool:
    """Text2Mol's ``mol2vec`` column: several whitespace-separated numbers."""
    values = field.split()
    if len(values) < 2:
        return False
    try:
        [float(v) for v in values]
    except ValueError:
        return False
    return True


def _sniff_layout(path: Path) -> str:
    """Which layout a data file is in, from its first line (not its extension, which copies do not keep).

    Returns one of ``parquet``, ``orma``, ``csv`` (exported by :func:`save_chebi20`), ``molt5`` (tab-separated with a
    header, whatever the extension: the Hub copy ``OpenBioML/chebi_20`` stores MolT5's files as ``.csv``),
    ``molt5_headerless`` (MolT5 rows ``CID\tSMILES\tdescription`` without the header line) or ``text2mol``.
    """
    if path.suffix.lower() == ".parquet":
        return "parquet"
    line = first_line(path)
    if not line.strip():
        raise ValueError(
            f"{path} is empty (its first line is blank): expected a header such as 'CID\\tSMILES\\tdescription'."
        )
    tab_fields = line.split("\t")
    if len(tab_fields) > 1 and _names_cid_and_smiles(tab_fields):
        return "molt5"
    comma_fields = next(csv.reader([line]), [])
    if _names_cid_and_smiles(comma_fields):
        return "orma" if "canonicalsmiles" in (name.strip().lower() for name in comma_fields) else "csv"
    if len(tab_fields) == 3 and tab_fields[0].strip().isdigit():
        second = tab_fields[1].strip()
        if _is_number_vector(second):
            return "text2mol"
        if second and not any(char.isspace() for char in second):
            return "molt5_headerless"  # a SMILES has no spaces; a mol2vec vector is many numbers
    if path.suffix.lower() == ".csv":
        return "csv"  # read with its header; the column check names what is missing
    raise ValueError(
        f"{path}: cannot tell its layout from the first line {tab_fields[:3]!r}. Expected a MolT5 header "
        "'CID\\tSMILES\\tdescription' (or MolT5 rows 'cid\\tSMILES\\tdescription'), Text2Mol rows "
        "'cid\\tmol2vec\\tdesc', or an ORMA header 'CID,CanonicalSMILES,Title,Description'."
    )


def _read_smiles_table(path: Path) -> dict[str, str]:
    """The CID -> SMILES table of Text2Mol files (backslashes un-doubled).

    A CID listed again with the same SMILES is harmless (the first row is kept); listed again with a different SMILES,
    it is an error naming the file, both lines and both SMILES: which molecule the CID's pairs are is unknown.
    """
    names, rows, lines = _read_delimited(path, delimiter="\t", quoting=csv.QUOTE_NONE, header=True)
    lowered = [name.strip().lower() for name in names]
    if "cid" not in lowered or "smiles" not in lowered:
        raise ValueError(f"smiles_table {path} needs 'CID' and 'SMILES' columns; its header is {names}.")
    i_cid, i_smiles = lowered.index("cid"), lowered.index("smiles")
    table: dict[str, str] = {}
    first_line: dict[str, int] = {}
    conflicts: list[str] = []
    for line, row in zip(lines, rows, strict=True):
        cid, smiles = row[i_cid].strip(), undouble_backslashes(row[i_smiles])
        if cid not in table:
            table[cid], first_line[cid] = smiles, line
        elif smiles.strip() != table[cid].strip():
            conflicts.append(f"CID {cid!r}: line {first_line[cid]} {table[cid]!r}, line {line} {smiles!r}")
    if conflicts:
        listed = "; ".join(conflicts[:_MAX_LISTED])
        if len(conflicts) > _MAX_LISTED:
            listed += f"; ... and {len(conflicts) - _MAX_LISTED} more"
        raise ValueError(
            f"smiles_table {path}: {len(conflicts)} CID(s) listed twice with different SMILES ({listed}). Keep one "
            "SMILES per CID."
        )
    return table


def _find_smiles_table(folder: Path) -> Path | None:
    for name in SMILES_TABLE_NAMES:
        if (folder / name).is_file():
            return folder / name
    return None


def _read_file(path: Path, layout: str, smiles_table: dict[str, str] | None) -> _RawSplit:
    if layout == "parquet":
        import pyarrow.parquet as pq

        dataset = Dataset(pq.read_table(path))
        return _RawSplit(dataset.to_dict(), dataset.features)
    if layout in ("csv", "orma"):
        names, rows, _ = _read_delimited(path, delimiter=",", quoting=csv.QUOTE_MINIMAL, header=True)
    elif layout == "molt5":
        names, rows, _ = _read_delimited(path, delimiter="\t", quoting=csv.QUOTE_NONE, header=True)
    elif layout == "molt5_headerless":
        _, rows, _ = _read_delimited(path, delimiter="\t", quoting=csv.QUOTE_NONE, header=False)
        names = list(MOLT5_COLUMNS)
        logger.info("%s has no header line: read as MolT5 rows with the columns %s", path, names)
    elif layout == "text2mol":
        if smiles_table is None:
            raise ValueError(
                f"{path} is in the Text2Mol layout (cid, mol2vec, desc), which holds no SMILES. Pass "
                "smiles_table= a CID -> SMILES table (e.g. ChEBI-20's derived/cid_split_smiles.tsv), or put a "
                f"file named one of {list(SMILES_TABLE_NAMES)} next to it."
            )
        _, rows, _ = _read_delimited(path, delimiter="\t", quoting=csv.QUOTE_NONE, header=False)
        cids = [row[0].strip() for row in rows]
        columns = {
            "cid": cids,
            "smiles": [smiles_table.get(cid) for cid in cids],  # a CID absent from the table: missing_smiles
            "description": [row[2] for row in rows],
            "mol2vec": [row[1] for row in rows],
        }
        return _RawSplit(columns)
    else:  # pragma: no cover - _sniff_layout returns only the layouts above
        raise ValueError(f"unknown layout {layout!r}")
    return _RawSplit({name: [row[i] for row in rows] for i, name in enumerate(names)})


def _normalise_columns(raw: _RawSplit, keep_columns: bool | Sequence[str], where: str) -> Dataset:
    """Rename to the canonical columns, fix their types and values, keep (or drop) the rest."""
    by_lower: dict[str, str] = {}
    for name in raw.columns:
        by_lower.setdefault(name.strip().lower(), name)
    chosen: dict[str, str] = {}
    for canonical, aliases in COLUMN_ALIASES.items():
        for alias in aliases:
            if alias in by_lower:
                chosen[canonical] = by_lower[alias]
                break
        else:
            raise ValueError(
                f"{where}: no column for {canonical!r} among {list(raw.columns)}; accepted names (any case) are "
                f"{list(aliases)}. Rename the column or convert the file to one of the ChEBI-20 layouts."
            )
    columns: dict[str, list[Any]] = {}
    cids = raw.columns[chosen["cid"]]
    columns["cid"] = [_cid_to_str(cid) for cid in cids]
    smiles = raw.columns[chosen["smiles"]]
    columns["smiles"] = [undouble_backslashes(s) for s in smiles]
    n_undoubled = sum(isinstance(s, str) and "\\\\" in s for s in smiles)
    if n_undoubled:
        logger.info("%s: un-doubled the backslashes of %d SMILES", where, n_undoubled)
    columns["description"] = [d.strip() if isinstance(d, str) else d for d in raw.columns[chosen["description"]]]
    features = {name: Value("string") for name in CANONICAL_COLUMNS}

    used = set(chosen.values())
    for name, values in raw.columns.items():
        if name in used:
            continue
        new_name = _snake_case(name)
        wanted = keep_columns is True or (not isinstance(keep_columns, bool) and new_name in keep_columns)
        if not wanted:
            continue
        if new_name in columns:
            raise ValueError(
                f"{where}: the extra column {name!r} would be renamed to {new_name!r}, which already exists. Pass "
                "keep_columns=False or a list of the extra columns to keep."
            )
        columns[new_name] = values
        features[new_name] = raw.features[name] if raw.features is not None else Value("string")
    return Dataset.from_dict(columns, features=Features(features))


def _cid_to_str(cid: Any) -> str | None:
    if cid is None or (isinstance(cid, float) and math.isnan(cid)):
        return None
    if isinstance(cid, float) and cid.is_integer():
        return str(int(cid))
    return str(cid).strip()


def _scan_folder(folder: Path) -> tuple[str, dict[str, Path]] | None:
    """Find the split files of one layout in a folder; None when there are none."""
    by_layout: dict[str, dict[str, list[Path]]] = {}
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.suffix.lower() not in DATA_EXTENSIONS:
            continue
        split = SPLIT_ALIASES.get(path.stem.lower())
        if split is None:
            continue
        by_layout.setdefault(_sniff_layout(path), {}).setdefault(split, []).append(path)
    if not by_layout:
        return None
    if len(by_layout) > 1:
        found = {layout: sorted(p.name for ps in files.values() for p in ps) for layout, files in by_layout.items()}
        raise ValueError(
            f"{folder} holds split files in several layouts {found}; pass source={{split: path}} to choose the files."
        )
    layout, files = next(iter(by_layout.items()))
    for split, paths in files.items():
        if len(paths) > 1:
            raise ValueError(
                f"{folder} holds several files for the {split!r} split ({[p.name for p in paths]}); pass "
                "source={split: path} to choose one."
            )
    return layout, {split: paths[0] for split, paths in files.items()}


def _order_splits(splits: Mapping[str, Any]) -> dict[str, Any]:
    known = [s for s in SPLITS if s in splits]
    return {s: splits[s] for s in known + [s for s in splits if s not in SPLITS]}


def _select_splits(found: Mapping[str, Any], wanted: Sequence[str] | None, where: str) -> dict[str, Any]:
    if wanted is None:
        return _order_splits(found)
    missing = [s for s in wanted if s not in found]
    if missing:
        raise ValueError(f"{where}: split(s) {missing} not found; available: {list(found)}. Adjust splits=.")
    return {s: found[s] for s in wanted}


def _read_files(
    files: Mapping[str, Path], smiles_table: Path | None, keep_columns: bool | Sequence[str]
) -> dict[str, Dataset]:
    table_cache: dict[Path, dict[str, str]] = {}
    out: dict[str, Dataset] = {}
    for split, path in files.items():
        if not path.is_file():
            raise FileNotFoundError(f"split {split!r}: file {path} does not exist.")
        layout = _sniff_layout(path)
        table = None
        if layout == "text2mol":
            table_path = smiles_table or _find_smiles_table(path.parent)
            if table_path is not None:
                if table_path not in table_cache:
                    table_cache[table_path] = _read_smiles_table(table_path)
                table = table_cache[table_path]
        elif smiles_table is not None:
            logger.warning("smiles_table is only used for Text2Mol files; %s is in the %s layout", path, layout)
        raw = _read_file(path, layout, table)
        out[split] = _normalise_columns(raw, keep_columns, where=str(path))
        logger.info("read %d rows for split %r from %s (%s layout)", len(out[split]), split, path, layout)
    return out


def _from_dataset_dict(
    loaded: DatasetDict | Dataset, keep_columns: bool | Sequence[str], where: str
) -> dict[str, Dataset]:
    if isinstance(loaded, Dataset):
        loaded = DatasetDict({"train": loaded})
    out: dict[str, Dataset] = {}
    for name, dataset in loaded.items():
        split = _normalise_split_name(name)
        if split in out:
            raise ValueError(f"{where}: splits {list(loaded)} map to the same split {split!r}.")
        if split not in SPLITS:
            logger.info("%s: split %r kept under its own name (not train/validation/test)", where, name)
        raw = _RawSplit(dataset.to_dict(), dataset.features)
        out[split] = _normalise_columns(raw, keep_columns, where=f"{where} [{name}]")
    return _order_splits(out)


def _load_folder(
    folder: Path, smiles_table: Path | None, keep_columns: bool | Sequence[str], load_kwargs: dict[str, Any]
) -> tuple[dict[str, Dataset], dict[str, str]]:
    """The splits of a folder, and the file each split was read from."""
    scanned = _scan_folder(folder)
    if scanned is not None:
        layout, files = scanned
        files = _order_splits(files)
        logger.info("%s: %s layout, splits %s", folder, layout, list(files))
        return _read_files(files, smiles_table, keep_columns), {split: str(path) for split, path in files.items()}
    # No split files at the top level: let `datasets` infer the splits (e.g. a Hub snapshot's data/train-*.parquet).
    logger.info("%s: no ChEBI-20 split files found; loading it with datasets.load_dataset", folder)
    local_kwargs = {k: v for k, v in load_kwargs.items() if k not in ("revision", "token")}
    loaded = _from_dataset_dict(datasets.load_dataset(str(folder), **local_kwargs), keep_columns, str(folder))
    return loaded, {split: f"{folder} [{split}]" for split in loaded}


# File types a Hub snapshot needs for loading ChEBI-20 (not images or archives: liupf/ChEBI-20-MM has a 103 MB zip).
_HUB_PATTERNS: tuple[str, ...] = ("*.csv", "*.tsv", "*.txt", "*.parquet", "*.json", "*.jsonl", "*.md")


def _load_hub(
    repo_id: str, smiles_table: Path | None, keep_columns: bool | Sequence[str], load_kwargs: dict[str, Any]
) -> dict[str, Dataset]:
    """A Hub dataset as published: its files are fetched (or found in the Hub cache) and read as a local folder.

    ``huggingface_hub.snapshot_download`` resolves from the cache when ``HF_HUB_OFFLINE=1`` and fails at once when the
    repository is not cached, where ``datasets.load_dataset(repo_id)`` cannot read the cache offline and retries for
    tens of seconds. Reading the snapshot with this module's layout detection also reads copies whose files keep
    MolT5's tab-separated text under a ``.csv`` name (``OpenBioML/chebi_20``).
    """
    import huggingface_hub

    try:
        folder = huggingface_hub.snapshot_download(
            repo_id,
            repo_type="dataset",
            revision=load_kwargs.get("revision"),
            token=load_kwargs.get("token"),
            allow_patterns=list(_HUB_PATTERNS),
        )
    except Exception as error:  # LocalEntryNotFoundError (offline, not cached), RepositoryNotFoundError, HTTP errors
        raise FileNotFoundError(
            f"source {repo_id!r} is not an existing file or folder (relative to {os.getcwd()}), and as a Hub "
            f"dataset id it could not be loaded ({type(error).__name__}: {str(error).splitlines()[0]}). Check the "
            "path, or download the dataset while online (it is then read from the Hub cache with HF_HUB_OFFLINE=1)."
        ) from error
    logger.info("%s: Hub dataset snapshot %s", repo_id, folder)
    return _load_folder(Path(folder), smiles_table, keep_columns, load_kwargs)[0]


def bundled_chebi20_dir() -> Path:
    """The folder of the ChEBI-20 pairs shipped with class-hf (``load_chebi20("bundled")``).

    It holds the 6,562 validation and test pairs of ChEBI-20 in ORMA's layout (``validation.csv``: 3,285 pairs,
    ``test.csv``: 3,277; original ChEBI descriptions, PubChem SMILES) and a README with their provenance and license
    (ChEBI descriptions: CC BY 4.0, attribution required).
    """
    return Path(__file__).parent / "bundled" / "chebi20"


def _source_files(source: Mapping[str, Any] | Sequence[Any]) -> dict[str, Path]:
    """``{split: file}`` from a mapping, or from a list of files named after their splits (``train.txt`` ...)."""
    files: dict[str, Path] = {}
    if isinstance(source, Mapping):
        pairs = [(_normalise_split_name(str(name)), Path(path)) for name, path in source.items()]
    else:
        pairs = []
        for path in map(Path, source):
            split = SPLIT_ALIASES.get(path.stem.lower())
            if split is None:
                raise ValueError(
                    f"source: cannot tell the split of {path} from its name; name the files train/validation/test "
                    "(as MolT5's train.txt, validation.txt, test.txt) or pass a dict {split: file}."
                )
            pairs.append((split, path))
    for split, path in pairs:
        if split in files:
            raise ValueError(f"source: {files[split]} and {path} map to the same split {split!r}.")
        files[split] = path
    return files


def _check_rows(found: Mapping[str, Dataset], origins: Mapping[str, str]) -> None:
    """A split without a single data row (a header-only file) is an error naming the split and its file."""
    empty = [split for split, dataset in found.items() if len(dataset) == 0]
    if empty:
        listed = ", ".join(f"{split!r} ({origins.get(split, 'unknown origin')})" for split in empty)
        raise ValueError(
            f"split(s) {listed} hold no data rows (only a header?). Fill or remove the file(s), or choose the splits "
            "to load with splits=."
        )


def _check_kept(report: ValidationReport, origins: Mapping[str, str]) -> None:
    """A split whose every row failed validation is an error: an empty split cannot be featurized or saved."""
    lost = [split for split, kept in report.num_kept.items() if kept == 0 and report.num_rows.get(split)]
    if lost:
        by_split = report.counts_by_split
        listed = "; ".join(
            f"{split!r} ({origins.get(split, 'unknown origin')}): all {report.num_rows[split]} rows dropped "
            f"({', '.join(f'{r}={n}' for r, n in by_split.get(split, {}).items())})"
            for split in lost
        )
        raise ValueError(
            f"no valid pair left in split(s) {listed}. First problems: {_listed(report.issues[:5])}. Fix the file(s) "
            "or leave these splits out with splits=."
        )


def load_chebi20(
    source: str | os.PathLike | Mapping[str, str | os.PathLike] | Sequence[str | os.PathLike],
    *,
    splits: str | Sequence[str] | None = None,
    smiles_table: str | os.PathLike | None = None,
    strict: bool = False,
    keep_columns: bool | Sequence[str] = True,
    return_report: bool = False,
    **load_kwargs: Any,
) -> DatasetDict | tuple[DatasetDict, ValidationReport]:
    """Load ChEBI-20 pairs from local files, the bundled copy or the Hub into a validated `DatasetDict`.

    Where ChEBI-20 comes from (see ``docs/data.md``): MolT5's ``ChEBI-20_data/{train,validation,test}.txt``
    (github.com/blender-nlp/MolT5), ORMA's and Text2Mol's files, and Hub copies such as ``OpenBioML/chebi_20``.
    Each is read as published, with its layout told from the first line of each file.

    Args:
        source: one of
            - ``"bundled"``: the 6,562 validation and test pairs shipped with class-hf (:func:`bundled_chebi20_dir`);
              an existing local path of that name takes precedence;
            - a folder in the MolT5, ORMA, Text2Mol or exported (:func:`save_chebi20`) layout; a folder without such
              files (e.g. a Hub snapshot with ``data/*.parquet``) is read with ``datasets.load_dataset(folder)``;
            - a dict ``{split: file}``, a list of files named after their splits (MolT5's ``train.txt``,
              ``validation.txt``, ``test.txt``), or a single file (its split is ``splits`` if given, else taken from
              the file name, else ``"train"``);
            - a Hub dataset id ``"org/name"`` (e.g. ``"OpenBioML/chebi_20"``), fetched with
              ``huggingface_hub.snapshot_download`` (from the Hub cache when ``HF_HUB_OFFLINE=1``). A string that
              can only be a local path (it exists, starts with ``.``, ``/`` or ``~``, names a data file, or its
              first folder exists) is never looked up on the Hub.
        splits: the splits to return (``"val"``, ``"valid"``, ``"dev"`` mean ``"validation"``, ``"training"`` means
            ``"train"``); all found when None. ``split=`` is accepted as an alias.
        smiles_table: a tab-separated CID -> SMILES table with ``CID`` and ``SMILES`` columns (backslashes may be
            doubled), needed by the Text2Mol layout; ``cid_split_smiles.tsv`` or ``cid_smiles.tsv`` next to the
            Text2Mol files is used when not given. A CID listed twice with the same SMILES is read once; with two
            different SMILES it is an error.
        strict: raise a ValueError naming the bad rows instead of dropping them.
        keep_columns: keep the source's extra columns (snake_cased: ORMA's ``Title`` -> ``title``), only those
            named, or none (False).
        return_report: also return the :class:`ValidationReport`.
        **load_kwargs: ``revision`` and ``token`` for a Hub id; the rest goes to ``datasets.load_dataset`` when it
            reads a folder of unknown layout (e.g. ``cache_dir``).

    Returns:
        DatasetDict | tuple[DatasetDict, ValidationReport]: splits ordered train, validation, test, with columns
        ``cid``, ``smiles`` (backslashes un-doubled), ``description`` (stripped) and the kept extras. Every split
        holds at least one pair.

    Raises:
        FileNotFoundError: the source is neither an existing path nor a loadable Hub dataset.
        ValueError: an unreadable layout or encoding, a header that names a column twice, a ``smiles_table`` giving a
            CID two different SMILES (the file and lines are named), an unknown split, a split without any row or
            without any valid row (the split and its file are named), or bad rows under ``strict=True``.
    """
    if "split" in load_kwargs:
        if splits is not None:
            raise ValueError("load_chebi20: pass either splits= or its alias split=, not both.")
        splits = load_kwargs.pop("split")
    wanted = None
    if splits is not None:
        wanted = [splits] if isinstance(splits, str) else list(splits)
        wanted = [_normalise_split_name(s) for s in wanted]
    table = Path(smiles_table) if smiles_table is not None else None
    if table is not None and not table.is_file():
        raise FileNotFoundError(f"smiles_table {table} does not exist.")
    if isinstance(source, str) and source == BUNDLED and not os.path.exists(source):
        source = bundled_chebi20_dir()

    origins: dict[str, str] = {}
    if isinstance(source, (Mapping, list, tuple)):
        files = _select_splits(_source_files(source), wanted, "source")
        origins = {split: str(path) for split, path in files.items()}
        found = _read_files(files, table, keep_columns)
    elif Path(source).is_dir():
        loaded, origins = _load_folder(Path(source), table, keep_columns, load_kwargs)
        found = _select_splits(loaded, wanted, str(source))
    elif Path(source).is_file():
        path = Path(source)
        if wanted is not None and len(wanted) != 1:
            raise ValueError(f"source {path} is a single file: pass one split name in splits=, not {wanted}.")
        split = wanted[0] if wanted else SPLIT_ALIASES.get(path.stem.lower())
        if split is None:
            split = "train"
            logger.info("%s: no split name given or in the file name; loading it as the 'train' split", path)
        origins = {split: str(path)}
        found = _read_files({split: path}, table, keep_columns)
    elif is_hub_id(source):
        found = _select_splits(_load_hub(source, table, keep_columns, load_kwargs), wanted, source)
    else:
        raise FileNotFoundError(
            f"source {str(source)!r} is neither an existing file or folder nor a Hub dataset id of the form "
            f"'org/name'. Relative paths are resolved from the current folder ({os.getcwd()}); "
            'load_chebi20("bundled") reads the ChEBI-20 pairs shipped with class-hf.'
        )
    origins = {split: origins.get(split, f"{source} [{split}]") for split in found}
    _check_rows(found, origins)

    cleaned, report = _validate(found, strict=strict, require_description=True, what=f"ChEBI-20 from {source!r}")
    _check_kept(report, origins)
    dataset_dict = DatasetDict(cleaned)
    return (dataset_dict, report) if return_report else dataset_dict


def save_chebi20(dataset_dict: DatasetDict, directory: str | os.PathLike, format: str = "parquet") -> dict[str, Path]:
    """Write each split to ``{directory}/{split}.parquet`` (or ``.csv``), readable again by :func:`load_chebi20`.

    Args:
        dataset_dict (DatasetDict): pairs with the canonical columns (extra columns are written too).
        directory: output folder, created if needed.
        format (str): ``"parquet"`` (lossless) or ``"csv"`` (RFC-4180 quoting; every column read back as string).

    Returns:
        dict[str, Path]: the file written for each split.
    """
    if format not in ("parquet", "csv"):
        raise ValueError(f"format must be 'parquet' or 'csv', got {format!r}.")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for split, dataset in dataset_dict.items():
        missing = [c for c in CANONICAL_COLUMNS if c not in dataset.column_names]
        if missing:
            raise ValueError(f"save_chebi20: split {split!r} lacks the column(s) {missing}; use load_chebi20 first.")
        order = list(CANONICAL_COLUMNS) + [c for c in dataset.column_names if c not in CANONICAL_COLUMNS]
        dataset = dataset.select_columns(order)
        path = directory / f"{split}.{format}"
        if format == "parquet":
            dataset.to_parquet(path)
        else:
            dataset.to_csv(path, index=False)
        written[split] = path
        logger.info("wrote %d rows of split %r to %s", len(dataset), split, path)
    return written


# --------------------------------------------------------------------------------------------------------------------
# Re-splitting and the molecule pool
# --------------------------------------------------------------------------------------------------------------------


def _cid_unit_interval(cid: str, seed: int) -> float:
    """A stable pseudo-uniform number in [0, 1) from (seed, cid), identical across processes and platforms."""
    digest = hashlib.sha256(f"{seed}\x00{cid}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _check_fractions(fractions: Sequence[float] | Mapping[str, float]) -> dict[str, float]:
    if isinstance(fractions, Mapping):
        named = {_normalise_split_name(str(k)): v for k, v in fractions.items()}
        unknown = [k for k in named if k not in SPLITS]
        if unknown:
            raise ValueError(f"fractions: unknown split name(s) {unknown}; use {list(SPLITS)}.")
    else:
        fractions = list(fractions)
        if len(fractions) != len(SPLITS):
            raise ValueError(
                f"fractions must give {len(SPLITS)} numbers (train, validation, test), got {len(fractions)}: "
                f"{fractions}."
            )
        named = dict(zip(SPLITS, fractions, strict=True))
    for split, value in named.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ValueError(f"fractions: the {split!r} fraction must be a finite number >= 0, got {value!r}.")
    total = sum(named.values())
    if not math.isclose(total, 1.0, abs_tol=1e-6):
        raise ValueError(f"fractions must sum to 1, got {total} from {named}; e.g. (0.8, 0.1, 0.1).")
    return {split: float(named.get(split, 0.0)) for split in SPLITS}


def resplit_by_cid(
    pairs: Dataset | DatasetDict,
    fractions: Sequence[float] | Mapping[str, float] = (0.8, 0.1, 0.1),
    seed: int = 0,
) -> DatasetDict:
    """Split pairs into train/validation/test by a stable hash of each row's CID.

    Each row goes to the split whose cumulative-fraction interval holds ``sha256(f"{seed}\\0{cid}")`` mapped to
    [0, 1). The assignment of a CID depends only on ``(seed, cid)``: the same CID lands in the same split whatever the
    other rows, the process or the machine, and the split sizes follow ``fractions`` up to binomial noise.

    Args:
        pairs (Dataset | DatasetDict): rows with a ``cid`` column; the splits of a DatasetDict are concatenated first
            (they must share their features).
        fractions: three non-negative numbers (train, validation, test) summing to 1, or a mapping from split name
            to fraction.
        seed (int): changes the assignment.

    Returns:
        DatasetDict: ``train``, ``validation`` and ``test`` (a split may be empty), rows in their input order.
    """
    named = _check_fractions(fractions)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ValueError(f"seed must be an int, got {seed!r}.")
    if isinstance(pairs, DatasetDict):
        pairs = datasets.concatenate_datasets(list(pairs.values()))
    if "cid" not in pairs.column_names:
        raise ValueError(f"resplit_by_cid needs a 'cid' column; the pairs have {pairs.column_names}.")
    bounds, cumulative = [], 0.0
    for split in SPLITS:
        cumulative += named[split]
        bounds.append(cumulative)
    last_nonempty = max(i for i, split in enumerate(SPLITS) if named[split] > 0)
    indices: dict[str, list[int]] = {split: [] for split in SPLITS}
    for row, cid in enumerate(pairs["cid"]):
        u = _cid_unit_interval(str(cid), seed)
        i = next((i for i, bound in enumerate(bounds) if u < bound and named[SPLITS[i]] > 0), last_nonempty)
        indices[SPLITS[i]].append(row)
    result = DatasetDict({split: pairs.select(rows) for split, rows in indices.items()})
    logger.info("resplit_by_cid(seed=%d): %s", seed, {split: len(ds) for split, ds in result.items()})
    return result


def load_chebi20_molecules(
    path: str | os.PathLike, *, strict: bool = False, return_report: bool = False
) -> Dataset | tuple[Dataset, ValidationReport]:
    """Load the candidate pool of ChEBI-20 molecules (all 33,010 in ``derived/cid_split_smiles.tsv``).

    Args:
        path: the tab-separated table with ``CID``, ``SMILES`` and optionally ``split`` columns (backslashes doubled,
            as in ChEBI-20's ``derived/cid_split_smiles.tsv``), a folder holding ``cid_split_smiles.tsv``, or
            ``"bundled"``: the table of all 33,010 ChEBI-20 molecules shipped with class-hf.
        strict (bool): raise on bad rows instead of dropping them.
        return_report (bool): also return the :class:`ValidationReport` (split name ``"molecules"``).

    Returns:
        Dataset: columns ``cid``, ``smiles`` (un-doubled, RDKit-parsable) and ``split`` (normalised split names; None
        when the table has no split column), with unique CIDs, in file order: a CID listed again (with the same SMILES
        or another one) keeps its first row, and the later rows are reported as ``duplicate_cid``.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the table lacks the ``CID`` or ``SMILES`` column or names a column twice, a line has the wrong
            number of fields, or some rows are bad under ``strict=True``.
    """
    path = bundled_chebi20_dir() if str(path) == BUNDLED else Path(path)
    if path.is_dir():
        path = path / SMILES_TABLE_NAMES[0]
    if not path.is_file():
        raise FileNotFoundError(f"load_chebi20_molecules: {path} does not exist; pass the cid_split_smiles.tsv path.")
    names, rows, _ = _read_delimited(path, delimiter="\t", quoting=csv.QUOTE_NONE, header=True)
    lowered = [name.strip().lower() for name in names]
    missing = [c for c in ("cid", "smiles") if c not in lowered]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing} (header {names}); expected CID, SMILES (and split).")
    i_cid, i_smiles = lowered.index("cid"), lowered.index("smiles")
    i_split = lowered.index("split") if "split" in lowered else None
    dataset = Dataset.from_dict(
        {
            "cid": [row[i_cid].strip() for row in rows],
            "smiles": [undouble_backslashes(row[i_smiles]) for row in rows],
            "split": [None if i_split is None else _normalise_split_name(row[i_split]) for row in rows],
        },
        features=Features({"cid": Value("string"), "smiles": Value("string"), "split": Value("string")}),
    )
    cleaned, report = _validate(
        {"molecules": dataset}, strict=strict, require_description=False, what=f"ChEBI-20 molecules from {path}"
    )
    return (cleaned["molecules"], report) if return_report else cleaned["molecules"]
