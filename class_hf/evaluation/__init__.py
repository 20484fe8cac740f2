"""class_hf.evaluation."""
