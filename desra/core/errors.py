"""The one exception family of desra.

Every user-facing failure raises a subclass of :class:`DesraError` whose message says what came
in, what was expected and how to fix it. The CLI prints ``str(error)`` as one line; the dashboard
shows it as a message. Tests check exact types with ``pytest.raises``.
"""

from __future__ import annotations


class DesraError(Exception):
    """Base class of every error desra raises on purpose."""


class ImageError(DesraError):
    """An image could not be read or written (corrupt, truncated, empty, unsupported)."""


class ImageTooLargeError(ImageError):
    """An image exceeds the configured pixel limit (decompression-bomb guard)."""


class PairMismatchError(DesraError):
    """Two images that must correspond (MSE/GAN, LR/SR, mask/image) differ in size or scale."""


class ConfigError(DesraError):
    """An option, config file or parameter value is invalid."""


class RegistryError(DesraError):
    """A registry (models, pairs, architectures, benchmarks, ...) lookup or definition failed."""


class DuplicateNameError(RegistryError):
    """A name was registered twice in one registry."""


class UnknownNameError(RegistryError):
    """A name is not in the registry it was looked up in."""


class DownloadError(DesraError):
    """A download failed (offline, server gone, HTTP error)."""


class ChecksumError(DownloadError):
    """A downloaded file's sha256 does not match the registry."""


class CheckpointError(DesraError):
    """A checkpoint file could not be loaded or saved."""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint would execute code when unpickled; it was refused and nothing ran."""


class ArchitectureError(CheckpointError):
    """A state dict does not fit the architecture (names the missing/unexpected keys)."""


class SegmenterError(DesraError):
    """The semantic segmenter could not be loaded or run."""


class DatasetError(DesraError):
    """A curated fine-tune set or dataset item is invalid."""


class JobError(DesraError):
    """A background job could not be submitted, found, cancelled or resumed."""


class FingerprintError(DesraError):
    """Model fingerprint registration or verification failed."""


class DependencyError(DesraError):
    """A library desra needs for this feature (e.g. basicsr) could not be imported."""


class DeviceError(DesraError):
    """The compute device is unavailable or ran out of memory even after retrying smaller tiles."""
