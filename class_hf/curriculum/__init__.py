"""class_hf.curriculum."""
