"""Primary component matching (PCM): the Long-CLIP fine-tuning loss.

The long caption is matched with the full image feature; the short caption is matched with
the image feature reconstructed from the batch's top principal components, so that short
captions only have to explain the coarse, dominant attributes of an image. Both terms are
CLIP's symmetric cross-entropy with label smoothing.
"""

import math
from typing import Callable, NamedTuple, Optional, Tuple

import torch
import torch.nn.functional as F

# CLIP clips the learned temperature so that logits are never scaled by more than 100.
LOGIT_SCALE_MAX = math.log(100.0)

# A gather takes this process's rows and returns (rows of every process, offset of ours).
Gather = Callable[[torch.Tensor], Tuple[torch.Tensor, int]]


def local_gather(tensor: torch.Tensor) -> Tuple[torch.Tensor, int]:
    """The single-process gather: the batch is the whole batch."""
    return tensor, 0


class PcmLoss(NamedTuple):
    total: torch.Tensor
    long: torch.Tensor
    short: Optional[torch.Tensor]


def pca_reconstruct(features: torch.Tensor, k: int = 32) -> torch.Tensor:
    """Project the rows of ``features`` [N, D] onto the batch's top-k principal components.

    Centres the batch, takes the top-k right singular vectors of the centred matrix, projects
    onto them and adds the mean back. The result is differentiable (through the SVD). When k
    reaches min(N, D) the components span every row, so the reconstruction is the input itself;
    it is returned directly, which also avoids the SVD's ill-conditioned backward on the
    near-zero singular value that centring creates.
    """
    if features.dim() != 2:
        raise ValueError(f"pca_reconstruct expects [N, D] features, got {tuple(features.shape)}")
    if k < 1:
        raise ValueError(f"the number of PCA components must be at least 1, got {k}")
    features = features.float()
    if k >= min(features.shape):
        return features
    mean = features.mean(dim=0, keepdim=True)
    centred = features - mean
    _, _, vh = torch.linalg.svd(centred, full_matrices=False)
    components = vh[:k].transpose(0, 1)
    return centred @ components @ components.transpose(0, 1) + mean


def contrastive_loss(
    image: torch.Tensor,
    text: torch.Tensor,
    logit_scale: torch.Tensor,
    label_smoothing: float = 0.1,
    gather: Gather = local_gather,
) -> torch.Tensor:
    """CLIP's symmetric cross-entropy between matched rows of ``image`` and ``text``.

    ``logit_scale`` is the learnable log temperature as CLIP stores it (exp gives the
    multiplier), clamped at ln 100. With a distributed ``gather`` each process scores its own
    rows against every process's rows (the targets are offset by this process's position), as
    the official training does; gradients flow back through the gather.
    """
    if image.shape != text.shape:
        raise ValueError(f"image {tuple(image.shape)} and text {tuple(text.shape)} must match")
    all_image, offset = gather(image)
    all_text, _ = gather(text)
    scale = logit_scale.float().clamp(max=LOGIT_SCALE_MAX).exp()
    if image.shape[0] == 0:
        # This process drew no usable rows; it still joins the gathers above and backward.
        return (image.sum() + text.sum()) * 0.0 + scale * 0.0
    targets = torch.arange(image.shape[0], device=image.device) + offset
    logits_image = scale * image @ all_text.transpose(0, 1)
    logits_text = scale * text @ all_image.transpose(0, 1)
    return (
        F.cross_entropy(logits_image, targets, label_smoothing=label_smoothing)
        + F.cross_entropy(logits_text, targets, label_smoothing=label_smoothing)
    ) / 2


def pcm_loss(
    image_features: torch.Tensor,
    long_features: torch.Tensor,
    short_features: Optional[torch.Tensor],
    logit_scale: torch.Tensor,
    *,
    short_image_features: Optional[torch.Tensor] = None,
    pcm: bool = True,
    components: int = 32,
    weight: float = 1.0,
    label_smoothing: float = 0.1,
    gather: Gather = local_gather,
) -> PcmLoss:
    """The Long-CLIP loss from raw (unnormalised) tower outputs.

    contrastive(image, long) + weight * contrastive(PCA_k(image), short), with every feature
    L2-normalised first and the PCA taken over this process's batch (as the official code
    does, whose weight is 1); the reconstructed features are not renormalised. With
    ``pcm=False`` only the long-caption term is used (the "direct fine-tuning" ablation).
    ``short_image_features`` are the short captions' images when these come from a batch of
    their own (default: the long captions' images, the official pairing).
    """
    image = _normalise(image_features)
    long = _normalise(long_features)
    long_term = contrastive_loss(image, long, logit_scale, label_smoothing, gather)
    if not pcm:
        return PcmLoss(long_term, long_term, None)
    if short_features is None:
        raise ValueError("PCM needs short-caption features; pass pcm=False to train without")
    short = _normalise(short_features)
    short_image = image if short_image_features is None else _normalise(short_image_features)
    reduced = pca_reconstruct(short_image, components)
    short_term = contrastive_loss(reduced, short, logit_scale, label_smoothing, gather)
    return PcmLoss(long_term + weight * short_term, long_term, short_term)


def _normalise(features: torch.Tensor) -> torch.Tensor:
    return F.normalize(features.float(), dim=-1)
