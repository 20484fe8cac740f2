"""Griffe extension: renders the reST idioms of class-hf's Google-style docstrings as Markdown for mkdocstrings.

The docstrings are written for readers of the source (and for Sphinx-like tools): Sphinx roles
(``:class:`~class_hf.trainer.CurriculumTrainer```, ``:func:`ranks```), literal blocks introduced by ``::`` and
``.. math::`` blocks. mkdocstrings renders Markdown, where these would show as raw text. Instead of editing the
docstrings, this extension rewrites them once the package is loaded (the source files are never touched):

- a role becomes a cross-reference to the object it names, resolved the way Sphinx does (the full path, else the
  current class, module and package scopes and their imports, else a unique name in the package). The reference is
  *optional*: if the object has no page (private, undocumented, or outside the API reference), it renders as
  plain code and the strict build does not fail. A role that names no object (``:obj:`300```) becomes code;
- ``text::`` followed by an indented block becomes ``text:`` and a fenced code block (``Example::`` becomes an
  ``Examples`` section holding it);
- the continuation lines of a ``Returns:`` item, written at the item's own indentation, are indented one level, so
  Griffe reads one value with its type rather than one value per line;
- an ``Example:`` section becomes ``Examples:``, so its ``>>>`` lines render as code;
- ``.. math::`` becomes a fenced block of the formula (the site loads no MathJax: nothing is fetched at build time or
  when reading).

Enabled in ``mkdocs.yml`` under the python handler's ``extensions``.
"""

from __future__ import annotations

