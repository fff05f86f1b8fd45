"""Every place samkit runs its own code instead of Ultralytics' inside a network: one table, installed once.

samkit builds its networks from Ultralytics' SAM modules (their state-dict keys match Meta's checkpoints) and
replaces a few of their methods with faster ones that compute the same thing (see :mod:`samkit.nn.speedups` and
:mod:`samkit.nn.decoder` for what each one does and how close its results are). The table (:func:`table`) lists them
all: the Ultralytics class, the attribute replaced on its instances, samkit's function, and the Ultralytics
functions whose arithmetic the replacement mirrors. :func:`install` puts them on a freshly built network
(:func:`samkit.nn.build.build_network` calls it); nothing else in samkit patches a network.

Each replacement is a copy of Ultralytics' maths, so a change upstream must not be shadowed silently. Two gates:

- **Version**: the table is used only with the Ultralytics versions it was tested against
  (:data:`TESTED_ULTRALYTICS`, the range samkit's requirements allow).
- **Source**: within that range, each replacement is used only while the upstream functions it mirrors are the
  ones it was written against: their source (comments and docstrings aside) must hash to the recorded
  fingerprint.

Outside either gate the network runs Ultralytics' own code (slower, never wrong) and a warning says so, once per
process. ``samkit checks`` lists which replacements are active.
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import inspect
import textwrap
import types
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

from torch import nn

from samkit.utils import LOGGER

#: Ultralytics versions the table was tested against (the range of samkit's install requirement).
TESTED_ULTRALYTICS = ">=8.4.190,<8.5"

_MODULES = "ultralytics.models.sam.modules."


@dataclass(frozen=True)
class Replacement:
    """One method of an Ultralytics class that samkit replaces on the network's instances.

    Attributes:
        owner: The Ultralytics class, as ``module.Class`` under ``ultralytics.models.sam.modules``.
        attribute: The method replaced on each instance (the class itself is never changed).
        replacement: samkit's function, bound to the instance; it falls back to the class's own method where it
            does not apply (autograd, compilation, other devices: see each function).
        mirrors: The Ultralytics functions whose arithmetic the replacement reproduces (``module.name`` or
            ``module.Class.method``); their source is fingerprinted.
        fingerprint: SHA-256 (first 16 hex digits) of the mirrored sources, as tested.
        why: What it buys, in a few words (for ``samkit checks``).
        target: Which instance under an ``owner`` instance gets the replacement (default: that instance).
        required: The replacement makes the network compute what the reference computes (a family's own
            behaviour, e.g. SAM 3's memory selection), not the same thing faster: it is installed whatever the gates
            say, ``replacements=False`` included; when the sources it plugs into changed, it is installed anyway and
            a warning says that results may differ from the reference's.
    """

    owner: str
    attribute: str
    replacement: Callable
    mirrors: tuple[str, ...]
    fingerprint: str
    why: str
    target: Callable[[nn.Module], nn.Module] | None = None
    required: bool = False

    @property
    def name(self) -> str:
        return f"{self.owner.rsplit('.', 1)[-1]}.{self.attribute}"


def _first_layer(memory_attention: nn.Module) -> nn.Module:
    return memory_attention.layers[0]


def table() -> tuple[Replacement, ...]:
    from samkit.nn import decoder, speedups

    return (
        Replacement("encoders.Hiera", "_get_pos_embed", speedups.cached_pos_embed,
                    ("encoders.Hiera._get_pos_embed",), "4782ce6d7b33c083",
                    "positional embedding computed once per input size"),
        Replacement("blocks.MultiScaleAttention", "forward", speedups.multiscale_attention_forward,
                    ("blocks.MultiScaleAttention.forward", "blocks.do_pool"), "5d93934c60d65fc8",
                    "Hiera attention in blocked bf16 matrix products on the CPU"),
        Replacement("blocks.RoPEAttention", "forward", speedups.rope_attention_forward,
                    ("blocks.RoPEAttention.forward", "utils.apply_rotary_enc", "transformer.Attention._separate_heads",
                     "transformer.Attention._recombine_heads"), "6c7eea32e90f60a4",
                    "memory attention: values at their own width, keys turned in place (CPU)"),
        Replacement("blocks.PositionEmbeddingSine", "forward", speedups.sine_position,
                    ("blocks.PositionEmbeddingSine.forward",), "05ad90568a229aea",
                    "sine positional encodings kept contiguous per size and device"),
        Replacement("memory_attention.MemoryAttention", "_forward_sa", speedups.shared_self_attention,
                    ("memory_attention.MemoryAttentionLayer._forward_sa",), "0adefd934f4294fa",
                    "first memory layer's self-attention shared by the objects of a frame (CPU)", _first_layer),
        Replacement("encoders.PromptEncoder", "_embed_points", speedups.embed_points,
                    ("encoders.PromptEncoder._embed_points",), "adcaff6166d4ca5d",
                    "point embeddings selected without waiting for the device (no boolean indexing)"),
        Replacement("decoders.SAM2MaskDecoder", "predict_masks", decoder.sam2_predict_masks,
                    ("decoders.SAM2MaskDecoder.predict_masks", "transformer.TwoWayTransformer.forward",
                     "transformer.TwoWayAttentionBlock.forward", "transformer.Attention.forward"), "1c8dbb0166543a5c",
                    "image-side work done once for all objects; factored prompt attention on the CPU"),
        Replacement("decoders.MaskDecoder", "predict_masks", decoder.sam_predict_masks,
                    ("decoders.MaskDecoder.predict_masks", "transformer.TwoWayTransformer.forward",
                     "transformer.TwoWayAttentionBlock.forward", "transformer.Attention.forward"), "1e193dcad951e033",
                    "image-side work done once for all objects; factored prompt attention on the CPU"),
    )


def family_entries(family=None) -> tuple[Replacement, ...]:
    """The entries families contribute (:attr:`samkit.families.Family.replacements`): one family's, or every
    registered family's."""
    from samkit import families

    fams = families.all_families() if family is None else [family]
    return tuple(r for f in fams for r in f.replacements())


_WARNED: set[str] = set()


def required_entries(entries: tuple[Replacement, ...]) -> tuple[Replacement, ...]:
    """The required entries of ``entries``, each checked against its fingerprint: a changed source is warned about
    once per process (the entry is still used: without it the results would not be the reference's)."""
    out = []
    for r in entries:
        if not r.required:
            continue
        try:
            seen = fingerprint(r.mirrors)
        except (ImportError, AttributeError, OSError, TypeError, SyntaxError) as e:
            seen = f"unreadable: {e}"
        if seen != r.fingerprint and r.name not in _WARNED:
            _WARNED.add(r.name)
            LOGGER.warning("ultralytics %s changed %s (fingerprint %s, tested %s), which samkit's %s (%s) plugs into; "
                           "it is used anyway, but results may differ from the reference's", _ultralytics_version(),
                           ", ".join(r.mirrors), seen, r.fingerprint, r.name, r.why)
        out.append(r)
    return tuple(out)


def _resolve(dotted: str):
    """``module.Class.method`` or ``module.name`` under Ultralytics' SAM modules -> the object."""
    parts = dotted.split(".")
    obj = importlib.import_module(_MODULES + parts[0])
    for p in parts[1:]:
        obj = getattr(obj, p)
    return obj


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(getattr(first, "value", None), ast.Constant) \
                    and isinstance(first.value.value, str):
                node.body = node.body[1:] or [ast.Pass()]
    return tree


def fingerprint(names: tuple[str, ...]) -> str:
    """SHA-256 (16 hex digits) of the named Ultralytics functions' source, comments, docstrings and layout aside."""
    h = hashlib.sha256()
    for dotted in names:
        src = textwrap.dedent(inspect.getsource(_resolve(dotted)))
        h.update(dotted.encode())
        h.update(ast.dump(_strip_docstrings(ast.parse(src)), annotate_fields=False).encode())
    return h.hexdigest()[:16]


def _ultralytics_version() -> str:
    import ultralytics

    return ultralytics.__version__


@lru_cache(maxsize=1)
def active() -> tuple[tuple[Replacement, ...], tuple[tuple[Replacement, str], ...]]:
    """The replacements in use with the installed Ultralytics, and those left out with the reason; the first call
    logs one warning when any is left out."""
    from packaging.specifiers import SpecifierSet
    from packaging.version import Version

    entries, version = table(), _ultralytics_version()
    if Version(version) not in SpecifierSet(TESTED_ULTRALYTICS):
        LOGGER.warning("ultralytics %s is outside the versions samkit's faster SAM modules were tested against (%s): "
                       "running Ultralytics' own code (same results, slower)", version, TESTED_ULTRALYTICS)
        return (), tuple((r, f"ultralytics {version} not in {TESTED_ULTRALYTICS}") for r in entries)
    used, skipped = [], []
    for r in entries:
        try:
            seen = fingerprint(r.mirrors)
        except (ImportError, AttributeError, OSError, TypeError, SyntaxError) as e:
            skipped.append((r, f"cannot read {', '.join(r.mirrors)}: {e}"))
            continue
        if seen != r.fingerprint:
            skipped.append((r, f"Ultralytics' {', '.join(r.mirrors)} changed (fingerprint {seen}, tested "
                               f"{r.fingerprint})"))
        else:
            used.append(r)
    if skipped:
        LOGGER.warning("ultralytics %s changed code that samkit replaces; running Ultralytics' own %s (same results, "
                       "slower)", version, ", ".join(r.name for r, _ in skipped))
    return tuple(used), tuple(skipped)


def install(net: nn.Module, entries: tuple[Replacement, ...] | None = None) -> int:
    """Install the active replacements (or ``entries``) on every matching module under ``net``; returns how many
    methods were replaced. Parameters, buffers and state-dict keys are untouched; installing twice changes nothing
    more."""
    entries = active()[0] if entries is None else entries
    owners = [(_resolve(r.owner), r) for r in entries]
    n = 0
    for module in list(net.modules()):
        for cls, r in owners:
            if isinstance(module, cls):
                target = module if r.target is None else r.target(module)
                if r.attribute not in target.__dict__:
                    setattr(target, r.attribute, types.MethodType(r.replacement, target))
                    n += 1
    return n


def installed(net: nn.Module) -> list[str]:
    """Names (``Class.attribute``) of the replacements present under ``net``."""
    names = set()
    for module in net.modules():
        for r in (*table(), *family_entries()):
            if isinstance(module, _resolve(r.owner)):
                target = module if r.target is None else r.target(module)
                if r.attribute in target.__dict__:
                    names.add(r.name)
    return sorted(names)


__all__ = ["TESTED_ULTRALYTICS", "Replacement", "active", "family_entries", "fingerprint", "install", "installed",
           "required_entries", "table"]
