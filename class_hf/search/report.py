"""Show search results: a terminal table, JSON-ready dicts, and self-contained HTML pages with structure pictures.

The HTML pages follow the layout of the CLASS paper's Figure 5: the query on top (its text, or its structure for a
molecule query), the candidates below in a grid, best first, each with its rank, score, CID, name and an RDKit
depiction (SVG drawn with ``rdMolDraw2D``, inlined), the ground truth outlined in green. A page needs no network and
no script: CSS is inline, pictures are inline SVG.
"""

from __future__ import annotations

import html
import logging
import shutil
from collections.abc import Mapping, Sequence
from typing import Any

from .index import SearchResult

logger = logging.getLogger(__name__)

__all__ = ["format_table", "molecule_svg", "page", "render_search_html", "result_card", "truncate"]

DIRECTION_LABELS = {"t2m": "text \u2192 molecule", "m2t": "molecule \u2192 text"}

CSS = """
:root { --truth: #1a7f37; --truth-bg: #eefbf1; --ink: #1f2328; --muted: #59636e; --line: #d1d9e0; }
* { box-sizing: border-box; }
body { margin: 0; padding: 20px 28px 40px; background: #f6f8fa; color: var(--ink);
       font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
h1 { font-size: 20px; margin: 0 0 2px; }
h2 { font-size: 16px; margin: 22px 0 10px; }
.meta { color: var(--muted); font-size: 12.5px; margin-bottom: 14px; }
.meta code { font-size: 12px; }
.query { display: flex; gap: 18px; align-items: center; background: #fff; border: 1px solid var(--line);
         border-left: 5px solid #0969da; border-radius: 8px; padding: 12px 16px; margin-bottom: 12px; }
.query .label { font-size: 11.5px; font-weight: 600; letter-spacing: .04em; text-transform: uppercase;
                color: #0969da; margin-bottom: 4px; }
.query .text { font-size: 15px; max-width: 110ch; }
.query .pic { flex: 0 0 260px; background: #fff; }
.legend { display: flex; flex-wrap: wrap; gap: 6px 22px; align-items: center; color: var(--muted);
          font-size: 12.5px; margin: 0 0 14px; }
.legend .swatch { display: inline-block; width: 14px; height: 14px; border-radius: 3px; vertical-align: -2px;
                  margin-right: 6px; border: 3px solid var(--truth); background: var(--truth-bg); }
.legend b { color: var(--ink); }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(290px, 1fr)); gap: 14px; }
.card { position: relative; background: #fff; border: 1px solid var(--line); border-radius: 8px;
        padding: 8px 10px 10px; display: flex; flex-direction: column; min-width: 0; }
.card.truth { border: 3px solid var(--truth); background: var(--truth-bg); padding: 6px 8px 8px; }
.card .top { display: flex; align-items: baseline; gap: 8px; }
.rank { font-weight: 700; font-size: 15px; }
.score { font-variant-numeric: tabular-nums; color: var(--muted); font-size: 12.5px; }
.score b { color: var(--ink); font-weight: 600; }
.badge { position: absolute; top: -11px; right: 10px; background: var(--truth); color: #fff; font-size: 11px;
         font-weight: 600; border-radius: 10px; padding: 1px 9px; white-space: nowrap; }
.name { font-weight: 600; margin: 2px 0 0; overflow-wrap: anywhere; display: -webkit-box; -webkit-line-clamp: 2;
        -webkit-box-orient: vertical; overflow: hidden; }
.cid { margin-left: auto; color: var(--muted); font-size: 12px; white-space: nowrap; }
.cid a { color: inherit; }
.cid.below { margin-left: 0; }
.pic { margin: 6px 0 6px; flex: 1 0 auto; display: flex; align-items: center; }
.pic svg { display: block; width: 100%; height: auto; }
.smiles { font: 11px/1.35 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; color: var(--muted);
          margin-top: auto; overflow-wrap: anywhere; display: -webkit-box; -webkit-line-clamp: 2;
          -webkit-box-orient: vertical; overflow: hidden; }
.desc { font-size: 12.5px; overflow-wrap: anywhere; display: -webkit-box; -webkit-line-clamp: 7;
        -webkit-box-orient: vertical; overflow: hidden; margin-top: 4px; }
.note { color: var(--muted); font-size: 12.5px; margin: 6px 0 0; }
"""


def truncate(text: str | None, width: int) -> str:
    """``text`` on one line, cut to ``width`` characters with an ellipsis."""
    text = " ".join((text or "").split())
    return text if len(text) <= width else text[: max(width - 1, 0)] + "\u2026"


