"""Tests for class_hf.data.chebi20: layouts, backslash normalisation, validation, re-splitting, offline Hub loading."""

from __future__ import annotations

import csv
import logging
import math
import shutil
from pathlib import Path

import datasets
import pytest
from datasets import Dataset, DatasetDict
from rdkit import Chem

from class_hf.data.chebi20 import (
    ValidationReport,
    load_chebi20,
    load_chebi20_molecules,
    resplit_by_cid,
    save_chebi20,
    validate_pairs,
)

LOGGER = "class_hf.data.chebi20"
# bad_rows.csv (ORMA layout, 12 rows): 6 good rows and one row for each reason; see tests/fixtures/chebi20/README.md.
BAD_ROWS_EXPECTED = {
    "missing_cid": 1,
    "missing_smiles": 1,
    "invalid_smiles": 2,
    "empty_description": 1,
    "duplicate_cid": 1,
}


def _read_tsv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))


def _canonical(smiles: str, isomeric: bool = True) -> str:
    return Chem.MolToSmiles(Chem.MolFromSmiles(smiles), isomericSmiles=isomeric)


@pytest.fixture(scope="module")
def text2mol_split_cids(chebi20_sample_dir) -> dict[str, list[str]]:
    """The validation/test membership of the 300 fixture CIDs, from the Text2Mol sample."""
    folder = chebi20_sample_dir / "text2mol_sample"
    out = {}
    for split, name in (("validation", "val.txt"), ("test", "test.txt")):
        with open(folder / name, encoding="utf-8") as f:
            out[split] = [line.split("\t", 1)[0] for line in f if line.strip()]
    return out


def _write_split_files(src: Path, dest: Path, names: dict[str, str], split_cids: dict[str, list[str]]) -> Path:
    """Split a fixture file into one file per split, keeping its header, quoting and row text byte for byte."""
    delimiter = "," if src.suffix == ".csv" else "\t"
    dest.mkdir(parents=True, exist_ok=True)
    with open(src, newline="", encoding="utf-8") as f:
        lines = f.read().splitlines(keepends=True)
    header, body = lines[0], lines[1:]
    # Every fixture row is one physical line (no embedded newlines), so the CID is the text before the delimiter.
    for split, name in names.items():
        wanted = set(split_cids[split])
        with open(dest / name, "w", newline="", encoding="utf-8") as f:
            f.write(header)
            f.writelines(line for line in body if line.split(delimiter, 1)[0] in wanted)
    return dest


@pytest.fixture()
def molt5_folder(tmp_path, chebi20_sample_dir, text2mol_split_cids) -> Path:
    names = {"validation": "validation.tsv", "test": "test.tsv"}
    return _write_split_files(chebi20_sample_dir / "molt5_sample.tsv", tmp_path / "molt5", names, text2mol_split_cids)


@pytest.fixture()
def orma_folder(tmp_path, chebi20_sample_dir, text2mol_split_cids) -> Path:
    names = {"validation": "val.csv", "test": "test.csv"}
    return _write_split_files(chebi20_sample_dir / "orma_sample.csv", tmp_path / "orma", names, text2mol_split_cids)


# --------------------------------------------------------------------------------------------------------------------
# Layouts
# --------------------------------------------------------------------------------------------------------------------


def test_orma_single_file(chebi20_sample_dir):
    dd = load_chebi20(chebi20_sample_dir / "orma_sample.csv", splits="test")
    assert list(dd) == ["test"]
    ds = dd["test"]
    assert ds.column_names == ["cid", "smiles", "description", "title"]
    assert all(ds.features[c] == datasets.Value("string") for c in ds.column_names)
    assert len(ds) == 300
    with open(chebi20_sample_dir / "orma_sample.csv", newline="", encoding="utf-8") as f:
        first = next(csv.DictReader(f))
    assert ds[0] == {
        "cid": first["CID"],
        "smiles": first["CanonicalSMILES"],
        "description": first["Description"],
        "title": first["Title"],
    }


def test_single_file_split_name(chebi20_sample_dir):
    assert list(load_chebi20(chebi20_sample_dir / "orma_sample.csv")) == ["train"]  # no split in the name
    assert list(load_chebi20(chebi20_sample_dir / "orma_sample.csv", split="val")) == ["validation"]
    with pytest.raises(ValueError, match="single file"):
        load_chebi20(chebi20_sample_dir / "orma_sample.csv", splits=["validation", "test"])


