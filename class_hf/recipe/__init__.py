"""The pipeline shared by the training recipes ``recipes/orma.py``, ``recipes/aman.py``, ``recipes/dual_encoder.py``.

A small package: :mod:`.arguments` (what a run is given), :mod:`.building` (data, tokenizer, model),
:mod:`.outputs` (what a run writes and reports) and :mod:`.run` (the run itself, with :class:`~.run.RecipeRun`, the
one context object its steps share). A recipe is one call, ``run_recipe(backbone, defaults)``:

1. arguments: :class:`ModelArguments`, :class:`DataArguments` and
   :class:`~class_hf.training_args.CurriculumTrainingArguments`, parsed by ``HfArgumentParser`` from the recipe's
   defaults (the backbone's published settings), then ``--config <file>.yaml``, then the command line (each overriding
   the one before; see :func:`parse_recipe_args`);
2. data: ChEBI-20 from a folder, a file, a ``save_to_disk`` folder or a Hub id (:func:`~.building.load_pairs`),
   optionally re-split by CID;
3. tokenizer and model (built after ``set_seed``; ``--model_name_or_path org/name`` loads a CLASS checkpoint with
   ``AutoModel`` to continue training or to evaluate it);
4. featurization of the molecule columns the model reads (:class:`~class_hf.data.features.MoleculeFeatures`)
   under ``main_process_first()`` (rank 0 fills the ``datasets`` cache, the others read it);
5. :class:`~class_hf.trainer.CurriculumTrainer`: it scores the difficulty when the training split has no
   ``difficulty`` column (``difficulty_source``), or uses the column as it is (``precomputed``), then trains;
6. test evaluation in both candidate pools (``split`` and ``all``, the latter optionally with a CID/SMILES table of
   further molecules) by :class:`~class_hf.evaluation.evaluator.RetrievalEvaluator`, on the main process;
7. the outputs in ``output_dir``: checkpoint (``save_pretrained`` + tokenizer), ``metrics.json``, the scored dataset
   (``scored_dataset/``, ``save_to_disk`` plus a dataset card), ``README.md`` (the model card, see
   :mod:`class_hf.model_card`) and PNG plots (training-sample ratio per epoch, loss and validation MRR curves);
   with ``--push_to_hub`` everything goes to the Hub through ``Trainer.push_to_hub``. A run resumed with
   ``--resume_from_checkpoint`` writes the same outputs as an uninterrupted one (see :mod:`.outputs`).

The same script runs under ``python``, ``accelerate launch`` (one process) and ``accelerate launch --multi_gpu
--num_processes N`` (with ``--use_cpu`` on a machine without GPUs).
"""

from .arguments import COMMON_DEFAULTS, WORD_LEVEL, DataArguments, ModelArguments, make_parser, parse_recipe_args
from .building import build_model, build_tokenizer, featurize, load_pairs, word_level_tokenizer
from .outputs import SCORED_DATASET_DIR, RecipeTrainer, evaluate_test_pools, format_summary
from .run import RecipeRun, check_launch, run_recipe, train_and_evaluate

__all__ = [
    "COMMON_DEFAULTS",
    "SCORED_DATASET_DIR",
    "WORD_LEVEL",
    "DataArguments",
    "ModelArguments",
    "RecipeRun",
    "RecipeTrainer",
    "build_model",
    "build_tokenizer",
    "check_launch",
    "evaluate_test_pools",
    "featurize",
    "format_summary",
    "load_pairs",
    "make_parser",
    "parse_recipe_args",
    "run_recipe",
    "train_and_evaluate",
    "word_level_tokenizer",
]
