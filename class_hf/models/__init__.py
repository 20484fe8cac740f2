"""class_hf.models."""
