"""Two-process CPU training with the curriculum, launched by ``tests/test_distributed.py``.

Usage::

    torchrun --nproc_per_node 2 tests/scripts/ddp_train.py OUTPUT_DIR

Each rank trains the tiny backbone of ``tests/test_trainer.py`` three times (``even``: every pool divides into global
batches; ``uneven``: it does not; ``uneven_eval``: it does not, with accelerate's ``even_batches=False`` and an
evaluation at the end of every curriculum epoch; ``pruned``: no curriculum, learned pairs pruned in epoch 2 from the
losses both ranks recorded) and writes ``OUTPUT_DIR/<config>-rank<r>.json`` with the sample
indices it trained on per epoch, its optimizer steps, its evaluations and a checksum of its parameters.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import sys
from pathlib import Path

import torch

TESTS = Path(__file__).resolve().parents[1]


def _load_test_helpers():
    spec = importlib.util.spec_from_file_location("class_hf_test_trainer", TESTS / "test_trainer.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look the module up while the class is created
    spec.loader.exec_module(module)
    return module


def _checksum(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def main(output_dir: str) -> None:
    torch.set_num_threads(1)
    helpers = _load_test_helpers()
    rank = int(os.environ.get("RANK", "0"))
    configs = {
        "even": {"n": 48, "order": "easy_first"},
        "uneven": {"n": 42, "order": "hard_first"},
        "uneven_eval": {
            "n": 42,
            "order": "easy_first",
            "accelerator_config": {"even_batches": False},
            "eval_strategy": "epoch",
        },
        "pruned": {"n": 42, "order": "none", "intensity_beta": 0.0, "intensity_target": "none", "prune_fraction": 0.5},
    }
    for name, config in configs.items():
        overrides = {k: v for k, v in config.items() if k not in ("n", "order")}
        args = helpers.make_args(
            Path(output_dir) / name,
            per_device_train_batch_size=3,
            curriculum=config["order"],
            gather_across_ranks=True,
            ddp_find_unused_parameters=False,
            logging_steps=5,
            **{"intensity_beta": 1.0, **overrides},
        )
        trainer = helpers.RecordingTrainer(
            model=helpers.make_model(),
            args=args,
            train_dataset=helpers.make_pairs(config["n"]),
            eval_dataset=helpers.make_pairs(10, seed=1) if "eval_strategy" in config else None,
            data_collator=helpers.TinyCollator(),
        )
        trainer.seen = {}
        trainer.train()
        result = {
            "rank": rank,
            "world_size": trainer.accelerator.num_processes,
            "seen": {str(k): v for k, v in trainer.seen.items()},
            "global_step": trainer.state.global_step,
            "max_steps": trainer.state.max_steps,
            "history": trainer.curriculum_history,
            "checksum": _checksum(trainer.model),
            "difficulty": None if trainer.difficulty is None else [float(x) for x in trainer.difficulty],
            "pool_sizes": trainer.plan.pool_sizes,
            "losses": None if trainer.pruning is None else trainer.pruning.latest_losses(1).tolist(),
            "evaluations": [h for h in trainer.state.log_history if "eval_mrr" in h],
        }
        with open(Path(output_dir) / f"{name}-rank{rank}.json", "w") as f:
            json.dump(result, f)


if __name__ == "__main__":
    main(sys.argv[1])
    # Tear the gloo group down before the interpreter exits: leaving it to process exit intermittently aborted
    # one rank ("terminate called without an active exception", exit -6) after training had finished.
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
