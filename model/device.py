"""What compute the installed torch can use: the facts behind device choice and `doctor`."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ComputeInfo:
    """The torch build and the accelerators it can see."""

    torch_version: str
    build: str  # "CPU", "CUDA 12.8", "ROCm 6.4"
    cuda_available: bool
    cuda_devices: list[str] = field(default_factory=list)
    mps_available: bool = False
    threads: int = 1

    @property
    def best_device(self) -> str:
        """The device `auto` picks: CUDA, then Apple MPS, then the CPU."""
        if self.cuda_available:
            return "cuda"
        if self.mps_available:
            return "mps"
        return "cpu"


def describe_compute() -> ComputeInfo:
    """Import torch and report its build and devices. Raises ImportError if torch is missing."""
    import torch

    cuda_version = getattr(torch.version, "cuda", None)
    hip_version = getattr(torch.version, "hip", None)
    if cuda_version:
        build = f"CUDA {cuda_version}"
    elif hip_version:
        build = f"ROCm {hip_version}"
    else:
        build = "CPU"
    cuda_available = bool(torch.cuda.is_available())
    devices = []
    if cuda_available:
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            devices.append(f"{props.name} ({props.total_memory / 2**30:.0f} GiB)")
    mps = getattr(torch.backends, "mps", None)
    mps_available = bool(mps is not None and mps.is_available())
    return ComputeInfo(
        torch_version=str(torch.__version__),
        build=build,
        cuda_available=cuda_available,
        cuda_devices=devices,
        mps_available=mps_available,
        threads=torch.get_num_threads(),
    )
