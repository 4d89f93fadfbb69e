"""The peer: pdeflow's attention-PDE vector field written in PyTorch, for torchdiffeq (benchmark-only).

    pip install torch==2.13.0 torchdiffeq      # 2.13.0 is the CPU build already on this machine's disk
"""

from __future__ import annotations

import math

import jax
import numpy as np

from pdeflow.pde import SurrogateConfig, attention_pde
from pdeflow.pde.attention_pde import relative_positions

try:
    import torch
    import torchdiffeq
except ImportError as error:  # pragma: no cover - depends on the machine
    raise SystemExit(f"this benchmark needs the peer: pip install torch==2.13.0 torchdiffeq ({error})") from None

__all__ = ["TorchAttentionField", "synchronize", "torch", "torchdiffeq"]


def synchronize(device: str | torch.device = "cpu") -> None:
    """Wait for the work queued on ``device`` (a GPU runs asynchronously; the CPU needs no wait)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


class TorchAttentionField(torch.nn.Module):
    """`pdeflow.pde.attention_pde.batch_vector_field` written in PyTorch, for a batch ``u (B, N, r)``.

    Holds the same parameters (copied from a pdeflow params dict) as ``torch.nn.Parameter`` so that
    ``torchdiffeq.odeint_adjoint`` can differentiate with respect to them. ``device``: where the parameters and
    the batch live (``"cpu"`` or ``"cuda"``)."""

    def __init__(self, params: dict, config: SurrogateConfig, laplacians: np.ndarray, mask: np.ndarray,
                 device: str | torch.device = "cpu"):
        super().__init__()
        self.device = torch.device(device)
        if config.terms != attention_pde.TERMS:
            raise ValueError("the peer implements the full field (all three terms)")
        self.config = config
        flat = {"/".join(str(getattr(k, "key", k)) for k in path): np.asarray(leaf)
                for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]}
        self.names = {name: name.replace("/", "__") for name in flat}
        for name, value in flat.items():
            value = torch.from_numpy(value.copy()).to(self.device)
            self.register_parameter(self.names[name], torch.nn.Parameter(value))
        knots = config.knots
        self.register_buffer("knots", torch.from_numpy(knots).to(self.device))
        self.width = 0.5 * float(knots[1] - knots[0]) if len(knots) > 1 else None
        self.set_inputs(laplacians, mask)
        self.evaluations = 0

    def set_inputs(self, laplacians: np.ndarray, mask: np.ndarray) -> None:
        """The batch's ``(B, N, N)`` token Laplacians and ``(B, N)`` mask."""
        self.laplacians = torch.from_numpy(np.array(laplacians, np.float32)).to(self.device)
        self.mask = torch.from_numpy(np.array(mask, bool)).to(self.device)
        positions = relative_positions(self.mask.shape[1], self.config.max_distance)
        self.positions = torch.from_numpy(np.asarray(positions)).to(self.device)

    def p(self, name: str) -> torch.Tensor:
        return getattr(self, self.names[name])

    def basis(self, t: torch.Tensor) -> torch.Tensor:
        if self.width is None:
            return torch.ones(1, dtype=torch.float32, device=self.device)
        return torch.softmax(-0.5 * ((t - self.knots) / self.width) ** 2, dim=0)

    @staticmethod
    def normalise(u: torch.Tensor) -> torch.Tensor:
        return u * torch.rsqrt(torch.mean(u * u, dim=-1, keepdim=True) + 1e-6)

    def logits(self, t: torch.Tensor, u: torch.Tensor, un: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, H, N, N)`` kernel logits at time ``t`` (``un``: ``u`` RMS-normalised), padded keys at -1e9."""
        c = self.config
        w = self.basis(t)
        query = torch.tensordot(w, self.p("kernel/query"), dims=1)  # (H, r, k)
        query_bias = torch.tensordot(w, self.p("kernel/query_bias"), dims=1)  # (H, k)
        key = torch.tensordot(w, self.p("kernel/key"), dims=1)
        position_bias = torch.tensordot(w, self.p("kernel/position_bias"), dims=1)  # (H, 2R+1)
        un = self.normalise(u) if un is None else un
        # the 1/√k scales the query map, not the (B, H, N, N) logits, as pdeflow's field does
        scale = 1.0 / math.sqrt(c.key_dim)
        q = torch.einsum("bnr,hrk->bhnk", un, query * scale) + scale * query_bias[None, :, None, :]
        k = torch.einsum("bnr,hrk->bhnk", un, key)
        logits = q @ k.transpose(-1, -2) + position_bias[:, self.positions]
        return logits.masked_fill(~self.mask[:, None, None, :], -1e9)

    def forward(self, t: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        self.evaluations += 1
        c = self.config
        raw = torch.tensordot(self.basis(t), self.p("coefficients"), dims=1)
        d_coef, alpha, beta = torch.nn.functional.softplus(raw[0]), raw[1], raw[2]
        un = self.normalise(u)
        maps = torch.softmax(self.logits(t, u, un), dim=-1)  # (B, H, N, N)
        low_rank = maps @ torch.einsum("bnr,hrv->bhnv", u, self.p("value/down"))
        value = torch.einsum("bhiv,hvr->bir", low_rank, self.p("value/up")) / c.num_heads
        hidden = torch.nn.functional.gelu(un @ self.p("residual/w1") + self.p("residual/b1"), approximate="tanh")
        residual = hidden @ self.p("residual/w2") + self.p("residual/b2")
        # D·Δ and α·mean_h(A_h) in one (N, N) product, as pdeflow's field does
        mixing = d_coef * self.laplacians + alpha * maps.mean(1)
        du = mixing @ u + alpha * (value - u) + beta * residual
        return du * self.mask[..., None].to(u.dtype)
