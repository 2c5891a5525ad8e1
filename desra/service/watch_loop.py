"""Continual repair of a watched folder (DeSRA Sec. 6): detect on arrival, repair when artifacts gather.

The service (:class:`WatchService`) loops over three steps, each a committed transition of
:mod:`desra.repair.watch_state`, so it can be killed at any moment and restarted:

1. **Arrivals.** Image files in the folder and its subfolders are keyed by the sha256 of their
   bytes: a rename or a copy is recorded as a path of known bytes and never detected again. A file
   is read only once its size and mtime have stayed the same for ``settle_s`` seconds (a file
   still being written waits); one that does not decode is recorded ``failed`` once.
2. **Detection** with the current model version and the pair's MSE model
   (:func:`desra.detect.pipeline.detect_lr`, the segmenter chosen as in ``desra detect``). Images
   with artifacts join the watch's curated set (``<workspace>/watch/artifacts``) with their mask and
   provenance; the others are recorded clean.
3. **Rounds** (:mod:`desra.service.watch_rounds`): when ``repair_after`` artifact images have
   gathered, a fine-tune job of the job runner repairs the current version, its result is
   evaluated on a held-out share and promoted only when it removes enough, adds nothing and is
   still derived from the original.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from desra.core.errors import DesraError, ImageError
from desra.repair.watch_state import ImageRecord, WatchSettings, WatchStore

MAX_DETECTION_ATTEMPTS = 3
"""A detection interrupted this many times (the service killed each time) is recorded failed, not retried forever."""
THUMB_SIDE = 160
"""Longest side in px of the timeline's thumbnails."""


def content_sha256(data: bytes) -> str:
    """Hex sha256 of a file's bytes: the key of an image, whatever its name."""
    return hashlib.sha256(data).hexdigest()


def scan_images(folder: Path) -> list[Path]:
    """Image files (known extensions) in ``folder`` and its subfolders, hidden files and folders skipped, sorted."""
    from desra.core.imageio import IMAGE_EXTENSIONS

    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [Path(root) / f for f in files if not f.startswith(".") and Path(f).suffix.lower() in IMAGE_EXTENSIONS]
    return sorted(found)


@dataclass(frozen=True)
class Observation:
    """A file's size and mtime as last seen, and since when they have not changed."""

    size: int
    """Bytes."""
    mtime_ns: int
    """Modification time, nanoseconds."""
    since: float
    """``time.monotonic()`` when this size and mtime were first seen."""


def observe(previous: Observation | None, size: int, mtime_ns: int, now: float) -> Observation:
    """The observation after seeing ``(size, mtime_ns)`` at ``now``: unchanged keeps its start, a change restarts it."""
    if previous is not None and (previous.size, previous.mtime_ns) == (size, mtime_ns):
        return previous
    return Observation(size, mtime_ns, now)


def is_settled(observation: Observation, now: float, settle_s: float) -> bool:
    """True when the file has kept its size and mtime for ``settle_s`` seconds (and is not empty)."""
    return observation.size > 0 and now - observation.since >= settle_s


def artifacts_dir(workspace: Path) -> Path:
    """The watch's curated set: every artifact image with its mask and provenance."""
    return Path(workspace) / "watch" / "artifacts"


def thumbs_dir(workspace: Path) -> Path:
    """Thumbnails of the arrivals (GAN-SR with the detection outlined)."""
    return Path(workspace) / "watch" / "thumbs"


