"""Timing, machine description and the random-weight checkpoints every system loads."""

from __future__ import annotations

import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

# samkit registry size -> (Meta config, Ultralytics file name, Meta file name)
MODELS = {
    "t": ("configs/sam2.1/sam2.1_hiera_t.yaml", "sam2.1_t.pt", "sam2.1_hiera_tiny.pt", "sam2_t"),
    "b+": ("configs/sam2.1/sam2.1_hiera_b+.yaml", "sam2.1_b.pt", "sam2.1_hiera_base_plus.pt", "sam2_b"),
}


def make_checkpoint(folder: Path, size: str, seed: int = 0) -> Path:
    """Random SAM 2.1 weights saved as ``{"model": state_dict}`` under Ultralytics' file name (all three load it)."""
    from samkit.nn import build_network

    _, ul_name, _, arch = MODELS[size]
    path = folder / ul_name
    if not path.exists():
        torch.manual_seed(seed)
        torch.save({"model": build_network(arch, "2.1").state_dict()}, path)
    return path


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def interleaved_medians(fns: dict, device: str, repeats: int = 5, warmup: int = 1) -> dict:
    """Median wall time in milliseconds of each ``fns[name]()``, the systems taking turns within every repeat, so
    that a machine's speed drifting during the run weighs on all of them alike. ``None`` entries stay ``None``."""
    live = {k: f for k, f in fns.items() if f is not None}
    for _ in range(warmup):
        for f in live.values():
            f()
    times = {k: [] for k in live}
    for _ in range(repeats):
        for k, f in live.items():
            sync(device)
            t = time.perf_counter()
            f()
            sync(device)
            times[k].append((time.perf_counter() - t) * 1000)
    return {k: (statistics.median(times[k]) if k in times else None) for k in fns}


@dataclass
class Table:
    """Rows of ``(section, case, {system: value})``, printed as markdown with other/samkit ratios.

    ``unit`` names the values (``ms``, ``MB``); a ratio is shown only where samkit's value is at least
    ``ratio_floor`` (a memory growth of 0.3 MB makes no meaningful denominator).
    """

    systems: list[str]
    unit: str = "ms"
    ratio_floor: float = 0.0
    rows: list[tuple[str, str, dict[str, float | None]]] = field(default_factory=list)

    def add(self, section: str, case: str, **times: float | None) -> None:
        self.rows.append((section, case, times))
        cells = ", ".join(f"{k} {v:.1f} {self.unit}" for k, v in times.items() if v is not None)
        print(f"  {section} | {case}: {cells}", flush=True)

    def markdown(self) -> str:
        others = [s for s in self.systems if s != "samkit"]
        head = ["section", "case", *(f"{s} ({self.unit})" for s in self.systems), *(f"{o} / samkit" for o in others)]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for section, case, t in self.rows:
            cells = [section, case, *(f"{t[s]:.1f}" if t.get(s) is not None else "-" for s in self.systems)]
            for o in others:
                ok = t.get(o) is not None and t.get("samkit") and t["samkit"] > self.ratio_floor
                cells.append(f"**{t[o] / t['samkit']:.2f}x**" if ok else "-")
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)


def machine() -> str:
    """One paragraph naming the hardware and the versions that were measured."""
    import ultralytics

    import samkit

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    parts = [f"CPU {cpu} ({torch.get_num_threads()} threads)"]
    if torch.cuda.is_available():
        parts.append(f"GPU {torch.cuda.get_device_name(0)}")
    try:
        from importlib.metadata import version

        import sam2  # noqa: F401

        ref = f"sam2 {version('sam2')}"
    except Exception:  # noqa: BLE001 - the reference is optional for this description
        ref = "sam2 not installed"
    parts.append(
        f"Python {platform.python_version()}, torch {torch.__version__}, samkit {samkit.__version__}, "
        f"ultralytics {ultralytics.__version__}, {ref}"
    )
    return "; ".join(parts)


def command() -> str:
    return "python -m benchmarks " + " ".join(sys.argv[1:])
