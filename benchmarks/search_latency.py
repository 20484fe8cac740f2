"""Benchmark: building a molecule index of all 33,010 ChEBI-20 molecules and answering queries on CPU.

A randomly initialised DualEncoderModel (built from its config: no download) encodes the molecule pool of
``derived/cid_split_smiles.tsv`` with ``MoleculeIndex.build``; the index is saved and loaded back, then real ChEBI-20
test descriptions are searched one at a time (``index.search(query, k=10)``: tokenize, encode, score all 33,010
molecules, top-k). Timings do not depend on the weights, so random ones measure the cost faithfully.

Model sizes (``--size``): ``minilm`` (default) is a BERT of all-MiniLM-L6-v2's shape (hidden 384, 6 layers, 12 heads,
intermediate 1536) with the default GINE molecule tower (hidden 300, 3 layers) and a 256-d space; ``tiny`` is the
test model (hidden 32). The tokenizer is a WordLevel vocabulary of the ChEBI-20 validation+test descriptions, so token
counts are those of real queries.

With ``--texts`` the molecule -> text direction is measured too: an index of the 6,601 validation+test pairs with
their descriptions, queried with SMILES.

The machine is shared: the 1-minute load average is recorded before and after each phase, with the torch threads.

    .venv/bin/python benchmarks/search_latency.py                      # minilm, 100 queries
    .venv/bin/python benchmarks/search_latency.py --size tiny --queries 20 --texts

Writes ``benchmarks/results/search_latency.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import tempfile
import time
from pathlib import Path

import psutil
import torch
from retrieval_eval import _kernel_peak_bytes, _reset_peak  # the sibling benchmark's peak-RSS reader

from class_hf.data.chebi20 import bundled_chebi20_dir
from class_hf.evaluation.retrieval import top_k
from class_hf.search.index import MoleculeIndex

RESULTS = Path(__file__).parent / "results" / "search_latency.json"


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def _descriptions(split: str) -> list[dict[str, str]]:
    """The bundled ChEBI-20 pairs of ``split`` (``cid``, ``smiles``, ``description``)."""
    from class_hf.data import load_chebi20

    return load_chebi20("bundled")[split].to_list()


def _tokenizer(texts: list[str]):
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    words = sorted({w for text in texts for w in re.findall(r"\w+|[^\w\s]", text.lower())})
    vocab = {tok: i for i, tok in enumerate(specials + words)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]",
        mask_token="[MASK]", model_max_length=256,
    )  # fmt: skip


def _model(size: str, vocab_size: int):
    from transformers import BertConfig

    from class_hf.models.modeling_dual_encoder import DualEncoderConfig, DualEncoderModel

    if size == "minilm":
        text = BertConfig(
            vocab_size=vocab_size, hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
            intermediate_size=1536, max_position_embeddings=512,
        )  # fmt: skip
        config = DualEncoderConfig(text_config=text.to_dict())
    else:
        text = BertConfig(
            vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37,
            max_position_embeddings=512,
        )  # fmt: skip
        config = DualEncoderConfig(text_config=text.to_dict(), gnn_hidden_size=32, gnn_num_layers=2, projection_dim=32)
    torch.manual_seed(0)
    return DualEncoderModel(config).eval()


def _stats(seconds: list[float]) -> dict[str, float]:
    ordered = sorted(seconds)
    return {
        "n": len(seconds),
        "median_ms": round(1000 * statistics.median(ordered), 2),
        "mean_ms": round(1000 * statistics.fmean(ordered), 2),
        "p90_ms": round(1000 * ordered[int(0.9 * (len(ordered) - 1))], 2),
        "max_ms": round(1000 * ordered[-1], 2),
    }


def _timed_queries(run, queries: list) -> list[float]:
    run(queries[0])  # warm-up (first call allocates)
    times = []
    for query in queries:
        start = time.perf_counter()
        run(query)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=("minilm", "tiny"), default="minilm")
    parser.add_argument("--queries", type=int, default=100, help="Test descriptions searched one at a time.")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's).")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--chunk-size", type=int, default=4096)
    parser.add_argument("--limit", type=int, default=None, help="Index only the first N molecules (smoke test).")
    parser.add_argument("--texts", action="store_true", help="Also measure molecule -> text on val+test pairs.")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    validation, test = _descriptions("validation"), _descriptions("test")
    tokenizer = _tokenizer([row["description"] for row in validation + test])
    model = _model(args.size, len(tokenizer))
    parameters = sum(p.numel() for p in model.parameters())
    pool = bundled_chebi20_dir() / "cid_split_smiles.tsv"
    molecules = pool
    if args.limit:
        from datasets import Dataset

        from class_hf.search.library import read_molecules

        table = read_molecules(pool)
        molecules = Dataset.from_dict({k: table[k][: args.limit] for k in ("cid", "smiles", "split")})
    result: dict = {
        "benchmark": "search_latency",
        "command": "python benchmarks/search_latency.py " + " ".join(os.sys.argv[1:]),
        "machine": {
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "platform": platform.platform(),
            "torch": torch.__version__,
            "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        },
        "model": {"size": args.size, "parameters": parameters, "tokenizer_vocab": len(tokenizer)},
        "note": "shared 2-core machine: compare timings only with the load averages recorded beside them",
    }

    # ---------------------------------------------------------------------------------------------- build
    load_before = _load()
    peak_reset = _reset_peak()
    rss_before = psutil.Process().memory_info().rss / 2**20
    start = time.perf_counter()
    index = MoleculeIndex.build(
        model, molecules, tokenizer, batch_size=args.batch_size, chunk_size=args.chunk_size, show_progress=True
    )
    build_seconds = time.perf_counter() - start
    result["build"] = {
        "molecules": index.num_molecules,
        "skipped": index.info["num_skipped"],
        "seconds": round(build_seconds, 1),
        "molecules_per_second": round(index.num_molecules / build_seconds, 1),
        "peak_rss_mib": round(_kernel_peak_bytes() / 2**20, 1) if peak_reset else None,
        "rss_before_mib": round(rss_before, 1),
        "embeddings_mib": round(index.molecule_embeddings.numel() * 4 / 2**20, 1),
        "chunk_size": args.chunk_size,
        "batch_size": args.batch_size,
        "load_average_before": load_before,
        "load_average_after": _load(),
    }
    print(json.dumps(result["build"], indent=2))

    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        index.save(folder)
        save_seconds = time.perf_counter() - start
        size_mib = sum(p.stat().st_size for p in Path(folder).iterdir()) / 2**20
        start = time.perf_counter()
        loaded = MoleculeIndex.load(folder, model=model, tokenizer=tokenizer)
        load_seconds = time.perf_counter() - start
    result["storage"] = {
        "save_seconds": round(save_seconds, 3),
        "load_seconds": round(load_seconds, 3),
        "size_mib": round(size_mib, 1),
    }

    # ---------------------------------------------------------------------------------------------- queries
    queries = [row["description"] for row in test[: args.queries]]
    load_before = _load()
    end_to_end = _timed_queries(lambda q: loaded.search(q, k=10), queries)
    embeds = loaded.encode_queries(queries)
    scoring = _timed_queries(
        lambda e: top_k(e[None], loaded.molecule_embeddings, 10, scorer=model.score), list(embeds)
    )
    start = time.perf_counter()
    loaded.search(queries, k=10)
    batch_seconds = time.perf_counter() - start
    tokens = [len(tokenizer(q)["input_ids"]) for q in queries]
    result["text_to_molecule"] = {
        "candidates": loaded.num_molecules,
        "k": 10,
        "query_tokens_median": statistics.median(tokens),
        "end_to_end": _stats(end_to_end),
        "scoring_only": _stats(scoring),
        "batch_of_queries": {"queries": len(queries), "seconds": round(batch_seconds, 3)},
        "load_average_before": load_before,
        "load_average_after": _load(),
    }
    print(json.dumps(result["text_to_molecule"], indent=2))

    # ---------------------------------------------------------------------------------------------- m2t
    if args.texts:
        from datasets import Dataset

        pairs = validation + test
        library = Dataset.from_dict(
            {
                "cid": [row["cid"] for row in pairs],
                "smiles": [row["smiles"] for row in pairs],
                "description": [row["description"] for row in pairs],
            }
        )
        load_before = _load()
        start = time.perf_counter()
        text_index = MoleculeIndex.build(model, library, tokenizer, texts=True, batch_size=args.batch_size)
        text_build = time.perf_counter() - start
        smiles = [row["smiles"] for row in test[: args.queries]]
        m2t = _timed_queries(lambda s: text_index.search(smiles=s, k=10), smiles)
        result["molecule_to_text"] = {
            "pairs": text_index.num_texts,
            "build_seconds_molecules_and_texts": round(text_build, 1),
            "end_to_end": _stats(m2t),
            "load_average_before": load_before,
            "load_average_after": _load(),
        }
        print(json.dumps(result["molecule_to_text"], indent=2))

    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
