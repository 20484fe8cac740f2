"""class-hf: CLASS curriculum training for cross-modal text-molecule retrieval on the Hugging Face stack."""

__version__ = "0.1.0"
