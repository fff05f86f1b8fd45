"""LoRA adapters on the image encoder's attention projections (``lora=r``), through peft; merged into plain weights
whenever weights are saved, so every checkpoint loads as an ordinary SAM checkpoint."""

from __future__ import annotations

import re

import torch


def add_lora(net: torch.nn.Module, targets: str, rank: int, family: str):
    """Put rank-``rank`` LoRA adapters (alpha = rank, no dropout) on the modules of ``net`` whose names fully
    match ``targets``; returns the peft config. A ``ValueError`` when no module matches (a family whose image
    encoder has no attention projections to adapt)."""
    from samkit.utils.requirements import require

    require("lora")
    from peft import LoraConfig, inject_adapter_in_model

    names = [n for n, m in net.named_modules() if re.fullmatch(targets, n) and isinstance(m, torch.nn.Linear)]
    if not names:
        raise ValueError(f"lora={rank}: {family}'s image encoder has no attention projections to put LoRA adapters "
                         f"on (no linear layer matches {targets!r}); train it with tune=decoder, prompt_decoder or "
                         "all")
    config = LoraConfig(r=rank, lora_alpha=rank, lora_dropout=0.0, target_modules=targets, bias="none")
    inject_adapter_in_model(config, net)
    return config


def merged_state_dict(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    """``net``'s weights with every LoRA adapter merged (peft's ``get_delta_weight``), under the plain network's
    names; ``net`` is not changed."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    merged: dict[str, torch.Tensor] = {}
    adapted = {}
    for name, module in net.named_modules():
        if isinstance(module, BaseTunerLayer):
            adapted[name] = module
    with torch.no_grad():
        for name, module in adapted.items():
            base = module.get_base_layer()
            delta = sum(module.get_delta_weight(a) for a in module.active_adapters)
            merged[f"{name}.weight"] = (base.weight + delta).detach().to("cpu", copy=True)
            if base.bias is not None:
                merged[f"{name}.bias"] = base.bias.detach().to("cpu", copy=True)
        for key, value in net.state_dict().items():
            if "lora_" in key:
                continue
            plain = key.replace(".base_layer.", ".")
            if plain not in merged:
                merged[plain] = value.detach().to("cpu", copy=True)
    return merged


def remove_lora(net: torch.nn.Module) -> None:
    """Merge every adapter into its layer and put the plain layer back in place (``net`` is a plain network
    again)."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    for name, module in list(net.named_modules()):
        if isinstance(module, BaseTunerLayer):
            module.merge()
            parent, _, child = name.rpartition(".")
            setattr(net.get_submodule(parent) if parent else net, child, module.get_base_layer())
