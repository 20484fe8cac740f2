"""CLASS on AMAN: curriculum training of the adversarial graph-transformer text-molecule retriever on ChEBI-20.

AMAN (Zhao et al., IEEE TAI 2023) has no public code; class-hf's ``AmanModel`` follows its abstract (SciBERT, a graph
transformer with edge features, a modality discriminator, a triplet loss) and CMTMR's open code where the abstract is
silent. CLASS (Wu et al., arXiv:2502.11633) adds the easy-to-hard sample scheduler and adaptive intensity. Differs from
``recipes/orma.py`` only in the backbone and its defaults (CMTMR's settings, the closest open AMAN-like pipeline).

Launch (run from the repository root; see docs/training/recipes.md for CPU, 1 GPU, N GPUs, multi-node and bf16)::

    accelerate launch recipes/aman.py --config recipes/configs/aman.yaml
    python recipes/aman.py --config recipes/configs/aman_tiny.yaml          # CPU smoke run

Expected: ``aman_tiny.yaml`` takes about a minute on two CPU cores (a smoke test, not a result). The full run is not
measured here (the local ChEBI-20 lacks its train split); AMAN reports text->molecule Hits@1 49.4, MRR 64.7 (pool
``all``). Outputs as ``recipes/orma.py``.
"""

from __future__ import annotations

from class_hf.recipe import run_recipe

# Different from ORMA: CMTMR's settings (DeepLearnXMU/CMTMR): Adam without weight decay, seed 42. CMTMR's separate
# discriminator rate (1e-4) is the model's `discriminator_learning_rate`; the trainer sets only the text encoder's.
DEFAULTS = {
    "num_train_epochs": 60,
    "per_device_train_batch_size": 32,
    "learning_rate": 1e-4,
    "text_encoder_learning_rate": 3e-5,
    "weight_decay": 0.0,
    "warmup_steps": 1000,
    "seed": 42,
}


def main(argv: list[str] | None = None) -> dict | None:
    return run_recipe("aman", DEFAULTS, argv, report=print)  # prints the test metrics on the main process


if __name__ == "__main__":
    main()