def test_orma_folder(orma_folder, text2mol_split_cids):
    dd = load_chebi20(orma_folder)
    assert list(dd) == ["validation", "test"]  # val.csv -> validation, ordered train/validation/test
    for split, cids in text2mol_split_cids.items():
        assert dd[split]["cid"] == cids
    assert list(load_chebi20(orma_folder, splits="test")) == ["test"]
    with pytest.raises(ValueError, match=r"split\(s\) \['train'\] not found"):
        load_chebi20(orma_folder, splits=["train"])


@pytest.mark.parametrize("suffix", [".tsv", ".txt"])
def test_molt5_folder(tmp_path, molt5_folder, text2mol_split_cids, suffix):
    folder = tmp_path / f"molt5{suffix}"
    folder.mkdir()
    for path in molt5_folder.iterdir():
        shutil.copy(path, folder / (path.stem + suffix))
    dd = load_chebi20(folder)
    assert list(dd) == ["validation", "test"]
    assert dd["test"].column_names == ["cid", "smiles", "description"]
    for split, cids in text2mol_split_cids.items():
        assert dd[split]["cid"] == cids
    assert all(d.startswith("The molecule is") for d in dd["validation"]["description"])


def test_molt5_doubled_backslashes_match_orma(chebi20_sample_dir):
    raw = {row["CID"]: row["SMILES"] for row in _read_tsv(chebi20_sample_dir / "molt5_sample.tsv")}
    doubled = [cid for cid, smiles in raw.items() if "\\\\" in smiles]
    assert len(doubled) == 43  # the fixture README's count: the test exercises real doubled backslashes

    molt5 = load_chebi20(chebi20_sample_dir / "molt5_sample.tsv", splits="test")["test"]
    orma = load_chebi20(chebi20_sample_dir / "orma_sample.csv", splits="test")["test"]
    molt5_smiles = dict(zip(molt5["cid"], molt5["smiles"], strict=True))
    orma_smiles = dict(zip(orma["cid"], orma["smiles"], strict=True))
    assert not any("\\\\" in s for s in molt5["smiles"])
    for cid in doubled:
        assert molt5_smiles[cid] == raw[cid].replace("\\\\", "\\")
        assert "\\" in molt5_smiles[cid]  # the single backslash (a bond direction) survives
        # ORMA's PubChem canonical SMILES carry no stereo: compare the 2D structures.
        assert _canonical(molt5_smiles[cid], isomeric=False) == _canonical(orma_smiles[cid], isomeric=False)
    # Un-doubling keeps the stereo the doubled spelling meant (RDKit reads both the same way).
    assert all(_canonical(molt5_smiles[cid]) == _canonical(raw[cid]) for cid in doubled)


def test_text2mol_folder(chebi20_sample_dir, text2mol_split_cids):
    folder = chebi20_sample_dir / "text2mol_sample"
    dd = load_chebi20(folder)  # cid_smiles.tsv in the folder is found automatically
    assert list(dd) == ["validation", "test"]
    assert dd["test"].column_names == ["cid", "smiles", "description", "mol2vec"]
    for split, cids in text2mol_split_cids.items():
        assert dd[split]["cid"] == cids

    # The joined SMILES are the MolT5 SMILES, un-doubled; the descriptions are the original (ORMA) ones.
    molt5 = load_chebi20(chebi20_sample_dir / "molt5_sample.tsv", splits="test")["test"]
    orma = load_chebi20(chebi20_sample_dir / "orma_sample.csv", splits="test")["test"]
    molt5_smiles = dict(zip(molt5["cid"], molt5["smiles"], strict=True))
    orma_descriptions = dict(zip(orma["cid"], orma["description"], strict=True))
    for split in dd:
        for row in dd[split]:
            assert row["smiles"] == molt5_smiles[row["cid"]]
            assert row["description"] == orma_descriptions[row["cid"]]
            assert len(row["mol2vec"].split()) == 8

    explicit = load_chebi20(folder, smiles_table=folder / "cid_smiles.tsv", keep_columns=False)
    assert explicit["validation"].column_names == ["cid", "smiles", "description"]
    assert explicit["validation"]["smiles"] == dd["validation"]["smiles"]


def test_text2mol_needs_smiles_table(tmp_path, chebi20_sample_dir):
    folder = tmp_path / "t2m"
    folder.mkdir()
    shutil.copy(chebi20_sample_dir / "text2mol_sample" / "val.txt", folder / "val.txt")
    with pytest.raises(ValueError, match="smiles_table="):
        load_chebi20(folder)


