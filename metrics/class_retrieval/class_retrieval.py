"""Cross-modal retrieval metrics (Hits@k, MRR, mean rank, both directions) as an ``evaluate`` module.

An optional wrapper of :func:`class_hf.evaluation.retrieval.retrieval_metrics` for users of the ``evaluate``
library; class-hf itself never imports ``evaluate``. Load it from this folder (no network needed)::

    import evaluate

    metric = evaluate.load("metrics/class_retrieval")
    metric.compute(predictions=text_embeddings, references=molecule_embeddings)

Needs ``pip install "class-hf[evaluate]"``.
"""

from __future__ import annotations

import datasets
import evaluate
import numpy as np

from class_hf.evaluation.retrieval import retrieval_metrics

_DESCRIPTION = """\
Retrieval metrics of paired text and molecule embeddings, computed as class-hf does: text i and molecule i form a pair,
every other molecule (text) of the pool is a wrong candidate for text (molecule) i, and ties count against the query
(rank = 1 + number of candidates scoring at least as high as the true partner). The score is the cosine similarity.
The pool is the given pairs (the "split" pool), optionally extended with further candidate molecules and texts (the
"all" pool of Text2Mol and AMAN).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (list of list of float): text embeddings ``[N, D]``; text ``i`` describes molecule ``i``.
    references (list of list of float): molecule embeddings ``[N, D]``, row ``i`` the partner of text ``i``.
    ks (list of int, optional): cut-offs of Hits@k. Default ``(1, 5, 10)``.
    extra_molecules (array ``[M, D]``, optional): further candidate molecules for text->molecule retrieval.
    extra_texts (array ``[T, D]``, optional): further candidate texts for molecule->text retrieval.
    chunk_size (int, optional): queries scored at a time. Default 1024.

Returns:
    dict: ``t2m_hits@k``, ``t2m_mrr``, ``t2m_mean_rank`` and the same for ``m2t``; Hits and MRR in [0, 1].

Examples:
    >>> import evaluate
    >>> metric = evaluate.load("metrics/class_retrieval")
    >>> result = metric.compute(predictions=[[1.0, 0.0], [0.0, 1.0]], references=[[1.0, 0.1], [0.1, 1.0]], ks=[1])
    >>> result["t2m_hits@1"], result["m2t_mrr"]
    (1.0, 1.0)
"""

_CITATION = """\
@article{wu2025class,
  title   = {{CLASS}: Enhancing Cross-Modal Text-Molecule Retrieval Performance and Training Efficiency},
  author  = {Wu, Hongyan and Zeng, Peijian and Zheng, Weixiong and Wang, Lianxi and Lin, Nankai and Jiang, Shengyi and
             Yang, Aimin},
  journal = {arXiv preprint arXiv:2502.11633},
  year    = {2025}
}
"""

_VECTOR = (
    datasets.List(datasets.Value("float32"))
    if hasattr(datasets, "List")
    else datasets.Sequence(datasets.Value("float32"))
)


def _matrix(values, name: str) -> np.ndarray | None:
    if values is None:
        return None
    array = np.asarray(values, dtype=np.float32)
    if array.ndim != 2:
        raise ValueError(f"`{name}` must be a matrix [num_items, dim] of embeddings, got shape {array.shape}.")
    return array


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class ClassRetrieval(evaluate.Metric):
    """Hits@k, MRR and mean rank of paired text and molecule embeddings, in both directions."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": _VECTOR, "references": _VECTOR}),
            codebase_urls=["https://arxiv.org/abs/2502.11633"],
            reference_urls=["https://aclanthology.org/2021.emnlp-main.47/"],
        )

    def _compute(
        self,
        predictions,
        references,
        ks=(1, 5, 10),
        extra_molecules=None,
        extra_texts=None,
        chunk_size: int = 1024,
    ) -> dict[str, float]:
        texts = _matrix(predictions, "predictions")
        molecules = _matrix(references, "references")
        if texts.shape != molecules.shape:
            raise ValueError(
                f"`predictions` (texts) and `references` (molecules) must pair up row by row with the same width, "
                f"got shapes {texts.shape} and {molecules.shape}."
            )
        return retrieval_metrics(
            texts,
            molecules,
            extra_mol_embeds=_matrix(extra_molecules, "extra_molecules"),
            extra_text_embeds=_matrix(extra_texts, "extra_texts"),
            ks=tuple(int(k) for k in ks),
            chunk_size=int(chunk_size),
        )
