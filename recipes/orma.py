"""CLASS on ORMA: curriculum training of the optimal-transport multi-grained text-molecule retriever on ChEBI-20.

ORMA (Min, Liu et al., BIBM 2024) aligns tokens with atoms, multi-token spans with motifs and sentences with
molecules; CLASS (Wu et al., arXiv:2502.11633) scores every training pair's difficulty, trains easy pairs first and
raises the training intensity stage by stage. The defaults below are ORMA's published settings; everything else is
shared with the other recipes (the ``class_hf.recipe`` package).

Launch (run from the repository root; see docs/training/recipes.md for CPU, 1 GPU, N GPUs, multi-node and bf16)::

    accelerate launch recipes/orma.py --config recipes/configs/orma.yaml
    python recipes/orma.py --config recipes/configs/orma_tiny.yaml          # CPU smoke run
    accelerate launch --multi_gpu --num_processes 2 --num_machines 1 --mixed_precision no --dynamo_backend no \\
        recipes/orma.py --config recipes/configs/orma_tiny.yaml --use_cpu   # two CPU processes

Any option overrides the config, e.g. ``--num_train_epochs 10 --curriculum none`` (the ORMA-alone baseline also needs
``--intensity_beta 0 --intensity_target none``); ``--model_name_or_path org/name`` continues from a CLASS checkpoint.

Expected: ``orma_tiny.yaml`` takes about a minute on two CPU cores (its MRR is that of a 32-wide model trained for
4 epochs on 232 pairs: a smoke test, not a result). The full run's time and metrics on ChEBI-20 are not measured here
(the local copy lacks the train split); ORMA reports text->molecule Hits@1 66.5 and molecule->text 61.6 (pool
``split``). Outputs in ``output_dir``: checkpoint, ``metrics.json``, ``scored_dataset/``, ``README.md`` (model card),
``sample_ratio.png``, ``loss.png``, ``validation_mrr.png``.
"""

from __future__ import annotations

from class_hf.recipe import run_recipe

# ORMA's training settings (DeepLearnXMU/Orma train.sh / main.py): 60 epochs, batch 32, Adam lr 1e-4 with 3e-5 for
# the text encoder, weight decay 1e-4, 1000 linear warm-up steps, seed 0.
DEFAULTS = {
    "num_train_epochs": 60,
    "per_device_train_batch_size": 32,
    "learning_rate": 1e-4,
    "text_encoder_learning_rate": 3e-5,
    "weight_decay": 1e-4,
    "warmup_steps": 1000,
    "seed": 0,
}


def main(argv: list[str] | None = None) -> dict | None:
    return run_recipe("orma", DEFAULTS, argv, report=print)  # prints the test metrics on the main process


if __name__ == "__main__":
    main()
