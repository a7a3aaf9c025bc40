"""Training the embedded C2S model: data split and examples, the training loop, the model card."""
