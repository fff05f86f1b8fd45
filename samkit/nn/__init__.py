"""Networks: building from registry architectures, safe checkpoint reading, architecture detection."""

from samkit.nn.build import build, build_network
from samkit.nn.checkpoint import CheckpointError, UnsafeCheckpointError, load_checkpoint, read_checkpoint
from samkit.nn.detect import ArchitectureError, detect_architecture
from samkit.nn.registry import Architecture, ModelEntry, model_registry

__all__ = [
    "Architecture",
    "ArchitectureError",
    "CheckpointError",
    "ModelEntry",
    "UnsafeCheckpointError",
    "build",
    "build_network",
    "detect_architecture",
    "load_checkpoint",
    "read_checkpoint",
    "model_registry",
]
