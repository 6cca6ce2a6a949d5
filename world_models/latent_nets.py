"""The LatentWorldModel's networks and the functions they share: pixel scaling, latent normalisation,
MLPs, the conv encoder/decoder (channel-last frames), and the embedding statistics of its JEPA objective."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def symlog(x: torch.Tensor) -> torch.Tensor:
    """``sign(x) log(1 + |x|)``: keeps proprioceptive inputs of any scale near unit size."""
    return torch.sign(x) * torch.log1p(x.abs())


def pixels_to_float(pixels: torch.Tensor) -> torch.Tensor:
    """``(M, Hp, Wp, C)`` uint8 -> ``(M, C, Hp, Wp)`` float32 in ``[-0.5, 0.5]``."""
    return pixels.permute(0, 3, 1, 2).to(torch.float32).mul_(1.0 / 255.0).sub_(0.5)  # fresh tensor: in place is safe


def float_to_pixels(images: torch.Tensor) -> torch.Tensor:
    """``(M, C, Hp, Wp)`` float in ``[-0.5, 0.5]`` -> ``(M, Hp, Wp, C)`` uint8 (clipped)."""
    scaled = ((images + 0.5) * 255.0).clamp(0.0, 255.0).round()
    return scaled.to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def normalise_latent(z: torch.Tensor) -> torch.Tensor:
    """``(..., Z)`` -> ``(..., Z)`` with zero mean and unit RMS over the last axis (no learned scale)."""
    return F.layer_norm(z, z.shape[-1:])


def mlp(in_dim: int, hidden_dim: int, out_dim: int, num_layers: int = 2) -> nn.Sequential:
    """``num_layers`` blocks of Linear -> LayerNorm -> SiLU, then a linear output."""
    layers: list[nn.Module] = []
    for i in range(num_layers):
        layers += [nn.Linear(in_dim if i == 0 else hidden_dim, hidden_dim), nn.LayerNorm(hidden_dim), nn.SiLU()]
    layers.append(nn.Linear(hidden_dim if num_layers else in_dim, out_dim))
    return nn.Sequential(*layers)


def spatial_softmax(maps: torch.Tensor) -> torch.Tensor:
    """Keypoints ``(M, 2K)`` of feature maps ``(M, K, H, W)``: per map, the expected
    ``(x, y)`` in ``[-1, 1]`` under a softmax over its ``H x W`` cells (x first, then y)."""
    m, k, h, w = maps.shape
    weights = torch.softmax(maps.flatten(2), dim=-1).unflatten(2, (h, w))  # (M, K, H, W)
    xs = torch.linspace(-1.0, 1.0, w, device=maps.device, dtype=maps.dtype)
    ys = torch.linspace(-1.0, 1.0, h, device=maps.device, dtype=maps.dtype)
    x = (weights.sum(2) * xs).sum(-1)  # (M, K)
    y = (weights.sum(3) * ys).sum(-1)
    return torch.cat([x, y], dim=-1)


class ConvEncoder(nn.Module):
    """Four stride-2 convs (``d, 2d, 4d, 8d`` channels) -> [average-pooled features, keypoints,
    state] -> linear -> :func:`normalise_latent`.

    The keypoints (:func:`spatial_softmax` of ``d`` maps made by a 1x1 conv from the first
    conv's ``Hp/2 x Wp/2`` output) give the latent coordinates that move smoothly with the
    objects in view, so motion is a simple function of the latent (a small fast object
    otherwise lights up different conv features in consecutive frames). Each map is
    standardised over its cells before the softmax, times a learned sharpness, so a small
    object that stands out in a map draws the keypoint onto it from the start whatever the
    map's scale. Where things are reaches the latent through the keypoints only: the last
    conv's features are averaged over the image, not flattened.
    """

    def __init__(self, image_size: int, channels: int, depth: int, state_dim: int, latent_dim: int) -> None:
        super().__init__()
        widths = [channels, depth, 2 * depth, 4 * depth, 8 * depth]
        convs: list[nn.Module] = []
        for c_in, c_out in zip(widths[:-1], widths[1:], strict=True):
            convs += [nn.Conv2d(c_in, c_out, kernel_size=4, stride=2, padding=1), nn.SiLU()]
        self.stem = nn.Sequential(*convs[:2])
        self.convs = nn.Sequential(*convs[2:], nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.keypoint_maps = nn.Conv2d(depth, depth, kernel_size=1)
        self.keypoint_log_sharpness = nn.Parameter(torch.zeros(depth))
        features = 8 * depth + 2 * depth
        self.out = nn.Linear(features + state_dim, latent_dim)

    def forward(self, pixels: torch.Tensor, state: torch.Tensor | None) -> torch.Tensor:
        """``pixels (M, Hp, Wp, C)`` uint8, ``state (M, S)`` or None -> ``(M, Z)``."""
        stem = self.stem(pixels_to_float(pixels))  # (M, d, Hp/2, Wp/2)
        maps = self.keypoint_maps(stem)  # (M, d, Hp/2, Wp/2)
        mean, std = maps.mean(dim=(2, 3), keepdim=True), maps.std(dim=(2, 3), keepdim=True)
        sharpness = self.keypoint_log_sharpness.exp()[:, None, None]
        parts = [self.convs(stem), spatial_softmax((maps - mean) / (std + 1e-6) * sharpness)]
        if state is not None:
            parts.append(symlog(state.to(torch.float32)))
        return normalise_latent(self.out(torch.cat(parts, dim=-1)))


class ConvDecoder(nn.Module):
    """Mirror of :class:`ConvEncoder`: linear -> four stride-2 transposed convs -> image (and state)."""

    def __init__(self, image_size: int, channels: int, depth: int, state_dim: int, latent_dim: int) -> None:
        super().__init__()
        self.base = image_size // 16
        self.top = 8 * depth
        self.inp = nn.Linear(latent_dim, self.top * self.base**2)
        widths = [8 * depth, 4 * depth, 2 * depth, depth]
        layers: list[nn.Module] = []
        for c_in, c_out in zip(widths[:-1], widths[1:], strict=True):
            layers += [nn.SiLU(), nn.ConvTranspose2d(c_in, c_out, kernel_size=4, stride=2, padding=1)]
        layers += [nn.SiLU(), nn.ConvTranspose2d(depth, channels, kernel_size=4, stride=2, padding=1)]
        self.deconvs = nn.Sequential(*layers)
        self.state_out = nn.Linear(latent_dim, state_dim) if state_dim else None

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(M, Z)`` -> images ``(M, C, Hp, Wp)`` in pixel-float space, symlog state ``(M, S)`` or None."""
        h = self.inp(z).reshape(-1, self.top, self.base, self.base)
        state = self.state_out(z) if self.state_out is not None else None
        return self.deconvs(h), state


def effective_rank(z: torch.Tensor) -> float:
    """Entropy-based effective rank (1..Z) of centred embeddings ``(M, Z)``; ~1 means collapse."""
    s = torch.linalg.svdvals(z - z.mean(0))
    p = s / s.sum().clamp_min(1e-12)
    entropy = -(p * torch.log(p.clamp_min(1e-12))).sum()
    return float(torch.exp(entropy))


def variance_covariance(z: torch.Tensor, target_std: float = 1.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """VICReg-style guard on embeddings ``(M, Z)``.

    Returns ``(variance hinge, off-diagonal covariance penalty, per-dimension std (Z,))``.
    """
    m, d = z.shape
    std = torch.sqrt(z.var(dim=0) + 1e-4)
    centred = z - z.mean(0)
    cov = centred.T @ centred / max(m - 1, 1)
    off_diag = cov - torch.diag(torch.diag(cov))
    return F.relu(target_std - std).mean(), off_diag.pow(2).sum() / d, std
