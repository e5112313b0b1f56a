"""Training: fine-tuning of trainable methods and the demo model."""
