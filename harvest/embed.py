"""CLIP image embeddings of pool pictures: model loading, DataLoader batching and the on-disk cache.

Weights come from open_clip's pretrained tags (the normal Hugging Face / open_clip caches) or from a local
checkpoint file. Offline with neither, :func:`load_clip` fails at once with ``ModelUnavailableError``
instead of letting the Hub client retry for a minute. Embeddings (L2-normalised, float32) are cached in
``POOL/embeddings/<model-tag>.npy`` with the matching ids in ``<model-tag>.ids.parquet``; the cache only
grows, so a re-run embeds just the pictures it has not seen.

Decode workers resize and crop pictures on the CPU and ship uint8 batches; the float conversion and
normalisation of open_clip's preprocess run on the model's device (:func:`split_preprocess`).
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from harvest.errors import ConfigError, ModelUnavailableError
from harvest.net import unreachable

MODEL_CONFIG_DIR = Path(__file__).parent / "model_configs"  # crowdrank's own tiny configs, e.g. crowdrank-test-tiny
DECODE_DRAFT_FACTOR = 2  # decode JPEGs at >= 2x the network input (DCT scaling): much faster, no visible loss


@dataclass
class ClipBundle:
    """A loaded model with its preprocessing transform, tokenizer, device and cache tag."""

    model: Any
    preprocess: Callable[[Any], Any]
    tokenizer: Callable[[list[str]], Any]
    device: Any
    tag: str
    image_size: int


def register_model_configs() -> None:
    """Make crowdrank's bundled model configs (tiny test models) known to open_clip, once."""
    import open_clip

    if "crowdrank-test-tiny" not in open_clip.list_models():
        open_clip.add_model_config(MODEL_CONFIG_DIR)


