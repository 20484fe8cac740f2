"""The curriculum's callbacks: curriculum epochs inside the Trainer's loop, their history, and state in checkpoints.

With a curriculum, ``CurriculumTrainer`` hands the Trainer one stream holding every curriculum epoch's batches
(:class:`~class_hf.curriculum.sampler.CurriculumBatchSampler`) and the plan's total number of optimizer steps as
``max_steps``. The Trainer then makes a single pass; :class:`CurriculumCallback` turns the global step back into
curriculum epochs (:meth:`CurriculumPlan.epoch_of_step`):

- ``TrainerState.epoch`` counts curriculum epochs (``2.5``: half-way through epoch 2), so the ``epoch`` of the logs,
  ``trainer_state.json`` and every later callback speak of curriculum epochs;
- with ``eval_strategy``, ``save_strategy`` or ``logging_strategy`` ``"epoch"`` it asks for an evaluation, a checkpoint
  or a log at the end of every curriculum epoch (and cancels the Trainer's own end-of-pass request, which would repeat
  the last one). ``on_epoch_begin``/``on_epoch_end`` fire once, for the whole pass;
- it keeps one record per epoch (pool, steps, sample passes, train / eval / scoring seconds) in
  :attr:`CurriculumCallback.history`.

Its state travels in ``trainer_state.json`` as a transformers stateful callback (``ExportableState``); it holds no
reference to the trainer. A resumed run restores it in ``on_train_begin`` (and the Trainer may also rebuild it with
``restore_callback_states_from_checkpoint=True``); the record of an interrupted epoch is carried over, so the times of
a resumed run add up to those of an uninterrupted one.

Without a curriculum (the baseline), the Trainer's own epochs are the curriculum epochs; the callback only keeps the
history.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState
from transformers.trainer_utils import IntervalStrategy, SaveStrategy
from typing_extensions import override

from .plan import CurriculumPlan

logger = logging.getLogger(__name__)


class CurriculumCallback(TrainerCallback, ExportableState):
    """Curriculum epochs, their evaluations/checkpoints/logs, and their history (see the module docstring).

    Args:
        plan (CurriculumPlan | dict | None): the run's plan (set by the trainer before training when None).
        gammas (list[float] | None): the intensity's stage multiplier of every epoch (for the history).
        drive_epochs (bool): the Trainer makes one pass over every curriculum epoch (a curriculum sampler), so the
            callback maps steps to epochs for it; False when the Trainer's own epochs are the curriculum's.

    Attributes:
        history (list[dict]): one record per finished epoch: ``epoch``, ``stage``, ``fraction``, ``pool_size``,
            ``progress``, ``gamma``, ``samples_seen`` (all processes), ``optimizer_steps``,
            ``planned_optimizer_steps``, ``train_seconds``, ``eval_seconds``, ``scoring_seconds``,
            ``epoch_seconds``, ``global_step``, ``complete``.
    """

    def __init__(
        self,
        plan: CurriculumPlan | dict | None = None,
        gammas: list[float] | None = None,
        drive_epochs: bool = True,
    ) -> None:
        self.plan = CurriculumPlan.from_dict(plan) if isinstance(plan, dict) else plan
        self.gammas = list(gammas) if gammas is not None else None
        self.drive_epochs = drive_epochs
        self.history: list[dict[str, Any]] = []
        self.carry: dict[str, Any] | None = None
        self._scoring: dict[int, float] = {}
        self._reset_clock()

    def _reset_clock(self) -> None:
        self._window_start = time.perf_counter()
        self._non_training = 0.0  # eval / scoring seconds inside the current window
        self._eval: dict[int, float] = {}
        self._last_step: int | None = None

    # ------------------------------------------------------------------------------------------------ set-up
    def setup(self, plan: CurriculumPlan, gammas: list[float], drive_epochs: bool) -> None:
        """Sets the plan of a new run (called by the trainer before the Trainer's loop starts)."""
        self.plan, self.gammas, self.drive_epochs = plan, list(gammas), drive_epochs
        self.history, self.carry, self._scoring = [], None, {}
        self._reset_clock()

    def add_scoring_seconds(self, epoch: int, seconds: float, *, in_window: bool = True) -> None:
        """Counts a difficulty refresh done for ``epoch`` (it happens during the last step of the epoch before).

        Args:
            epoch (int): the epoch whose order the refresh was for.
            seconds (float): its duration.
            in_window (bool): it happened in this process's current epoch window (False for a refresh restored from
                a checkpoint), so it is not training time.
        """
        self._scoring[epoch] = self._scoring.get(epoch, 0.0) + seconds
        if in_window:
            self._non_training += seconds

    # ------------------------------------------------------------------------------------------------ state
    @override
    def state(self) -> dict[str, Any]:
        """The stateful-callback state: the plan, finished records and the record so far of the current epoch."""
        return {
            "args": {
                "plan": self.plan.to_dict() if self.plan is not None else None,
                "gammas": self.gammas,
                "drive_epochs": self.drive_epochs,
            },
            "attributes": {"history": list(self.history), "carry": self._partial_record()},
        }

    def _restore(self, saved: dict[str, Any]) -> None:
        plan = saved.get("args", {}).get("plan")
        if plan is not None and self.plan is not None and CurriculumPlan.from_dict(plan) != self.plan:
            saved_plan = CurriculumPlan.from_dict(plan)
            differences = [
                name
                for name in ("num_samples", "batch_size", "world_size", "gradient_accumulation_steps", "pool_sizes")
                if getattr(saved_plan, name) != getattr(self.plan, name)
            ]
            raise ValueError(
                f"Cannot resume: the checkpoint's curriculum plan differs in {differences or 'its steps'} "
                f"(checkpoint: {saved_plan.describe()}; this run: {self.plan.describe()}). Resume with the same "
                "training set, batch size, gradient accumulation, number of processes and curriculum arguments."
            )
        attributes = saved.get("attributes", {})
        self.history = [dict(r) for r in attributes.get("history") or []]
        self.carry = dict(attributes["carry"]) if attributes.get("carry") else None

    # ------------------------------------------------------------------------------------------------ records
    def _record(self, epoch: int, steps_done: int, global_step: int) -> dict[str, Any]:
        plan = self.plan
        carry = self.carry if self.carry is not None and self.carry.get("epoch") == epoch else {}
        elapsed = time.perf_counter() - self._window_start
        eval_seconds = self._eval.get(epoch, 0.0)
        scoring = self._scoring.get(epoch, 0.0)
        train = max(0.0, elapsed - self._non_training)
        complete = steps_done >= plan.updates[epoch]
        record = {
            "epoch": epoch,
            "stage": plan.stages[epoch],
            "fraction": plan.fractions[epoch],
            "pool_size": plan.pool_sizes[epoch],
            "progress": plan.progress[epoch],
            "gamma": self.gammas[epoch] if self.gammas else 1.0,
            "samples_seen": plan.samples(epoch) if complete else plan.samples_in_steps(epoch, steps_done),
            "optimizer_steps": steps_done,
            "planned_optimizer_steps": plan.updates[epoch],
            "train_seconds": carry.get("train_seconds", 0.0) + train,
            "eval_seconds": carry.get("eval_seconds", 0.0) + eval_seconds,
            "scoring_seconds": carry.get("scoring_seconds", 0.0) + scoring,
            "global_step": global_step,
            "complete": complete,
        }
        record["epoch_seconds"] = record["train_seconds"] + record["eval_seconds"] + record["scoring_seconds"]
        return record

    def _partial_record(self) -> dict[str, Any] | None:
        if self.plan is None or self._last_step is None:
            return None
        step = self._last_step
        epoch = self.plan.epoch_of_step(step)
        done = step - self.plan.first_step(epoch)
        if done <= 0 or done >= self.plan.updates[epoch]:
            return None
        return self._record(epoch, done, step)

    def _close(self, epoch: int, steps_done: int, global_step: int) -> None:
        self.history.append(self._record(epoch, steps_done, global_step))
        self._window_start = time.perf_counter()
        self._non_training = 0.0
        self._eval.pop(epoch, None)

    def summary(self) -> dict[str, Any]:
        """Planned vs actual sample passes and optimizer steps, and the time split, over the history."""
        plan, history = self.plan, self.history
        summary: dict[str, Any] = {
            "num_samples": plan.num_samples if plan else None,
            "planned_sample_passes": plan.sample_passes if plan else None,
            "full_sample_passes": plan.full_sample_passes if plan else None,
            "planned_optimizer_steps": plan.total_updates if plan else None,
            "samples_seen": sum(r["samples_seen"] for r in history),
            "optimizer_steps": sum(r["optimizer_steps"] for r in history),
            "train_seconds": sum(r["train_seconds"] for r in history),
            "eval_seconds": sum(r["eval_seconds"] for r in history),
        }
        if plan:
            summary["sample_pass_saving"] = 1.0 - plan.sample_passes / max(1, plan.full_sample_passes)
        return summary

    # ------------------------------------------------------------------------------------------------ events
    @override
    def on_train_begin(self, args, state, control, **kwargs):
        saved = (state.stateful_callbacks or {}).get(type(self).__name__)
        if isinstance(saved, list):
            saved = saved[0] if saved else None
        if saved and state.global_step > 0:
            self._restore(saved)
        self._reset_clock()
        self._last_step = state.global_step
        if self.drive_epochs and self.plan is not None:
            state.epoch = self.plan.epoch_position(state.global_step)
        return control

    @override
    def on_step_end(self, args, state, control, **kwargs):
        plan = self.plan
        if plan is None:
            return control
        step = state.global_step
        self._last_step = step
        epoch = plan.epoch_of_step(step - 1)
        if self.drive_epochs:
            state.epoch = plan.epoch_position(step)
        if step == plan.end_step(epoch):
            self._close(epoch, plan.updates[epoch], step)
            if self.drive_epochs:
                _request_epoch_events(args, control, True)
        return control

    @override
    def on_epoch_end(self, args, state, control, **kwargs):
        if self.drive_epochs:
            # The Trainer's one pass ends with the last curriculum epoch, whose end already asked for these.
            _request_epoch_events(args, control, False)
        return control

    @override
    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if self.plan is None or not metrics:
            return control
        seconds = sum(float(v) for k, v in metrics.items() if k.endswith("_runtime"))
        epoch = self.plan.epoch_of_step(max(state.global_step - 1, 0))
        last = self.history[-1] if self.history else {}
        if last.get("epoch") == epoch and last.get("global_step") == state.global_step:
            # The evaluation at an epoch's last step: it belongs to the epoch just closed.
            last["eval_seconds"] += seconds
            last["epoch_seconds"] += seconds
        else:
            self._eval[epoch] = self._eval.get(epoch, 0.0) + seconds
        self._non_training += seconds
        return control

    @override
    def on_train_end(self, args, state, control, **kwargs):
        partial = self._partial_record()
        if partial is not None:  # stopped inside an epoch (`max_steps` or a callback)
            self.history.append(partial)
        return control


def _request_epoch_events(args, control, value: bool) -> None:
    """Sets the evaluation / checkpoint / log requests of the ``"epoch"`` strategies to ``value``."""
    if args.eval_strategy == IntervalStrategy.EPOCH:
        control.should_evaluate = value
    if args.save_strategy == SaveStrategy.EPOCH:
        control.should_save = value
    if args.logging_strategy == IntervalStrategy.EPOCH:
        control.should_log = value


__all__ = ["CurriculumCallback"]