import html
import re
from collections import defaultdict
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(class|func|meth|attr|mod|data|obj|exc|const|ref):`([^`]+)`")
_IDENTIFIER = re.compile(r"^[A-Za-z_][\w.]*$")
_SHELL_HINT = re.compile(r"^\s*(class-hf|python|accelerate|torchrun|pip|bash) ", re.M)
_PYTHON_HINT = re.compile(r"^\s*(from \S+ import |import |\w[\w.]* = |\w[\w.]*\(|for |with |print\()", re.M)


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


class RstDocstrings(griffe.Extension):
    """Rewrites the docstrings of every object of the loaded package (see the module docstring)."""

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        self._collection = loader.modules_collection
        self._by_name: dict[str, set[str]] = defaultdict(set)
        objects = list(self._walk(pkg))
        for obj in objects:
            self._by_name[obj.name].add(obj.path)
        for obj in objects:
            if obj.docstring is not None:
                obj.docstring.value = self._convert(obj.docstring.value, obj)

    # ----------------------------------------------------------------------------------------------- object tree
    def _walk(self, obj: griffe.Object):
        yield obj
        for member in obj.members.values():
            if member.is_alias:
                continue
            yield from self._walk(member)

    def _lookup(self, path: str) -> str | None:
        try:
            found = self._collection.get_member(path)
        except (KeyError, ValueError, griffe.AliasResolutionError, griffe.CyclicAliasError):
            return None
        if found.is_alias:
            try:
                return found.final_target.path
            except (griffe.AliasResolutionError, griffe.CyclicAliasError):
                return found.target_path
        return found.path

    def _resolve(self, target: str, obj: griffe.Object) -> str | None:
        """The full path of the object ``target`` names, seen from ``obj``'s docstring, or None."""
        if not _IDENTIFIER.match(target.lstrip(".")):
            return None
        if target.startswith("."):  # relative: a module of the same package, or a member of an enclosing scope
            stripped = target.lstrip(".")
            module = obj if obj.is_module else obj.module
            package = module if module.is_package else module.parent
            ups = len(target) - len(stripped) - 1
            for _ in range(ups):
                package = package.parent if package is not None and package.parent is not None else package
            if package is not None and (found := self._lookup(f"{package.path}.{stripped}")):
                return found
            target = stripped
        if found := self._lookup(target):
            return found
        first, _, rest = target.partition(".")
        scope: griffe.Object | None = obj
        while scope is not None:
            if first in scope.members:
                path = f"{scope.path}.{target}"
                if found := self._lookup(path):
                    return found
                member = scope.members[first]
                if member.is_alias and (found := self._lookup(f"{member.target_path}.{rest}" if rest else "")):
                    return found
            scope = scope.parent
        candidates = [path for path in self._by_name.get(target.rsplit(".", 1)[-1], ()) if path.endswith(target)]
        return candidates[0] if len(candidates) == 1 else None

    # ----------------------------------------------------------------------------------------------- rewriting
    def _role(self, match: re.Match, obj: griffe.Object) -> str:
        kind, text = match.group(1), match.group(2).strip()
        explicit = re.match(r"^(.*?)\s*<([^>]+)>$", text)
        if explicit:
            title, target = explicit.group(1), explicit.group(2)
        else:
            target = text
            shown = target.lstrip("~")
            title = shown.rsplit(".", 1)[-1] if target.startswith("~") else shown.lstrip(".")
        target = target.lstrip("~")
        if kind in ("func", "meth") and not title.endswith(")"):
            title += "()"
        path = self._resolve(target, obj) if kind != "ref" else None
        if path is None:
            return f"`{title}`"
        # raw HTML: Markdown would still read ``__iter__`` in it as bold, so the title's specials are entities
        code = html.escape(title).replace("_", "&#95;").replace("*", "&#42;")
        return f'<autoref identifier="{path}" optional><code>{code}</code></autoref>'

    def _convert(self, text: str, obj: griffe.Object) -> str:
        lines = text.split("\n")
        out: list[str] = []
        in_fence = False
        i = 0
        while i < len(lines):
            line = lines[i]
            stripped = line.strip()
            if stripped.startswith("```"):
                in_fence = not in_fence
            if in_fence or stripped.startswith("```"):
                out.append(line)
                i += 1
                continue
            if stripped == "Example:":  # Griffe reads "Example:" as an admonition; "Examples:" renders doctests
                out.append(line.replace("Example:", "Examples:"))
                i += 1
                continue
            if stripped in ("Returns:", "Yields:") or stripped.startswith(".. math::") or stripped.endswith("::"):
                block, end = self._indented_block(lines, i + 1, _indent(line))
                if block:
                    out += self._block(line, block, obj)
                    i = end
                    continue
            out.append(self._roles(line, obj))
            i += 1
        return "\n".join(out)

    def _roles(self, text: str, obj: griffe.Object) -> str:
        return _ROLE.sub(lambda m: self._role(m, obj), text)

    def _block(self, line: str, block: list[str], obj: griffe.Object) -> list[str]:
        """The Markdown of ``line`` and the indented ``block`` (dedented) that follows it."""
        stripped, indent = line.strip(), " " * _indent(line)
        if stripped in ("Returns:", "Yields:"):  # one value whose description goes on at the item's indent
            item = indent + "    "
            body = [self._roles(b, obj) for b in block]
            return [
                line,
                *(
                    item + b if n == 0 or b.startswith(" ") else (item + "    " + b if b else "")
                    for n, b in enumerate(body)
                ),
            ]
        if stripped.startswith(".. math::"):
            lead = stripped[len(".. math::") :].strip()
            return self._fence(indent, "text", ([lead] if lead else []) + block)
        head = stripped[:-2].rstrip()
        doctest = block[0].startswith(">>>")
        language = "pycon" if doctest else self._language("\n".join(block))
        if re.fullmatch(r"Examples?", head):
            if doctest:  # Griffe renders the doctest of an Examples section itself
                return [f"{indent}Examples:", *(f"{indent}    {b}" if b else "" for b in block)]
            return [f"{indent}Examples:", *self._fence(indent + "    ", language, block)]
        return ([f"{indent}{self._roles(head, obj)}:", ""] if head else []) + self._fence(indent, language, block)

    @staticmethod
    def _language(code: str) -> str:
        if _SHELL_HINT.search(code):
            return "bash"
        return "python" if _PYTHON_HINT.search(code) else "text"

    @staticmethod
    def _fence(indent: str, language: str, block: list[str]) -> list[str]:
        return [f"{indent}```{language}", *(f"{indent}{b}" if b else "" for b in block), f"{indent}```"]

    @staticmethod
    def _indented_block(lines: list[str], start: int, base: int) -> tuple[list[str], int]:
        """The block indented deeper than ``base`` after ``start`` (blank lines allowed), dedented; and its end."""
        i = start
        while i < len(lines) and not lines[i].strip():
            i += 1
        body_start = i
        while i < len(lines) and (not lines[i].strip() or _indent(lines[i]) > base):
            i += 1
        end = i
        while end > body_start and not lines[end - 1].strip():
            end -= 1
        block = lines[body_start:end]
        if not block:
            return [], start
        cut = min(_indent(b) for b in block if b.strip())
        return [b[cut:] if b.strip() else "" for b in block], end
