"""Training logs people read: one line of numbers per log, instead of transformers' dict of formatted strings.

``transformers.Trainer`` prints every log through ``PrinterCallback`` (``disable_tqdm=True``) or ``ProgressCallback``
(above the progress bar) as the ``repr`` of a dict whose floats were turned into strings
(``{'loss': '3.21', 'epoch': '1.5'}``). :func:`use_readable_logs` swaps both for callbacks that write one line per
log on the main process, through the progress bar when there is one (so the bar is not broken)::

    [step 40/504 · epoch 1.52] loss 3.2103 · grad_norm 1.52 · learning_rate 0.0003 · curriculum/stage 1 · ...
    [step 84/504 · epoch 4] eval: mrr 0.4123 · t2m_mrr 0.4012 · m2t_mrr 0.4234 · loss 2.2 · runtime 3.1 s
    [step 504/504 · epoch 24] train: runtime 312.4 s · loss 2.1 · samples_per_second 220.3

:func:`use_quiet_logs` drops the log lines altogether (a helper ``Trainer`` such as the difficulty warm-up, whose
end-of-training summary would otherwise read as if the run itself had ended).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping
from typing import Any

from transformers import PrinterCallback, ProgressCallback, TrainerCallback
from typing_extensions import override

__all__ = ["ReadableLogCallback", "ReadableProgressCallback", "format_log_line", "use_quiet_logs", "use_readable_logs"]

_FIRST = ("loss", "grad_norm", "learning_rate")
_SECONDS = ("runtime",)
_DROPPED = ("total_flos", "epoch", "step")


def _number(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}" if abs(value) >= 10_000 else str(value)
    if math.isnan(value) or math.isinf(value):
        return str(value)
    if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e5):
        return f"{value:.3e}"
    return f"{value:.4f}".rstrip("0").rstrip(".") if abs(value) < 100 else f"{value:.1f}"


def _prefix(logs: Mapping[str, Any]) -> str | None:
    """``eval`` / ``test`` / ``train`` for an evaluation's or the final summary's logs (``<prefix>_runtime``)."""
    for key in logs:
        if key.endswith("_runtime"):
            return key[: -len("_runtime")]
    return None


def format_log_line(logs: Mapping[str, Any], *, step: int | None = None, max_steps: int | None = None) -> str:
    """One readable line for a Trainer log: where the run is, then every value as ``name number``.

    Args:
        logs (Mapping[str, Any]): what ``Trainer.log`` passed to the callbacks.
        step (int | None): the global step.
        max_steps (int | None): the run's optimizer steps.

    Returns:
        str: e.g. ``"[step 40/504 · epoch 1.52] loss 3.2103 · learning_rate 0.0003 · curriculum/stage 1"``.
    """
    where = []
    if step is not None:
        where.append(f"step {step}/{max_steps}" if max_steps else f"step {step}")
    if "epoch" in logs and isinstance(logs["epoch"], (int, float)):
        where.append(f"epoch {_number(round(float(logs['epoch']), 2))}")
    prefix = _prefix(logs)
    values = {k: v for k, v in logs.items() if k not in _DROPPED}
    if prefix is not None:
        values = {(k[len(prefix) + 1 :] if k.startswith(f"{prefix}_") else k): v for k, v in values.items()}
    order = [k for k in _FIRST if k in values] + [k for k in values if k not in _FIRST]
    parts = [f"{key} {_number(values[key])}{' s' if key in _SECONDS else ''}" for key in order]
    head = f"[{' · '.join(where)}] " if where else ""
    return f"{head}{prefix + ': ' if prefix else ''}{' · '.join(parts)}"


class ReadableLogCallback(TrainerCallback):
    """Writes :func:`format_log_line` of every log to stdout on the main process (replaces ``PrinterCallback``)."""

    @override
    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            sys.stdout.write(format_log_line(logs, step=state.global_step, max_steps=state.max_steps) + "\n")
            sys.stdout.flush()


class ReadableProgressCallback(ProgressCallback):
    """transformers' progress bars, with :func:`format_log_line` written above the bar instead of a dict."""

    @override
    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and self.training_bar is not None and logs:
            self.training_bar.write(format_log_line(logs, step=state.global_step, max_steps=state.max_steps))


class _QuietProgressCallback(ProgressCallback):
    """Progress bars without the log lines."""

    @override
    def on_log(self, args, state, control, logs=None, **kwargs):
        return None


def _swap(trainer: Any, printer: TrainerCallback | None, progress: TrainerCallback) -> None:
    handler = trainer.callback_handler
    for callback in list(handler.callbacks):
        if isinstance(callback, PrinterCallback):
            handler.remove_callback(callback)
            if printer is not None:
                handler.add_callback(printer)
        elif type(callback) is ProgressCallback:
            handler.remove_callback(callback)
            handler.add_callback(progress)


def use_readable_logs(trainer: Any) -> None:
    """Replaces ``trainer``'s ``PrinterCallback`` / ``ProgressCallback`` by :class:`ReadableLogCallback` /
    :class:`ReadableProgressCallback` (``disable_tqdm`` keeps its meaning: bars or no bars)."""
    _swap(trainer, ReadableLogCallback(), ReadableProgressCallback())


def use_quiet_logs(trainer: Any) -> None:
    """Removes ``trainer``'s log printing (its progress bar, if any, stays)."""
    _swap(trainer, None, _QuietProgressCallback())
