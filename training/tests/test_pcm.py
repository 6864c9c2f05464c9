"""PCM loss: PCA reconstruction, the contrastive loss, and the cross-process gather."""

import math

import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F

from training.train.distributed import gather_with_grad
from training.model.clip import CLIP, model_config
from training.model.pcm import (
    LOGIT_SCALE_MAX,
    contrastive_loss,
    local_gather,
    pca_reconstruct,
    pcm_loss,
)


def _low_rank(n: int, d: int, rank: int) -> torch.Tensor:
    """n rows in d dims whose centred matrix has exactly ``rank`` (generic random factors)."""
    mean = torch.randn(1, d)
    return mean + torch.randn(n, rank, dtype=torch.float64).float() @ torch.randn(rank, d)


def test_pca_exact_when_k_reaches_the_rank():
    features = _low_rank(16, 12, 3)
    for k in (3, 4, 8):
        assert torch.allclose(pca_reconstruct(features, k), features, atol=1e-5), k


def test_pca_not_exact_below_the_rank():
    features = _low_rank(16, 12, 3)
    error = (pca_reconstruct(features, 2) - features).abs().max().item()
    assert error > 1e-2


def test_pca_keeps_the_mean_and_projects_onto_the_top_components():
    torch.manual_seed(1)
    features = torch.randn(20, 6)
    reduced = pca_reconstruct(features, 2)
    assert torch.allclose(reduced.mean(0), features.mean(0), atol=1e-6)
    # the residual is orthogonal to the reconstruction's centred part (an orthogonal projection)
    centred = reduced - reduced.mean(0)
    residual = features - reduced
    assert (centred * residual).sum().abs().item() < 1e-4
    # and it is the best rank-2 approximation: its error equals the discarded singular values
    singular = torch.linalg.svdvals(features - features.mean(0))
    expected = singular[2:].pow(2).sum().sqrt()
    assert torch.isclose(residual.norm(), expected, rtol=1e-4)


def test_pca_has_gradients():
    features = torch.randn(12, 8, requires_grad=True)
    pca_reconstruct(features, 3).pow(2).sum().backward()
    assert features.grad is not None and torch.isfinite(features.grad).all()
    assert features.grad.abs().sum() > 0


def test_contrastive_loss_matches_a_direct_computation():
    image = F.normalize(torch.randn(5, 8), dim=-1)
    text = F.normalize(torch.randn(5, 8), dim=-1)
    scale = torch.tensor(math.log(10.0))
    logits = 10.0 * image @ text.T
    targets = torch.arange(5)
    expected = 0.0
    for rows in (logits, logits.T):
        # label smoothing 0.1 by hand: 0.9 on the target, 0.1 spread over all 5 classes
        log_probs = rows.log_softmax(-1)
        picked = log_probs[targets, targets]
        expected += -(0.9 * picked + 0.1 * log_probs.mean(-1)).mean() / 2
    got = contrastive_loss(image, text, scale, label_smoothing=0.1)
    assert torch.isclose(got, expected, rtol=1e-5)


def test_identical_captions_as_shared_positives_give_the_same_loss():
    # Rows 0 and 2 have the same caption (identical text embeddings). Spreading each row's
    # target over both copies, the "shared positives" remedy, leaves the loss unchanged: the
    # copies' logits are equal in one direction and their rows equal in the other.
    torch.manual_seed(2)
    image = F.normalize(torch.randn(4, 8), dim=-1)
    text = F.normalize(torch.randn(4, 8), dim=-1)
    text[2] = text[0]
    logits = 10.0 * image @ text.T
    shared = torch.tensor(
        [[0.5, 0.0, 0.5, 0.0], [0.0, 1.0, 0.0, 0.0], [0.5, 0.0, 0.5, 0.0], [0.0, 0.0, 0.0, 1.0]]
    )
    by_hand = sum(
        -((0.9 * shared + 0.1 / 4) * rows.log_softmax(-1)).sum(-1).mean() / 2
        for rows in (logits, logits.T)
    )
    one_hot = contrastive_loss(image, text, torch.tensor(math.log(10.0)), label_smoothing=0.1)
    assert torch.isclose(one_hot, by_hand, rtol=1e-5)


def test_logit_scale_is_clamped_at_ln_100():
    image = F.normalize(torch.randn(4, 8), dim=-1)
    text = F.normalize(torch.randn(4, 8), dim=-1)
    at_max = contrastive_loss(image, text, torch.tensor(LOGIT_SCALE_MAX))
    beyond = contrastive_loss(image, text, torch.tensor(LOGIT_SCALE_MAX + 2.0))
    assert torch.isclose(at_max, beyond)


