"""Process defaults that every entry point (``class-hf``, the recipes) sets before it works: CPU threads.

With torch's default of one intra-op thread per CPU, the tiny recipe trained in 79 s on a loaded 2-core machine
against 2.3 s with ``OMP_NUM_THREADS=1``: when other processes hold the cores, OpenMP threads wait for each other at
every operation. ``benchmarks/cpu_threads.py`` measures it (``benchmarks/results/cpu_threads.json``). So the entry
points use :func:`default_cpu_threads` (half the CPUs this process may run on, at least 1, at most 4) unless the
user chose: ``OMP_NUM_THREADS`` or ``MKL_NUM_THREADS`` set, or torch already running with another thread count than
its own default (``torch.set_num_threads`` called by the program that called the entry point).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator

logger = logging.getLogger(__name__)

__all__ = [
    "MAX_DEFAULT_THREADS",
    "MAX_INFERENCE_THREADS",
    "THREAD_ENV_VARS",
    "available_cpus",
    "configure_cpu_threads",
    "default_cpu_threads",
    "inference_threads",
]

THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
MAX_DEFAULT_THREADS = 4
MAX_INFERENCE_THREADS = 8
_applied_threads: int | None = None  # the count configure_cpu_threads set, when it was class-hf's choice


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity mask where the platform has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def _torch_default_candidates() -> set[int]:
    """The thread counts torch may pick by itself: one per available or logical CPU, or per physical core."""
    candidates = {available_cpus(), os.cpu_count() or 1}
    try:
        import psutil

        candidates.add(psutil.cpu_count(logical=False) or 1)
    except ImportError:  # psutil comes with accelerate; without it the two counts above are used
        pass
    return candidates


def default_cpu_threads(cpus: int | None = None) -> int:
    """Half of ``cpus`` (default: :func:`available_cpus`), at least 1 and at most :data:`MAX_DEFAULT_THREADS`.

    Half leaves a core for the data pipeline (featurization, collation) and for other jobs on a shared machine; the
    models trained here gain little beyond a few threads at the batch sizes used.
    """
    cpus = available_cpus() if cpus is None else cpus
    return max(1, min(MAX_DEFAULT_THREADS, cpus // 2))


def configure_cpu_threads() -> int | None:
    """Applies :func:`default_cpu_threads` to torch, unless the user chose a thread count.

    Before torch is imported this sets ``OMP_NUM_THREADS`` (which torch reads when it starts, and which worker
    processes inherit), so ``class-hf --help`` still imports no torch; after, it calls ``torch.set_num_threads`` and
    sets ``OMP_NUM_THREADS`` for the worker processes.

    Returns:
        int | None: the thread count set, or None when the user's choice was kept.
    """
    chosen = {name: os.environ[name] for name in THREAD_ENV_VARS if os.environ.get(name, "").strip()}
    if chosen:
        logger.debug("CPU threads left as set by %s.", chosen)
        return None
    threads = default_cpu_threads()
    torch = sys.modules.get("torch")
    if torch is not None and hasattr(torch, "get_num_threads"):
        if torch.get_num_threads() not in _torch_default_candidates():  # not torch's default: the program set it
            logger.debug("CPU threads left at torch.get_num_threads() = %d.", torch.get_num_threads())
            return None
        torch.set_num_threads(threads)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    global _applied_threads
    _applied_threads = threads
    logger.info(
        "torch uses %d CPU thread(s) (class-hf's default for %d CPUs; set OMP_NUM_THREADS to choose).",
        threads,
        available_cpus(),
    )
    return threads


@contextlib.contextmanager
def inference_threads() -> Iterator[int | None]:
    """Every available CPU (at most :data:`MAX_INFERENCE_THREADS`) for a one-off stretch of pure inference, such as
    encoding all descriptions with a frozen text encoder; the thread count is restored afterwards.

    Large matrix products scale with threads where small training steps do not: in ``scripts/demo.sh`` (2 cores,
    load about 1) encoding the 6,562 descriptions with all-MiniLM-L6-v2 took about 7 minutes on one thread and 4 on
    two. Only a thread count that :func:`configure_cpu_threads` chose is raised; the user's choice is kept.

    Yields:
        int | None: the thread count used inside, or None when it was left as it was.
    """
    torch = sys.modules.get("torch")
    if torch is None or _applied_threads is None or torch.get_num_threads() != _applied_threads:
        yield None
        return
    threads = max(1, min(MAX_INFERENCE_THREADS, available_cpus()))
    torch.set_num_threads(threads)
    try:
        yield threads
    finally:
        torch.set_num_threads(_applied_threads)
