"""Zero-shot classification analogue on an Urban1k-layout synthetic set.

Each image's class is its salient object's colour+shape (``labels.json`` written by ``synth``).
Class embeddings are the mean of the normalised text embeddings of a few prompt templates, as
CLIP's zero-shot ImageNet evaluation does; an image is assigned the class of highest cosine.
Runs on the PyTorch checkpoint, so it is an evaluator independent of the ONNX export.
"""

import json
from pathlib import Path
from typing import Dict, List, Sequence

import torch
import torch.nn.functional as F

from ..model.checkpoint import load_checkpoint
from ..train.data import load_image
from ..model.tokenizer import ClipTokenizer

TEMPLATES = (
    "a photo of a {}.",
    "a picture of a {}.",
    "a {} in the picture.",
    "an image with a large {}.",
)


def read_labels(data: Path) -> Dict[str, str]:
    """``{image name: class}`` from ``labels.json``; names whose image is missing are dropped."""
    path = Path(data) / "labels.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; generate the set with synth --layout urban1k")
    labels = json.loads(path.read_text())
    return {name: cls for name, cls in labels.items() if (data / "image" / f"{name}.jpg").is_file()}


@torch.no_grad()
def class_embeddings(
    model, tokenizer: ClipTokenizer, classes: Sequence[str], templates
) -> torch.Tensor:
    rows = []
    for cls in classes:
        ids = tokenizer.tokenize([t.format(cls) for t in templates], model.config.context_length)
        text = F.normalize(model.encode_text(ids).float(), dim=-1)
        rows.append(F.normalize(text.mean(dim=0), dim=-1))
    return torch.stack(rows)


@torch.no_grad()
def zero_shot_accuracy(
    checkpoint: Path, vocab: Path, data: Path, templates=TEMPLATES, batch_size: int = 128
) -> dict:
    """Top-1 accuracy over the classes present in ``data``'s labels."""
    model, _ = load_checkpoint(checkpoint)
    model = model.float().eval()
    tokenizer = ClipTokenizer(vocab)
    labels = read_labels(Path(data))
    classes: List[str] = sorted(set(labels.values()))
    weights = class_embeddings(model, tokenizer, classes, templates)
    index = {cls: i for i, cls in enumerate(classes)}
    names = sorted(labels)
    correct = 0
    counted = 0
    for start in range(0, len(names), batch_size):
        chunk = names[start : start + batch_size]
        pixels, targets = [], []
        for name in chunk:
            image = load_image(data / "image" / f"{name}.jpg", model.config.image_resolution)
            if image is not None:
                pixels.append(image)
                targets.append(index[labels[name]])
        if not pixels:
            continue
        features = F.normalize(model.encode_image(torch.stack(pixels)).float(), dim=-1)
        predicted = (features @ weights.T).argmax(dim=-1)
        correct += int((predicted == torch.tensor(targets)).sum())
        counted += len(targets)
    return {
        "n": counted,
        "classes": len(classes),
        "templates": list(templates),
        "top1": correct / counted if counted else 0.0,
    }
