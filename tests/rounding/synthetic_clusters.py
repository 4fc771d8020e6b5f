"""Synthetic clustered embeddings and a brute-force objective shared by the rounding tests."""

import torch
import torch.nn.functional as F


def noisy_clusters(batch=3, num_pixels=600, num_clusters=5, dim=8, noise=0.1, seed=0):
    """Unit rows scattered around one-hot centres, with their true cluster ids: (B, N, d), (B, N)."""
    generator = torch.Generator().manual_seed(seed)
    truth = torch.randint(0, num_clusters, (batch, num_pixels), generator=generator)
    rows = F.one_hot(truth, dim).float() + noise * torch.randn(batch, num_pixels, dim, generator=generator)
    return F.normalize(rows, dim=-1), truth


def same_partition(labels, truth):
    """Equal up to renaming: (label, truth) pairs form a bijection."""
    pairs = torch.unique(torch.stack([labels.flatten(), truth.flatten()]), dim=1)
    return pairs.shape[1] == len(labels.unique()) == len(truth.unique())


def brute_force_objective(rows, labels):
    """‖V̂V̂ᵀ − A_r‖²_F with the explicit N × N matrices, per image."""
    adjacency = (labels.unsqueeze(-1) == labels.unsqueeze(-2)).double()
    return (rows.double() @ rows.double().transpose(-1, -2) - adjacency).square().sum(dim=(-1, -2))
