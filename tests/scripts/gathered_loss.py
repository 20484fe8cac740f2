"""Contrastive negatives gathered across ranks: each rank's loss on half the batch vs one process on the whole batch.

Launched by ``tests/test_recipes.py``::

    torchrun --nproc_per_node 2 tests/scripts/gathered_loss.py OUTPUT_DIR

For each backbone (dual encoder, ORMA, AMAN; tiny configs, identical weights on both ranks, eval mode so that no
dropout differs) every rank computes:

- the reference: the model without gathering on the *global* batch of 8 pairs (what one process would compute);
- the gathered run: ``config.gather_across_ranks = True`` on its own 4 pairs (rank ``r`` holds pairs ``4r..4r+3``),
  its gradients then averaged over the ranks as DDP does;
- the local run without gathering (fewer negatives, so a different loss: the check that gathering matters);
- the gathered run with gradient caching of the text encoder (``enable_gradient_cache(3)``: chunks of 3 and 1 texts;
  only the model's own ``training`` flag is set, which turns chunking on, so its layers still run without dropout).

It writes ``OUTPUT_DIR/rank<r>.json`` with both losses, both sets of per-sample losses and the largest gradient
difference, per backbone.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist

ROOT = Path(__file__).resolve().parents[2]
TEXT_CONFIG = {
    "model_type": "bert",
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 37,
    "max_position_embeddings": 128,
}
BACKBONES = {
    "dual_encoder": ("DualEncoderConfig", "DualEncoderModel", {"gnn_hidden_size": 32, "projection_dim": 32}),
    "orma": ("OrmaConfig", "OrmaModel", {"emb_dim": 32, "num_gnn_layers": 2, "ot_iterations": 5, "pooling": "mean"}),
    "aman": (
        "AmanConfig",
        "AmanModel",
        {"graph_hidden_size": 32, "graph_num_heads": 2, "graph_ffn_size": 64, "projection_dim": 32},
    ),
}
GLOBAL_BATCH = 8


def _grads(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def main(output_dir: str) -> None:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.set_num_threads(1)
    from class_hf import models
    from class_hf.data.chebi20 import load_chebi20
    from class_hf.data.collator import MoleculeTextCollator
    from class_hf.data.graphs import featurize_molecules
    from class_hf.recipe import word_level_tokenizer

    sample = ROOT / "tests" / "fixtures" / "chebi20" / "orma_sample.csv"
    pairs = load_chebi20(sample)["train"].select(range(GLOBAL_BATCH))
    rows = list(featurize_molecules(pairs, desc=None))
    tokenizer = word_level_tokenizer(pairs["description"], model_max_length=64)
    collator = MoleculeTextCollator(tokenizer, max_length=64)
    local = GLOBAL_BATCH // world
    global_batch, local_batch = collator(rows), collator(rows[rank * local : (rank + 1) * local])
    results = {"rank": rank, "world_size": world}
    for name, (config_name, model_name, overrides) in BACKBONES.items():
        torch.manual_seed(0)  # the same weights on every rank
        config = getattr(models, config_name)(
            text_config={**TEXT_CONFIG, "vocab_size": len(tokenizer)}, text_encoder_name_or_path=None, **overrides
        )
        model = getattr(models, model_name)(config).eval()  # eval: no dropout, so both computations see one model

        model.config.gather_across_ranks = False
        reference = model(**global_batch)
        reference.loss.backward()
        reference_grads = _grads(model)
        model.zero_grad(set_to_none=True)

        with torch.no_grad():  # without gathering, the local batch has fewer negatives: a different loss
            local_only = model(**local_batch).loss.clone()
        dist.all_reduce(local_only)

        model.config.gather_across_ranks = True
        gathered = model(**local_batch)
        gathered.loss.backward()
        grads = _grads(model)
        for grad in grads.values():  # what DDP does: average the gradients of the ranks
            dist.all_reduce(grad)
            grad /= world
        loss = gathered.loss.detach().clone()
        dist.all_reduce(loss)
        model.zero_grad(set_to_none=True)

        model.enable_gradient_cache(3)
        model.training = True  # the flag that turns chunking on; the layers stay in eval mode
        chunked = model._caches_gradients(local_batch["input_ids"])
        cached = model(**local_batch)
        cached.loss.backward()
        cached_grads = _grads(model)
        for grad in cached_grads.values():
            dist.all_reduce(grad)
            grad /= world
        cached_loss = cached.loss.detach().clone()
        dist.all_reduce(cached_loss)
        model.training = False
        model.enable_gradient_cache(None)
        results[name] = {
            "reference_loss": float(reference.loss.detach()),
            "local_only_loss_mean_over_ranks": float(local_only / world),
            "gathered_loss_mean_over_ranks": float(loss / world),
            "reference_per_sample": reference.per_sample_loss.detach().tolist(),
            "gathered_per_sample": gathered.per_sample_loss.detach().tolist(),
            "num_grads": len(grads),
            "missing_grads": sorted(set(reference_grads) ^ set(grads)),
            "max_grad_diff": max(float((grads[n] - g).abs().max()) for n, g in reference_grads.items() if n in grads),
            "max_grad": max(float(g.abs().max()) for g in reference_grads.values()),
            "cached_chunked": chunked,
            "cached_loss_mean_over_ranks": float(cached_loss / world),
            "cached_per_sample": cached.per_sample_loss.detach().tolist(),
            "cached_missing_grads": sorted(set(reference_grads) ^ set(cached_grads)),
            "cached_max_grad_diff": max(
                float((cached_grads[n] - g).abs().max()) for n, g in reference_grads.items() if n in cached_grads
            ),
        }
    with open(Path(output_dir) / f"rank{rank}.json", "w") as f:
        json.dump(results, f)
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
