"""The Python packages the module needs inside Slicer, checked and installed on first use.

torch comes from the PyTorch extension (PyTorchUtils picks the build for the GPU driver); the rest
is Resources/requirements.txt, installed through `slicer.packaging` where the running Slicer has it
(it honours version specifiers and never touches Slicer's own packages), else `slicer.util.pip_install`
with this module's own check of the installed versions. Only the standard library and `packaging`
are imported here, so the module loads in a Slicer that has none of the requirements yet.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
from pathlib import Path

REQUIREMENTS = Path(__file__).resolve().parents[2] / "Resources" / "requirements.txt"
TORCH_REQUIREMENT = ">=2.2"
NEVER_PIP_INSTALLED = ("torch", "SimpleITK")  # the PyTorch extension's torch and Slicer's own SimpleITK


def missing_requirements(requirements_file: Path = REQUIREMENTS) -> list[str]:
    """Requirement lines of `requirements_file` that no installed distribution satisfies (absent,
    or at a version outside the specifier)."""
    from packaging.requirements import Requirement

    missing = []
    for line in Path(requirements_file).read_text().splitlines():
        text = line.split("#")[0].strip()
        if not text:
            continue
        requirement = Requirement(text)
        try:
            installed = importlib.metadata.version(requirement.name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(text)
            continue
        if not requirement.specifier.contains(installed, prereleases=True):
            missing.append(text)
    return missing


def installed() -> bool:
    """True once torch and every requirement are importable at a suitable version."""
    return importlib.util.find_spec("torch") is not None and not missing_requirements()


def ensure(ask, slicer_module) -> None:
    """Install what is missing; `ask(message) -> bool` asks the user first (None: do not ask).
    Raises RuntimeError naming what could not be installed."""
    if importlib.util.find_spec("torch") is None:
        install_torch(ask is not None)
    missing = missing_requirements()
    if not missing:
        return
    if ask is not None and not ask("SSL Anomaly needs these Python packages, which will be downloaded and "
                                   "installed now:\n" + "\n".join(missing)):
        raise RuntimeError("SSL Anomaly cannot run without its Python packages: " + ", ".join(missing))
    packaging = getattr(slicer_module, "packaging", None)
    if packaging is not None and hasattr(packaging, "pip_ensure"):  # Slicer >= 5.11
        packaging.pip_ensure(packaging.load_requirements(str(REQUIREMENTS)), requester="SSLAnomaly",
                             skip_packages=list(NEVER_PIP_INSTALLED))
    else:
        slicer_module.util.pip_install(missing)
    importlib.invalidate_caches()


def install_torch(ask: bool) -> None:
    try:
        import PyTorchUtils
    except ImportError:
        raise RuntimeError("SSL Anomaly needs PyTorch: install the 'PyTorch' extension from the Extensions "
                           "Manager, restart Slicer and try again.") from None
    if PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=ask,
                                                     torchVersionRequirement=TORCH_REQUIREMENT) is None:
        raise RuntimeError("PyTorch was not installed; SSL Anomaly cannot run without it.")
