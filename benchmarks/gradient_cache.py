"""Memory and time of one training step with a fine-tuned text encoder, whole batch against ``text_chunk_size``.

Gradient caching (``CurriculumTrainingArguments(text_chunk_size=k)``) keeps the text encoder's activations for ``k``
texts at a time instead of the whole batch, for one more forward pass of the encoder. This measures both sides of
that trade on one training step (forward and backward) of the dual encoder: a MiniLM-L6-sized BERT (6 layers,
hidden 384, random weights built from its config) and the benchmark's GINE molecule tower, on real ChEBI-20
molecules with random token ids of the full ``--max_length`` (the worst case for memory).

Each setting runs in a fresh process. On a GPU the peak is ``torch.cuda.max_memory_allocated``; on a CPU it is the
process's peak resident memory during the step above its resident memory before it (``ru_maxrss``), which includes
allocator slack and is noisier.

    python benchmarks/gradient_cache.py                         # batch 128, chunks: whole batch, 32, 16
    python benchmarks/gradient_cache.py --batch_size 256 --chunk_sizes 0 64 32
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "gradient_cache.json"


def one_step(batch_size: int, max_length: int, chunk: int, device: str) -> dict:
    """Builds the model and a batch, then measures one forward + backward (and times a second one)."""
    import psutil
    import torch
    from transformers import BertConfig

    from class_hf.data import featurize_molecules, load_chebi20
    from class_hf.data.graphs import rows_to_batch
    from class_hf.models import DualEncoderConfig, DualEncoderModel

    torch.manual_seed(0)
    text_config = BertConfig(
        vocab_size=30522, hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536
    )
    config = DualEncoderConfig(
        text_config=text_config, gnn_type="gine", gnn_hidden_size=128, gnn_num_layers=3, use_fingerprint=True,
        fingerprint_fusion="output", projection_dim=256,
    )  # fmt: skip
    model = DualEncoderModel(config).to(device).train()
    model.enable_gradient_cache(chunk or None)
    pairs = load_chebi20("bundled", splits="validation")["validation"].select(range(batch_size))
    pairs = featurize_molecules(pairs, fingerprints=True, desc=None)
    graph = rows_to_batch(list(pairs)).to(device)
    input_ids = torch.randint(1000, 30000, (batch_size, max_length), device=device)
    attention_mask = torch.ones_like(input_ids)
    inputs = {"input_ids": input_ids, "attention_mask": attention_mask, "graph": graph}

    def step() -> float:
        model.zero_grad(set_to_none=True)
        out = model(**inputs)
        out.loss.backward()
        return float(out.loss)

    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        loss = step()
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - before
    else:
        before = psutil.Process().memory_info().rss
        loss = step()
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    cpu0, wall0 = time.process_time(), time.perf_counter()
    step()
    if device == "cuda":
        torch.cuda.synchronize()
    return {
        "chunk": chunk or None,
        "peak_step_memory_mib": peak / 2**20,
        "step_seconds": time.perf_counter() - wall0,
        "step_cpu_seconds": time.process_time() - cpu0,
        "loss": loss,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--max_length", type=int, default=128)
    parser.add_argument("--chunk_sizes", type=int, nargs="+", default=[0, 32, 16], help="0: the whole batch")
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads on a CPU")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--_child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()

    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args._child is not None:
        torch.set_num_threads(args.threads)
        print(json.dumps(one_step(args.batch_size, args.max_length, args._child, device)))
        return

    rows, load = [], [os.getloadavg()[0]]
    for chunk in args.chunk_sizes:
        command = [sys.executable, __file__, "--_child", str(chunk), "--batch_size", str(args.batch_size)]
        command += ["--max_length", str(args.max_length), "--device", device, "--threads", str(args.threads)]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SystemExit(f"chunk {chunk}: the measuring process failed:\n{done.stderr[-3000:]}")
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(f"chunk {chunk or 'whole batch'}: {rows[-1]['peak_step_memory_mib']:.0f} MiB", file=sys.stderr)
    load.append(os.getloadavg()[0])
    whole = rows[0]
    device_name = torch.cuda.get_device_name() if device == "cuda" else platform.processor() or platform.machine()
    print(
        f"\nOne training step, dual encoder with a MiniLM-sized text encoder, batch {args.batch_size} x "
        f"{args.max_length} tokens, on {device_name} (load average {load[0]:.1f} -> {load[1]:.1f})\n"
    )
    print("| text_chunk_size | peak step memory (MiB) | vs whole batch | step CPU s | vs whole batch |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['chunk'] or 'none (whole batch)'} | {row['peak_step_memory_mib']:.0f} | "
              f"{row['peak_step_memory_mib'] / whole['peak_step_memory_mib']:.2f}x | {row['step_cpu_seconds']:.2f} | "
              f"{row['step_cpu_seconds'] / whole['step_cpu_seconds']:.2f}x |")  # fmt: skip
    args.output.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "settings": {k: v for k, v in vars(args).items() if not k.startswith("_") and k != "output"},
        "device": device_name,
        "torch": torch.__version__,
        "load_average": load,
        "results": rows,
    }
    args.output.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