def _depiction(smiles: str):
    """The molecule with 2D coordinates (CoordGen, which lays out rings and long chains more cleanly), or None."""
    from rdkit import Chem
    from rdkit.Chem import rdDepictor

    from ..data.graphs import rdkit_logs_muted

    with rdkit_logs_muted():
        mol = Chem.MolFromSmiles(smiles) if smiles else None
        if mol is None:
            return None
        previous = rdDepictor.GetPreferCoordGen()
        rdDepictor.SetPreferCoordGen(True)  # a process-wide RDKit setting: restored right away
        try:
            rdDepictor.Compute2DCoords(mol)
        finally:
            rdDepictor.SetPreferCoordGen(previous)
    return mol


def molecule_svg(smiles: str | None, width: int = 300, height: int = 210, min_height: int | None = None) -> str:
    """An inline SVG depiction of ``smiles`` (RDKit ``rdMolDraw2D``), or a placeholder SVG when it cannot be drawn.

    Bonds have a fixed length, so small molecules are not blown up and large ones shrink to fit; the background is
    transparent so the picture takes the colour of its card. The height follows the molecule's shape between
    ``min_height`` (default ``0.45 * width``) and ``height``, so long chains do not float in empty space.
    """
    from rdkit.Chem.Draw import rdMolDraw2D

    mol = _depiction(smiles) if smiles else None
    if mol is None:
        logger.warning("Cannot depict SMILES %r: drawing a placeholder.", smiles)
        return (
            f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" '
            f'height="{height}"><text x="50%" y="50%" text-anchor="middle" fill="#59636e" font-size="13">'
            "no structure</text></svg>"
        )
    positions = mol.GetConformer().GetPositions()
    span_x, span_y = (positions.max(axis=0) - positions.min(axis=0))[:2] + 2.5  # room for atom labels
    min_height = min_height or int(0.45 * width)
    height = int(min(max(width * span_y / span_x, min_height), height))
    drawer = rdMolDraw2D.MolDraw2DSVG(width, height)
    options = drawer.drawOptions()
    options.clearBackground = False
    options.fixedBondLength = 24
    options.padding = 0.05
    options.addStereoAnnotation = False
    rdMolDraw2D.PrepareAndDrawMolecule(drawer, mol)
    drawer.FinishDrawing()
    svg = drawer.GetDrawingText()
    svg = svg[svg.index("<svg") :]  # drop the XML declaration: the SVG is inlined in HTML
    return svg.replace("<svg ", f'<svg viewBox="0 0 {width} {height}" ', 1) if "viewBox" not in svg else svg


def _cid_html(cid: str | None) -> str:
    if not cid:
        return ""
    if cid.isdigit():
        link = f"https://pubchem.ncbi.nlm.nih.gov/compound/{cid}"
        return f'CID <a href="{link}" title="Open in PubChem">{html.escape(cid)}</a>'
    return f"ID {html.escape(cid)}"


def result_card(
    result: SearchResult,
    direction: str,
    *,
    picture: bool = True,
    svg_size: tuple[int, int] = (300, 210),
    compact: bool = False,
) -> str:
    """One candidate as an HTML card: rank, score, CID, name, picture, SMILES (and the description of text hits).

    ``compact`` cards (narrow grids) put the CID on its own line under the name instead of beside the score.
    """
    esc = html.escape
    classes = "card truth" if result.is_truth else "card"
    badge = '<span class="badge">ground truth</span>' if result.is_truth else ""
    name = result.name or (truncate(result.smiles, 60) if direction == "t2m" else None) or "(no name)"
    cid = _cid_html(result.cid)
    parts = [
        f'<div class="{classes}">',
        f'{badge}<div class="top"><span class="rank">#{result.rank}</span>'
        f'<span class="score">score <b>{result.score:.3f}</b></span>'
        + ("" if compact else f'<span class="cid">{cid}</span>')
        + "</div>",
        f'<div class="name" title="{esc(result.name or "")}">{esc(name)}</div>',
    ]
    if compact:
        parts.append(f'<div class="cid below">{cid}</div>')
    if direction == "m2t":
        description = result.description or ""
        parts.append(f'<div class="desc" title="{esc(description)}">{esc(description)}</div>')
    if picture:
        parts.append(f'<div class="pic">{molecule_svg(result.smiles, *svg_size)}</div>')
    parts.append(f'<div class="smiles" title="{esc(result.smiles or "")}">{esc(result.smiles or "")}</div>')
    parts.append("</div>")
    return "\n".join(parts)


def page(title: str, body: str) -> str:
    """A complete HTML document with the report CSS inline."""
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n"
    )


def legend_html(direction: str, *, truth: bool) -> str:
    """The legend line: what the score is, how ranks count ties, and the ground-truth outline."""
    items = [
        "<span><b>#rank</b> best first (ties count against the truth)</span>",
        "<span><b>score</b>: the model's similarity of query and candidate (cosine, higher is better)</span>",
    ]
    if truth:
        items.append('<span><span class="swatch"></span><b>ground truth</b>: the true answer of the query</span>')
    what = (
        "molecules (structures drawn with RDKit)"
        if direction == "t2m"
        else "descriptions, with the molecule each describes"
    )
    items.append(f"<span>candidates: {what}</span>")
    return '<div class="legend">' + "".join(items) + "</div>"