def model_tag(model: str, pretrained: str | None, checkpoint: str | Path | None) -> str:
    """A file-name-safe name for a model + weights pair; the embedding cache is keyed by it."""
    if checkpoint is not None:
        path = Path(checkpoint).resolve()
        stat = path.stat()
        digest = hashlib.sha256(f"{path}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:8]
        weights = f"ckpt-{path.stem}-{digest}"
    else:
        weights = pretrained or "random"
    return re.sub(r"[^A-Za-z0-9._-]+", "_", f"{model}__{weights}")


def resolve_device(device: str) -> Any:
    """``auto`` is CUDA when present, else CPU; anything else is passed to torch as given."""
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def check_weights_available(model: str, pretrained: str) -> None:
    """Raise ``ModelUnavailableError`` at once when a pretrained tag is neither cached nor downloadable."""
    import huggingface_hub
    import huggingface_hub.constants as hf_constants
    from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME
    from open_clip.pretrained import get_pretrained_cfg

    cfg = get_pretrained_cfg(model, pretrained)
    if cfg.get("hf_hub"):
        repo_id, filename = os.path.split(cfg["hf_hub"])  # "org/name/" means the default file names
        names = [filename] if filename else [HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME]
        if any(isinstance(huggingface_hub.try_to_load_from_cache(repo_id, name), str) for name in names):
            return
        why = "HF_HUB_OFFLINE is set" if hf_constants.HF_HUB_OFFLINE else unreachable(hf_constants.ENDPOINT)
    elif cfg.get("url"):
        if (Path.home() / ".cache" / "clip" / os.path.basename(cfg["url"])).is_file():
            return
        why = unreachable(cfg["url"])
    else:
        return
    if why:
        raise ModelUnavailableError(
            f"weights {model}/{pretrained} are not in the local cache and cannot be downloaded ({why}). "
            "Run the same command once with internet access to download them into the cache, or pass "
            f"--checkpoint PATH to a local open_clip checkpoint file for --model {model}"
        )


def describe_load_error(error: Exception, model: str) -> str:
    """What went wrong loading weights, in one short line.

    torch's own messages do not fit an error line: a file that is no checkpoint (a picture, a half download) gives
    a paragraph suggesting ``weights_only=False``, unsafe for a file of unknown origin, and a state dict of another
    model lists every one of its hundreds of keys.
    """
    import pickle

    if isinstance(error, pickle.UnpicklingError):
        return "the file is not a PyTorch checkpoint (torch.load cannot read weights from it)"
    if isinstance(error, EOFError):  # torch.load of an empty file: "EOFError: " said nothing
        return "the file is empty or cut short (torch.load reached its end), not a whole checkpoint"
    not_a_dict = isinstance(error, AttributeError) and "has no attribute 'items'" in str(error)  # a saved list
    if isinstance(error, StopIteration) or not_a_dict:  # open_clip reading an empty or non-dict state dict
        return "the file holds no state dict of weights (an empty one, or another kind of object)"
    text = str(error).strip()
    if "Error(s) in loading state_dict" in text:
        counts = {"missing": 0, "unexpected": 0, "of another shape": 0}
        for line in text.splitlines()[1:]:
            line = line.strip()
            if line.startswith("Missing key(s)"):
                counts["missing"] = line.count('"') // 2
            elif line.startswith("Unexpected key(s)"):
                counts["unexpected"] = line.count('"') // 2
            elif line.startswith("size mismatch for"):
                counts["of another shape"] += 1
        found = ", ".join(f"{n} {what}" for what, n in counts.items() if n)
        return f"its weights are not those of {model} ({found or 'they differ'})"
    first = text.splitlines()[0] if text else ""
    return f"{type(error).__name__}: {first[:300]}"


def load_clip(model: str, pretrained: str | None, checkpoint: str | Path | None, device: str = "auto") -> ClipBundle:
    """Load an open_clip model with its weights; bad names fail with the known ones, missing weights at once."""
    import open_clip

    register_model_configs()
    if model not in open_clip.list_models():
        raise ConfigError(f"--model {model!r} is not an open_clip model; known include: ViT-B-32, ViT-B-16, ViT-L-14")
    if checkpoint is None and pretrained is not None:
        tags = open_clip.list_pretrained_tags_by_model(model)
        if pretrained not in tags:
            raise ConfigError(f"--pretrained {pretrained!r} is not a tag of {model}; known tags: {', '.join(tags)}")
        check_weights_available(model, pretrained)
    torch_device = resolve_device(device)
    weights = str(checkpoint) if checkpoint is not None else pretrained
    try:
        clip, _, preprocess = open_clip.create_model_and_transforms(model, pretrained=weights, device=torch_device)
    except Exception as e:  # open_clip signals a bad file or a mismatched state dict with many types, asserts too
        raise ModelUnavailableError(
            f"cannot load weights {weights!r} into {model}: {describe_load_error(e, model)}. Pass the --model the "
            f"checkpoint was trained as, or another --checkpoint"
        ) from e
    clip.eval()
    size = clip.visual.image_size
    return ClipBundle(
        model=clip,
        preprocess=preprocess,
        tokenizer=open_clip.get_tokenizer(model),
        device=torch_device,
        tag=model_tag(model, pretrained, checkpoint),
        image_size=int(size[0] if isinstance(size, (tuple, list)) else size),
    )


class PreprocessSplit(NamedTuple):
    """A preprocess cut before its ``ToTensor``: the PIL part for the decode workers, ``Normalize``'s constants."""

    cpu_part: Callable[[Any], Any]  # PIL image -> PIL image (resize, crop, convert): what the workers run
    mean: tuple[float, ...]
    std: tuple[float, ...]


def split_preprocess(preprocess: Callable[[Any], Any]) -> PreprocessSplit | None:
    """Cut open_clip's eval transform ``Compose([..., ToTensor(), Normalize(mean, std)])`` before its ``ToTensor``.

    Everything before ``ToTensor`` (Resize, CenterCrop, open_clip's RGB conversion, ResizeKeepRatio, ...) stays
    the CPU part; the float conversion and normalisation are left to the model's device, where they cost next
    to nothing and the batch crosses to it as uint8 (a quarter of float32's bytes). ``None`` when the transform
    has any other shape (not a torchvision ``Compose``, other tail, a zero std): it then runs whole in the workers.
    """
    from torchvision.transforms import Compose, Normalize, ToTensor

    if not isinstance(preprocess, Compose) or len(preprocess.transforms) < 2:
        return None
    *head, to_tensor, normalize = preprocess.transforms
    if not (isinstance(to_tensor, ToTensor) and isinstance(normalize, Normalize)):  # open_clip's MaybeToTensor too
        return None
    mean = tuple(float(v) for v in np.atleast_1d(np.asarray(normalize.mean, dtype=np.float64)))
    std = tuple(float(v) for v in np.atleast_1d(np.asarray(normalize.std, dtype=np.float64)))
    if np.any(np.asarray(std, dtype=np.float32) == 0):  # Normalize refuses these per picture: keep its errors
        return None
    return PreprocessSplit(Compose(head), mean, std)


class PictureFiles:
    """A map-style dataset of picture files for a DataLoader: (position, tensor, error message or '').

    With a preprocess that :func:`split_preprocess` recognises (open_clip's own), ``split`` is set and each item
    is the uint8 (3, S, S) tensor after the transforms before ``ToTensor``; :func:`normalize_on_device` finishes
    it where the model runs. Otherwise ``split`` is ``None`` and the whole preprocess runs here (float tensors).
    A picture that fails to decode comes back as zeros of the same dtype and shape, with the error message.
    """

    def __init__(self, paths: Sequence[str], preprocess: Callable[[Any], Any], image_size: int):
        self.paths = list(paths)
        self.preprocess = preprocess
        self.image_size = image_size
        self.split = split_preprocess(preprocess)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, position: int) -> tuple[int, Any, str]:
        import torch
        from PIL import Image, ImageOps
        from torchvision.transforms.functional import pil_to_tensor

        from rankset.images import open_quietly  # a stored picture was admitted under the collecting run's limit

        try:
            with open_quietly(self.paths[position]) as image:
                draft = self.image_size * DECODE_DRAFT_FACTOR
                image.draft("RGB", (draft, draft))
                picture = ImageOps.exif_transpose(image).convert("RGB")
                if self.split is None:
                    return position, self.preprocess(picture), ""
                return position, pil_to_tensor(self.split.cpu_part(picture)), ""  # (3, S, S) uint8
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
            dtype = torch.float32 if self.split is None else torch.uint8
            return position, torch.zeros(3, self.image_size, self.image_size, dtype=dtype), f"{type(e).__name__}: {e}"


