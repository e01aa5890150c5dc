"""Many LoRA adapters on one base model in memory, chosen per token: every author's twin for the
memory of one model plus megabytes per author, in the same batches and CUDA graphs.

Each adapted linear layer keeps a bank of `capacity` adapters of up to `max_rank`, stacked: A as
(capacity·max_rank, in) and B as (capacity·max_rank, out), with each adapter's scale folded into its
B. A token carries the index of its adapter (0: none, the base model), and the layer adds

    ((x @ A.T) * mask) @ B,   mask = the columns of the token's adapter

two dense products whose inner size is capacity·max_rank, instead of gathering each token's own
matrices (S-LoRA/punica do this with custom kernels; dense products need none and stay capturable).
Loading an adapter copies into the bank's tensors in place, so captured graphs see it at once.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from torch import nn

CONFIG = "adapter_config.json"
WEIGHTS = "adapter_model.safetensors"
_UNSUPPORTED = ("use_dora", "rank_pattern", "alpha_pattern", "modules_to_save")


class AdapterError(ValueError):
    """An adapter the bank cannot hold (unsupported kind, rank or modules, or the bank is full)."""


class _Tokens:
    """The adapter index of every token of the forward pass running now, shared by the layers."""

    def __init__(self) -> None:
        self.adapters: torch.Tensor | None = None


class BankedLoRALinear(nn.Module):
    """A linear layer plus the bank's adapters, applied per token by `_Tokens.adapters`."""

    def __init__(self, base: nn.Linear, tokens: _Tokens, capacity: int, max_rank: int) -> None:
        super().__init__()
        self.base = base
        self.tokens = tokens
        weight = base.weight
        rows = capacity * max_rank
        self.lora_a = nn.Parameter(
            torch.zeros(rows, base.in_features, dtype=weight.dtype, device=weight.device),
            requires_grad=False,
        )
        self.lora_b = nn.Parameter(
            torch.zeros(rows, base.out_features, dtype=weight.dtype, device=weight.device),
            requires_grad=False,
        )
        # Column j belongs to adapter index j // max_rank + 1.
        owners = torch.arange(rows, device=weight.device) // max_rank + 1
        self.register_buffer("owners", owners, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base(x)
        adapters = self.tokens.adapters
        if adapters is None:
            return out
        mask = adapters.view(*x.shape[:-1], 1) == self.owners
        low = torch.matmul(x, self.lora_a.t()) * mask
        return out + torch.matmul(low, self.lora_b)


class AdapterBank:
    """Up to `capacity` PEFT LoRA adapters of rank <= `max_rank` on `model`'s `targets` layers."""

    def __init__(
        self,
        model: nn.Module,
        capacity: int,
        max_rank: int,
        targets: tuple[str, ...] = (
            "q_proj",
            "k_proj",
            "v_proj",
            "o_proj",
            "gate_proj",
            "up_proj",
            "down_proj",
        ),
    ) -> None:
        self.capacity = capacity
        self.max_rank = max_rank
        self.tokens = _Tokens()
        self.layers: dict[str, BankedLoRALinear] = {}
        for name, module in list(model.named_modules()):
            for child_name, child in list(module.named_children()):
                if child_name in targets and isinstance(child, nn.Linear):
                    banked = BankedLoRALinear(child, self.tokens, capacity, max_rank)
                    setattr(module, child_name, banked)
                    self.layers[f"{name}.{child_name}" if name else child_name] = banked
        if not self.layers:
            raise AdapterError(f"no linear layer named {', '.join(targets)} in the model")
        self._names: dict[str, int] = {}  # adapter name -> index (1..capacity)

    def index(self, name: str | None) -> int:
        """The index tokens of adapter `name` carry (0 for None: the base model)."""
        if name is None:
            return 0
        if name not in self._names:
            raise AdapterError(f"adapter {name!r} is not loaded")
        return self._names[name]

    def load(self, name: str, folder: str | Path) -> int:
        """Copy the PEFT adapter in `folder` into a free place of the bank; returns its index."""
        from safetensors.torch import load_file

        folder = Path(folder)
        config = json.loads((folder / CONFIG).read_text())
        unsupported = [key for key in _UNSUPPORTED if config.get(key)]
        if unsupported:
            raise AdapterError(f"{folder} uses {', '.join(unsupported)}: not supported")
        rank, alpha = int(config["r"]), float(config["lora_alpha"])
        if rank > self.max_rank:
            raise AdapterError(f"{folder} has rank {rank}; the bank holds up to {self.max_rank}")
        scale = alpha / math.sqrt(rank) if config.get("use_rslora") else alpha / rank
        weights = load_file(str(folder / WEIGHTS))
        pairs = self._pairs(weights, folder)
        index = self._names.get(name) or self._free_index()
        rows = slice((index - 1) * self.max_rank, (index - 1) * self.max_rank + rank)
        with torch.no_grad():
            for layer_name, layer in self.layers.items():
                layer.lora_a[(index - 1) * self.max_rank : index * self.max_rank].zero_()
                layer.lora_b[(index - 1) * self.max_rank : index * self.max_rank].zero_()
                if layer_name in pairs:
                    a, b = pairs[layer_name]
                    layer.lora_a[rows].copy_(a)
                    layer.lora_b[rows].copy_((b.float() * scale).t())
        self._names[name] = index
        return index

    def unload(self, name: str) -> None:
        """Free the adapter's place (tokens must no longer carry its index)."""
        index = self._names.pop(name, None)
        if index is None:
            return
        with torch.no_grad():
            for layer in self.layers.values():
                layer.lora_a[(index - 1) * self.max_rank : index * self.max_rank].zero_()
                layer.lora_b[(index - 1) * self.max_rank : index * self.max_rank].zero_()

    def _free_index(self) -> int:
        free = sorted(set(range(1, self.capacity + 1)) - set(self._names.values()))
        if not free:
            raise AdapterError(f"the bank is full ({self.capacity} adapters)")
        return free[0]

    def _pairs(
        self, weights: dict[str, torch.Tensor], folder: Path
    ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Each adapted layer's (A, B), keyed by the layer's name in the model."""
        pairs: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        for key, a in weights.items():
            if not key.endswith(".lora_A.weight"):
                continue
            module = key.removesuffix(".lora_A.weight").removeprefix("base_model.model.")
            b = weights.get(key.replace(".lora_A.", ".lora_B."))
            if b is None or module not in self.layers:
                raise AdapterError(f"{folder}: {module} is not a layer this bank adapts")
            pairs[module] = (a, b)
        if not pairs:
            raise AdapterError(f"{folder} holds no LoRA weights")
        return pairs
