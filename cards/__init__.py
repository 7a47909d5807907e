"""Dataset-card templates (Jinja), rendered with `huggingface_hub.DatasetCard.from_template`."""
