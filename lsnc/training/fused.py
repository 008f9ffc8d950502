"""K models of one architecture trained as one network: one forward and one backward per step.

Horizontal fusion: the K members' activations sit side by side along the channel axis, (B, K*C, H, W), member
k in channels [k*C, (k+1)*C). Every layer acts on each member's channels alone:

- a convolution becomes one grouped convolution (groups multiplied by K) whose weight is the members' weights
  stacked along the output axis;
- a BatchNorm over C channels becomes a BatchNorm over K*C channels: batch statistics, running statistics and
  affine parameters are per channel, hence per member;
- a Linear becomes a batched matrix product with weight (K, out, in);
- parameter-free layers (ReLU, pooling, flatten, residual additions) need no change.

Nothing couples the members, so the sum of the members' losses has, for each member, exactly that member's
gradient; plain SGD (weight decay, momentum) is elementwise, so one optimizer over the fused parameters
updates each member as its own optimizer would. Results equal separate runs up to floating-point summation
order (tested). Every fused parameter, buffer and optimizer state has the name it has in the plain model, and
:meth:`FusedNet.member_state_dict` / :meth:`FusedNet.load_member_state_dict` slice member k out of it, so a
fused run checkpoints and evaluates each member as an ordinary model.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["FusedNet"]


class _FusedConv2d(nn.Module):
    def __init__(self, convs: list[nn.Conv2d]):
        super().__init__()
        c = convs[0]
        self.k, self.stride, self.padding, self.dilation = len(convs), c.stride, c.padding, c.dilation
        self.groups = c.groups * len(convs)
        self.weight = nn.Parameter(torch.cat([m.weight.detach() for m in convs]))
        self.bias = nn.Parameter(torch.cat([m.bias.detach() for m in convs])) if c.bias is not None else None

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)

    def part(self, t: Tensor, k: int) -> Tensor:
        n = t.shape[0] // self.k
        return t[k * n:(k + 1) * n]


class _FusedLinear(nn.Module):
    """Input (B, K*in), member k's features in columns [k*in, (k+1)*in); output (B, K*out) likewise."""

    def __init__(self, linears: list[nn.Linear]):
        super().__init__()
        self.k = len(linears)
        self.weight = nn.Parameter(torch.stack([m.weight.detach() for m in linears]))  # K x out x in
        has_bias = linears[0].bias is not None
        self.bias = nn.Parameter(torch.stack([m.bias.detach() for m in linears])) if has_bias else None

    def forward(self, x: Tensor) -> Tensor:
        k, out, inp = self.weight.shape
        xk, wt = x.view(-1, k, inp).transpose(0, 1), self.weight.transpose(1, 2)
        # baddbmm keeps autocast's dtype (bf16 like nn.Linear); adding an fp32 bias afterwards would promote it
        y = torch.bmm(xk, wt) if self.bias is None else torch.baddbmm(self.bias.unsqueeze(1), xk, wt)  # K x B x out
        return y.transpose(0, 1).reshape(-1, k * out)

    def part(self, t: Tensor, k: int) -> Tensor:
        return t[k]


def _fused_batchnorm(bns: list[nn.modules.batchnorm._BatchNorm]) -> nn.Module:
    b = bns[0]
    fused = type(b)(b.num_features * len(bns), eps=b.eps, momentum=b.momentum, affine=b.affine,
                    track_running_stats=b.track_running_stats)
    with torch.no_grad():
        for name, t in list(fused.named_parameters()) + list(fused.named_buffers()):
            parts = [getattr(m, name).detach() for m in bns]
            t.copy_(parts[0] if t.ndim == 0 else torch.cat(parts))
    n, k = b.num_features, len(bns)
    fused.part = lambda t, i: t if t.ndim == 0 else t[i * n:(i + 1) * n]
    fused.k = k
    return fused


def _fuse_leaf(modules: list[nn.Module]) -> nn.Module | None:
    m = modules[0]
    if isinstance(m, nn.Conv2d):
        return _FusedConv2d(modules)
    if isinstance(m, nn.Linear):
        return _FusedLinear(modules)
    if isinstance(m, nn.modules.batchnorm._BatchNorm):
        return _fused_batchnorm(modules)
    if any(True for _ in m.parameters(recurse=False)) or any(True for _ in m.buffers(recurse=False)):
        raise TypeError(f"cannot fuse a {type(m).__name__}: only Conv2d, Linear and BatchNorm hold state")
    return None