def test_text2mol_cid_missing_from_table(tmp_path, chebi20_sample_dir, caplog):
    src = chebi20_sample_dir / "text2mol_sample"
    rows = _read_tsv(src / "cid_smiles.tsv")
    val_cids = [line.split("\t", 1)[0] for line in (src / "val.txt").read_text(encoding="utf-8").splitlines()]
    dropped = set(val_cids[:2])
    table = tmp_path / "partial.tsv"
    table.write_text(
        "CID\tSMILES\n" + "".join(f"{r['CID']}\t{r['SMILES']}\n" for r in rows if r["CID"] not in dropped),
        encoding="utf-8",
    )
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        dd, report = load_chebi20({"val": src / "val.txt"}, smiles_table=table, return_report=True)
    assert len(dd["validation"]) == len(val_cids) - 2
    assert report.counts == {"missing_smiles": 2}
    assert set(report.dropped_cids) == dropped
    assert all(cid in caplog.text for cid in dropped)


def test_text2mol_table_giving_a_cid_two_smiles_is_an_error(tmp_path, chebi20_sample_dir):
    """A CID listed again with another SMILES used to take the last one silently; the same SMILES again is harmless."""
    src = chebi20_sample_dir / "text2mol_sample"
    rows = _read_tsv(src / "cid_smiles.tsv")
    cid, smiles = rows[0]["CID"], rows[0]["SMILES"]
    body = "".join(f"{r['CID']}\t{r['SMILES']}\n" for r in rows)
    table = tmp_path / "table.tsv"
    table.write_text(f"CID\tSMILES\n{body}{cid}\t{smiles}\n", encoding="utf-8")  # the same SMILES again
    same = load_chebi20({"val": src / "val.txt", "test": src / "test.txt"}, smiles_table=table)
    joined = {c: smi for part in same.values() for c, smi in zip(part["cid"], part["smiles"], strict=True)}
    assert joined[cid] == smiles.replace("\\\\", "\\")
    table.write_text(f"CID\tSMILES\n{body}{cid}\tCCO\n", encoding="utf-8")
    line = len(rows) + 2
    with pytest.raises(ValueError, match=rf"table.tsv: 1 CID\(s\) listed twice with different SMILES \(CID '{cid}': "
                       rf"line 2 '.+', line {line} 'CCO'\)"):  # fmt: skip
        load_chebi20({"val": src / "val.txt", "test": src / "test.txt"}, smiles_table=table)


def test_dict_source_and_keep_columns(chebi20_sample_dir):
    path = chebi20_sample_dir / "orma_sample.csv"
    dd = load_chebi20({"dev": path}, keep_columns=["title"])
    assert list(dd) == ["validation"]
    assert dd["validation"].column_names == ["cid", "smiles", "description", "title"]
    assert load_chebi20({"test": path}, keep_columns=False)["test"].column_names == ["cid", "smiles", "description"]
    with pytest.raises(ValueError, match="same split"):
        load_chebi20({"val": path, "validation": path})


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_save_and_reload(tmp_path, orma_folder, fmt):
    dd = load_chebi20(orma_folder)
    written = save_chebi20(dd, tmp_path / "export", format=fmt)
    assert written == {split: tmp_path / "export" / f"{split}.{fmt}" for split in ("validation", "test")}
    back = load_chebi20(tmp_path / "export")
    assert list(back) == list(dd)
    for split in dd:
        assert back[split].column_names == dd[split].column_names
        assert back[split].to_dict() == dd[split].to_dict()
    with pytest.raises(ValueError, match="format must be"):
        save_chebi20(dd, tmp_path / "x", format="json")


def _folder_of_copies(folder: Path, copies: list[tuple[Path, str]]) -> Path:
    folder.mkdir()
    for src, name in copies:
        shutil.copy(src, folder / name)
    return folder