class WatchService:
    """The service of one workspace: arrivals, detection and rounds; :meth:`run` loops, :meth:`step` does one pass."""

    def __init__(self, workspace: str | os.PathLike, settings: WatchSettings, *, note: Callable[[str], None] | None = None):
        from desra.service.watch_rounds import Rounds

        self.workspace = Path(workspace).expanduser().resolve()
        self.settings = settings
        self.store = WatchStore(self.workspace)
        self.store.save_settings(settings)
        self.note = note or (lambda message: None)
        self._observed: dict[Path, Observation] = {}
        self._models: dict[int, Any] = {}
        self._semantics = None
        self._record_original()
        self.rounds = Rounds(self.workspace, self.store, settings, self.note, self.refresh_stale)

    def _record_original(self) -> None:
        """Version 0 is the pair's GAN model as registered (recorded once, with its weights' sha256)."""
        if self.store.current_version() is not None:
            return
        from desra.models import registry
        from desra.models.lineage import weights_sha256

        pair = registry.get_pair(self.settings.pair)
        gan = self._load(0).gan
        self.store.add_version(0, str(registry.model_path(registry.get_model(pair.gan))), weights_sha256(gan.module), None)
        self.store.set_current(0, "start", f"the pair's GAN model {pair.gan}")

    def _load(self, version: int):
        """The :class:`desra.models.pairs.ModelPair` of ``version``: the pair's MSE model and that GAN model, loaded once."""
        if version not in self._models:
            from desra.models import registry
            from desra.models.pairs import ModelPair, choose_pair, load_models

            if version == 0:
                pair = choose_pair(self.settings.pair)
            else:  # the registered GAN model is not loaded only to be replaced
                entry = registry.get_pair(self.settings.pair)
                mse, gan = load_models(entry.mse, self.store.version(version).path,
                                       what=f"the pair's MSE model and watch version {version}")
                pair = ModelPair(mse, gan, name=None, class_weights=entry.class_weights)
            self._models = {version: pair}  # one version in memory: the current one
        return self._models[version]

    def _semantic_setup(self):
        """The run's :class:`desra.service.detection.Semantics` from ``settings.segmenter``, resolved once."""
        if self._semantics is None:
            from desra.models import registry
            from desra.service.detection import resolve_semantics

            self._semantics = resolve_semantics(self.settings.segmenter,
                                                class_weights=registry.get_pair(self.settings.pair).class_weights)
            if self._semantics.segmenter is None:
                self.note(f"semantic adjustment not used: {self._semantics.note}")
        return self._semantics

    # -- the loop ---------------------------------------------------------------------------------

    def run(self, *, poll_s: float = 1.0, until_idle: bool = False) -> None:
        """Serve until killed (``until_idle``: return once every file is decided and no round is in flight)."""
        self.redo_interrupted()
        while True:
            busy = self.step()
            if until_idle and not busy and self.idle():
                return
            if not busy:
                time.sleep(poll_s)

    def step(self) -> bool:
        """One pass: new settled files detected, rounds advanced; True when anything happened."""
        busy = False
        for path in self._settled_arrivals():
            busy = self._arrive(path) or busy
            # A round is opened as soon as enough artifacts have gathered, not after the whole batch.
            busy = self.rounds.advance() or busy
        return self.rounds.advance() or busy

    def idle(self) -> bool:
        """True when no file waits to settle or be read and no round is in flight or due."""
        return not self._observed and not self._unread() and self.rounds.idle()

    def redo_interrupted(self) -> None:
        """Detect again the images a killed service left ``detecting`` (each once more, its item never added twice)."""
        for image in self.store.images("detecting"):
            self.note(f"{image.name}: detection was interrupted; detecting it again")
            claimed = self.store.begin_detection(image.sha256, image.path, image.name)
            if claimed is not None:
                self._detect(claimed, self._bytes_of(claimed))

    # -- arrivals ---------------------------------------------------------------------------------

    def _unread(self) -> dict[Path, tuple[int, int]]:
        """Files whose current (size, mtime_ns) have not been hashed yet, with those values."""
        known = self.store.known_files()
        unread = {}
        for path in scan_images(Path(self.settings.folder)):
            try:
                stat = path.stat()
            except OSError:
                continue  # removed since the scan
            if known.get(str(path)) != (stat.st_size, stat.st_mtime_ns):
                unread[path] = (stat.st_size, stat.st_mtime_ns)
        return unread

    def _settled_arrivals(self) -> list[Path]:
        """Unread files that have kept their size and mtime for the settle interval (the others are watched)."""
        now = time.monotonic()
        observed = {path: observe(self._observed.get(path), size, mtime_ns, now) for path, (size, mtime_ns) in self._unread().items()}
        ready = [path for path, observation in observed.items() if is_settled(observation, now, self.settings.settle_s)]
        self._observed = {path: observation for path, observation in observed.items() if path not in ready}
        return ready

    def _arrive(self, path: Path) -> bool:
        """Hash a settled file, remember it, and detect its bytes unless they are known; True when it was read."""
        try:
            stat = path.stat()
            data = path.read_bytes()
            changed = (stat.st_size, stat.st_mtime_ns) != (len(data), path.stat().st_mtime_ns)
        except OSError:
            return False  # gone or unreadable for now: seen again at the next scan if it comes back
        if changed:
            return False  # written to while it was read: it settles again first
        image = self.store.begin_detection(content_sha256(data), str(path), path.stem, seen=(stat.st_size, stat.st_mtime_ns))
        if image is None:
            self.note(f"{path.name}: the same bytes as an image already seen; not detected again")
            return True
        self._detect(image, data)
        return True

    def _bytes_of(self, image: ImageRecord) -> bytes | None:
        """The image's bytes from any path still holding them (None when every copy is gone or changed)."""
        for path in self.store.paths_of(image.sha256) or [image.path]:
            try:
                data = Path(path).read_bytes()
            except OSError:
                continue
            if content_sha256(data) == image.sha256:
                return data
        return None

    # -- detection --------------------------------------------------------------------------------

    def _detect(self, image: ImageRecord, data: bytes | None) -> None:
        """Detect one claimed image and record it clean, artifact or failed."""
        if image.attempts > MAX_DETECTION_ATTEMPTS:
            self._fail(image, f"its detection was interrupted {image.attempts - 1} times; remove or replace the file")
            return
        if data is None:
            self._fail(image, "the file was removed or changed before it could be detected")
            return
        try:
            lr = _decode(data, image)
        except ImageError as error:
            self._fail(image, str(error))
            return
        version = self.store.current_version() or 0
        self.note(f"{image.name}: detecting with model version {version}")
        try:
            prepared = self.detect_with(version, lr)
        except DesraError as error:  # e.g. an image the model cannot take: this file fails, the watch goes on
            self._fail(image, str(error))
            return
        thumb = self._thumbnail(image, prepared.gan, prepared.mask)
        flagged = float(prepared.mask.mean())
        if not prepared.mask.any():
            self.store.finish_image(image.sha256, "clean", flagged=flagged, version=version, thumb=thumb)
            self.note(f"{image.name}: clean")
            return
        item_id = self._add_item(image, lr, prepared, version)
        self.store.finish_image(image.sha256, "artifact", flagged=flagged, item_id=item_id, version=version, thumb=thumb)
        self.note(f"{image.name}: artifacts on {100 * flagged:.1f} % of the image")

    def detect_with(self, version: int, lr):
        """DeSRA-det of an LR ``(h, w, 3)`` float32 image with model ``version``, as ``desra set add`` prepares an item
        -> :class:`desra.service.sets.PreparedImage` (both SR outputs, the mask, its provenance)."""
        from desra.service.sets import prepare_image

        return prepare_image(lr, self._load(version), semantics=self._semantic_setup())

    def refresh_stale(self) -> None:
        """Detect again, with the current version, the gathered artifact images an earlier version detected.

        After a promotion the next round must count the new model's artifacts: each such image's old
        item is removed (a soft delete) and it gets a new item from the current version, or becomes
        clean. Its row changes last, so a kill in between redoes that image only (the item is found again).
        """
        version = self.store.current_version() or 0
        stale = [image for image in self.store.gathering() if image.version != version]
        if not stale:
            return  # the usual case, at every poll: the artifact set's manifest is not read for nothing
        self.note(f"{len(stale)} gathered images were detected with an earlier version; detecting them with version {version}")
        curated = self._artifact_set()
        for image in stale:
            lr = curated.load(image.item_id).lr
            if not curated.item(image.item_id).deleted:
                curated.remove(image.item_id)
            prepared = self.detect_with(version, lr)
            thumb = self._thumbnail(image, prepared.gan, prepared.mask)
            if prepared.mask.any():
                item_id = self._add_item(image, lr, prepared, version)
                self.store.finish_image(image.sha256, "artifact", flagged=float(prepared.mask.mean()), item_id=item_id, version=version, thumb=thumb)
            else:
                self.store.finish_image(image.sha256, "clean", flagged=0.0, version=version, thumb=thumb)
                self.note(f"{image.name}: no longer flagged by version {version}")

    def _fail(self, image: ImageRecord, why: str) -> None:
        self.store.finish_image(image.sha256, "failed", error=why)
        self.note(f"{image.name}: failed: {why}")

    def _add_item(self, image: ImageRecord, lr, prepared, version: int) -> str:
        """The image's item of ``version`` in the artifact set: the one an interrupted earlier attempt added, else a new one
        (``prepared``: :meth:`detect_with`'s answer; the provenance adds which bytes and version it came from)."""
        from desra.service.sets import store_image

        curated = self._artifact_set()
        for item in curated.items():
            made = item.provenance.get("watch", {})
            if (made.get("sha256"), made.get("version")) == (image.sha256, version):
                return item.id
        watch = {"sha256": image.sha256, "path": image.path, "version": version}
        return store_image(curated, image.name, lr, prepared, provenance={"watch": watch}).id

    def _artifact_set(self):
        from desra.repair.curated import MANIFEST, create_set, open_set

        root = artifacts_dir(self.workspace)
        if not (root / MANIFEST).is_file():
            # create_set makes the manifest last: a folder without one is a creation a kill cut short.
            shutil.rmtree(root, ignore_errors=True)
            create_set(root, description=f"artifact images of the watched folder {self.settings.folder}")
        return open_set(root)

    def _thumbnail(self, image: ImageRecord, gan, mask) -> str:
        """Write the timeline's thumbnail (GAN-SR, detection outlined) and return its path."""
        import cv2

        from desra.core.imageio import write_image
        from desra.repair.evaluate_run import outline

        picture = outline(gan, mask)
        factor = min(1.0, THUMB_SIDE / max(picture.shape[:2]))
        if factor < 1.0:
            size = (max(1, round(picture.shape[1] * factor)), max(1, round(picture.shape[0] * factor)))
            picture = cv2.resize(picture, size, interpolation=cv2.INTER_AREA)
        path = thumbs_dir(self.workspace) / f"{image.sha256[:16]}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_image(path, picture)
        return str(path)


def _decode(data: bytes, image: ImageRecord):
    """The image's RGB (h, w, 3) float32 from its bytes (written to a private temporary file: imageio reads paths)."""
    import tempfile

    from desra.core.imageio import read_image

    suffix = Path(image.path).suffix.lower()
    with tempfile.TemporaryDirectory(prefix="desra-watch-") as folder:
        copy = Path(folder) / f"{image.name}{suffix}"
        copy.write_bytes(data)
        try:
            return read_image(copy).rgb
        except ImageError as error:
            raise ImageError(str(error).replace(str(copy), image.path)) from None
