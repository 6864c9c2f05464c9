"""The model: CLIP with the Long-CLIP text tower, KPS, the PCM loss, checkpoints, tokenizer."""