def test_pcm_off_is_the_long_term_only():
    image, long, short = torch.randn(6, 8), torch.randn(6, 8), torch.randn(6, 8)
    scale = torch.tensor(2.0)
    with_pcm = pcm_loss(image, long, short, scale, components=2)
    without = pcm_loss(image, long, None, scale, pcm=False)
    assert without.short is None
    assert torch.isclose(without.total, with_pcm.long)
    assert torch.isclose(with_pcm.total, with_pcm.long + with_pcm.short)
    weighted = pcm_loss(image, long, short, scale, components=2, weight=0.25)
    assert torch.isclose(weighted.total, with_pcm.long + 0.25 * with_pcm.short)


def test_short_captions_may_bring_their_own_images():
    image, long, short, other = (torch.randn(6, 8) for _ in range(4))
    scale = torch.tensor(2.0)
    separate = pcm_loss(image, long, short, scale, components=2, short_image_features=other)
    # the long term keeps the long captions' images; the short term uses the other batch's
    assert torch.isclose(separate.long, pcm_loss(image, long, None, scale, pcm=False).long)
    assert torch.isclose(separate.short, pcm_loss(other, long, short, scale, components=2).short)
    assert not torch.isclose(
        separate.short, pcm_loss(image, long, short, scale, components=2).short
    )


def test_gradients_reach_the_image_tower_through_the_pca_term():
    config = model_config("tiny")
    config.image_resolution = 32
    model = CLIP.random_init(config)
    pixels = torch.randn(6, 3, 32, 32)
    long_ids = torch.randint(1, 100, (6, 12))
    long_ids[:, -1] = config.vocab_size - 1
    short_ids = long_ids[:, :6].clone()
    short_ids[:, -1] = config.vocab_size - 1
    # the short term alone: only the PCA-reconstructed image features link it to the image tower
    loss = pcm_loss(
        model.encode_image(pixels),
        model.encode_text(long_ids),
        model.encode_text(short_ids),
        model.logit_scale,
        components=3,
    ).short
    loss.backward()
    grads = [p.grad for name, p in model.named_parameters() if name.startswith("visual.")]
    assert all(g is not None for g in grads)
    assert sum(g.abs().sum().item() for g in grads) > 0
    assert model.logit_scale.grad is not None


def _reference_gathered_loss(image, text, sizes):
    """What the distributed loss should be, in one process: each slice's rows scored against
    all rows, summed over slices, with gradients taken on the whole batch."""
    full_image = image.clone().requires_grad_(True)
    full_text = text.clone().requires_grad_(True)
    total = torch.zeros(())
    start = 0
    for size in sizes:
        local_image = full_image[start : start + size]
        local_text = full_text[start : start + size]
        wholes = {id(local_image): full_image, id(local_text): full_text}

        def gather(rows, wholes=wholes, offset=start):
            return wholes[id(rows)], offset

        total = total + contrastive_loss(local_image, local_text, torch.tensor(2.0), gather=gather)
        start += size
    total.backward()
    return total.detach(), full_image.grad, full_text.grad


def _gather_worker(rank, world, init_file, image, text, sizes, results):
    torch.set_num_threads(1)
    torch.distributed.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world
    )
    try:
        start = sum(sizes[:rank])
        local_image = image[start : start + sizes[rank]].clone().requires_grad_(True)
        local_text = text[start : start + sizes[rank]].clone().requires_grad_(True)
        gathered, offset = gather_with_grad(local_image)
        loss = contrastive_loss(local_image, local_text, torch.tensor(2.0), gather=gather_with_grad)
        loss.backward()
        torch.save(
            {
                "gathered": gathered.detach(),
                "offset": offset,
                "loss": loss.detach(),
                "image_grad": local_image.grad,
                "text_grad": local_text.grad,
            },
            f"{results}/rank{rank}.pt",
        )
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.parametrize("sizes", [[4, 4], [3, 5]])
def test_gather_with_grad_in_two_gloo_processes(tmp_path, sizes):
    image = F.normalize(torch.randn(sum(sizes), 8), dim=-1)
    text = F.normalize(torch.randn(sum(sizes), 8), dim=-1)
    mp.spawn(
        _gather_worker,
        args=(2, str(tmp_path / "init"), image, text, sizes, str(tmp_path)),
        nprocs=2,
        join=True,
    )
    ranks = [torch.load(str(tmp_path / f"rank{r}.pt")) for r in range(2)]
    total, image_grad, text_grad = _reference_gathered_loss(image, text, sizes)
    for rank, result in enumerate(ranks):
        assert torch.equal(result["gathered"], image)
        assert result["offset"] == sum(sizes[:rank])
    assert torch.isclose(ranks[0]["loss"] + ranks[1]["loss"], total, rtol=1e-5)
    # each process's rows get the gradient of the sum of every process's loss
    assert torch.allclose(torch.cat([r["image_grad"] for r in ranks]), image_grad, atol=1e-6)
    assert torch.allclose(torch.cat([r["text_grad"] for r in ranks]), text_grad, atol=1e-6)


def test_gather_is_the_identity_in_one_process():
    rows = torch.randn(3, 4)
    gathered, offset = gather_with_grad(rows)
    assert gathered is rows and offset == 0
    assert local_gather(rows) == (rows, 0)