def test_layout_errors(tmp_path, orma_folder, molt5_folder):
    mixed = [(orma_folder / "test.csv", "test.csv"), (molt5_folder / "validation.tsv", "validation.tsv")]
    with pytest.raises(ValueError, match="several layouts"):
        load_chebi20(_folder_of_copies(tmp_path / "mixed", mixed))
    twice = [(orma_folder / "val.csv", "val.csv"), (orma_folder / "val.csv", "validation.csv")]
    with pytest.raises(ValueError, match="several files for the 'validation' split"):
        load_chebi20(_folder_of_copies(tmp_path / "twice", twice))

    broken = tmp_path / "broken" / "test.tsv"
    broken.parent.mkdir()
    broken.write_text("CID\tSMILES\tdescription\n1\tCCO\tok\n2\tCCC\n", encoding="utf-8")
    with pytest.raises(ValueError, match="line 3: 2 fields where 3 were expected"):
        load_chebi20(broken.parent)

    with pytest.raises(FileNotFoundError, match="neither an existing file or folder nor a Hub dataset id"):
        load_chebi20(tmp_path / "does" / "not" / "exist")


@pytest.mark.parametrize(
    ("header", "match"),
    [
        ("CID,CanonicalSMILES,Description,Description", r"'Description' \(column 3\) and 'Description' \(column 4\)"),
        ("CID,CanonicalSMILES,Title,description,Description", r"'description' \(column 4\) and 'Description'"),
        ("CID,CanonicalSMILES,,Description,", r"'' \(column 3\) and '' \(column 5\)"),
    ],
)
def test_a_header_naming_a_column_twice_is_an_error(tmp_path, header, match):
    """The second column of a name used to overwrite the first one silently."""
    width = len(header.split(","))
    rows = [",".join([str(cid)] + ["C"] * (width - 1)) for cid in (1, 2, 3)]
    path = tmp_path / "test.csv"
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=rf"test.csv, line 1: the header names a column more than once: {match}"):
        load_chebi20(path)
    table = tmp_path / "cid_split_smiles.tsv"
    table.write_text("CID\tSMILES\tsplit\tsmiles\n1\tCCO\ttest\tCCC\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"cid_split_smiles.tsv, line 1: .*'SMILES' \(column 2\) and 'smiles'"):
        load_chebi20_molecules(table)


# --------------------------------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------------------------------


def test_bad_rows_dropped_counted_and_logged(chebi20_sample_dir, caplog):
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        dd, report = load_chebi20(chebi20_sample_dir / "bad_rows.csv", splits="test", return_report=True)
    assert isinstance(report, ValidationReport)
    assert report.counts == BAD_ROWS_EXPECTED
    assert report.counts_by_split == {"test": BAD_ROWS_EXPECTED}
    assert report.num_rows == {"test": 12} and report.num_kept == {"test": 6}
    assert report.num_dropped == {"test": 6}
    assert len(dd["test"]) == 6
    issues = {(i.split, i.row, i.cid, i.reason) for i in report.issues}
    assert issues == {
        ("test", 3, "990000001", "invalid_smiles"),
        ("test", 4, "990000004", "invalid_smiles"),
        ("test", 5, "990000002", "empty_description"),
        ("test", 9, "11824", "duplicate_cid"),
        ("test", 10, None, "missing_cid"),
        ("test", 11, "990000003", "missing_smiles"),
    }
    # The kept rows are the 6 good ones, the first 11824 included, with unique CIDs.
    assert dd["test"]["cid"][0] == "11824" and len(set(dd["test"]["cid"])) == 6
    assert not set(dd["test"]["cid"]) & {"990000001", "990000002", "990000003", "990000004"}

    warnings = [r for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]
    assert len(warnings) == 1  # once per load, not per row
    message = warnings[0].getMessage()
    for reason, count in BAD_ROWS_EXPECTED.items():
        assert f"{reason}={count}" in message
    for cid in ("990000001", "990000002", "990000003", "990000004", "11824"):
        assert cid in message


def test_bad_rows_strict_raises(chebi20_sample_dir):
    with pytest.raises(ValueError, match=r"test row 3 \(CID '990000001'\): invalid_smiles") as info:
        load_chebi20(chebi20_sample_dir / "bad_rows.csv", splits="test", strict=True)
    message = str(info.value)
    assert "6 of 12 rows" in message
    assert "test row 5 (CID '990000002'): empty_description" in message
    assert "test row 9 (CID '11824'): duplicate_cid (first seen in test row 0)" in message
    assert "test row 10 (CID None): missing_cid" in message
    # Clean data passes under strict.
    assert len(load_chebi20(chebi20_sample_dir / "orma_sample.csv", strict=True)["train"]) == 300


def test_duplicate_cid_across_splits(tmp_path, chebi20_sample_dir):
    path = chebi20_sample_dir / "orma_sample.csv"
    first_100 = tmp_path / "val.csv"
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    with open(first_100, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows[:101])  # header + 100 pairs
    dd, report = load_chebi20({"validation": first_100, "test": path}, return_report=True)
    assert len(dd["validation"]) == 100 and len(dd["test"]) == 200
    assert report.counts_by_split == {"test": {"duplicate_cid": 100}}
    assert dd["test"].column_names == dd["validation"].column_names
    # Every pair of a split repeated: an error naming the split, its file and the reason (issue 13.1), never an
    # empty split that cannot be featurized or saved.
    with pytest.raises(ValueError, match=r"split\(s\) 'test' \(.*orma_sample.csv\): all 300 rows dropped \(duplicate"):
        load_chebi20({"validation": path, "test": path})


def test_validate_pairs_on_any_datasetdict(caplog, capfd):
    dd = DatasetDict(
        {
            "train": Dataset.from_dict(
                {"cid": ["1", "2", "3"], "smiles": ["CCO", "C1CC", "CCN"], "description": ["a", "b", " "]}
            ),
            "test": Dataset.from_dict({"cid": ["1", "4"], "smiles": ["CCO", "c1ccccc1"], "description": ["a", "d"]}),
        }
    )
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        cleaned, report = validate_pairs(dd)
    assert cleaned["train"]["cid"] == ["1"] and cleaned["test"]["cid"] == ["4"]
    assert report.counts == {"invalid_smiles": 1, "empty_description": 1, "duplicate_cid": 1}
    # RDKit's own parse-error log (C++ stderr) is muted during validation; the report carries the error instead.
    assert "SMILES Parse Error" not in capfd.readouterr().err
    with pytest.raises(ValueError, match=r"train row 1 \(CID '2'\): invalid_smiles"):
        validate_pairs(dd, strict=True)

    single, single_report = validate_pairs(dd["test"])
    assert isinstance(single, Dataset) and len(single) == 2 and single_report.num_rows == {"dataset": 2}
    with pytest.raises(ValueError, match=r"lacks the column\(s\) \['description'\]"):
        validate_pairs(dd["test"].remove_columns("description"))


# --------------------------------------------------------------------------------------------------------------------
# Re-splitting
# --------------------------------------------------------------------------------------------------------------------


def _synthetic_pairs(n: int, start: int = 0) -> Dataset:
    cids = [str(1_000_000 + i) for i in range(start, start + n)]
    return Dataset.from_dict({"cid": cids, "smiles": ["C"] * n, "description": ["d"] * n})


def _assignment(dd: DatasetDict) -> dict[str, str]:
    return {cid: split for split, ds in dd.items() for cid in ds["cid"]}


def test_resplit_deterministic_and_stable_per_cid():
    pairs = _synthetic_pairs(3000)
    first = resplit_by_cid(pairs, seed=0)
    assert list(first) == ["train", "validation", "test"]
    assert _assignment(resplit_by_cid(pairs, seed=0)) == _assignment(first)
    # A CID's split does not depend on the other rows: a subset (and a shuffled one) agrees with the full set.
    subset = pairs.select(range(2999, 0, -7))
    sub_assignment = _assignment(resplit_by_cid(subset, seed=0))
    full_assignment = _assignment(first)
    assert all(full_assignment[cid] == split for cid, split in sub_assignment.items())
    # Another seed gives another assignment.
    other = _assignment(resplit_by_cid(pairs, seed=1))
    assert sum(other[c] != full_assignment[c] for c in other) > 300
    # Every row lands exactly once, in input order within its split.
    assert sum(len(ds) for ds in first.values()) == 3000
    assert all(ds["cid"] == sorted(ds["cid"]) for ds in first.values())


def test_resplit_fraction_sizes():
    n = 20_000
    pairs = _synthetic_pairs(n)
    for fractions in ((0.8, 0.1, 0.1), (0.5, 0.2, 0.3)):
        sizes = {split: len(ds) for split, ds in resplit_by_cid(pairs, fractions=fractions, seed=3).items()}
        for split, fraction in zip(("train", "validation", "test"), fractions, strict=True):
            std = math.sqrt(n * fraction * (1 - fraction))
            assert abs(sizes[split] - n * fraction) < 5 * std, (fractions, sizes)
    sizes = {s: len(ds) for s, ds in resplit_by_cid(pairs, fractions={"train": 0.9, "test": 0.1}).items()}
    assert sizes["validation"] == 0 and sizes["train"] + sizes["test"] == n
    only_train = resplit_by_cid(pairs, fractions=(1.0, 0.0, 0.0))
    assert len(only_train["train"]) == n and len(only_train["test"]) == 0


def test_resplit_datasetdict_input(chebi20_sample_dir):
    dd = load_chebi20(chebi20_sample_dir / "text2mol_sample")
    out = resplit_by_cid(dd, fractions=(0.6, 0.2, 0.2), seed=7)
    assert sorted(_assignment(out)) == sorted(list(dd["validation"]["cid"]) + list(dd["test"]["cid"]))
    assert out["train"].column_names == dd["test"].column_names


@pytest.mark.parametrize(
    ("fractions", "match"),
    [
        ((0.8, 0.1), "must give 3 numbers"),
        ((0.8, 0.3, 0.1), "must sum to 1"),
        ((1.2, -0.1, -0.1), "finite number >= 0"),
        ((float("nan"), 0.5, 0.5), "finite number >= 0"),
        (("0.8", 0.1, 0.1), "finite number >= 0"),
        ({"train": 0.5, "holdout": 0.5}, "unknown split name"),
    ],
)
def test_resplit_bad_fractions(fractions, match):
    with pytest.raises(ValueError, match=match):
        resplit_by_cid(_synthetic_pairs(10), fractions=fractions)


# --------------------------------------------------------------------------------------------------------------------
# Molecule pool
# --------------------------------------------------------------------------------------------------------------------


def test_load_molecules(tmp_path, chebi20_sample_dir, text2mol_split_cids, caplog):
    smiles = {r["CID"]: r["SMILES"] for r in _read_tsv(chebi20_sample_dir / "text2mol_sample" / "cid_smiles.tsv")}
    lines = ["CID\tsplit\tin_molt5_file\tSMILES"]
    for split, cids in text2mol_split_cids.items():
        lines += [f"{cid}\t{split}\t1\t{smiles[cid]}" for cid in cids]
    lines += ["990000001\ttrain\t\tC1CC", f"{text2mol_split_cids['test'][0]}\ttest\t1\tCCO"]
    table = tmp_path / "cid_split_smiles.tsv"
    table.write_text("\n".join(lines) + "\n", encoding="utf-8")

    with caplog.at_level(logging.WARNING, logger=LOGGER):
        molecules, report = load_chebi20_molecules(tmp_path, return_report=True)  # a folder works too
    assert molecules.column_names == ["cid", "smiles", "split"]
    assert len(molecules) == 300
    assert report.counts == {"invalid_smiles": 1, "duplicate_cid": 1}
    assert "990000001" in caplog.text
    assert not any("\\\\" in s for s in molecules["smiles"])
    assert sum("\\" in s for s in molecules["smiles"]) == 43
    assert molecules["cid"] == text2mol_split_cids["validation"] + text2mol_split_cids["test"]
    assert set(molecules["split"]) == {"validation", "test"}
    with pytest.raises(ValueError, match="invalid_smiles"):
        load_chebi20_molecules(table, strict=True)


# --------------------------------------------------------------------------------------------------------------------
# Hub, offline
# --------------------------------------------------------------------------------------------------------------------


@pytest.fixture()
def offline_hub(tmp_path, monkeypatch):
    """An empty Hub cache under tmp_path, with huggingface_hub and datasets switched to offline mode in-process.

    Both libraries read HF_HUB_CACHE / HF_HUB_OFFLINE into module constants at import time, so the environment
    variables alone would not reach this process: the constants are patched too (the variables cover subprocesses).
    """
    import datasets.config
    import huggingface_hub.constants

    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    return cache


def _fake_hub_dataset(cache: Path, repo_id: str, rev: str = "0123abcd") -> Path:
    repo = cache / ("datasets--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(rev, encoding="utf-8")  # no trailing newline: hf_hub_download needs that
    snapshot = repo / "snapshots" / rev
    snapshot.mkdir(parents=True)
    return snapshot


def test_hub_offline_parquet(tmp_path, offline_hub, orma_folder, monkeypatch):
    orma = load_chebi20(orma_folder)
    snapshot = _fake_hub_dataset(offline_hub, "chem-org/chebi-20")
    (snapshot / "data").mkdir()
    # Upload-style shards with the ORMA column names and integer CIDs, as a Hub copy might hold them.
    for split, ds in orma.items():
        hub_ds = ds.rename_columns(
            {"cid": "CID", "smiles": "CanonicalSMILES", "title": "Title", "description": "Description"}
        )
        hub_ds = hub_ds.cast_column("CID", datasets.Value("int64"))
        hub_ds.to_parquet(snapshot / "data" / f"{split}-00000-of-00001.parquet")

    calls = []
    real_load_dataset = datasets.load_dataset

    def spy(path, *args, **kwargs):
        calls.append(str(path))
        return real_load_dataset(path, *args, **kwargs)

    monkeypatch.setattr(datasets, "load_dataset", spy)
    dd, report = load_chebi20("chem-org/chebi-20", cache_dir=str(tmp_path / "ds_cache"), return_report=True)
    # The Hub id never goes to datasets.load_dataset (it cannot read the Hub cache offline and retries for tens of
    # seconds): snapshot_download finds the cached snapshot, which is loaded as a folder.
    assert calls == [str(snapshot)]
    assert list(dd) == ["validation", "test"]
    assert report.counts == {}
    for split in orma:
        assert dd[split].column_names == ["cid", "smiles", "description", "title"]
        assert dd[split].features["cid"] == datasets.Value("string")
        assert dd[split].to_dict() == orma[split].to_dict()


def test_hub_offline_molt5_files(offline_hub, molt5_folder):
    snapshot = _fake_hub_dataset(offline_hub, "chem-org/molt5-chebi20", rev="main-snapshot")
    for path in molt5_folder.iterdir():
        shutil.copy(path, snapshot / (path.stem + ".txt"))  # MolT5's own file names: validation.txt, test.txt
    dd = load_chebi20("chem-org/molt5-chebi20", splits="test")
    assert list(dd) == ["test"]
    assert dd["test"]["cid"] == load_chebi20(molt5_folder)["test"]["cid"]
    assert not any("\\\\" in s for s in dd["test"]["smiles"])


@pytest.mark.usefixtures("offline_hub")
def test_hub_offline_not_cached(tmp_path):
    with pytest.raises(FileNotFoundError, match="could not be loaded"):
        load_chebi20("chem-org/not-cached", cache_dir=str(tmp_path / "ds_cache"))


def test_hub_offline_openbioml_layout(offline_hub, molt5_folder):
    """OpenBioML/chebi_20 publishes MolT5's tab-separated files under .csv names: read as MolT5, not as CSV."""
    snapshot = _fake_hub_dataset(offline_hub, "OpenBioML/chebi_20")
    for path in molt5_folder.iterdir():
        shutil.copy(path, snapshot / (path.stem + ".csv"))
    dd = load_chebi20("OpenBioML/chebi_20")
    expected = load_chebi20(molt5_folder)
    assert list(dd) == ["validation", "test"]
    for split in dd:
        assert dd[split]["cid"] == expected[split]["cid"] and dd[split]["smiles"] == expected[split]["smiles"]


# --------------------------------------------------------------------------------------------------------------------
# Sources as published, local paths, the bundled pairs
# --------------------------------------------------------------------------------------------------------------------


def test_molt5_three_files_as_published(tmp_path, molt5_folder):
    """MolT5's ChEBI-20_data/{train,validation,test}.txt, given as a list of files or as their folder."""
    folder = tmp_path / "ChEBI-20_data"
    folder.mkdir()
    shutil.copy(molt5_folder / "test.tsv", folder / "test.txt")
    header, *rows = (molt5_folder / "validation.tsv").read_text(encoding="utf-8").splitlines(keepends=True)
    (folder / "train.txt").write_text(header + "".join(rows[:50]), encoding="utf-8")  # a stand-in train file
    (folder / "validation.txt").write_text(header + "".join(rows[50:]), encoding="utf-8")
    files = [folder / "train.txt", folder / "validation.txt", folder / "test.txt"]
    as_list, report = load_chebi20([str(f) for f in files], return_report=True)
    assert {split: len(part) for split, part in as_list.items()} == {
        "train": 50,
        "validation": len(rows) - 50,
        "test": len(load_chebi20(molt5_folder)["test"]),
    }
    assert report.ok
    assert list(load_chebi20(folder, splits=["train", "test"])) == ["train", "test"]
    with pytest.raises(ValueError, match="cannot tell the split of .*notes.txt"):
        load_chebi20([folder / "train.txt", folder / "notes.txt"])


def test_local_looking_paths_are_never_looked_up_on_the_hub(tmp_path, monkeypatch):
    import huggingface_hub

    def no_hub(*args, **kwargs):
        raise AssertionError(f"looked up on the Hub: {args}")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", no_hub)
    monkeypatch.setattr(datasets, "load_dataset", no_hub)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    for source in ("data/chebi20", "./chebi20", "../chebi20", "/no/such/chebi20", "chebi/test.tsv", "~/chebi20"):
        with pytest.raises(FileNotFoundError, match="neither an existing file or folder nor a Hub dataset id"):
            load_chebi20(source)


def test_bundled_pairs_load_and_carry_their_license():
    from class_hf.data.chebi20 import bundled_chebi20_dir

    dd, report = load_chebi20("bundled", return_report=True)
    assert {split: len(part) for split, part in dd.items()} == {"validation": 3285, "test": 3277}
    assert report.ok and dd["test"].column_names == ["cid", "smiles", "description", "title"]
    readme = (bundled_chebi20_dir() / "README.md").read_text(encoding="utf-8")
    assert "CC BY 4.0" in readme and "PubChem" in readme and "Text2Mol" in readme and "ORMA" in readme


# --------------------------------------------------------------------------------------------------------------------
# Encodings, empty splits, files without a header
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["molt5_sample.tsv", "orma_sample.csv"])
def test_utf8_bom_files_load(tmp_path, chebi20_sample_dir, name):
    """Excel and Windows tools write a byte-order mark: it is not part of the first column's name (issue 13.7)."""
    source = chebi20_sample_dir / name
    with_bom = tmp_path / name
    with_bom.write_bytes(b"\xef\xbb\xbf" + source.read_bytes())
    assert load_chebi20(with_bom)["train"].to_dict() == load_chebi20(source)["train"].to_dict()


def test_bytes_that_are_not_utf8_name_the_file_and_line(tmp_path, chebi20_sample_dir):
    lines = (chebi20_sample_dir / "molt5_sample.tsv").read_bytes().split(b"\n")
    lines[7] = lines[7].replace(b"The molecule", b"The mol\xe9cule")  # Latin-1 e-acute
    path = tmp_path / "latin1.tsv"
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(ValueError, match=r"latin1.tsv, line 8: not UTF-8 text \(byte 0xe9 at column \d+\)"):
        load_chebi20(path)
    molecules = tmp_path / "cid_split_smiles.tsv"
    molecules.write_bytes(b"CID\tsplit\tSMILES\n1\ttest\tCCO\n2\ttest\tC\xe9\n")
    with pytest.raises(ValueError, match="cid_split_smiles.tsv, line 3: not UTF-8"):
        load_chebi20_molecules(molecules)


def test_header_only_file_is_an_error_naming_split_and_file(molt5_folder):
    """Issue 13.1: a header-only file used to give an empty split that broke featurization and save_to_disk."""
    header = (molt5_folder / "test.tsv").read_text(encoding="utf-8").splitlines()[0]
    (molt5_folder / "test.tsv").write_text(header + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"split\(s\) 'test' \(.*molt5.test\.tsv\) hold no data rows"):
        load_chebi20(molt5_folder)
    assert list(load_chebi20(molt5_folder, splits="validation")) == ["validation"]


def test_split_without_a_valid_row_is_an_error(tmp_path, chebi20_sample_dir):
    bad = tmp_path / "test.csv"
    bad.write_text(
        "CID,CanonicalSMILES,Title,Description\n1,C1CC,ring,The ring is open.\n2,,none,No SMILES.\n", encoding="utf-8"
    )
    with pytest.raises(
        ValueError, match=r"'test' \(.*test.csv\): all 2 rows dropped \(missing_smiles=1, invalid_smiles=1"
    ):
        load_chebi20({"train": chebi20_sample_dir / "orma_sample.csv", "test": bad})


def test_molt5_file_without_header_is_not_taken_for_text2mol(tmp_path, chebi20_sample_dir):
    """Issue 13.8: MolT5 rows without the header line used to be read as Text2Mol (cid, mol2vec, desc)."""
    source = chebi20_sample_dir / "molt5_sample.tsv"
    headerless = tmp_path / "test.txt"
    headerless.write_text(source.read_text(encoding="utf-8").split("\n", 1)[1], encoding="utf-8")
    loaded = load_chebi20(headerless)["test"]
    expected = load_chebi20(source)["train"]
    assert len(loaded) == 300
    assert loaded["cid"] == expected["cid"] and loaded["smiles"] == expected["smiles"]
    assert loaded["description"] == expected["description"]
