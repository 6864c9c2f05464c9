"""Long-CLIP training package: checkpoint loading, KPS, PCM fine-tuning, ONNX export."""

__version__ = "0.1.0"