def query_html(direction: str, query: str, *, label: str | None = None, cid: str | None = None) -> str:
    """The query box: the text (``t2m``) or the structure and SMILES (``m2t``)."""
    esc = html.escape
    tag = label or ("Query description" if direction == "t2m" else "Query molecule")
    where = f" \u00b7 {_cid_html(cid)}" if cid else ""
    if direction == "t2m":
        return (
            f'<div class="query"><div><div class="label">{esc(tag)}{where}</div>'
            f'<div class="text">{esc(query)}</div></div></div>'
        )
    return (
        f'<div class="query"><div class="pic">{molecule_svg(query, 260, 190)}</div>'
        f'<div><div class="label">{esc(tag)}{where}</div><div class="smiles" style="-webkit-line-clamp: 4">'
        f"{esc(query)}</div></div></div>"
    )


def render_search_html(
    query: str,
    results: Sequence[SearchResult],
    *,
    direction: str = "t2m",
    truth: SearchResult | None = None,
    info: Mapping[str, Any] | None = None,
    title: str = "Molecule search",
) -> str:
    """A self-contained HTML page of one search: the query on top, the candidates in a grid (Figure 5 layout).

    Args:
        query (str): the query text (``t2m``) or SMILES (``m2t``, drawn on top).
        results (Sequence[SearchResult]): the candidates, best first.
        direction (str): ``t2m`` or ``m2t``.
        truth (SearchResult | None): the ground truth; outlined in the grid when it is among ``results``, shown
            below them with its rank otherwise.
        info (Mapping | None): the index's ``info`` (model, counts) for the header line.
        title (str): the page title.

    Returns:
        str: the HTML document. It holds one SVG per candidate, one for the query molecule (``m2t``) and one for a
        ground truth outside the results.
    """
    esc = html.escape
    info = info or {}
    model = (info.get("model") or {}).get("name_or_path") or "(model in memory)"
    pool = info.get("num_molecules") if direction == "t2m" else info.get("num_texts")
    meta = (
        f"{esc(DIRECTION_LABELS.get(direction, direction))} \u00b7 top {len(results)} of "
        f"{pool if pool is not None else '?'} candidates \u00b7 model <code>{esc(str(model))}</code>"
    )
    body = [f"<h1>{esc(title)}</h1>", f'<div class="meta">{meta}</div>', query_html(direction, query)]
    body.append(legend_html(direction, truth=truth is not None))
    body.append('<div class="grid">' + "\n".join(result_card(r, direction) for r in results) + "</div>")
    if truth is not None and not any(r.is_truth for r in results):
        of = f" of {pool}" if pool is not None else ""
        body.append(f"<h2>Ground truth: rank {truth.rank}{of} (not in the top {len(results)})</h2>")
        body.append('<div class="grid">' + result_card(truth, direction) + "</div>")
    return page(title, "\n".join(body))


def format_table(
    results: Sequence[SearchResult],
    *,
    direction: str = "t2m",
    truth: SearchResult | None = None,
    width: int | None = None,
) -> str:
    """The results as a plain-text table for a terminal: rank, score, CID and the name / SMILES (or description).

    Args:
        results (Sequence[SearchResult]): the candidates, best first.
        direction (str): ``t2m`` shows names (or SMILES); ``m2t`` shows descriptions.
        truth (SearchResult | None): the ground truth; marked with ``*`` and reported below the table.
        width (int | None): total width in characters (default: the terminal's, at least 80).

    Returns:
        str: the table, ending with a newline.
    """
    width = width or max(80, shutil.get_terminal_size((100, 20)).columns)
    cid_width = max([3, *(len(r.cid or "") for r in results)])
    header_last = "name / SMILES" if direction == "t2m" else "description"
    fixed = 5 + 2 + 7 + 2 + cid_width + 2
    rest = max(width - fixed, 20)
    lines = [f"{'rank':>5}  {'score':>7}  {'CID':<{cid_width}}  {header_last}", "-" * min(width, fixed + rest)]
    for r in results:
        if direction == "t2m":
            label = r.name or r.smiles
            if r.name and r.smiles and len(r.name) + 3 < rest:
                label = f"{r.name}  {r.smiles}"
        else:
            label = r.description or r.name or ""
        mark = "*" if r.is_truth else " "
        lines.append(f"{r.rank:>4}{mark}  {r.score:>7.4f}  {(r.cid or ''):<{cid_width}}  {truncate(label, rest)}")
    if truth is not None:
        where = "marked *" if any(r.is_truth for r in results) else "not in the table"
        lines.append(f"ground truth CID {truth.cid}: rank {truth.rank}, score {truth.score:.4f} ({where})")
    return "\n".join(lines) + "\n"
