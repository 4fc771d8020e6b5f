"""The spectral loss ‖F Fᵀ − A‖ of Barnes & Dubrawski (Section 2.2), without an n × n matrix.

F is the (n, d) embedding of an image's n valid pixels, Y its (n, k) one-hot instance matrix and
A = Y Yᵀ. The residual R = F Fᵀ − Y Yᵀ = Z S Zᵀ with Z = [F Y] and S = diag(I_d, −I_k) has rank
at most d + k, and everything the loss needs comes from O(n·d²) sums over pixels:

* squared Frobenius (the paper): ‖R‖²_F = ‖FᵀF‖²_F − 2 ‖YᵀF‖²_F + Σ_c n_c², no decomposition;
* any Schatten p-norm (nuclear p = 1, operator p = ∞): the non-zero eigenvalues of R are those of
  the (d + k) × (d + k) matrix Qᵀ R Q for an orthonormal basis Q of span(Z), which we build from
  the Gram matrix ZᵀZ = [[FᵀF, FᵀY], [YᵀF, diag(n_c)]].

Gradients of the Schatten norms: Q is held fixed (detached). For every non-zero eigenvalue λ_i of
R with eigenvector u_i ∈ span(Q), dλ_i = u_iᵀ dR u_i, so the gradient equals that of the full
n × n computation; eigenvalues are differentiated with ``eigvalsh``, whose backward U diag(g) Uᵀ
stays finite when eigenvalues repeat. Where |λ| is not differentiable (λ = 0, nuclear norm) we use
the subgradient 0, and a tie for the largest |λ| (operator norm) shares the gradient equally.
"""

from __future__ import annotations

import math
import warnings

import torch
from torch import Tensor

from dsc.contracts import Batch, Head, NetworkOutputs
from dsc.losses import compiled_cpu, fused, rows_in_cache
from dsc.losses.closed_form import mean_over_images, squared_frobenius
from dsc.ops.grouping import instance_sums
from dsc.ops.sampling import SAMPLINGS, sample_pixels

NORMS = ("frobenius", "nuclear", "operator", "schatten")
# Eigenvalues of ZᵀZ below this fraction of the largest are numerical zeros (float64 sums).
_RANK_TOLERANCE = 1e-10


