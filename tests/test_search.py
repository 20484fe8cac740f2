"""Molecule indexes, search, case studies and their reports (``class_hf.search``, ``class-hf index/search/cases``).

A tiny DualEncoderModel is trained for a few dozen steps on 40 fixture pairs until it retrieves them; the index is
the 300 fixture molecules.
"""

from __future__ import annotations

import csv
import json
import logging
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

import pytest
import torch
from conftest import CHEBI20_SAMPLE, make_tiny_bert_config, make_tiny_tokenizer

from class_hf.evaluation.retrieval import top_k
from class_hf.search.index import MoleculeIndex, SearchResult, model_reference
from class_hf.search.library import read_molecules
from class_hf.search.report import format_table, render_search_html, truncate

LIBRARY = CHEBI20_SAMPLE / "orma_sample.csv"
NUM_TRAIN = 40


# ------------------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The CI box is shared: one intra-op thread makes these tiny models several times faster under load."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def library() -> dict:
    return read_molecules(LIBRARY)


def _tiny_model(tokenizer):
    from class_hf.models.modeling_dual_encoder import DualEncoderConfig, DualEncoderModel

    config = DualEncoderConfig(
        text_config=make_tiny_bert_config(len(tokenizer)).to_dict(),
        gnn_hidden_size=32,
        gnn_num_layers=2,
        gnn_dropout=0.0,
        projection_dim=32,
    )
    torch.manual_seed(0)
    return DualEncoderModel(config)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, library):
    """``(model, tokenizer, checkpoint_dir)``: a tiny dual encoder trained on the first 40 fixture pairs, saved."""
    from class_hf.data.collator import MoleculeTextCollator
    from class_hf.search.index import featurize_for_model

    tokenizer = make_tiny_tokenizer()
    model = _tiny_model(tokenizer)
    rows = featurize_for_model(library["smiles"][:NUM_TRAIN], model)
    rows = rows.add_column("description", library["description"][:NUM_TRAIN])
    batch = MoleculeTextCollator(tokenizer, max_length=64)([rows[i] for i in range(NUM_TRAIN)])
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(150):
        out = model(**batch)
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    with torch.no_grad():
        out = model(**batch)
    assert bool((model.score(out.text_embeds, out.mol_embeds).argmax(1) == torch.arange(NUM_TRAIN)).all())
    model.eval()
    checkpoint = tmp_path_factory.mktemp("checkpoint")
    model.save_pretrained(checkpoint)
    tokenizer.save_pretrained(checkpoint)
    return model, tokenizer, checkpoint


@pytest.fixture(scope="module")
def index(trained) -> MoleculeIndex:
    model, tokenizer, checkpoint = trained
    return MoleculeIndex.build(
        model, LIBRARY, tokenizer, texts=True, show_progress=False, model_name_or_path=str(checkpoint)
    )


# ------------------------------------------------------------------------------------------------------ helpers
VOID = {"meta", "link", "br", "img", "input", "hr", "col", "area", "base", "embed", "source", "track", "wbr"}


