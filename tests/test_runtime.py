"""The entry points' CPU-thread default (``class_hf.runtime``): chosen from the CPUs, never over the user's choice."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from class_hf import runtime


@pytest.mark.parametrize("cpus, expected", [(1, 1), (2, 1), (3, 1), (4, 2), (8, 4), (16, 4), (128, 4)])
def test_default_is_half_the_cpus_between_1_and_4(cpus, expected):
    assert runtime.default_cpu_threads(cpus) == expected


@pytest.fixture()
def torch_threads():
    """Restores torch's thread count and OMP_NUM_THREADS after the test."""
    threads, omp = torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")
    yield
    torch.set_num_threads(threads)
    if omp is None:
        os.environ.pop("OMP_NUM_THREADS", None)
    else:
        os.environ["OMP_NUM_THREADS"] = omp


@pytest.mark.usefixtures("torch_threads")
def test_environment_variables_are_the_users_choice(monkeypatch):
    for name in runtime.THREAD_ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MKL_NUM_THREADS", "3")
    before = torch.get_num_threads()
    assert runtime.configure_cpu_threads() is None
    assert torch.get_num_threads() == before and "OMP_NUM_THREADS" not in os.environ


@pytest.mark.usefixtures("torch_threads")
def test_torch_threads_set_by_the_program_are_kept(monkeypatch):
    for name in runtime.THREAD_ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(runtime, "available_cpus", lambda: 8)
    monkeypatch.setattr(runtime, "_torch_default_candidates", lambda: {8})
    torch.set_num_threads(3)  # not one of torch's own defaults: the program chose it
    assert runtime.configure_cpu_threads() is None and torch.get_num_threads() == 3
    torch.set_num_threads(8)  # torch's default on this (pretend) machine: replaced by class-hf's default
    assert runtime.configure_cpu_threads() == 4
    assert torch.get_num_threads() == 4 and os.environ["OMP_NUM_THREADS"] == "4"


def _threads_in_fresh_process(env: dict[str, str]) -> list[str]:
    code = (
        "import sys\n"
        "from class_hf.runtime import configure_cpu_threads, default_cpu_threads\n"
        "chosen = configure_cpu_threads()\n"
        "assert 'torch' not in sys.modules\n"  # set through OMP_NUM_THREADS, before torch starts
        "import os, torch\n"
        "print(chosen, torch.get_num_threads(), default_cpu_threads(), os.environ['OMP_NUM_THREADS'])\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.split()


def test_entry_point_default_reaches_torch_and_respects_omp_num_threads():
    env = {k: v for k, v in os.environ.items() if k not in runtime.THREAD_ENV_VARS}
    chosen, torch_threads, default, omp = _threads_in_fresh_process(env)
    assert chosen == default == torch_threads == omp  # OMP_NUM_THREADS is inherited by worker processes too
    chosen, _, _, omp = _threads_in_fresh_process({**env, "OMP_NUM_THREADS": "3"})
    assert chosen == "None" and omp == "3"


def test_every_entry_point_applies_the_default(tmp_path, monkeypatch):
    """`class-hf <verb>` and the recipes both pass through configure_cpu_threads before any work."""
    from class_hf import cli
    from class_hf.recipe import run as recipe

    calls = []
    monkeypatch.setattr(cli, "configure_cpu_threads", lambda: calls.append("cli"))
    monkeypatch.setattr(recipe, "configure_cpu_threads", lambda: calls.append("recipe"))
    with pytest.raises(SystemExit):
        cli.main(["search", "--index", str(tmp_path / "no-index"), "query"])
    with pytest.raises(SystemExit):
        recipe.run_recipe("dual_encoder", {}, ["--no_such_option", "1"])
    assert calls == ["cli", "recipe"]


@pytest.mark.usefixtures("torch_threads")
def test_inference_uses_every_cpu_only_over_class_hfs_own_choice(monkeypatch):
    for name in runtime.THREAD_ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(runtime, "available_cpus", lambda: 6)
    monkeypatch.setattr(runtime, "_torch_default_candidates", lambda: {torch.get_num_threads()})
    monkeypatch.setattr(runtime, "_applied_threads", None)
    with runtime.inference_threads() as threads:  # nothing chosen by class-hf yet: left alone
        assert threads is None
    assert runtime.configure_cpu_threads() == 3
    with runtime.inference_threads() as threads:
        assert threads == 6 and torch.get_num_threads() == 6
    assert torch.get_num_threads() == 3
    torch.set_num_threads(2)  # the program changed it since: its choice is kept
    with runtime.inference_threads() as threads:
        assert threads is None and torch.get_num_threads() == 2
