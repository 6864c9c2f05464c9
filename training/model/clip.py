"""CLIP with a ViT image tower and the Long-CLIP text tower (248 positions).

Parameter names follow the official OpenAI CLIP / Long-CLIP state dicts exactly, so their
checkpoints load with ``strict=True``. Everything computes in float32; the official code also
runs in float32 on CPU (``model.float()``), which is what the reference outputs were made with.
"""

from collections import OrderedDict
from dataclasses import asdict, dataclass
from typing import Dict, Optional, Tuple

import torch
from torch import nn

LONGCLIP_CONTEXT = 248
CLIP_CONTEXT = 77
KEEP_POSITIONS = 20
CLIP_VOCAB_SIZE = 49408
HEAD_WIDTH = 64


class UnsupportedCheckpointError(ValueError):
    """A checkpoint this package cannot load; the message says what to use instead."""


@dataclass
class ModelConfig:
    """Dimensions of a CLIP model; ``model_type`` is "longclip" (two position tables) or "clip"."""

    embed_dim: int
    image_resolution: int
    vision_layers: int
    vision_width: int
    vision_patch_size: int
    context_length: int
    vocab_size: int
    text_width: int
    text_layers: int
    model_type: str = "longclip"
    keep_positions: int = KEEP_POSITIONS

    @property
    def vision_heads(self) -> int:
        return max(1, self.vision_width // HEAD_WIDTH)

    @property
    def text_heads(self) -> int:
        return max(1, self.text_width // HEAD_WIDTH)

    def to_dict(self) -> dict:
        return asdict(self)


_PRESETS: Dict[str, Tuple[int, int, int, int, int]] = {
    # name: embed_dim, vision_width, vision_layers, patch_size, text_width
    "ViT-B/16": (512, 768, 12, 16, 512),
    "ViT-L/14": (768, 1024, 24, 14, 768),
    "tiny": (64, 128, 2, 16, 128),
}


def model_config(name: str, model_type: str = "longclip") -> ModelConfig:
    """Preset shapes: the LongCLIP-B/L sizes, and the tiny size of the reference checkpoint."""
    if name not in _PRESETS:
        raise UnsupportedCheckpointError(
            f"unknown model preset {name!r}; choose one of {', '.join(_PRESETS)}"
        )
    embed_dim, vision_width, vision_layers, patch, text_width = _PRESETS[name]
    return ModelConfig(
        embed_dim=embed_dim,
        image_resolution=224,
        vision_layers=vision_layers,
        vision_width=vision_width,
        vision_patch_size=patch,
        context_length=LONGCLIP_CONTEXT if model_type == "longclip" else CLIP_CONTEXT,
        vocab_size=CLIP_VOCAB_SIZE,
        text_width=text_width,
        text_layers=2 if name == "tiny" else 12,
        model_type=model_type,
    )


class QuickGELU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class ResidualAttentionBlock(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        self.attn = nn.MultiheadAttention(width, heads)
        self.ln_1 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(
            OrderedDict(
                [
                    ("c_fc", nn.Linear(width, width * 4)),
                    ("gelu", QuickGELU()),
                    ("c_proj", nn.Linear(width * 4, width)),
                ]
            )
        )
        self.ln_2 = nn.LayerNorm(width)

    def forward(self, x: torch.Tensor, attn_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        y = self.ln_1(x)
        x = x + self.attn(y, y, y, need_weights=False, attn_mask=attn_mask)[0]
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    """Sequence-first (L, N, D) stack of residual attention blocks."""

    def __init__(self, width: int, layers: int, heads: int):
        super().__init__()
        self.width = width
        self.layers = layers
        self.resblocks = nn.ModuleList(
            [ResidualAttentionBlock(width, heads) for _ in range(layers)]
        )

    def forward(self, x: torch.Tensor, attn_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        for block in self.resblocks:
            x = block(x, attn_mask)
        return x


class VisionTransformer(nn.Module):
    def __init__(
        self, resolution: int, patch_size: int, width: int, layers: int, heads: int, output_dim: int
    ):
        super().__init__()
        self.input_resolution = resolution
        self.conv1 = nn.Conv2d(3, width, kernel_size=patch_size, stride=patch_size, bias=False)
        scale = width**-0.5
        grid = resolution // patch_size
        self.class_embedding = nn.Parameter(scale * torch.randn(width))
        self.positional_embedding = nn.Parameter(scale * torch.randn(grid * grid + 1, width))
        self.ln_pre = nn.LayerNorm(width)
        self.transformer = Transformer(width, layers, heads)
        self.ln_post = nn.LayerNorm(width)
        self.proj = nn.Parameter(scale * torch.randn(width, output_dim))

    @property
    def grid(self) -> Tuple[int, int]:
        """Patches per column and per row."""
        side = self.input_resolution // self.conv1.kernel_size[0]
        return side, side

    def _tokens(self, pixels: torch.Tensor) -> torch.Tensor:
        """[N, 1 + patches, width]: the class token and the patches (row-major), embedded."""
        x = self.conv1(pixels)
        x = x.flatten(2).permute(0, 2, 1)
        # expand instead of the official "+ zeros": the same values, and no shape-dependent
        # constant in the ONNX graph
        cls = self.class_embedding.reshape(1, 1, -1).expand(x.shape[0], 1, x.shape[-1])
        x = torch.cat([cls, x], dim=1) + self.positional_embedding
        return self.ln_pre(x)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = self._tokens(pixels)
        x = self.transformer(x.permute(1, 0, 2)).permute(1, 0, 2)
        return self.ln_post(x[:, 0, :]) @ self.proj

    def forward_dense(
        self, pixels: torch.Tensor, kind: str, residual: bool = False
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """(the pooled embedding, exactly as ``forward``; patch embeddings [N, patches, D])
        in the joint space, after ln_post and the projection, not normalised.

        ``kind`` "final": the last block's patch tokens. "value" (MaskCLIP): the last block's
        value path without query-key attention, out_proj(v(ln_1(x))) of the block's input x,
        each patch seeing only itself; ``residual`` adds x to it (MaskCLIP's ViT keeps the
        residual, ClearCLIP drops it; see DENSE_RESIDUAL).
        """
        if kind not in ("value", "final"):
            raise ValueError(f"dense kind must be value or final, not {kind!r}")
        x = self._tokens(pixels).permute(1, 0, 2)
        blocks = self.transformer.resblocks
        for block in blocks[:-1]:
            x = block(x)
        last = blocks[-1]
        before = x
        x = last(x).permute(1, 0, 2)
        pooled = self.ln_post(x[:, 0, :]) @ self.proj
        if kind == "final":
            patches = x[:, 1:, :]
        else:
            patches = value_path(last, before, residual).permute(1, 0, 2)[:, 1:, :]
        return pooled, self.ln_post(patches) @ self.proj


def value_path(block: "ResidualAttentionBlock", x: torch.Tensor, residual: bool) -> torch.Tensor:
    """out_proj(v(ln_1(x))) (+ x with ``residual``) for the block's (L, N, width) input: the
    attention's value projection and output projection, with every token attending only to
    itself (so the heads' split and merge cancel out)."""
    width = x.shape[-1]
    attn = block.attn
    weight, bias = attn.in_proj_weight[2 * width :], attn.in_proj_bias[2 * width :]
    out = attn.out_proj(nn.functional.linear(block.ln_1(x), weight, bias))
    return out + x if residual else out


class CLIP(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        if config.model_type not in ("longclip", "clip"):
            raise UnsupportedCheckpointError(
                f"model_type must be 'longclip' or 'clip', not {config.model_type!r}"
            )
        self.config = config
        self.visual = VisionTransformer(
            config.image_resolution,
            config.vision_patch_size,
            config.vision_width,
            config.vision_layers,
            config.vision_heads,
            config.embed_dim,
        )
        self.transformer = Transformer(config.text_width, config.text_layers, config.text_heads)
        self.token_embedding = nn.Embedding(config.vocab_size, config.text_width)
        self.positional_embedding = nn.Parameter(
            torch.empty(config.context_length, config.text_width)
        )
        if config.model_type == "longclip":
            self.positional_embedding_res = nn.Parameter(
                torch.empty(config.context_length, config.text_width)
            )
        self.ln_final = nn.LayerNorm(config.text_width)
        self.text_projection = nn.Parameter(torch.empty(config.text_width, config.embed_dim))
        self.logit_scale = nn.Parameter(torch.tensor(0.0))
        mask = torch.full((config.context_length, config.context_length), float("-inf"))
        # not persistent: official checkpoints carry no mask, and strict loading must match
        self.register_buffer("attn_mask", mask.triu(1), persistent=False)

    @classmethod
    def random_init(cls, config: ModelConfig) -> "CLIP":
        """A freshly initialised model, with the official CLIP initialisation scheme."""
        model = cls(config)
        model.initialize_parameters()
        return model

    def initialize_parameters(self) -> None:
        cfg = self.config
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.positional_embedding, std=0.01)
        if cfg.model_type == "longclip":
            nn.init.normal_(self.positional_embedding_res, std=0.01)
        with torch.no_grad():
            self.logit_scale.fill_(torch.log(torch.tensor(1 / 0.07)).item())
        for transformer in (self.transformer, self.visual.transformer):
            width, layers = transformer.width, transformer.layers
            proj_std = (width**-0.5) * ((2 * layers) ** -0.5)
            attn_std = width**-0.5
            fc_std = (2 * width) ** -0.5
            for block in transformer.resblocks:
                nn.init.normal_(block.attn.in_proj_weight, std=attn_std)
                nn.init.zeros_(block.attn.in_proj_bias)
                nn.init.normal_(block.attn.out_proj.weight, std=proj_std)
                nn.init.zeros_(block.attn.out_proj.bias)
                nn.init.normal_(block.mlp.c_fc.weight, std=fc_std)
                nn.init.normal_(block.mlp.c_proj.weight, std=proj_std)
        nn.init.normal_(self.text_projection, std=cfg.text_width**-0.5)

    def text_positions(self) -> torch.Tensor:
        """The effective [context_length, width] position table.

        Long-CLIP: rows below ``keep_positions`` from ``positional_embedding`` (frozen in
        training), the rest from ``positional_embedding_res``. The official code sums both tables
        under 0/1 masks; selecting rows gives bit-identical values.
        """
        if self.config.model_type != "longclip":
            return self.positional_embedding
        keep = self.config.keep_positions
        return torch.cat([self.positional_embedding[:keep], self.positional_embedding_res[keep:]])

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.visual(pixels)

    def encode_text(self, ids: torch.Tensor) -> torch.Tensor:
        """ids [N, L] with L <= context_length; the causal mask makes padding after the end
        token irrelevant, so any L that includes the end token gives the same result."""
        length = ids.shape[1]
        x = self.token_embedding(ids) + self.text_positions()[:length]
        mask = self.attn_mask[:length, :length]
        x = self.transformer(x.permute(1, 0, 2), mask).permute(1, 0, 2)
        x = self.ln_final(x)
        # pooled at the end token: the first occurrence of the highest id in each row
        rows = torch.arange(x.shape[0], device=x.device)
        return x[rows, ids.argmax(dim=-1)] @ self.text_projection

    def forward(self, pixels: torch.Tensor, ids: torch.Tensor):
        image = self.encode_image(pixels)
        text = self.encode_text(ids)
        image = image / image.norm(dim=-1, keepdim=True)
        text = text / text.norm(dim=-1, keepdim=True)
        return image, text, self.logit_scale.exp()


def freeze_kept_positions(model: CLIP) -> None:
    """Long-CLIP fine-tuning: the kept rows come from ``positional_embedding``, which stays
    frozen; only ``positional_embedding_res`` (used for rows >= keep) learns."""
    model.positional_embedding.requires_grad_(False)


def _count_blocks(state_dict: dict, prefix: str) -> int:
    return len({k.split(".")[len(prefix.split("."))] for k in state_dict if k.startswith(prefix)})


def config_from_state_dict(state_dict: dict) -> ModelConfig:
    """Infers the dimensions the way the official builder does."""
    if "visual.proj" not in state_dict:
        if any(k.startswith("visual.layer1") for k in state_dict):
            raise UnsupportedCheckpointError(
                "ResNet image towers are not supported; "
                "use a ViT checkpoint (ViT-B/16, ViT-L/14...)"
            )
        raise UnsupportedCheckpointError(
            "not a CLIP state dict (no visual.proj); expected an official Long-CLIP or OpenAI CLIP "
            "ViT checkpoint"
        )
    required = ("visual.conv1.weight", "visual.positional_embedding", "text_projection")
    required += ("positional_embedding", "token_embedding.weight", "ln_final.weight")
    missing = [key for key in required if key not in state_dict]
    if missing:
        raise UnsupportedCheckpointError(
            f"not a complete CLIP state dict: missing {', '.join(missing)}"
        )
    conv = state_dict["visual.conv1.weight"]
    patch = conv.shape[-1]
    grid = round((state_dict["visual.positional_embedding"].shape[0] - 1) ** 0.5)
    has_res = "positional_embedding_res" in state_dict
    return ModelConfig(
        embed_dim=state_dict["text_projection"].shape[1],
        image_resolution=patch * grid,
        vision_layers=len(
            [k for k in state_dict if k.startswith("visual.") and k.endswith("attn.in_proj_weight")]
        ),
        vision_width=conv.shape[0],
        vision_patch_size=patch,
        context_length=state_dict["positional_embedding"].shape[0],
        vocab_size=state_dict["token_embedding.weight"].shape[0],
        text_width=state_dict["ln_final.weight"].shape[0],
        text_layers=_count_blocks(state_dict, "transformer.resblocks"),
        model_type="longclip" if has_res else "clip",
    )


def build_model(state_dict: dict, keep_positions: int = KEEP_POSITIONS) -> CLIP:
    """A float32 model from an official-format state dict (fp16 entries are cast), strictly."""
    config = config_from_state_dict(state_dict)
    config.keep_positions = keep_positions
    model = CLIP(config)
    weights = {
        k: v.float() if v.is_floating_point() else v
        for k, v in state_dict.items()
        if k not in ("input_resolution", "context_length", "vocab_size", "attn_mask")
    }
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError as error:
        raise UnsupportedCheckpointError(
            f"the state dict does not match the CLIP layout its shapes imply: {error}"
        ) from error
    return model.eval()
