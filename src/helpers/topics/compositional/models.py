"""Binary-tree ("deep") and one-hidden-layer ("shallow") networks, sized by parameter count.

A :class:`TreeNet` on ``n = 2**L`` inputs has the architecture of the binary-tree
compositional functions of Mhaskar, Liao & Poggio (arXiv:1603.00988) and Poggio et al.
(arXiv:1611.00740): every node is a small 2 → k → 1 network, node ``j`` of level 1 reads the
inputs ``(x_{2j}, x_{2j+1})`` and every later node reads the two outputs below it. A
:class:`ShallowNet` is the generic one-hidden-layer network x ↦ Σ_i v_i σ(w_i·x + b_i) + c.

Both modules can hold ``n_models`` independent copies in one set of batched tensors, so several
random initialisations train in one run (the loss summed over copies keeps their gradients, and
Adam's element-wise updates, independent).

:func:`draw_tree` draws the tree of a target as a graph.

Parameter counts (per copy):

* tree:    P_deep(n, k) = (n − 1)(4k + 1)    [each of the n − 1 nodes: 2k + k + k + 1]
* shallow: P_shallow(n, W) = W(n + 2) + 1    [W·n + W + W + 1]

Introduced in the chapter "Deep vs shallow networks on compositional functions".
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": torch.relu, "tanh": torch.tanh, "softplus": nn.functional.softplus,
    "gelu": nn.functional.gelu, "silu": nn.functional.silu, "identity": lambda z: z,
}


def tree_levels(n_inputs: int) -> int:
    """L = log2(n_inputs); raises ``ValueError`` unless ``n_inputs`` is a power of 2 (≥ 2)."""
    if isinstance(n_inputs, bool) or not isinstance(n_inputs, int):
        raise TypeError(f"n_inputs must be an int, got {type(n_inputs).__name__}")
    if n_inputs < 2 or n_inputs & (n_inputs - 1):
        raise ValueError(f"n_inputs must be a power of 2 (at least 2), got {n_inputs}")
    return n_inputs.bit_length() - 1


def _positive_int(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be positive, got {value}")
    return value


def tree_parameter_count(n_inputs: int, k: int) -> int:
    """P_deep = (n − 1)(4k + 1): n − 1 nodes, each 2 → k → 1 with biases."""
    tree_levels(n_inputs)
    return (n_inputs - 1) * (4 * _positive_int(k, "k") + 1)


def shallow_parameter_count(n_inputs: int, width: int) -> int:
    """P_shallow = W(n + 2) + 1 for the network n → W → 1 with biases."""
    return _positive_int(width, "width") * (_positive_int(n_inputs, "n_inputs") + 2) + 1


def matched_width(n_inputs: int, n_params: int) -> int:
    """The width W ≥ 1 whose shallow network has the parameter count closest to ``n_params``.

    ``|P_shallow(n, W) − n_params| ≤ (n + 2)/2``: less than one hidden unit's parameters; it is
    exact when ``n_params − 1`` is a multiple of ``n + 2`` (for n = 8 and the tree's count,
    when k ≡ 3 mod 5: k = 3, 8, 13, 18, …).
    """
    _positive_int(n_params, "n_params")
    return max(1, round((n_params - 1) / (_positive_int(n_inputs, "n_inputs") + 2)))


def _activation(activation: str) -> Callable[[torch.Tensor], torch.Tensor]:
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    return ACTIVATIONS[activation]


def _broadcast_shapes(*shapes: tuple[int, ...]) -> tuple[int, ...]:
    """The broadcast of ``shapes`` (NumPy rules): ``torch.broadcast_shapes`` without its
    symbolic-shape machinery, which costs more than the tiny products it would shape."""
    rank = max(len(shape) for shape in shapes)
    out = []
    for dims in zip(*((1,) * (rank - len(shape)) + tuple(shape) for shape in shapes),
                    strict=True):
        size = max(dims)
        if any(d not in (1, size) for d in dims):
            raise ValueError(f"shapes {shapes} do not broadcast")
        out.append(size)
    return tuple(out)


def _batched_affine(weight: torch.Tensor, inputs: torch.Tensor,
                    bias: torch.Tensor) -> torch.Tensor:
    """weight @ inputs + bias for stacks of matrices, as one ``torch.baddbmm``.

    ``weight`` (..., r, c), ``inputs`` (..., c, B) and ``bias`` (..., r, 1) broadcast over their
    leading dimensions; the result is the contiguous (..., r, B), samples last.
    """
    batch = _broadcast_shapes(weight.shape[:-2], inputs.shape[:-2], bias.shape[:-2])

    def stack(t: torch.Tensor) -> torch.Tensor:
        if t.shape[:-2] != batch:  # expand only what broadcasts: every call is per step
            t = t.expand(*batch, *t.shape[-2:])
        return t.reshape(-1, *t.shape[-2:])

    out = torch.baddbmm(stack(bias), stack(weight), stack(inputs))
    return out.view(*batch, *out.shape[-2:])


class _Batched(nn.Module):
    """Shared machinery: optional leading model axis, PyTorch-default uniform initialisation."""

    def __init__(self, n_models: int | None, activation: str, dtype: torch.dtype,
                 device: torch.device | str | None, seed: int | None):
        super().__init__()
        if n_models is not None:
            _positive_int(n_models, "n_models")
        self.n_models = n_models
        self.activation = activation
        self._act = _activation(activation)
        self._lead = () if n_models is None else (n_models,)
        self._kw = {"dtype": dtype, "device": device}
        init_seed = 0 if seed is None else int(seed)
        self._gen = torch.Generator().manual_seed(init_seed)  # cpu: same weights on any device
        self._seeded = seed is not None

    def _uniform(self, *shape: int, fan_in: int) -> nn.Parameter:
        """U(−1/√fan_in, 1/√fan_in), nn.Linear's default, on (*lead, *shape)."""
        full = (*self._lead, *shape)
        if self._seeded:
            u = torch.rand(full, generator=self._gen, dtype=torch.float64)  # cpu: as above
        else:
            u = torch.rand(full, dtype=torch.float64)  # cpu: moved to the device below
        return nn.Parameter(((2 * u - 1) / math.sqrt(fan_in)).to(**self._kw))

    def num_parameters(self) -> int:
        """Trainable parameters of one copy (the total divided by ``n_models``)."""
        total = sum(p.numel() for p in self.parameters())
        return total // (self.n_models or 1)

    def _check_input(self, x: torch.Tensor, n_inputs: int) -> None:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
        if x.shape[-1] != n_inputs or x.dim() < 2:
            raise ValueError(f"x must have shape (batch, {n_inputs}) or (n_models, batch, "
                             f"{n_inputs}), got {tuple(x.shape)}")