class StrictHTML(HTMLParser):
    """Checks that every element is closed in order and counts tags (and ``div`` classes)."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.tags: Counter = Counter()
        self.classes: Counter = Counter()
        self.doctype = False

    def handle_decl(self, decl: str) -> None:
        self.doctype = decl.lower() == "doctype html"

    def _count(self, tag: str, attrs) -> None:
        self.tags[tag] += 1
        for name, value in attrs:
            if name == "class" and tag == "div":
                self.classes[value] += 1

    def handle_starttag(self, tag, attrs) -> None:
        self._count(tag, attrs)
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs) -> None:
        self._count(tag, attrs)

    def handle_endtag(self, tag) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1] if self.stack else 'nothing'}")
        else:
            self.stack.pop()


def parse_html(text: str) -> StrictHTML:
    parser = StrictHTML()
    parser.feed(text)
    parser.close()
    assert parser.doctype, "missing <!DOCTYPE html>"
    assert parser.errors == [], parser.errors[:5]
    assert parser.stack == [], f"unclosed elements {parser.stack}"
    assert parser.tags["html"] == 1 and parser.tags["title"] == 1 and parser.tags["style"] >= 1
    assert parser.tags["script"] == 0 and parser.tags["img"] == 0 and parser.tags["link"] == 0  # self-contained
    return parser


# ------------------------------------------------------------------------------------------------------ library
def test_read_molecules_layouts(tmp_path):
    orma = read_molecules(LIBRARY)
    assert len(orma["row"]) == 300 and orma["row"][:3] == [0, 1, 2] and orma["line"][0] == 2
    assert orma["cid"][0] == "11824" and orma["name"][0] == "Toyocamycin"
    assert orma["description"][0].startswith("Toyocamycin is an N-glycosylpyrrolopyrimidine")

    molt5 = read_molecules(CHEBI20_SAMPLE / "molt5_sample.tsv")  # SMILES with doubled backslashes
    doubled = [s for s in molt5["smiles"] if "\\" in s]
    assert doubled and not any("\\\\" in s for s in doubled)
    assert molt5["name"][0] is None and molt5["description"][0].startswith("The molecule is")

    import pyarrow as pa
    import pyarrow.parquet as pq
    from datasets import Dataset, DatasetDict

    pq.write_table(
        pa.table({"SMILES": ["CCO", "c1ccccc1"], "Title": ["ethanol", "benzene"]}), tmp_path / "lib.parquet"
    )
    parquet = read_molecules(tmp_path / "lib.parquet")
    assert parquet["smiles"] == ["CCO", "c1ccccc1"] and parquet["name"] == ["ethanol", "benzene"]
    assert parquet["cid"] == [None, None]

    data = DatasetDict({"a": Dataset.from_dict({"smiles": ["C"]}), "b": Dataset.from_dict({"smiles": ["N", "O"]})})
    both = read_molecules(data)
    assert both["smiles"] == ["C", "N", "O"] and both["split"] == ["a", "b", "b"] and both["row"] == [0, 1, 2]
    assert read_molecules(data, split="b")["smiles"] == ["N", "O"]
    with pytest.raises(ValueError, match="split 'c'"):
        read_molecules(data, split="c")

    (tmp_path / "no_smiles.csv").write_text("cid,name\n1,x\n")
    with pytest.raises(ValueError, match="no SMILES column"):
        read_molecules(tmp_path / "no_smiles.csv")
    (tmp_path / "lib.xlsx").touch()
    with pytest.raises(ValueError, match="unsupported file type"):
        read_molecules(tmp_path / "lib.xlsx")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_molecules(tmp_path / "missing.csv")


def test_sdf_library_reports_unreadable_records(tmp_path, trained, caplog):
    from rdkit import Chem

    model, tokenizer, _ = trained
    blocks = []
    for cid, smiles, name in (("1", "CCO", "ethanol"), ("2", "C(C)(C)(C)(C)C", "five bonds"), ("3", "CC(=O)O", "")):
        mol = Chem.MolFromSmiles(smiles, sanitize=False)
        mol.UpdatePropertyCache(strict=False)
        mol.SetProp("_Name", name)
        mol.SetProp("PUBCHEM_COMPOUND_CID", cid)
        blocks.append(Chem.MolToMolBlock(mol, kekulize=False) + f">  <PUBCHEM_COMPOUND_CID>\n{cid}\n\n$$$$\n")
    (tmp_path / "lib.sdf").write_text("".join(blocks))
    with caplog.at_level(logging.WARNING, logger="class_hf.search.index"):
        sdf_index = MoleculeIndex.build(model, tmp_path / "lib.sdf", tokenizer, show_progress=False)
    assert sdf_index.rows["cid"] == ["1", "3"] and sdf_index.rows["name"][0] == "ethanol"
    assert [(s["row"], s["reason"]) for s in sdf_index.skipped] == [(1, "the SMILES is empty")]
    assert "row 1" in caplog.text


# ------------------------------------------------------------------------------------------------------ index
def test_build_save_load_round_trip(index, trained, tmp_path):
    model, _, checkpoint = trained
    assert index.num_molecules == 300 and index.num_texts == 300 and index.embedding_dim == 32
    assert index.info["model"] == {
        "name_or_path": str(Path(checkpoint).resolve()),
        "revision": None,
        "class": "DualEncoderModel",
        "model_type": "class_dual_encoder",
    }
    assert index.info["num_skipped"] == 0 and index.info["max_length"] == 64  # the tiny tokenizer's limit

    index.save(tmp_path / "index")
    assert {p.name for p in (tmp_path / "index").iterdir()} == {"index.json", "embeddings.safetensors", "rows.parquet"}
    loaded = MoleculeIndex.load(tmp_path / "index")
    assert torch.equal(loaded.molecule_embeddings, index.molecule_embeddings)
    assert torch.equal(loaded.text_embeddings, index.text_embeddings)
    assert torch.equal(loaded.text_rows, index.text_rows)
    assert loaded.rows == index.rows
    assert loaded.info == json.loads(json.dumps(index.info))

    with pytest.raises(FileNotFoundError, match=r"not a class-hf index: \['index.json'"):
        MoleculeIndex.load(tmp_path)
    info = json.loads((tmp_path / "index" / "index.json").read_text())
    (tmp_path / "index" / "index.json").write_text(json.dumps({**info, "format_version": 99}))
    with pytest.raises(ValueError, match="version 99.*rebuild the index"):
        MoleculeIndex.load(tmp_path / "index")
    (tmp_path / "index" / "index.json").write_text(json.dumps(info))

    # The loaded index reloads the model from the recorded checkpoint and answers as the original.
    query = read_molecules(LIBRARY)["description"][5]
    expected = index.search(query, k=5)
    got = loaded.search(query, k=5)
    assert loaded.model is not model
    assert [r.cid for r in got] == [r.cid for r in expected]
    assert [r.score for r in got] == pytest.approx([r.score for r in expected], abs=1e-5)


def test_building_from_the_checkpoint_path_records_it(trained):
    _, _, checkpoint = trained
    built = MoleculeIndex.build(str(checkpoint), CHEBI20_SAMPLE / "bad_rows.csv", show_progress=False)
    assert built.info["model"]["name_or_path"] == str(Path(checkpoint).resolve())
    assert built.info["tokenizer"] == str(Path(checkpoint).resolve())
    toyocamycin = read_molecules(LIBRARY)["description"][0]
    assert built.num_molecules == 9 and built.search(toyocamycin, k=1)[0].cid == "11824"


def test_model_reference_revision_from_the_hub_cache(tmp_path, trained, monkeypatch):
    import huggingface_hub.constants

    model, _, checkpoint = trained
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--org--tiny-class"
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for file in Path(checkpoint).iterdir():
        (snapshot / file.name).write_bytes(file.read_bytes())
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    assert model_reference(model, "org/tiny-class")["revision"] == commit
    assert model_reference(model, "org/tiny-class")["name_or_path"] == "org/tiny-class"
    assert model_reference(model, str(snapshot))["revision"] == commit  # a snapshot folder given as a path
    assert model_reference(model, str(checkpoint))["revision"] is None  # a plain folder has no revision
    assert model_reference(model, "org/not-cached")["revision"] is None
    in_memory = model_reference(torch.nn.Linear(2, 2))
    assert in_memory["name_or_path"] is None and in_memory["class"] == "Linear"


def test_own_molecule_ranks_first_for_the_trained_model(index, library):
    queries = library["description"][:NUM_TRAIN]
    hits = index.search(queries, k=3)
    first = [h[0].cid == cid for h, cid in zip(hits, library["cid"][:NUM_TRAIN], strict=True)]
    assert sum(first) >= 0.9 * NUM_TRAIN, (
        f"only {sum(first)} of {NUM_TRAIN} training descriptions rank their molecule first"
    )
    one = index.search(queries[0], k=3)
    assert isinstance(one[0], SearchResult) and one[0].cid == library["cid"][0] and one[0].rank == 1
    assert [r.rank for r in one] == [1, 2, 3] and one[0].score >= one[1].score >= one[2].score
    assert one[0].smiles == library["smiles"][0] and one[0].name == "Toyocamycin" and one[0].row == 0

    # Molecule -> text: a training molecule finds its own description.
    texts = index.search(smiles=library["smiles"][:NUM_TRAIN], k=1)
    own = [h[0].cid == cid for h, cid in zip(texts, library["cid"][:NUM_TRAIN], strict=True)]
    assert sum(own) >= 0.9 * NUM_TRAIN

    # Truth located wherever it ranks, and marked when in the results.
    results, truth = index.search_with_truth(queries[0], k=3, truth_cid=library["cid"][0])
    assert truth.rank == 1 and results[0].is_truth and not any(r.is_truth for r in results[1:])
    far = library["cid"][NUM_TRAIN + 7]
    results, truth = index.search_with_truth(queries[0], k=3, truth_cid=far)
    assert truth.cid == far and truth.rank > 1 and not any(r.is_truth for r in results)
    full = index.search(queries[0], k=300)
    assert next(r.rank for r in full if r.cid == far) == truth.rank
    assert next(r.score for r in full if r.cid == far) == pytest.approx(truth.score, abs=1e-6)


def test_untrained_model_does_not_find_the_molecules(library):
    """The ranking test above measures training: a fresh model finds few of the same molecules."""
    tokenizer = make_tiny_tokenizer()
    fresh = MoleculeIndex.build(_tiny_model(tokenizer), LIBRARY, tokenizer, show_progress=False)
    hits = fresh.search(library["description"][:NUM_TRAIN], k=1)
    assert sum(h[0].cid == cid for h, cid in zip(hits, library["cid"][:NUM_TRAIN], strict=True)) < 0.5 * NUM_TRAIN


def test_invalid_library_smiles_are_reported_with_row_numbers(trained, caplog):
    model, tokenizer, _ = trained
    with caplog.at_level(logging.WARNING, logger="class_hf.search.index"):
        bad = MoleculeIndex.build(model, CHEBI20_SAMPLE / "bad_rows.csv", tokenizer, texts=True, show_progress=False)
    skipped = bad.skipped
    assert [(s["row"], s["line"], s["cid"]) for s in skipped] == [
        (3, 5, "990000001"),
        (4, 6, "990000004"),
        (11, 13, "990000003"),
    ]
    assert "not valid SMILES syntax" in skipped[0]["reason"]
    assert "sanitize" in skipped[1]["reason"] and skipped[2]["reason"] == "the SMILES is empty"
    assert bad.info["num_skipped"] == 3 and bad.info["num_input_rows"] == 12 and bad.num_molecules == 9
    assert bad.rows["row"] == [0, 1, 2, 5, 6, 7, 8, 9, 10]
    assert "Skipped 3 of 12 library rows" in caplog.text and "row 3 (line 5), cid 990000001" in caplog.text
    # Row 5 has a blank description: in the molecule index, not in the text index (and counted).
    assert bad.num_texts == 8 and bad.info["num_without_description"] == 1
    assert "1 indexed molecules have no description" in caplog.text


def test_library_without_valid_rows_is_an_error(trained, tmp_path):
    model, tokenizer, _ = trained
    path = tmp_path / "bad.csv"
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([["cid", "smiles"], ["1", "C1CC"], ["2", "not a smiles"]])
    with pytest.raises(ValueError, match=r"None of the 2 rows .* row 0 \(line 2\), cid 1"):
        MoleculeIndex.build(model, path, tokenizer, show_progress=False)
    path.write_text("cid,smiles\n1,CCO\n")
    with pytest.raises(ValueError, match="none of the indexed rows .* has a description"):
        MoleculeIndex.build(model, path, tokenizer, texts=True, show_progress=False)


def test_query_errors_are_clear(index, trained):
    with pytest.raises(ValueError, match="The query is empty"):
        index.search("")
    with pytest.raises(ValueError, match="The query is empty"):
        index.search("   \n")
    with pytest.raises(ValueError, match="Query 1 is empty"):
        index.search(["a fatty acid", ""])
    with pytest.raises(ValueError, match="list of queries is empty"):
        index.search([])
    with pytest.raises(ValueError, match=r"The query SMILES is not a valid molecule: Could not parse SMILES 'C1CC'"):
        index.search(smiles="C1CC")
    with pytest.raises(ValueError, match="sanitize"):
        index.search(smiles="C(C)(C)(C)(C)C")
    with pytest.raises(ValueError, match="either a text `query`"):
        index.search("a fatty acid", smiles="CCO")
    with pytest.raises(ValueError, match="either a text `query`"):
        index.search()
    with pytest.raises(ValueError, match="`k` must be a positive integer"):
        index.search("a fatty acid", k=0)
    model, tokenizer, _ = trained
    molecules_only = MoleculeIndex(index.molecule_embeddings, index.rows, model=model, tokenizer=tokenizer)
    with pytest.raises(ValueError, match="holds no descriptions.*--texts"):
        molecules_only.search(smiles="CCO")
    orphan = MoleculeIndex(index.molecule_embeddings, index.rows, info={"model": {"name_or_path": None}})
    with pytest.raises(ValueError, match="pass `model=` and `tokenizer=`"):
        orphan.search("a fatty acid")


def test_top_k_matches_brute_force():
    generator = torch.Generator().manual_seed(0)
    queries, candidates = torch.randn(11, 8, generator=generator), torch.randn(37, 8, generator=generator)
    candidates[20] = candidates[3]  # an exact tie
    truth = torch.tensor([3, 20, 0, 36, 5, -1, 7, 8, 9, 10, 11])
    scores = torch.nn.functional.normalize(queries, dim=1) @ torch.nn.functional.normalize(candidates, dim=1).T
    for direction in ("t2m", "m2t"):
        top_s, top_i, rank, t_score = top_k(
            queries, candidates, 5, direction=direction, truth=truth, query_chunk=4, candidate_chunk=7
        )
        assert torch.allclose(top_s, scores.topk(5, dim=1).values, atol=1e-6)
        assert torch.allclose(scores.gather(1, top_i), top_s, atol=1e-6)
        for q, t in enumerate(truth.tolist()):
            if t < 0:
                assert rank[q] == 0 and torch.isnan(t_score[q])
                continue
            others = torch.cat([scores[q, :t], scores[q, t + 1 :]])
            assert int(rank[q]) == 1 + int((others >= scores[q, t] - 1e-6).sum())
    # Tied candidates count against the truth: candidate 3 and 20 are identical, so neither ranks alone.
    assert int(rank[0]) >= 2 and int(rank[1]) >= 2
    assert top_k(queries, candidates, 100)[0].shape == (11, 37)


# ------------------------------------------------------------------------------------------------------ reports
def test_search_html_has_one_picture_per_candidate(index, library):
    query = library["description"][0]
    results, truth = index.search_with_truth(query, k=6, truth_cid=library["cid"][0])
    page = render_search_html(query, results, truth=truth, info=index.info)
    parsed = parse_html(page)
    assert parsed.tags["svg"] == 6 and parsed.classes["card truth"] == 1 and parsed.classes["card"] == 5
    assert parsed.classes["legend"] == 1 and "ground truth" in page and "Toyocamycin" in page
    assert "Toyocamycin is an N-glycosylpyrrolopyrimidine" in page  # the query text on top

    # Truth outside the top k: it follows the grid with its rank, with its own picture.
    far = library["cid"][NUM_TRAIN + 7]
    results, truth = index.search_with_truth(query, k=4, truth_cid=far)
    parsed = parse_html(render_search_html(query, results, truth=truth, info=index.info))
    assert parsed.tags["svg"] == 5 and parsed.classes["card truth"] == 1 and parsed.tags["h2"] == 1

    # Molecule query: its picture on top plus one per candidate description.
    results = index.search(smiles=library["smiles"][1], k=3)
    page = render_search_html(library["smiles"][1], results, direction="m2t", info=index.info)
    parsed = parse_html(page)
    assert parsed.tags["svg"] == 4 and parsed.classes["desc"] == 3 and parsed.classes["card truth"] == 0

    # Text is escaped, never markup.
    evil = SearchResult(1, 0.5, "<b>1</b>", "CCO", "<script>x</script>", "a & b", 0)
    parsed = parse_html(render_search_html("<i>q</i>", [evil]))
    assert parsed.tags["script"] == 0 and parsed.tags["i"] == 0 and parsed.tags["svg"] == 1


def test_terminal_table(index, library):
    results, truth = index.search_with_truth(library["description"][0], k=3, truth_cid=library["cid"][0])
    table = format_table(results, truth=truth, width=80)
    lines = table.splitlines()
    assert lines[0].split() == ["rank", "score", "CID", "name", "/", "SMILES"]
    assert lines[2].startswith("   1*") and "11824" in lines[2] and "Toyocamycin" in lines[2]
    assert all(len(line) <= 80 for line in lines[:5])
    assert lines[-1].startswith("ground truth CID 11824: rank 1")
    assert truncate("a  b\nc", 10) == "a b c" and truncate("x" * 20, 5) == "xxxx\u2026"
    texts = format_table(index.search(smiles="CCO", k=2), direction="m2t", width=90).splitlines()
    assert texts[0].endswith("description") and len(texts) == 4


# ------------------------------------------------------------------------------------------------------ CLI
def test_cli_index_search_and_cases(trained, library, tmp_path, capsys):
    from datasets import Dataset, DatasetDict

    from class_hf.cli import main

    _, _, checkpoint = trained
    out = tmp_path / "index"
    assert main(["index", "--model", str(checkpoint), "--molecules", str(LIBRARY), "--out", str(out), "--texts"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["num_molecules"] == 300 and summary["num_texts"] == 300 and summary["num_skipped"] == 0

    query, cid = library["description"][2], library["cid"][2]
    html_path = tmp_path / "report.html"
    argv = ["search", "--index", str(out), query, "-k", "4", "--truth-cid", cid, "--json", "--html", str(html_path)]
    assert main(argv) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["direction"] == "t2m" and len(answer["results"]) == 4
    assert answer["results"][0]["cid"] == cid and answer["results"][0]["is_truth"] and answer["truth"]["rank"] == 1
    assert parse_html(html_path.read_text()).tags["svg"] == 4

    assert main(["search", "--index", str(out), query, "-k", "2"]) == 0
    table = capsys.readouterr().out
    assert table.splitlines()[0].split()[:3] == ["rank", "score", "CID"] and cid in table

    assert main(["search", "--index", str(out), "--smiles", library["smiles"][3], "-k", "2", "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["direction"] == "m2t" and answer["results"][0]["description"]

    with pytest.raises(SystemExit, match="The query is empty"):
        main(["search", "--index", str(out), "  "])
    with pytest.raises(SystemExit, match="The query SMILES is not a valid molecule"):
        main(["search", "--index", str(out), "--smiles", "C1CC"])
    with pytest.raises(SystemExit, match="not both and not neither"):
        main(["search", "--index", str(out)])

    # A checkpoint that moved: a clear message, and --model to point at it.
    moved = tmp_path / "index-moved-model"
    info = json.loads((out / "index.json").read_text())
    info["model"]["name_or_path"] = info["tokenizer"] = str(tmp_path / "gone")
    moved.mkdir()
    for name in ("embeddings.safetensors", "rows.parquet"):
        (moved / name).write_bytes((out / name).read_bytes())
    (moved / "index.json").write_text(json.dumps(info))
    with pytest.raises(SystemExit, match="Could not load the model .*gone.* --model"):
        main(["search", "--index", str(moved), query])
    assert main(["search", "--index", str(moved), query, "--model", str(checkpoint), "-k", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["results"][0]["cid"] == cid

    # Cases: the 40 training pairs (mostly ranked first) and 20 unseen ones (the failures).
    data = tmp_path / "data"
    rows = slice(0, NUM_TRAIN + 20)
    DatasetDict(
        {
            "test": Dataset.from_dict(
                {
                    "cid": library["cid"][rows],
                    "smiles": library["smiles"][rows],
                    "description": library["description"][rows],
                    "title": library["name"][rows],
                }
            )
        }
    ).save_to_disk(str(data))
    cases_html = tmp_path / "cases.html"
    argv = ["cases", "--model", str(checkpoint), "--data", str(data), "--n", "3", "-k", "2", "--html", str(cases_html)]
    assert main([*argv, "--json"]) == 0
    study = json.loads(capsys.readouterr().out)
    assert study["num_queries"] == NUM_TRAIN + 20 and study["split"] == "test"
    assert len(study["successes"]) == 3 and len(study["failures"]) == 3
    assert all(c["truth"]["rank"] == 1 and c["candidates"][0]["is_truth"] for c in study["successes"])
    failure_ranks = [c["truth"]["rank"] for c in study["failures"]]
    assert failure_ranks == sorted(failure_ranks, reverse=True) and failure_ranks[-1] > 1
    assert all(c["query_cid"] == c["truth"]["cid"] for c in study["successes"] + study["failures"])
    assert study["metrics"]["hits@1"] == pytest.approx(study["num_successes"] / study["num_queries"])
    # One picture per candidate, plus the truth of each failure whose truth is not among its k candidates.
    parsed = parse_html(cases_html.read_text())
    outside = sum(not any(c["is_truth"] for c in case["candidates"]) for case in study["failures"])
    assert parsed.tags["svg"] == 3 * 2 + 3 * 2 + outside
    assert parsed.classes["card truth"] == 3 + 3

    assert main(argv[:-2]) == 0
    text = capsys.readouterr().out
    assert "ranked first:" in text and "failures (largest truth rank):" in text


# ------------------------------------------------------------------------------------------------------ integrity
class _NaNForSomeMolecules(torch.nn.Module):
    """Wraps the trained model; molecules whose graph has exactly ``poison`` atoms embed as NaN (a diverged model)."""

    def __init__(self, model, poison: int):
        super().__init__()
        self.model, self.config, self.poison = model, model.config, poison

    def encode_text(self, *args, **kwargs):
        return self.model.encode_text(*args, **kwargs)

    def encode_molecule(self, graph):
        out = self.model.encode_molecule(graph).clone()
        sizes = torch.bincount(graph.batch, minlength=out.shape[0])
        out[sizes == self.poison] = float("nan")
        return out

    def score(self, text_embeds, mol_embeds):
        return self.model.score(text_embeds, mol_embeds)


def test_nan_embeddings_are_refused_when_building(trained, library):
    """Issue 13.3: a diverged model's NaN embeddings used to be indexed and returned as the best hits."""
    from rdkit import Chem

    model, tokenizer, _ = trained
    first = Chem.MolFromSmiles(library["smiles"][0]).GetNumAtoms()
    poisoned = [i for i, s in enumerate(library["smiles"]) if Chem.MolFromSmiles(s).GetNumAtoms() == first]
    expected = (
        rf"{len(poisoned)} of 300 molecule embeddings are not finite .*row 0 \(line 2\), cid {library['cid'][0]}"
    )
    with pytest.raises(ValueError, match=expected):
        MoleculeIndex.build(_NaNForSomeMolecules(model, first), LIBRARY, tokenizer, show_progress=False)


