"""The one place that knows where infkit's own files are: Hydra configs, the TorchServe handler, the gRPC proto, and
the sample images the load tools send by default.

They ship inside the package as infkit/_data/ (in a source checkout: links to the repository's configs/, handlers/,
proto/ and tests/resources/), so an installed wheel finds them wherever it runs."""

from __future__ import annotations

from pathlib import Path

from infkit.errors import InfkitError

DATA = Path(__file__).resolve().parent / "_data"


def data_path(*parts: str) -> Path:
    path = DATA.joinpath(*parts)
    if not path.exists():
        raise InfkitError(
            f"{'/'.join(parts)} is missing from this infkit installation ({DATA}); "
            "reinstall infkit, or run from a source checkout"
        )
    return path


def config_dir() -> Path:
    """configs/: the Hydra config tree every stage composes."""
    return data_path("configs")


def handler_file() -> Path:
    """handlers/infkit_handler.py: the TorchServe handler packed into every .mar."""
    return data_path("handlers", "infkit_handler.py")


def model_config_file() -> Path:
    """handlers/model-config.yaml: the model-config for a .mar made by hand with torch-model-archiver."""
    return data_path("handlers", "model-config.yaml")


def proto_dir() -> Path:
    """proto/: TorchServe's gRPC inference API."""
    return data_path("proto")


def sample_images(dataset: str | None = None) -> list[Path]:
    """The labelled sample images (`<idx>_<label>.png`, one per class) the live tests and load tools use."""
    return sorted(data_path("images").glob(f"{dataset or '*'}/*.png"))


def source_checkout() -> Path:
    """The root of the source checkout these configs come from; the live tests (tests/test_serve) and the demo that
    runs them live there, not in an installed wheel."""
    root = config_dir().resolve().parent
    if not (root / "tests" / "test_serve").is_dir():
        raise InfkitError(
            "the live tests (tests/test_serve) come with infkit's source checkout, not with an "
            "installed wheel: run this from a clone of the repository"
        )
    return root