class FusedNet(nn.Module):
    """``FusedNet([model_1, ..., model_K])``: ``logits, features = net(xs)`` with xs of shape (K, B, *input),
    logits (K, B, num_classes), features (K, B, d). The members must share one architecture; their weights
    are copied in (the members themselves are not modified or kept)."""

    def __init__(self, models: list[nn.Module]):
        super().__init__()
        if not models:
            raise ValueError("FusedNet needs at least one model")
        names = [[n for n, _ in m.named_parameters()] for m in models]
        if any(n != names[0] for n in names):
            raise ValueError("FusedNet members must share one architecture")
        self.k = len(models)
        self.channels_last = False  # set with to_channels_last(): inputs and members then use that layout
        # on the members' device (evaluation builds a member from it at every evaluated epoch: no round trip through
        # the host); a plain list: not a submodule, not in state_dict
        self._template = [copy.deepcopy(models[0])]
        self.body = copy.deepcopy(models[0])
        self.feature_dim = getattr(models[0], "feature_dim", None)
        self._parts: dict[str, nn.Module] = {}
        members = [dict(m.named_modules()) for m in models]
        for name, _ in list(self.body.named_modules()):
            fused = _fuse_leaf([mods[name] for mods in members]) if name else None
            if fused is not None:
                parent, _, attr = name.rpartition(".")
                setattr(self.body.get_submodule(parent) if parent else self.body, attr, fused)
                self._parts[name] = fused

    def forward(self, xs: Tensor) -> tuple[Tensor, Tensor]:
        k, b = xs.shape[:2]
        x = xs.transpose(0, 1).reshape(b, k * xs.shape[2], *xs.shape[3:])
        if self.channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        logits, feats = self.body(x)
        return logits.view(b, k, -1).transpose(0, 1), feats.view(b, k, -1).transpose(0, 1)

    def to_channels_last(self) -> "FusedNet":
        self.channels_last = True
        return self.to(memory_format=torch.channels_last)

    # ----------------------------------------------------------------- members as plain models

    def _slice(self, full_name: str, t: Tensor, k: int) -> Tensor:
        owner, _, _ = full_name.rpartition(".")
        return self._parts[owner].part(t, k)

    def member_state_dict(self, k: int) -> dict[str, Tensor]:
        """Member k's state_dict, keyed as the plain model's."""
        return {name[len("body."):]: self._slice(name[len("body."):], t, k).detach().clone()
                for name, t in self.state_dict(keep_vars=True).items()}

    def load_member_state_dict(self, k: int, state: dict[str, Tensor]) -> None:
        with torch.no_grad():
            for name, t in self.body.state_dict(keep_vars=True).items():
                self._slice(name, t, k).copy_(state[name])

    def member(self, k: int) -> nn.Module:
        """Member k as a plain model on the fused net's device (a copy: training the net does not change it)."""
        plain = copy.deepcopy(self._template[0])
        plain.load_state_dict(self.member_state_dict(k))
        plain = plain.to(next(self.parameters()).device).train(self.training)
        return plain.to(memory_format=torch.channels_last) if self.channels_last else plain

    def member_optimizer_state(self, optimizer: torch.optim.Optimizer, k: int) -> dict:
        """Member k's slice of an optimizer over ``self.parameters()``: the state_dict that the same optimizer
        over the plain model's parameters would have."""
        sd = optimizer.state_dict()
        names = [n for n, _ in self.body.named_parameters()]
        state = {i: {key: (self._slice(names[i], v, k).clone() if torch.is_tensor(v) and v.ndim > 0 else v)
                     for key, v in s.items()} for i, s in sd["state"].items()}
        return {"state": state, "param_groups": copy.deepcopy(sd["param_groups"])}

    def load_member_optimizer_state(self, optimizer: torch.optim.Optimizer, k: int, member_sd: dict) -> None:
        """Write member k's optimizer state (from a plain run's checkpoint) into the fused optimizer's state."""
        params = list(self.body.named_parameters())
        with torch.no_grad():
            for i, s in member_sd["state"].items():
                name, p = params[int(i)]
                slot = optimizer.state[p]
                for key, v in s.items():
                    if torch.is_tensor(v) and v.ndim > 0:
                        if key not in slot:
                            slot[key] = torch.zeros_like(p)
                        self._slice(name, slot[key], k).copy_(v)
                    else:
                        slot[key] = v
