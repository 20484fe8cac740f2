"""class_hf.data."""
