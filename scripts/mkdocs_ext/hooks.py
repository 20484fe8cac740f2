"""MkDocs hooks of the class-hf documentation site (enabled under ``hooks:`` in ``mkdocs.yml``).

- The benchmark plots live once, in ``benchmarks/results/`` (and its subfolders); they are added to the site as
  ``benchmarks/<path under results>.png`` instead of being copied into ``docs/``.
- The CLI reference is generated from the ``class-hf`` parser itself (``class_hf.cli.build_parser``), so it cannot
  drift from the code: ``docs/cli.md`` holds the marker ``<!-- class-hf-cli -->`` where it goes.
- The table of the CLASS training arguments is generated from ``CurriculumTrainingArguments``' own fields (name,
  type, default, help), at the marker ``<!-- class-hf-training-args -->``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import enum
import os
import warnings
from pathlib import Path

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"
CLI_MARKER = "<!-- class-hf-cli -->"
ARGS_MARKER = "<!-- class-hf-training-args -->"
HELP_WIDTH = "100"  # argparse wraps to $COLUMNS: fixed, so the page does not depend on the terminal


def on_files(files: Files, config, **kwargs) -> Files:
    for png in sorted(RESULTS.rglob("*.png")):
        name = png.relative_to(RESULTS).as_posix()
        files.append(File.generated(config, f"benchmarks/{name}", abs_src_path=str(png)))
    return files


@contextlib.contextmanager
def _columns(width: str):
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = width
    try:
        yield
    finally:
        if old is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = old


def cli_reference() -> str:
    """Markdown: ``class-hf --help`` and every subcommand's ``--help``, each under its own heading."""
    with warnings.catch_warnings():  # importing the package may warn (torch_geometric's own deprecations)
        warnings.simplefilter("ignore", DeprecationWarning)
        from class_hf.cli import build_parser

    with _columns(HELP_WIDTH):
        parser = build_parser()
        subcommands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parts = ["## `class-hf`", "", "```text", parser.format_help().rstrip(), "```", ""]
        for name, sub in subcommands.choices.items():
            parts += [f"## `class-hf {name}`", "", "```text", sub.format_help().rstrip(), "```", ""]
    return "\n".join(parts)


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _default(field: dataclasses.Field) -> str:
    if field.default is not dataclasses.MISSING:
        value = field.default
    elif field.default_factory is not dataclasses.MISSING:
        value = field.default_factory()
    else:
        return ""
    if isinstance(value, enum.Enum):
        value = value.value
    return f"`{value!r}`"


def training_args_table() -> str:
    """Markdown table of the fields ``CurriculumTrainingArguments`` adds to ``transformers.TrainingArguments``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from transformers import TrainingArguments

        from class_hf.training_args import CurriculumTrainingArguments

    inherited = {f.name for f in dataclasses.fields(TrainingArguments)}
    rows = ["| argument | type | default | what it does |", "|---|---|---|---|"]
    for field in dataclasses.fields(CurriculumTrainingArguments):
        if field.name in inherited or not field.init:
            continue
        kind = field.type if isinstance(field.type, str) else getattr(field.type, "__name__", str(field.type))
        help_text = field.metadata.get("help", "")
        rows.append(f"| `{field.name}` | `{_cell(kind)}` | {_cell(_default(field))} | {_cell(help_text)} |")
    return "\n".join(rows)


def on_page_markdown(markdown: str, **kwargs) -> str:
    if CLI_MARKER in markdown:
        markdown = markdown.replace(CLI_MARKER, cli_reference())
    if ARGS_MARKER in markdown:
        markdown = markdown.replace(ARGS_MARKER, training_args_table())
    return markdown
