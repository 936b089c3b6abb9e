"""CLIP image embeddings of pool pictures: model loading, DataLoader batching and the on-disk cache.

Weights come from open_clip's pretrained tags (the normal Hugging Face / open_clip caches) or from a local
checkpoint file. Offline with neither, :func:`load_clip` fails at once with ``ModelUnavailableError``
instead of letting the Hub client retry for a minute. Embeddings (L2-normalised, float32) are cached in
``POOL/embeddings/<model-tag>.npy`` with the matching ids in ``<model-tag>.ids.parquet``; the cache only
grows, so a re-run embeds just the pictures it has not seen.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from harvest.errors import ConfigError, ModelUnavailableError

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


def _reachable(host: str, port: int = 443, timeout: float = 5.0) -> bool:
    """Whether a TCP connection to host:port opens within ``timeout`` (DNS included, which sockets do not bound)."""
    result: list[bool] = []

    def attempt() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(result and result[0])


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
        host = urlsplit(hf_constants.ENDPOINT).hostname or "huggingface.co"
        offline = bool(hf_constants.HF_HUB_OFFLINE)
    elif cfg.get("url"):
        if (Path.home() / ".cache" / "clip" / os.path.basename(cfg["url"])).is_file():
            return
        host, offline = urlsplit(cfg["url"]).hostname or "", False
    else:
        return
    if offline or not _reachable(host):
        why = "HF_HUB_OFFLINE is set" if offline else f"{host} cannot be reached"
        raise ModelUnavailableError(
            f"weights {model}/{pretrained} are not in the local cache and {why}. Run the same command once with "
            f"internet access to download them into the cache, or pass --checkpoint PATH to a local open_clip "
            f"checkpoint file for --model {model}"
        )


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
            f"cannot load weights {weights!r} into {model}: {type(e).__name__}: {e}. Pass the --model the "
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


class PictureFiles:
    """A map-style dataset of picture files for a DataLoader: (position, tensor, error message or '')."""

    def __init__(self, paths: Sequence[str], preprocess: Callable[[Any], Any], image_size: int):
        self.paths = list(paths)
        self.preprocess = preprocess
        self.image_size = image_size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, position: int) -> tuple[int, Any, str]:
        import torch
        from PIL import Image, ImageOps

        try:
            with Image.open(self.paths[position]) as image:
                draft = self.image_size * DECODE_DRAFT_FACTOR
                image.draft("RGB", (draft, draft))
                tensor = self.preprocess(ImageOps.exif_transpose(image).convert("RGB"))
            return position, tensor, ""
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
            return position, torch.zeros(3, self.image_size, self.image_size), f"{type(e).__name__}: {e}"


def embed_pictures(
    bundle: ClipBundle,
    paths: Sequence[str],
    batch_size: int = 64,
    workers: int = 2,
    on_progress: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, list[str]]:
    """L2-normalised image embeddings (N, D) and one error message per path ('' when fine; zeros row then).

    Decoding runs in ``workers`` DataLoader processes, overlapped with the model; on CUDA under autocast.
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
    with torch.inference_mode(), torch.autocast(bundle.device.type, enabled=cuda):
        for positions, images, messages in loader:
            features = bundle.model.encode_image(images.to(bundle.device, non_blocking=True), normalize=True)
            features = features.float().cpu().numpy()  # (B, D)
            if out is None:
                out = np.zeros((len(paths), features.shape[1]), dtype=np.float32)
            out[positions.numpy()] = features
            for position, message in zip(positions.tolist(), messages, strict=True):
                if message:
                    errors[position] = message
                    out[position] = 0.0
            if on_progress:
                on_progress(len(positions))
    if out is None:
        out = np.zeros((0, 0), dtype=np.float32)
    return out, errors


class EmbeddingCache:
    """``POOL/embeddings/<tag>.npy`` + ``<tag>.ids.parquet``: append-only, each file replaced atomically."""

    def __init__(self, pool_root: str | Path, tag: str):
        self.dir = Path(pool_root) / "embeddings"
        self.tag = tag
        self.array_path = self.dir / f"{tag}.npy"
        self.ids_path = self.dir / f"{tag}.ids.parquet"

    @staticmethod
    def tags(pool_root: str | Path) -> list[str]:
        """Tags with an image-embedding cache in the pool, newest first."""
        folder = Path(pool_root) / "embeddings"
        caches = [p for p in folder.glob("*.ids.parquet")] if folder.is_dir() else []
        caches.sort(key=lambda p: p.stat().st_mtime, reverse=True)
        return [p.name[: -len(".ids.parquet")] for p in caches]

    def load(self) -> tuple[list[str], np.ndarray]:
        """(ids, embeddings); empty when absent or when the two files disagree (a run killed between renames)."""
        import pandas as pd

        if not (self.array_path.is_file() and self.ids_path.is_file()):
            return [], np.zeros((0, 0), dtype=np.float32)
        ids = pd.read_parquet(self.ids_path)["id"].tolist()
        array = np.load(self.array_path)
        if len(ids) != len(array):
            return [], np.zeros((0, 0), dtype=np.float32)
        return ids, array

    def append(self, ids: Sequence[str], embeddings: np.ndarray) -> None:
        """Add rows after the cached ones and write both files atomically (array first, ids second)."""
        import pandas as pd

        old_ids, old = self.load()
        all_ids = list(old_ids) + list(ids)
        array = np.concatenate([old, embeddings]) if len(old) else np.asarray(embeddings, dtype=np.float32)
        self.dir.mkdir(parents=True, exist_ok=True)
        stamp = uuid.uuid4().hex[:8]
        tmp_array = self.dir / f".{self.tag}.{stamp}.npy"
        tmp_ids = self.dir / f".{self.tag}.{stamp}.ids.parquet"
        np.save(tmp_array, array.astype(np.float32))
        pd.DataFrame({"id": all_ids}).to_parquet(tmp_ids, index=False)
        os.replace(tmp_array, self.array_path)
        os.replace(tmp_ids, self.ids_path)

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