def pixels_by_image(embeddings: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """Reshape ``(B, d, H, W)`` embeddings and ``(B, H, W)`` labels to ``(B, n, d)`` and ``(B, n)``."""
    if embeddings.dim() != 4 or labels.dim() != 3:
        raise ValueError(
            f"expected embeddings (B, d, H, W) and labels (B, H, W), "
            f"got {tuple(embeddings.shape)} and {tuple(labels.shape)}"
        )
    batch, _, height, width = embeddings.shape
    if labels.shape != (batch, height, width):
        raise ValueError(f"labels {tuple(labels.shape)} do not match embeddings {tuple(embeddings.shape)}")
    return embeddings.flatten(2).transpose(1, 2), labels.flatten(1)


def _instance_sums(features: Tensor, labels: Tensor, valid: Tensor) -> tuple[Tensor, Tensor]:
    """YᵀF and the instance sizes of every image, padded to the largest instance count K.

    features: (B, n, d), zero at invalid pixels; labels: (B, n) any integer ids; valid: (B, n).
    Returns sums (B, K, d) and sizes (B, K) in the features' dtype; padding rows are zero.
    """
    sums, sizes, _ = instance_sums(features, labels, valid)
    return sums[:, :-1], sizes[:, :-1]


def _squared_frobenius(features: Tensor, sums: Tensor, sizes: Tensor) -> Tensor:
    """‖F Fᵀ − Y Yᵀ‖²_F per image (B,) of features (B, n, d), YᵀF and the sizes (``closed_form``)."""
    return squared_frobenius(features.transpose(1, 2) @ features, sums, sizes)


def squared_residual_norms(features: Tensor, labels: Tensor, valid: Tensor) -> Tensor:
    """‖F Fᵀ − A‖²_F of each image over its valid pixels, unnormalised, in O(n·d²).

    features: (B, n, d); labels: (B, n) any integer ids; valid: (B, n) bool. Returns (B,). With
    the labels of a rounding this is the correlation-clustering objective ℓ(V̂V̂ᵀ, V_rV_rᵀ) of the
    paper's Theorem 2.2, which ``dsc.rounding`` minimises.
    """
    features = torch.where(valid.unsqueeze(-1), features, 0.0)
    return _squared_frobenius(features, *_instance_sums(features, labels, valid))


def residual_eigenvalues(features: Tensor, sums: Tensor, sizes: Tensor) -> Tensor:
    """The eigenvalues of R = F Fᵀ − Y Yᵀ that can be non-zero, per image, in O(n·d²).

    features: (B, n, d), zero at invalid pixels; sums (B, K, d) = YᵀF; sizes (B, K) = n_c.
    Returns float64 (B, d + K) in ascending order; every other eigenvalue of R is 0.
    """
    features = features.double()
    sums, sizes = sums.double(), sizes.double()
    fixed = features.detach()
    gram = fixed.transpose(1, 2) @ fixed
    fixed_sums = sums.detach()
    # Z ᵀZ for Z = [F Y] and its eigen-decomposition U Λ Uᵀ; then Q = Z U Λ^{-1/2} is orthonormal.
    z_gram = torch.cat(
        [
            torch.cat([gram, fixed_sums.transpose(1, 2)], dim=2),
            torch.cat([fixed_sums, torch.diag_embed(sizes)], dim=2),
        ],
        dim=1,
    )
    gram_eigenvalues, gram_eigenvectors = torch.linalg.eigh(z_gram)
    keep = gram_eigenvalues > _RANK_TOLERANCE * gram_eigenvalues.amax(dim=-1, keepdim=True)
    inverse_sqrt = torch.where(keep, gram_eigenvalues.clamp(min=torch.finfo(torch.float64).tiny).rsqrt(), 0.0)
    to_basis = inverse_sqrt.unsqueeze(-1) * gram_eigenvectors.transpose(1, 2)  # Qᵀ = to_basis · Zᵀ

    # QᵀF = to_basis · [F₀ᵀF; YᵀF] with F live in one factor only: Q itself is held fixed.
    f_in_basis = to_basis @ torch.cat([fixed.transpose(1, 2) @ features, sums], dim=1)
    y_in_basis = to_basis @ torch.cat([fixed_sums.transpose(1, 2), torch.diag_embed(sizes)], dim=1)
    small = f_in_basis @ f_in_basis.transpose(1, 2) - y_in_basis @ y_in_basis.transpose(1, 2)
    return torch.linalg.eigvalsh(small)


def _schatten(eigenvalues: Tensor, p: float) -> Tensor:
    """(Σ |λ|^p)^{1/p} over the last dimension, or max |λ| for p = ∞; 0 with gradient 0 at 0."""
    magnitudes = eigenvalues.abs()
    if math.isinf(p):
        return magnitudes.amax(dim=-1)
    if p == 1:
        return magnitudes.sum(dim=-1)
    power_sum = magnitudes.pow(p).sum(dim=-1)
    positive = power_sum > 0
    return torch.where(positive, power_sum.where(positive, 1.0).pow(1.0 / p), 0.0)


def schatten_order(norm: str, p: float | None) -> float | None:
    """The Schatten order of ``norm`` (1 nuclear, ∞ operator, ``p``), or None for squared Frobenius.

    Raises ValueError for an unknown norm, or a ``p`` that does not fit it."""
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {', '.join(NORMS)}, got {norm!r}")
    if norm != "schatten":
        if p is not None:
            raise ValueError(f"p is only used with norm='schatten', got p={p} with norm={norm!r}")
        return {"frobenius": None, "nuclear": 1.0, "operator": math.inf}[norm]
    if p is None or not p >= 1:
        raise ValueError(f"norm='schatten' needs p >= 1 (p = inf is the operator norm), got p={p}")
    return float(p)


def spectral_loss(
    embeddings: Tensor,
    labels: Tensor,
    ignore_index: int = 255,
    sample_size: int | None = None,
    *,
    norm: str = "frobenius",
    p: float | None = None,
    sampling: str = "uniform",
    pixel_sample: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Mean over images of a unitarily invariant norm of R = F Fᵀ − A, the paper's spectral loss.

    embeddings: (B, d, H, W), each pixel's d-vector of unit length (the network's output).
    labels: (B, H, W) integer instance ids; ``ignore_index`` marks void pixels, which are left out.
    norm: with n the number of valid pixels of an image,
        ``"frobenius"`` ‖R‖²_F / n² (the paper), ``"nuclear"`` ‖R‖_* / n,
        ``"operator"`` σ_max(R) / n, ``"schatten"`` ‖R‖_{S_p} / n with ``p`` ≥ 1.
        Each is computed exactly, in O(n·d²) (see the module docstring).
    sample_size: ``None`` uses all n valid pixels. An integer m ≥ 2 draws m valid pixels per image
        uniformly with replacement and evaluates the norm on the m × m sampled residual (n → m).
        For ``"frobenius"`` the pairs of a draw with itself are left out, which makes the estimate
        unbiased (each ordered pair of distinct draws is uniform over all n² pixel pairs).
    sampling: how ``sample_size`` pixels are drawn, ``uniform`` or ``balanced`` (see ``sample_pixels``).
    pixel_sample: (B, m) flat pixel indices drawn beforehand (``SpectralLoss.from_raw_outputs`` draws
        them and normalises only those pixels); when given, they are the sample and ``sample_size``
        is m.
    generator: random source for the sample, on the embeddings' device.

    Returns a scalar. Images without valid pixels are skipped; if no image has one, the result is a
    zero that still carries a (zero) gradient, never NaN.
    """
    order = schatten_order(norm, p)
    features, flat_labels = pixels_by_image(embeddings, labels)
    valid = flat_labels != ignore_index
    num_valid = valid.sum(dim=1)

    if pixel_sample is not None or sample_size is not None:
        if pixel_sample is None:
            pixel_sample = sample_pixels(flat_labels, sample_size, sampling, ignore_index, generator)
        picks = pixel_sample
        sample_size = picks.shape[1]
        if sample_size < 2:
            raise ValueError(f"sample_size must be at least 2 (or None for exact), got {sample_size}")
        features = features.gather(1, picks.unsqueeze(-1).expand(-1, -1, features.shape[-1]))
        flat_labels = flat_labels.gather(1, picks)
        has_pixels = num_valid > 0
        valid = has_pixels.unsqueeze(1).expand_as(picks)
        num_valid = valid.sum(dim=1)

    features = torch.where(valid.unsqueeze(-1), features, 0.0)
    sums, sizes = _instance_sums(features, flat_labels, valid)
    pixels = num_valid.clamp(min=1).to(features.dtype)
    if order is None:
        squared = _squared_frobenius(features, sums, sizes)  # = squared_residual_norms
        if sample_size is None:
            per_image = squared / pixels.square()
        else:
            # Drop the m pairs of a draw with itself, whose target is always 1.
            same_draw = (features.square().sum(dim=-1) - 1.0).square().sum(dim=1)
            per_image = (squared - same_draw) / (sample_size * (sample_size - 1))
    else:
        per_image = (_schatten(residual_eigenvalues(features, sums, sizes), order) / pixels).to(
            features.dtype
        )

    return mean_over_images(per_image, num_valid > 0)


class SpectralLoss:
    """``spectral_loss`` with its options fixed and checked up front: what ``loss=`` configs build.

    As an ``dsc.contracts.Objective`` it trains the embedding head towards the instance map.

    Calling it with (embeddings, labels) evaluates the loss; keyword overrides (for example
    ``sample_size=None`` for an exact validation loss) replace the fixed options for that call.
    ``from_raw_outputs`` takes the network's outputs before normalisation (what training uses);
    ``fused`` lets it use the Triton kernels of ``dsc.losses.fused`` on GPUs and the compiled C
    kernel of ``dsc.losses.compiled_cpu`` on CPUs.
    """

    def __init__(
        self,
        norm: str = "frobenius",
        p: float | None = None,
        sample_size: int | None = None,
        ignore_index: int = 255,
        sampling: str = "uniform",
        fused: bool = True,
    ) -> None:
        schatten_order(norm, p)
        self.fused = fused
        if sample_size is not None and sample_size < 2:
            raise ValueError(f"sample_size must be at least 2 (or None for exact), got {sample_size}")
        if sampling not in SAMPLINGS:
            raise ValueError(f"sampling must be one of {', '.join(SAMPLINGS)}, got {sampling!r}")
        self.options = {
            "norm": norm,
            "p": p,
            "sample_size": sample_size,
            "ignore_index": ignore_index,
            "sampling": sampling,
        }

    heads: frozenset[Head] = frozenset({"embedding"})
    embedding_space: str | None = "unit"

    def training_loss(
        self, outputs: NetworkOutputs, batch: Batch, generator: torch.Generator | None = None
    ) -> Tensor:
        """From the raw embeddings (``from_raw_outputs``); a sampled loss draws its pixels with
        ``generator``, on the embeddings' device."""
        return self.from_raw_outputs(outputs.raw_embeddings, batch["instances"], generator=generator)

    def validation_loss(self, outputs: NetworkOutputs, batch: Batch) -> Tensor:
        """The exact loss over all pixels (``sample_size=None``)."""
        return self(outputs.embeddings, batch["instances"], sample_size=None)

    def __call__(self, embeddings: Tensor, labels: Tensor, **overrides) -> Tensor:
        # In float32 also under bf16 autocast: the closed form subtracts sums of up to n² terms.
        with torch.autocast(embeddings.device.type, enabled=False):
            return spectral_loss(embeddings.float(), labels, **(self.options | overrides))

    def from_raw_outputs(self, outputs: Tensor, labels: Tensor, **overrides) -> Tensor:
        """The loss of ``F.normalize(outputs, dim=1)`` from the network's raw (B, d, H, W) outputs,
        normalising no more than it needs: the exact squared Frobenius loss on a GPU runs as two
        fused Triton passes (``dsc.losses.fused``, unless ``fused=False``), on a CPU as two passes
        of a compiled C kernel (``dsc.losses.compiled_cpu``, unless ``fused=False`` or no C
        compiler works) or else in chunks of pixel rows that stay in cache
        (``dsc.losses.rows_in_cache``); a sampled loss normalises the sampled pixels only. Same
        value and gradients as the plain path."""
        options = self.options | overrides
        pixel_sample = options.pop("pixel_sample", None)
        generator = options.pop("generator", None)
        if pixel_sample is None and options["sample_size"] is not None:
            pixel_sample = sample_pixels(
                labels.flatten(1),
                options["sample_size"],
                options["sampling"],
                options["ignore_index"],
                generator,
            )
        if pixel_sample is None:
            frobenius, ignore_index = options["norm"] == "frobenius", options["ignore_index"]
            if frobenius and outputs.device.type == "cpu":  # float32 inside
                if self.fused and compiled_cpu.kernel(outputs.shape[1]) is not None:
                    return compiled_cpu.exact_frobenius_from_raw(outputs, labels, ignore_index)
                return rows_in_cache.exact_frobenius_from_raw(outputs, labels, ignore_index)
            use_fused = frobenius and self.fused and fused.fused_kernels_available(outputs)
            if use_fused and fused_kernels_work(outputs.device):
                return fused.fused_spectral_frobenius(outputs, labels, ignore_index)  # float32 inside
            return self(torch.nn.functional.normalize(outputs.float(), dim=1), labels, **options)
        batch, dim = outputs.shape[:2]
        rows = outputs.flatten(2).gather(2, pixel_sample.unsqueeze(1).expand(-1, dim, -1)).unsqueeze(2)
        sampled_labels = labels.flatten(1).gather(1, pixel_sample).unsqueeze(1)  # (B, 1, m)
        positions = torch.arange(pixel_sample.shape[1], device=pixel_sample.device).expand(batch, -1)
        return self(
            torch.nn.functional.normalize(rows.float(), dim=1),
            sampled_labels,
            **options,
            pixel_sample=positions,
        )

    def __repr__(self) -> str:
        return f"SpectralLoss({', '.join(f'{k}={v!r}' for k, v in self.options.items())})"


_SELF_CHECKS: dict[str, bool] = {}


def fused_kernels_work(device: torch.device) -> bool:
    """Whether the Triton kernels (``dsc.losses.fused``) compile and agree with ``spectral_loss`` on
    ``device``: checked once per device on a small input (value and gradient, float64 reference),
    so that a Triton or driver problem falls back to plain torch with a warning instead of failing
    or corrupting training."""
    key = str(device)
    if key not in _SELF_CHECKS:
        _SELF_CHECKS[key] = _self_check(device)
    return _SELF_CHECKS[key]


def _self_check(device: torch.device) -> bool:
    generator = torch.Generator().manual_seed(0)
    outputs = torch.randn(2, 21, 17, 19, generator=generator)
    labels = torch.randint(0, 5, (2, 17, 19), generator=generator)
    labels[:, :3] = 255
    reference = outputs.double().requires_grad_()
    expected = spectral_loss(torch.nn.functional.normalize(reference, dim=1), labels, 255)
    expected.backward()
    try:
        x = outputs.to(device).requires_grad_()
        loss = fused.fused_spectral_frobenius(x, labels.to(device))
        loss.backward()
        gradient_error = (x.grad.cpu().double() - reference.grad).abs().max() / reference.grad.abs().max()
        agrees = abs(loss.item() - expected.item()) <= 1e-2 * expected.item() and gradient_error <= 2e-2
        problem = (
            "" if agrees else f"loss {loss.item()} vs {expected.item()}, gradient error {gradient_error:.2e}"
        )
    except Exception as error:  # a compilation or launch failure
        agrees, problem = False, f"{type(error).__name__}: {error}"
    if not agrees:
        warnings.warn(
            f"the fused Triton spectral loss failed its check on {device} ({problem}); using the plain "
            "torch loss instead (loss.fused=false silences this)",
            RuntimeWarning,
            stacklevel=3,
        )
    return agrees