def normalize_on_device(images: Any, device: Any, split: PreprocessSplit | None) -> Any:
    """A batch from :class:`PictureFiles` on ``device``, as the full preprocess would have made it (float32).

    The split path does ``ToTensor`` + ``Normalize``'s arithmetic on the device: ``/255``, ``- mean``, ``/ std``
    in float32 and in that order, so the result matches the CPU transform up to float rounding.
    """
    import torch

    images = images.to(device, non_blocking=True)
    if split is None:
        return images
    mean = torch.as_tensor(split.mean, dtype=torch.float32, device=device).view(-1, 1, 1)
    std = torch.as_tensor(split.std, dtype=torch.float32, device=device).view(-1, 1, 1)
    return images.float().div_(255).sub_(mean).div_(std)


def embed_pictures(
    bundle: ClipBundle,
    paths: Sequence[str],
    batch_size: int = 64,
    workers: int = 2,
    on_progress: Callable[[int], None] | None = None,
    on_batch: Callable[[np.ndarray, np.ndarray, list[str]], None] | None = None,
) -> tuple[np.ndarray, list[str]]:
    """L2-normalised image embeddings (N, D) and one error message per path ('' when fine; zeros row then).

    Decoding runs in ``workers`` DataLoader processes, overlapped with the model. With open_clip's standard
    preprocess the workers stop before ``ToTensor`` and send uint8 batches (pinned on CUDA), which are
    normalised in float32 on the device (:func:`normalize_on_device`); any other preprocess runs whole in the
    workers. On CUDA the model runs under autocast, and each batch's features are copied back to the host only
    once the next batch has been queued behind them, so that the GPU does not idle while the host fetches the
    next batch. ``on_progress`` gets the number of pictures of each batch once its embeddings are on the host,
    ``on_batch`` its positions in ``paths``, embeddings (B, D) and error messages (to save work as it is done).
    """
    import torch

    dataset = PictureFiles(paths, bundle.preprocess, bundle.image_size)
    cuda = bundle.device.type == "cuda"
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        num_workers=workers,
        pin_memory=cuda,
        prefetch_factor=4 if workers > 0 else None,
    )
    out: np.ndarray | None = None
    errors = [""] * len(paths)

    def collect(positions: Any, features: Any, messages: Sequence[str]) -> None:
        nonlocal out
        array = features.float().cpu().numpy()  # (B, D); waits for this batch only
        if out is None:
            out = np.zeros((len(paths), array.shape[1]), dtype=np.float32)
        out[positions.numpy()] = array
        for position, message in zip(positions.tolist(), messages, strict=True):
            if message:
                errors[position] = message
                out[position] = 0.0
        if on_batch:
            on_batch(positions.numpy(), out[positions.numpy()], list(messages))
        if on_progress:
            on_progress(len(positions))

    pending: tuple[Any, Any, Sequence[str]] | None = None
    with torch.inference_mode():
        for positions, images, messages in loader:
            inputs = normalize_on_device(images, bundle.device, dataset.split)  # float32, outside autocast
            with torch.autocast(bundle.device.type, enabled=cuda):
                features = bundle.model.encode_image(inputs, normalize=True)
            if pending is not None:
                collect(*pending)
                pending = None
            if cuda:  # asynchronous: fetch these features once the next batch is queued behind them
                pending = (positions, features, messages)
            else:
                collect(positions, features, messages)
        if pending is not None:
            collect(*pending)
    if out is None:
        out = np.zeros((0, 0), dtype=np.float32)
    return out, errors