class TreeNet(_Batched):
    """Binary-tree network: every node z ↦ Σ_i a_i σ(⟨w_i, z⟩ + b_i) + c with z ∈ R², k units.

    Level ℓ (ℓ = 1 … L) has n / 2^ℓ nodes, whose weights are stored together, shapes
    ``w1: (n_models?, nodes, 2, k)``, ``b1: (…, nodes, k)``, ``w2: (…, nodes, k)``,
    ``b2: (…, nodes)``, and computed by one batched product per level (no loop over nodes):
    a node's output layer and its parent's input layer, with no σ between them, are merged
    into one affine map of the children's hidden units (``_parent_affine``).

    Args:
        n_inputs: n, a power of 2.
        k: hidden units per node.
        n_models: optional number of independent copies (a leading axis on every weight).
        activation: ``"gelu"`` (default, smooth), ``"relu"``, ``"tanh"``, ``"softplus"``,
            ``"silu"`` or ``"identity"``.
        seed: initialisation seed (a private generator; the global one is not touched).

    Forward: ``x`` of shape (B, n) or (n_models, B, n) → output (B,) or (n_models, B).
    """

    def __init__(self, n_inputs: int = 8, k: int = 8, *, n_models: int | None = None,
                 activation: str = "gelu", dtype: torch.dtype = torch.float32,
                 device: torch.device | str | None = None, seed: int | None = None):
        super().__init__(n_models, activation, dtype, device, seed)
        self.n_inputs, self.k = n_inputs, _positive_int(k, "k")
        self.levels = tree_levels(n_inputs)
        sizes = [n_inputs >> (lv + 1) for lv in range(self.levels)]  # nodes per level
        self.w1 = nn.ParameterList(self._uniform(m, 2, k, fan_in=2) for m in sizes)
        self.b1 = nn.ParameterList(self._uniform(m, k, fan_in=2) for m in sizes)
        self.w2 = nn.ParameterList(self._uniform(m, k, fan_in=k) for m in sizes)
        self.b2 = nn.ParameterList(self._uniform(m, fan_in=k) for m in sizes)
        del self._gen

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x, self.n_inputs)
        return self._forward(x)

    def _forward(self, x: torch.Tensor, saved: list | None = None) -> torch.Tensor:
        """The forward pass; appends every level's (inputs, pre-activations, weight) to
        ``saved`` (the weight ``None`` where the level reads the inputs x)."""
        # Activations are laid out (..., nodes, features, B), samples last, so every product
        # is one contiguous batched matmul and the activation's backward runs on contiguous
        # tensors. Level 1: H = σ(W1ᵀ Z + b1) for all its nodes at once, Z: (..., n/2, 2, B).
        z = x.transpose(-1, -2).unflatten(-2, (self.n_inputs // 2, 2))  # (..., n/2, 2, B)
        pre = _batched_affine(self.w1[0].transpose(-1, -2), z, self.b1[0].unsqueeze(-1))
        hidden = self._act(pre)  # (..., m, k, B)
        if saved is not None:
            saved.append((z, pre, None))
        for lv in range(1, self.levels):
            weight, bias = self._parent_affine(lv)
            # The children 2p, 2p+1 of parent p are adjacent: (..., m, k, B) → (..., m/2, 2k, B).
            children = hidden.unflatten(-3, (hidden.shape[-3] // 2, 2)).flatten(-3, -2)
            pre = _batched_affine(weight, children, bias.unsqueeze(-1))
            hidden = self._act(pre)
            if saved is not None:
                saved.append((children, pre, weight))
        out = _batched_affine(self.w2[-1].unsqueeze(-2), hidden,
                              self.b2[-1][..., None, None])  # (..., 1, 1, B)
        if saved is not None:
            saved.append((hidden, None, self.w2[-1]))
        return out[..., 0, 0, :]

    def _parent_affine(self, lv: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Level ``lv``'s pre-activations as one affine map of its children's hidden units.

        No σ lies between a child's output o_c = ⟨w2_c, h_c⟩ + b2_c and its parent's
        pre-activation u = Σ_c W1[c]·o_c + b1, so u = C [h_0; h_1] + (b1 + Σ_c W1[c] b2_c)
        with C[:, c·k + j] = W1[c] w2_c[j]: returns C (..., m, k, 2k) and the bias (..., m, k).
        """
        w1, b1 = self.w1[lv], self.b1[lv]  # (..., m, 2, k), (..., m, k)
        w2 = self.w2[lv - 1].unflatten(-2, (w1.shape[-3], 2))  # (..., m, 2, k): children c
        b2 = self.b2[lv - 1].unflatten(-1, (w1.shape[-3], 2))  # (..., m, 2)
        weight = (w1.transpose(-1, -2).unsqueeze(-1) * w2.unsqueeze(-3)).flatten(-2)
        return weight, b1 + (w1 * b2.unsqueeze(-1)).sum(-2)


class ShallowNet(_Batched):
    """One hidden layer: x ↦ Σ_{i=1}^W v_i σ(⟨w_i, x⟩ + b_i) + c, x ∈ R^n.

    Same ``n_models``, ``activation``, ``seed`` conventions and initialisation as
    :class:`TreeNet`; :meth:`matching` builds the one with a tree's parameter count.
    """

    def __init__(self, n_inputs: int = 8, width: int = 23, *, n_models: int | None = None,
                 activation: str = "gelu", dtype: torch.dtype = torch.float32,
                 device: torch.device | str | None = None, seed: int | None = None):
        super().__init__(n_models, activation, dtype, device, seed)
        self.n_inputs = _positive_int(n_inputs, "n_inputs")
        self.width = _positive_int(width, "width")
        self.w = self._uniform(n_inputs, width, fan_in=n_inputs)
        self.b = self._uniform(width, fan_in=n_inputs)
        self.v = self._uniform(width, fan_in=width)
        self.c = self._uniform(fan_in=width)
        del self._gen

    @classmethod
    def matching(cls, tree: TreeNet, **kwargs) -> ShallowNet:
        """A shallow network on the tree's inputs with (nearly) the tree's parameter count."""
        width = matched_width(tree.n_inputs, tree.num_parameters())
        return cls(tree.n_inputs, width, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x, self.n_inputs)
        return self._forward(x)

    def _forward(self, x: torch.Tensor, saved: list | None = None) -> torch.Tensor:
        """The forward pass; appends the pre-activations and hidden units to ``saved``."""
        # Samples last, as in TreeNet: H = σ(Wᵀ xᵀ + b) of shape (..., W, B), out = vᵀ H + c.
        pre = _batched_affine(self.w.transpose(-1, -2), x.transpose(-1, -2),
                              self.b.unsqueeze(-1))  # (..., W, B)
        hidden = self._act(pre)
        if saved is not None:
            saved.append((pre, hidden))
        out = _batched_affine(self.v.unsqueeze(-2), hidden, self.c[..., None, None])
        return out[..., 0, :]  # (..., B)


def pairing_permutation(n_inputs: int, pairing: str | Sequence[int] = "matched") -> list[int]:
    """The order π in which the target's tree reads the inputs: f(x) = tree_h(x_π(1), …, x_π(n)).

    ``"matched"`` is the identity (the tree of :class:`TreeNet`); ``"mismatched"`` is the
    bit-reversal permutation, under which any two inputs that share a node of the network's
    tree below the root meet only at the root of the target's tree. A sequence is taken as
    an explicit permutation of ``range(n_inputs)``.
    """
    levels = tree_levels(n_inputs)
    if isinstance(pairing, str):
        if pairing == "matched":
            return list(range(n_inputs))
        if pairing == "mismatched":
            return [int(format(i, f"0{levels}b")[::-1], 2) for i in range(n_inputs)]
        raise ValueError(f"pairing must be 'matched', 'mismatched' or a permutation, "
                         f"got {pairing!r}")
    perm = [int(i) for i in pairing]
    if sorted(perm) != list(range(n_inputs)):
        raise ValueError(f"pairing must be a permutation of range({n_inputs}), got {pairing!r}")
    return perm


def draw_tree(ax, n_inputs: int = 8, pairing: str | Sequence[int] = "matched",
              title: str | None = None) -> None:
    """Draw the target's binary tree: leaves x_π(i) at the bottom, one ``h`` per node.

    Leaves are coloured by the network's first-level node that reads them ((x1, x2) alike,
    (x3, x4) alike, …), so a matched tree has same-coloured siblings and a mismatched one not.
    """
    from helpers.core.plotting import PALETTE

    perm, levels = pairing_permutation(n_inputs, pairing), tree_levels(n_inputs)
    xs = [float(i) for i in range(n_inputs)]
    for i, leaf in enumerate(perm):
        ax.scatter(xs[i], 0, s=260, color=PALETTE[(leaf // 2) % len(PALETTE)], zorder=3)
        ax.annotate(f"$x_{{{leaf + 1}}}$", (xs[i], 0), ha="center", va="center",
                    color="white", fontsize=8, zorder=4)
    for lv in range(1, levels + 1):
        parents = [(xs[2 * j] + xs[2 * j + 1]) / 2 for j in range(len(xs) // 2)]
        for j, px in enumerate(parents):
            for child in (xs[2 * j], xs[2 * j + 1]):
                ax.plot([child, px], [lv - 1, lv], color="0.5", lw=1, zorder=1)
            ax.scatter(px, lv, s=260, color="white", edgecolor="0.2", zorder=3)
            ax.annotate("$h$", (px, lv), ha="center", va="center", fontsize=9, zorder=4)
        xs = parents
    ax.set(xlim=(-0.6, n_inputs - 0.4), ylim=(-0.6, levels + 0.6), xticks=[],
           yticks=range(levels + 1))
    ax.grid(False)
    ax.set_ylabel("tree level")
    ax.set_xlabel("input order read by the target")
    if title:
        ax.set_title(title)
