"""What the GPU check trains at its two sizes, the model FLOPs of a training step, and the
published peaks of the GPUs it knows.

Sizing of the CUDA run, which must finish in under 8 minutes on one H100 (the ``GPU`` size):
the model is ViT-B/16-shaped (patch 16, 224 pixels, vision width 768 and text width 512 with
64-wide heads, 248 positions) at a third of B/16's depth, 4 + 4 layers. A training sample is
one image, its long caption (synthetic ones run to about 230 positions) and its short one
(about 30); ``training_flops`` counts 3 x 18.9 GFLOP for it, so a step of 256 samples is
14.5 TFLOP and 300 steps are 4.4 PFLOP per run. The fp32 run dominates: at 35-40 of the H100
SXM's 67 fp32 TFLOP/s it takes 110-125 s; a bf16 or fp16 run at 300 of 989 TFLOP/s takes 15 s
of compute, more if the image loader (JPEG decoding on the spare cores) cannot keep up. With
8,192 scenes rendered on all cores (about 10 s), the vocabulary, the KPS stretch, three
training runs with their loader start-ups (about 1 s an epoch, 10 epochs a run), the ONNX
export with its CPU check, the fp16 copy, the GPU check and 20 DDP steps launched by torchrun
(about 20 s with its start-up), the total is about 5 minutes, leaving room for the fp32 rate
to come out a third lower than assumed.
"""

from dataclasses import dataclass
from typing import Dict, Optional

from ..model.clip import ModelConfig, model_config


@dataclass(frozen=True)
class Size:
    name: str
    images: int  # synthetic scenes rendered for training
    image_size: int  # side of the rendered JPEGs (synth: 64..224)
    resolution: int  # the model's input side
    vision_width: int
    vision_layers: int
    text_width: int
    text_layers: int
    embed_dim: int
    batch_size: int
    steps: int
    warmup_steps: int
    lr: float
    pcm_components: int
    ddp_steps: int  # at most warmup_steps, so the DDP run's learning rates are the first run's
    merges: int  # BPE merges learnt from the captions (fewer if every word is one token)
    context_length: Optional[int]  # positions a caption may use in training (None: all 248)
    budget_s: int  # the time the whole check is designed to stay under


GPU = Size(
    name="CUDA",
    images=8192,
    image_size=224,
    resolution=224,
    vision_width=768,
    vision_layers=4,
    text_width=512,
    text_layers=4,
    embed_dim=512,
    batch_size=256,
    steps=300,
    warmup_steps=30,
    lr=5e-4,
    pcm_components=32,
    ddp_steps=20,
    merges=1000,
    context_length=None,
    budget_s=480,
)

# The same stages on the CPU in well under 2 minutes: patch 16 on a 32-pixel input (4 patches),
# one 64-wide layer per tower, 248 positions of which training uses the first 96 (past CLIP's
# 77; whole captions would cost twice as much, and bf16 matrix products on a CPU without bf16
# instructions run at a small fraction of fp32's speed).
DRY_RUN = Size(
    name="dry run (CPU)",
    images=64,
    image_size=64,
    resolution=32,
    vision_width=64,
    vision_layers=1,
    text_width=64,
    text_layers=1,
    embed_dim=64,
    batch_size=12,
    steps=20,
    warmup_steps=4,
    lr=5e-3,
    pcm_components=4,
    ddp_steps=4,
    merges=300,
    context_length=96,
    budget_s=120,
)


def clip77_config(size: Size, vocab_size: int) -> ModelConfig:
    """The 77-position CLIP the check starts from (random init), before the KPS stretch."""
    config = model_config("ViT-B/16", "clip")
    config.image_resolution = size.resolution
    config.vision_width = size.vision_width
    config.vision_layers = size.vision_layers
    config.text_width = size.text_width
    config.text_layers = size.text_layers
    config.embed_dim = size.embed_dim
    config.vocab_size = vocab_size
    return config


def _transformer_flops(tokens: int, width: int, layers: int) -> int:
    """Forward matrix-multiply FLOPs of ``layers`` residual attention blocks on ``tokens``
    positions: in-projection 6nw², out-projection 2nw², MLP 16nw², scores and weighted sum
    4n²w (the causal mask does not skip any)."""
    return layers * (24 * tokens * width**2 + 4 * tokens**2 * width)


def image_flops(config: ModelConfig) -> int:
    """Forward FLOPs of the image tower for one image."""
    grid = config.image_resolution // config.vision_patch_size
    patches = 2 * grid**2 * 3 * config.vision_patch_size**2 * config.vision_width
    blocks = _transformer_flops(grid**2 + 1, config.vision_width, config.vision_layers)
    return patches + blocks + 2 * config.vision_width * config.embed_dim


def text_flops(config: ModelConfig, positions: int) -> int:
    """Forward FLOPs of the text tower for one caption run at ``positions`` positions."""
    blocks = _transformer_flops(positions, config.text_width, config.text_layers)
    return blocks + 2 * config.text_width * config.embed_dim


def training_flops(config: ModelConfig, text_positions: int, short_positions: Optional[int]):
    """Model FLOPs of one training sample, forward and backward (twice the forward), as
    model-FLOPs utilisation counts them: the loss, the PCA and the optimizer are left out."""
    forward = image_flops(config) + text_flops(config, text_positions)
    if short_positions is not None:
        forward += text_flops(config, short_positions)
    return 3 * forward


# Dense peaks in TFLOP/s. NVIDIA's H100 and H200 datasheets list the tensor-core BF16/FP16
# rates "with sparsity" (H100 SXM 1,979, PCIe 1,513, NVL 1,671; H200 as H100 SXM, H200 NVL as
# H100 NVL); dense is half. FP32 is the CUDA-core rate (SXM 67, PCIe 51, NVL 60), the one an
# fp32 run with TF32 off (as the check sets it) can reach. First matching name wins.
PEAKS = (
    ("H200 NVL", {"bf16": 835.5, "fp16": 835.5, "fp32": 60.0}),
    ("H200", {"bf16": 989.5, "fp16": 989.5, "fp32": 67.0}),
    ("H100 NVL", {"bf16": 835.5, "fp16": 835.5, "fp32": 60.0}),
    ("H100 PCIe", {"bf16": 756.5, "fp16": 756.5, "fp32": 51.0}),
    ("H100", {"bf16": 989.5, "fp16": 989.5, "fp32": 67.0}),
)
PEAK_SOURCE = (
    "NVIDIA H100 / H200 Tensor Core GPU datasheets: BF16/FP16 tensor core 'with sparsity' "
    "halved, FP32 CUDA core"
)


def published_peak(device_name: str) -> Optional[Dict[str, float]]:
    """The peaks of a device by its CUDA name (e.g. "NVIDIA H100 80GB HBM3"), or None."""
    for key, peaks in PEAKS:
        if key in device_name:
            return peaks
    return None