def _read_shard(path: Path) -> tuple[list[str], np.ndarray]:
    with np.load(path) as data:
        return data["ids"].tolist(), np.asarray(data["embeddings"], dtype=np.float32)


LOAD_ATTEMPTS = 20  # reads of a cache that start over because a fold removed a shard meanwhile


class EmbeddingCache:
    """``POOL/embeddings/<tag>.npy`` + ``<tag>.ids.parquet``, plus the shards of a run in progress.

    A run saves what it has embedded every few batches as a shard, ``<tag>.shards/<time>-<uuid>.npz`` (ids and
    embeddings in one file, written to a temporary name and renamed), so a killed run loses at most the pictures
    since the last shard; :meth:`consolidate` folds the shards into the two main files at the end. ``load`` reads
    the main files and every shard, so whatever was killed where, nothing saved is lost or read twice.
    """

    def __init__(self, pool_root: str | Path, tag: str):
        self.dir = Path(pool_root) / "embeddings"
        self.tag = tag
        self.array_path = self.dir / f"{tag}.npy"
        self.ids_path = self.dir / f"{tag}.ids.parquet"
        self.shard_dir = self.dir / f"{tag}.shards"

    @staticmethod
    def tags(pool_root: str | Path) -> list[str]:
        """Tags with an image-embedding cache in the pool (also one only a killed run's shards hold), newest first."""
        folder = Path(pool_root) / "embeddings"
        if not folder.is_dir():
            return []
        made = {p.name[: -len(".ids.parquet")]: p.stat().st_mtime for p in folder.glob("*.ids.parquet")}
        for shards in folder.glob("*.shards"):
            if shards.is_dir() and any(shards.glob("*.npz")):
                made.setdefault(shards.name[: -len(".shards")], shards.stat().st_mtime)
        return sorted(made, key=made.__getitem__, reverse=True)

    def load(self) -> tuple[list[str], np.ndarray]:
        """(ids, embeddings) of the main files and every shard, each id once; empty when there are none.

        Main files that disagree (a run killed between their two renames) are ignored: :meth:`consolidate` keeps
        their content in a shard until both are in place. A reader without the pool's lock (qbe reading its
        ``--from-pool``) may see a fold remove a shard between listing and reading it; the read then starts over and
        finds those vectors in the main files.
        """
        for _ in range(LOAD_ATTEMPTS - 1):
            try:
                return self._load_once()
            except FileNotFoundError:
                continue
        return self._load_once()

    def _load_once(self) -> tuple[list[str], np.ndarray]:
        ids, array = self._load_main()
        shards = self._shards()
        if not shards:
            return ids, array
        seen, parts = set(ids), [array] if len(ids) else []
        for shard in shards:
            shard_ids, embeddings = _read_shard(shard)
            new = [k for k, image_id in enumerate(shard_ids) if image_id not in seen]
            seen.update(shard_ids)
            ids += [shard_ids[k] for k in new]
            if new:
                parts.append(embeddings[new])
        if not parts:
            return [], np.zeros((0, 0), dtype=np.float32)
        return ids, np.concatenate(parts).astype(np.float32, copy=False)

    def _load_main(self) -> tuple[list[str], np.ndarray]:
        import pandas as pd

        if not (self.array_path.is_file() and self.ids_path.is_file()):
            return [], np.zeros((0, 0), dtype=np.float32)
        ids = pd.read_parquet(self.ids_path)["id"].tolist()
        array = np.load(self.array_path)
        if len(ids) != len(array):
            return [], np.zeros((0, 0), dtype=np.float32)
        return ids, array

    def _shards(self) -> list[Path]:
        return sorted(self.shard_dir.glob("*.npz")) if self.shard_dir.is_dir() else []

    def add_shard(self, ids: Sequence[str], embeddings: np.ndarray) -> Path | None:
        """Save ``ids`` and their embeddings as one more shard, atomically; None when there are none."""
        if not len(ids):
            return None
        self.shard_dir.mkdir(parents=True, exist_ok=True)
        name = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.npz"
        tmp = self.shard_dir / f".{name}.tmp"
        with open(tmp, "wb") as f:
            np.savez(f, ids=np.asarray(list(ids), dtype=str), embeddings=np.asarray(embeddings, dtype=np.float32))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.shard_dir / name)
        return self.shard_dir / name

    def append(self, ids: Sequence[str], embeddings: np.ndarray) -> None:
        """Add rows after the cached ones: a shard, then :meth:`consolidate`."""
        self.add_shard(ids, embeddings)
        self.consolidate()

    def consolidate(self) -> None:
        """Fold every shard into the main files (array first, ids second, each replaced atomically).

        Everything is first saved as one shard, so a kill between the two renames (main files that disagree, so
        ignored) or before the old shards are gone loses nothing; the next run consolidates again, and removes the
        temporaries such a kill left. Call it holding the pool's writer lock: two folds at once unlink each other's
        shards and temporaries.
        """
        import pandas as pd

        shards = self._shards()
        if not shards:
            return
        # a fold killed between writing its temporaries and renaming them (each as large as the cache) left them here;
        # callers hold the pool's writer lock, so no other fold is writing them now
        stem = glob.escape(f".{self.tag}.")
        for tmp in [*self.dir.glob(f"{stem}*.npy"), *self.dir.glob(f"{stem}*.ids.parquet")]:
            tmp.unlink(missing_ok=True)
        ids, array = self.load()
        merged = self.add_shard(ids, array)
        for shard in shards:
            shard.unlink()
        stamp = uuid.uuid4().hex[:8]
        tmp_array = self.dir / f".{self.tag}.{stamp}.npy"
        tmp_ids = self.dir / f".{self.tag}.{stamp}.ids.parquet"
        np.save(tmp_array, array.astype(np.float32))
        pd.DataFrame({"id": ids}).to_parquet(tmp_ids, index=False)
        os.replace(tmp_array, self.array_path)
        os.replace(tmp_ids, self.ids_path)
        if merged is not None:
            merged.unlink()
        for tmp in self.shard_dir.glob(".*.tmp"):  # a shard a killed run was writing
            tmp.unlink()
        self.shard_dir.rmdir()

    def text_path(self, fingerprint: str) -> Path:
        return self.dir / f"{self.tag}.text-{fingerprint}.npy"

    def load_text(self, fingerprint: str) -> np.ndarray | None:
        """Cached class embeddings for a prompt set (by its fingerprint), or None."""
        path = self.text_path(fingerprint)
        return np.load(path) if path.is_file() else None

    def save_text(self, fingerprint: str, class_embeddings: np.ndarray) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.dir / f".{self.tag}.text.{uuid.uuid4().hex[:8]}.npy"
        np.save(tmp, np.asarray(class_embeddings, dtype=np.float32))
        os.replace(tmp, self.text_path(fingerprint))
