"""Curriculum state in checkpoints: what a resumed run needs to replay the interrupted one exactly.

:class:`CurriculumStateCallback` writes two files into every checkpoint folder (``checkpoint-<step>/``) right after
the Trainer saved it:

- ``curriculum_state.json``: the sampler's state (seed, epoch, order, pacing, a hash of the difficulty), the epoch of
  the last difficulty refresh, the per-epoch history and the scoring information;
- ``curriculum_difficulty.npy``: the difficulty values the run trains with (after any refresh), so a resumed run
  neither re-scores (a ``warmup`` scorer would not reproduce the same values) nor depends on the dataset column.

``CurriculumTrainer.train(resume_from_checkpoint=...)`` reads them back with :func:`load_curriculum_state`. The order
of every epoch is a pure function of this state, and the Trainer skips the batches already seen in the resumed
epoch, so the resumed run trains on exactly the samples the uninterrupted run would have.
"""

from __future__ import annotations

import json
import logging
import os
from typing import TYPE_CHECKING, Any

import numpy as np
from transformers import TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

if TYPE_CHECKING:
    from ..trainer import CurriculumTrainer

logger = logging.getLogger(__name__)

STATE_FILE = "curriculum_state.json"
DIFFICULTY_FILE = "curriculum_difficulty.npy"


def save_curriculum_state(output_dir: str, state: dict[str, Any], difficulty: np.ndarray | None) -> None:
    """Writes ``curriculum_state.json`` (and ``curriculum_difficulty.npy`` when ``difficulty`` is given).

    Args:
        output_dir (str): the checkpoint folder.
        state (dict): JSON-serialisable curriculum state.
        difficulty (np.ndarray | None): the difficulty values of the run.
    """
    os.makedirs(output_dir, exist_ok=True)
    with open(os.path.join(output_dir, STATE_FILE), "w") as f:
        json.dump(state, f, indent=2, sort_keys=True)
    if difficulty is not None:
        np.save(os.path.join(output_dir, DIFFICULTY_FILE), np.asarray(difficulty, dtype=np.float64))


def load_curriculum_state(checkpoint_dir: str) -> tuple[dict[str, Any], np.ndarray | None] | None:
    """Reads the curriculum state of a checkpoint; None when the checkpoint has none (e.g. a plain-Trainer run).

    Args:
        checkpoint_dir (str): a ``checkpoint-<step>`` folder.

    Returns:
        tuple[dict, np.ndarray | None] | None: the state and the difficulty values (None if not saved).
    """
    path = os.path.join(checkpoint_dir, STATE_FILE)
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        state = json.load(f)
    difficulty_path = os.path.join(checkpoint_dir, DIFFICULTY_FILE)
    difficulty = np.load(difficulty_path) if os.path.isfile(difficulty_path) else None
    return state, difficulty


class CurriculumStateCallback(TrainerCallback):
    """Saves the trainer's curriculum state into each checkpoint (main process only).

    Args:
        trainer (CurriculumTrainer): the trainer whose state is saved (its :meth:`curriculum_state` and difficulty).
    """

    def __init__(self, trainer: CurriculumTrainer) -> None:
        self.trainer = trainer

    def on_save(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return control
        checkpoint_dir = os.path.join(args.output_dir, f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}")
        if not os.path.isdir(checkpoint_dir):
            logger.warning("Checkpoint folder %s not found; the curriculum state was not saved.", checkpoint_dir)
            return control
        save_curriculum_state(checkpoint_dir, self.trainer.curriculum_state(), self.trainer.difficulty)
        return control
