"""Benchmark: CPU time of one training step (forward + backward, batch 32) of each backbone, at several sizes.

For the dual encoder, ORMA and AMAN at the sizes below, times ``loss = model(**batch).loss; loss.backward()`` on real
ChEBI-20 pairs (ORMA's validation CSV, original descriptions) in train mode, after ``--warmup`` untimed steps; the
optimizer step is not included. Models have random weights (no download): the step time depends only on the shapes.

Sizes (text encoder: a BERT of that shape; molecule side as given):

- ``tiny``: the recipes' ``*_tiny.yaml`` models (BERT hidden 32, 2 layers; graph width 32, 2 layers), 64 tokens max;
- ``mid``: a MiniLM-L6-H384-sized BERT (6 layers, hidden 384, 12 heads) with each backbone's default molecule side
  (dual encoder: GINE 300 x 3; ORMA: GCN 300 x 3, IPOT 50 steps; AMAN: graph transformer 300 x 3), 256 tokens max;
  the dual encoder also with the text encoder frozen;
- ``scibert``: a SciBERT-sized BERT (12 layers, hidden 768, vocabulary 31,090) with the default molecule side.

Texts are tokenized with a WordPiece vocabulary trained here on the descriptions (SciBERT's own vocabulary is not
available offline; lengths are reported), padded to the longest text of the batch. The machine is shared: the
1-minute load average before and after every configuration and the process CPU seconds per step (which other
processes' load inflates much less than wall time) are recorded with the wall-clock seconds.

    .venv/bin/python benchmarks/backbone_step_time.py                      # tiny and mid, about 10 min on 2 cores
    .venv/bin/python benchmarks/backbone_step_time.py --sizes scibert --steps 2 --warmup 1

Writes ``benchmarks/results/backbone_step_time.json`` (merging with the sizes already there) and prints a table.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import transformers
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
from transformers import BertConfig, PreTrainedTokenizerFast

from class_hf.data.collator import MoleculeTextCollator
from class_hf.data.graphs import smiles_to_graph
from class_hf.models import AmanConfig, AmanModel, DualEncoderConfig, DualEncoderModel, OrmaConfig, OrmaModel

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # the sibling class_vs_baseline.py: how result files leave out machine paths
    sys.path.insert(0, str(HERE))
from class_vs_baseline import portable  # noqa: E402

RESULTS = HERE / "results" / "backbone_step_time.json"
DEFAULT_DATA = HERE.parent / "class_hf" / "data" / "bundled" / "chebi20" / "validation.csv"
FIXTURE_DATA = HERE.parent / "tests" / "fixtures" / "chebi20" / "orma_sample.csv"

TEXT_SIZES = {
    "tiny": {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 37},
    "mid": {"hidden_size": 384, "num_hidden_layers": 6, "num_attention_heads": 12, "intermediate_size": 1536},
    "scibert": {
        "hidden_size": 768,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "intermediate_size": 3072,
        "vocab_size": 31090,
    },
}
MAX_LENGTH = {"tiny": 64, "mid": 256, "scibert": 256}
# Molecule side of the tiny models: recipes/configs/*_tiny.yaml. Larger sizes use each config's defaults.
TINY_MODEL = {
    "dual_encoder": {"gnn_hidden_size": 32, "gnn_num_layers": 2, "projection_dim": 32},
    "orma": {"emb_dim": 32, "num_gnn_layers": 2, "ot_iterations": 10, "max_atoms": 64, "max_motifs": 16},
    "aman": {
        "graph_hidden_size": 32,
        "graph_num_layers": 2,
        "graph_num_heads": 2,
        "graph_ffn_size": 64,
        "projection_dim": 32,
        "discriminator_hidden_sizes": [32],
    },
}
BUILDERS = {
    "dual_encoder": (DualEncoderConfig, DualEncoderModel),
    "orma": (OrmaConfig, OrmaModel),
    "aman": (AmanConfig, AmanModel),
}
# Measured by the backbones' authors under heavy machine load (wall seconds per step, batch 32), for comparison.
EARLIER = {
    "dual_encoder/tiny/full fine-tune": "0.256",
    "dual_encoder/mid/full fine-tune": "10.7",
    "dual_encoder/mid/frozen text encoder": "8.0",
    "orma/tiny/full fine-tune": "5.1 (median)",
    "orma/scibert/full fine-tune": "159-187",
    "aman/tiny/full fine-tune": "0.385 (median)",
    "aman/scibert/full fine-tune": "124-127",
}
TEXT_FIELDS = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size")


def read_pairs(path: Path) -> list[tuple[str, str]]:
    """(SMILES, description) of an ORMA-layout CSV (``CanonicalSMILES``, ``Description``)."""
    with open(path, newline="") as f:
        return [(row["CanonicalSMILES"], row["Description"]) for row in csv.DictReader(f)]


def train_tokenizer(texts: list[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """A BERT-style uncased WordPiece tokenizer trained on ``texts`` ([CLS] text [SEP])."""
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokenizer.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=specials))
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]"
    )


def build_model(backbone: str, size: str, vocab_size: int, frozen_text: bool) -> torch.nn.Module:
    text = {"vocab_size": max(vocab_size, 30522), "max_position_embeddings": 512, **TEXT_SIZES[size]}
    if size == "tiny":
        text.update(vocab_size=vocab_size, max_position_embeddings=128)
    config_cls, model_cls = BUILDERS[backbone]
    kwargs = dict(TINY_MODEL[backbone]) if size == "tiny" else {}
    if frozen_text:
        kwargs["freeze_text_encoder"] = True
    config = config_cls(text_config=BertConfig(**text), text_encoder_name_or_path=None, **kwargs)
    torch.manual_seed(0)
    return model_cls(config)


def time_steps(model: torch.nn.Module, batches: list[dict], warmup: int) -> tuple[list[float], list[float]]:
    """Wall and process-CPU seconds of forward + backward for every batch after the first ``warmup``."""
    model.train()
    wall, cpu = [], []
    for i, batch in enumerate(batches):
        model.zero_grad(set_to_none=True)
        start_wall, start_cpu = time.perf_counter(), time.process_time()
        model(**batch).loss.backward()
        if i >= warmup:
            wall.append(time.perf_counter() - start_wall)
            cpu.append(time.process_time() - start_cpu)
    return wall, cpu


def measure(backbone, size, frozen_text, tokenizer, pairs, args) -> dict:
    rows = [{"description": text, **smiles_to_graph(smiles)} for smiles, text in pairs]
    collator = MoleculeTextCollator(tokenizer, max_length=MAX_LENGTH[size])
    n = args.batch_size
    batches = [collator(rows[i * n : (i + 1) * n]) for i in range(args.warmup + args.steps)]
    model = build_model(backbone, size, len(tokenizer), frozen_text)
    load_before = os.getloadavg()[0]
    wall, cpu = time_steps(model, batches, args.warmup)
    load_after = os.getloadavg()[0]
    timed = batches[args.warmup :]
    return {
        "backbone": backbone,
        "size": size,
        "variant": "frozen text encoder" if frozen_text else "full fine-tune",
        "batch_size": n,
        "max_length": MAX_LENGTH[size],
        "text_config": {k: getattr(model.config.text_config, k) for k in TEXT_FIELDS},
        "model_config": TINY_MODEL[backbone] if size == "tiny" else "defaults",
        "parameters": sum(p.numel() for p in model.parameters()),
        "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "step_seconds": [round(t, 4) for t in wall],
        "median_seconds": round(statistics.median(wall), 4),
        "min_seconds": round(min(wall), 4),
        "max_seconds": round(max(wall), 4),
        "median_cpu_seconds": round(statistics.median(cpu), 4),
        "tokens_per_text_mean": round(sum(float(b["attention_mask"].sum()) for b in timed) / (len(timed) * n), 1),
        "padded_length_mean": round(statistics.mean(b["input_ids"].shape[1] for b in timed), 1),
        "atoms_per_molecule_mean": round(sum(int(b["graph"].num_nodes) for b in timed) / (len(timed) * n), 1),
        "loadavg_1min_before": round(load_before, 2),
        "loadavg_1min_after": round(load_after, 2),
        "measured_at": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def table(results: list[dict]) -> str:
    header = "| backbone | size | variant | parameters | median s/step | min-max s | CPU s/step | load avg | earlier |"
    lines = [header, "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        earlier = EARLIER.get(f"{r['backbone']}/{r['size']}/{r['variant']}", "")
        lines.append(
            f"| {r['backbone']} | {r['size']} | {r['variant']} | {r['parameters'] / 1e6:.2f} M | "
            f"{r['median_seconds']:.3f} | {r['min_seconds']:.3f}-{r['max_seconds']:.3f} | "
            f"{r['median_cpu_seconds']:.3f} | {r['loadavg_1min_before']:.1f}/{r['loadavg_1min_after']:.1f} | "
            f"{earlier} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA if DEFAULT_DATA.exists() else FIXTURE_DATA)
    parser.add_argument("--sizes", nargs="+", default=["tiny", "mid"], choices=list(TEXT_SIZES))
    parser.add_argument("--backbones", nargs="+", default=list(BUILDERS), choices=list(BUILDERS))
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per configuration")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps before them")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    pairs = read_pairs(args.data)
    needed = args.batch_size * (args.warmup + args.steps)
    if len(pairs) < needed:
        raise SystemExit(f"{args.data} has {len(pairs)} pairs; --steps and --warmup need {needed}.")
    order = torch.randperm(len(pairs), generator=torch.Generator().manual_seed(args.seed))[:needed].tolist()
    chosen = [pairs[i] for i in order]
    tokenizer = train_tokenizer([text for _, text in pairs], vocab_size=30000)

    results = []
    for size in args.sizes:
        for backbone in args.backbones:
            variants = [False, True] if backbone == "dual_encoder" and size != "tiny" else [False]
            for frozen in variants:
                result = measure(backbone, size, frozen, tokenizer, chosen, args)
                results.append(result)
                print(
                    f"{backbone:>12} {size:>7} {result['variant']:>20}: median {result['median_seconds']:.3f} s "
                    f"(load {result['loadavg_1min_before']:.1f})",
                    flush=True,
                )

    previous = json.loads(args.output.read_text()) if args.output.exists() else {}
    measured = {(r["backbone"], r["size"], r["variant"]): r for r in previous.get("results", [])}
    measured.update({(r["backbone"], r["size"], r["variant"]): r for r in results})
    report = {
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
        "data": str(args.data),
        "tokenizer": f"WordPiece trained on the {len(pairs)} descriptions ({len(tokenizer)} tokens)",
        "machine": {
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
        },
        "earlier_measurements_by_the_authors": EARLIER,
        "results": list(measured.values()),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(portable(report), indent=2) + "\n")  # no machine paths in the result
    print(table(report["results"]))
    return report


if __name__ == "__main__":
    main()