def _save_copy(index: MoleculeIndex, directory: Path) -> Path:
    index.save(directory)
    return directory


def test_tampered_or_damaged_index_files_are_named(index, tmp_path, capsys):
    from safetensors.torch import load_file, save_file

    from class_hf.cli import main

    folder = _save_copy(index, tmp_path / "index")
    embeddings = folder / "embeddings.safetensors"
    tensors = load_file(str(embeddings))
    tensors["molecules"][[3, 7]] = float("nan")
    save_file(tensors, str(embeddings))
    with pytest.raises(
        ValueError, match=r"embeddings.safetensors: 2 of 300 molecule embeddings are not finite .*row 3"
    ):
        MoleculeIndex.load(folder)
    # `class-hf search` never prints NaN hits: one line naming the file, exit status 2.
    with pytest.raises(
        SystemExit, match="embeddings.safetensors: 2 of 300 molecule embeddings are not finite"
    ) as exit_:
        main(["search", "--index", str(folder), "a molecule"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("class-hf search: error:") and "Traceback" not in err[0]

    embeddings.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not a header}")
    with pytest.raises(ValueError, match=r"embeddings.safetensors cannot be read as safetensors"):
        MoleculeIndex.load(folder)
    (folder / "index.json").write_text('{"format": "class-hf-molecule-index", ')
    with pytest.raises(ValueError, match=r"index.json is not valid JSON"):
        MoleculeIndex.load(folder)
    with pytest.raises(SystemExit, match=r"index.json is not valid JSON") as exit_:
        main(["search", "--index", str(folder), "a molecule"])
    assert exit_.value.code == 2


def test_nan_query_embedding_is_an_error_not_a_nan_hit(index, trained):
    model, tokenizer, _ = trained
    nan_model = _NaNForSomeMolecules(model, poison=-1)
    nan_model.encode_text = lambda *a, **k: torch.full((1, index.embedding_dim), float("nan"))
    broken = MoleculeIndex(
        index.molecule_embeddings, index.rows, info=index.info, model=nan_model, tokenizer=tokenizer
    )
    with pytest.raises(ValueError, match="NaN or infinite embedding for the query"):
        broken.search("The molecule is a carboxylic acid.")


def test_long_query_is_truncated_with_one_notice(index, library, caplog):
    long_query = " ".join([library["description"][2]] * 6)
    with caplog.at_level(logging.WARNING, logger="class_hf.search.index"):
        index.search(long_query, k=1)
        index.search("The molecule is a carboxylic acid.", k=1)  # within the limit: no notice
        index.search([long_query, long_query, "short"], k=1)
    notices = [r.getMessage() for r in caplog.records if "tokens" in r.getMessage()]
    assert len(notices) == 2, notices
    assert notices[0].startswith("The query has ") and "the model reads the first 64" in notices[0]
    assert notices[1].startswith("2 of 3 queries are longer than the 64 tokens")


def test_library_encodings(tmp_path):
    """The library reader is the same as ChEBI-20's: BOM accepted, other non-UTF-8 bytes named by file and line."""
    source = LIBRARY.read_bytes()
    bom = tmp_path / "bom.csv"
    bom.write_bytes(b"\xef\xbb\xbf" + source)
    assert read_molecules(bom) == read_molecules(LIBRARY)
    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes(source.replace(b"is a", b"is \xe0", 1))
    with pytest.raises(ValueError, match=r"latin1.csv, line 2: not UTF-8 text \(byte 0xe0"):
        read_molecules(latin1)


# ------------------------------------------------------------------------------------------------ review fixes
def test_split_selects_the_rows_of_a_file_with_a_split_column(tmp_path, trained):
    """`--split` used to be ignored for files: every row was indexed under the split's name, whatever matched."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from class_hf.cli import main

    model, tokenizer, checkpoint = trained
    rows = [("1", "CCO", "train"), ("2", "CCN", "test"), ("3", "CCC", "train"), ("4", "c1ccccc1", "test")]
    split_csv = tmp_path / "split.csv"
    split_csv.write_text("cid,smiles,Split\n" + "".join(f"{c},{s},{p}\n" for c, s, p in rows))
    test = read_molecules(split_csv, split="test")
    assert test["cid"] == ["2", "4"] and test["split"] == ["test", "test"]
    assert test["row"] == [1, 3] and test["line"] == [3, 5]  # where they are in the file
    assert read_molecules(split_csv)["split"] == ["train", "test", "train", "test"]  # no --split: every row
    with pytest.raises(
        ValueError,
        match=r"split 'valid' \(--split\) matches no row of .*split.csv; its splits are "
        r"'test' \(2 rows\), 'train' \(2 rows\)",
    ):
        read_molecules(split_csv, split="valid")
    pq.write_table(pa.table({"smiles": ["C", "N"], "split": ["a", "b"]}), tmp_path / "split.parquet")
    assert read_molecules(tmp_path / "split.parquet", split="b")["smiles"] == ["N"]
    with pytest.raises(ValueError, match=r"orma_sample.csv has no `split` column, so the split 'test'"):
        read_molecules(LIBRARY, split="test")

    built = MoleculeIndex.build(model, split_csv, tokenizer, split="test", show_progress=False)
    assert built.rows["cid"] == ["2", "4"]
    assert built.info["num_input_rows"] == 2 and built.info["num_outside_split"] == 2 and built.info["split"] == "test"
    out = tmp_path / "index"
    assert main(["index", "--model", str(checkpoint), "--molecules", str(split_csv), "--out", str(out)]) == 0
    with pytest.raises(SystemExit, match="has no `split` column") as exit_:
        main(["index", "--model", str(checkpoint), "--molecules", str(LIBRARY), "--out", str(out), "--split", "test"])
    assert exit_.value.code == 2


def test_an_unclosed_quote_is_an_error_not_swallowed_rows(tmp_path):
    """csv's lenient parsing let an unterminated quote take every following row into one field, silently."""
    header = "cid,smiles,description\n"
    cases = {
        "to_the_end.csv": '1,CCO,"ethanol, a solvent\n2,CCC,propane\n3,CCCC,butane\n',
        "to_a_later_quote.csv": '1,"CCO,ethanol\n2,CCC,x\n3,"C",y\n',
    }
    for name, body in cases.items():
        (tmp_path / name).write_text(header + body)
        with pytest.raises(ValueError, match=rf"{name}, line 2: malformed quoting"):
            read_molecules(tmp_path / name)
    # Well-formed, but a quote joined lines into the SMILES field: a line break in a cid or smiles is never data.
    (tmp_path / "joined.csv").write_text(header + '1,"CCO\n2,CCC",x\n3,CCCC,y\n')
    with pytest.raises(ValueError, match=r"joined.csv, line 3: the 'smiles' field .* holds a line break"):
        read_molecules(tmp_path / "joined.csv")
    # Quoted commas, doubled quotes and line breaks inside a description are fine.
    (tmp_path / "good.csv").write_text(header + '1,CCO,"ethanol, ""a solvent""\nand a drug"\n2,CCC,propane\n')
    good = read_molecules(tmp_path / "good.csv")
    assert good["description"] == ['ethanol, "a solvent"\nand a drug', "propane"] and good["line"] == [3, 4]


def _stub_index(embeddings, cids, *, texts=False) -> MoleculeIndex:
    """An index of the given molecule embeddings whose text query always embeds as ``[1, 0]`` (cosine scores)."""
    molecules = torch.tensor(embeddings, dtype=torch.float32)
    n = len(cids)
    rows = {"row": list(range(n)), "line": [None] * n, "cid": cids, "smiles": ["C"] * n, "name": cids}
    rows["description"] = [f"description {i}" for i in range(n)]
    index = MoleculeIndex(
        molecules,
        rows,
        text_embeddings=molecules if texts else None,
        text_rows=torch.arange(n) if texts else None,
        model=torch.nn.Identity(),  # no `score`: cosine
    )
    index.encode_queries = lambda queries: torch.tensor([[1.0, 0.0]] * len(queries))
    return index


def test_the_marked_truth_is_the_located_row_at_its_tie_counted_rank(caplog):
    """The truth used to be marked by CID: every row sharing it was marked, and a truth tied with another candidate
    was listed above it with rank 1 while its reported rank was 2."""
    # Rows 0 and 1 are the same molecule (a tie); rows 0 and 2 share CID "A".
    index = _stub_index([[1, 0], [1, 0], [0.9, 0.1], [0, 1]], ["A", "B", "A", "C"])
    with caplog.at_level(logging.WARNING, logger="class_hf.search.index"):
        results, truth = index.search_with_truth("query", k=3, truth_cid="A")
    assert (truth.row, truth.rank) == (0, 2)  # the first row with the CID; the tie counts against it
    assert [(r.rank, r.row, r.is_truth) for r in results] == [(1, 1, False), (2, 0, True), (3, 2, False)]
    assert "The truth CID A is on 2 indexed molecules" in caplog.text and "The first, row 0" in caplog.text
    table = format_table(results, truth=truth, width=80).splitlines()
    assert table[3].startswith("   2*") and sum("*" in line[:6] for line in table[2:5]) == 1
    assert table[-1].startswith("ground truth CID A: rank 2,") and table[-1].endswith("(marked *)")
    page = parse_html(render_search_html("query", results, truth=truth))
    assert page.classes["card truth"] == 1 and page.tags["h2"] == 0

    # k=1: the tie pushes the truth out of the list; it is reported below it, with the same rank.
    results, truth = index.search_with_truth("query", k=1, truth_cid="A")
    assert [(r.row, r.is_truth) for r in results] == [(1, False)] and truth.rank == 2
    assert format_table(results, truth=truth).splitlines()[-1].endswith("rank 2, score 1.0000 (not in the table)")
    page = render_search_html("query", results, truth=truth)
    assert parse_html(page).classes["card truth"] == 1 and "Ground truth: rank 2" in page
    # Without ties the truth keeps its place; k beyond the library size still lists every candidate once.
    results, truth = index.search_with_truth("query", k=10, truth_cid="C")
    assert sorted(r.row for r in results[:2]) == [0, 1] and [r.row for r in results[2:]] == [2, 3]  # 0, 1 tie
    assert [r.is_truth for r in results] == [False] * 3 + [True]
    assert truth.rank == 4 and results[3].rank == 4


def test_a_model_of_another_size_or_type_is_named(index, trained, tmp_path, capsys, caplog, monkeypatch):
    """Searching with `--model` of another embedding size used to end in a shape-mismatch traceback."""
    from class_hf.cli import main
    from class_hf.models.modeling_dual_encoder import DualEncoderConfig, DualEncoderModel

    monkeypatch.delenv("CLASS_HF_DEBUG", raising=False)
    model, tokenizer, _ = trained
    folder = _save_copy(index, tmp_path / "index")
    other = tmp_path / "other-model"
    config = DualEncoderConfig(
        text_config=make_tiny_bert_config(len(tokenizer)).to_dict(), gnn_hidden_size=16, projection_dim=16
    )
    DualEncoderModel(config).save_pretrained(other)
    tokenizer.save_pretrained(other)
    capsys.readouterr()
    expected = r"The model embeds queries in 16 dimensions but the index holds 32-dimensional embeddings"
    for query in (["a molecule"], ["--smiles", "CCO"]):
        with pytest.raises(SystemExit, match=expected) as exit_:
            main(["search", "--index", str(folder), *query, "--model", str(other)])
        assert exit_.value.code == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err and len([line for line in err.splitlines() if "error:" in line]) == 1
        assert "class-hf search: error: The model embeds queries in 16 dimensions" in err

    # The same size but another model type: it runs, with a warning naming both types.
    info = json.loads((folder / "index.json").read_text())
    info["model"]["model_type"] = "orma"
    (folder / "index.json").write_text(json.dumps(info))
    with caplog.at_level(logging.WARNING, logger="class_hf.search.index"):
        reopened = MoleculeIndex.load(folder, model=model, tokenizer=tokenizer)
    assert "was built with a 'orma' model" in caplog.text
    assert "searched with a 'class_dual_encoder' model" in caplog.text
    assert len(reopened.search("a molecule", k=2)) == 2
