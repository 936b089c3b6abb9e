"""embed_pictures' input pipeline: uint8 batches from the workers, normalised on the device, same embeddings."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from harvest.embed import (
    ClipBundle,
    PictureFiles,
    embed_pictures,
    normalize_on_device,
    register_model_configs,
    split_preprocess,
)
from tests.harvest.imagegen import encode, scene

TINY = "crowdrank-test-tiny"


@pytest.fixture(scope="module")
def bundle() -> ClipBundle:
    """The tiny open_clip model (random weights, 32 px input) with its own eval preprocess, on the CPU."""
    import open_clip
    import torch

    register_model_configs()
    torch.manual_seed(0)
    model, _, preprocess = open_clip.create_model_and_transforms(TINY, pretrained=None, device="cpu")
    model.eval()
    return ClipBundle(model, preprocess, open_clip.get_tokenizer(TINY), torch.device("cpu"), "tiny", 32)


@pytest.fixture(scope="module")
def pictures(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """JPEGs of several sizes and aspect ratios (one larger than the decode draft), a grey PNG and a CMYK JPEG."""
    folder = tmp_path_factory.mktemp("pictures")
    paths = []
    for k, (w, h) in enumerate([(96, 72), (72, 96), (200, 150), (33, 40), (64, 64)]):
        path = folder / f"scene{k}.jpg"
        path.write_bytes(encode(scene(k, w, h)))
        paths.append(str(path))
    scene(7, 80, 60).convert("L").save(folder / "grey.png")
    scene(8, 90, 70).convert("CMYK").save(folder / "cmyk.jpg", "JPEG", quality=92)
    return [*paths, str(folder / "grey.png"), str(folder / "cmyk.jpg")]


def with_preprocess(bundle: ClipBundle, preprocess: Callable[[Any], Any]) -> ClipBundle:
    return ClipBundle(bundle.model, preprocess, bundle.tokenizer, bundle.device, bundle.tag, bundle.image_size)


def full_preprocess_embeddings(bundle: ClipBundle, paths: list[str]) -> np.ndarray:
    """The reference: the whole preprocess (ToTensor, Normalize included) per picture, then encode_image."""
    import torch
    from PIL import ImageOps

    tensors = []
    for path in paths:
        with Image.open(path) as image:
            image.draft("RGB", (64, 64))
            tensors.append(bundle.preprocess(ImageOps.exif_transpose(image).convert("RGB")))
    with torch.inference_mode():
        return bundle.model.encode_image(torch.stack(tensors), normalize=True).numpy()


def test_open_clips_preprocess_is_split_before_to_tensor(bundle: ClipBundle, pictures: list[str]) -> None:
    from torchvision.transforms import Normalize, ToTensor

    split = split_preprocess(bundle.preprocess)
    assert split is not None
    assert not any(isinstance(t, (ToTensor, Normalize)) for t in split.cpu_part.transforms)
    assert len(split.cpu_part.transforms) == len(bundle.preprocess.transforms) - 2  # Resize, CenterCrop, convert
    assert split.mean == pytest.approx((0.48145466, 0.4578275, 0.40821073))
    _, tensor, message = PictureFiles(pictures, bundle.preprocess, 32)[0]
    assert message == "" and tensor.dtype.is_floating_point is False and tuple(tensor.shape) == (3, 32, 32)


def test_split_path_embeddings_match_the_full_preprocess(bundle: ClipBundle, pictures: list[str]) -> None:
    import torch

    ours, errors = embed_pictures(bundle, pictures, batch_size=3, workers=0)
    reference = full_preprocess_embeddings(bundle, pictures)
    assert errors == [""] * len(pictures)
    assert ours.shape == reference.shape == (len(pictures), 32)
    assert np.abs(ours - reference).max() < 1e-4
    # The batch itself: the device-side arithmetic reproduces ToTensor + Normalize up to float rounding.
    dataset = PictureFiles(pictures, bundle.preprocess, 32)
    batch = torch.stack([dataset[k][1] for k in range(len(pictures))])
    assert batch.dtype == torch.uint8
    on_device = normalize_on_device(batch, bundle.device, dataset.split)
    fallback = PictureFiles(pictures, lambda image: bundle.preprocess(image), 32)
    expected = torch.stack([fallback[k][1] for k in range(len(pictures))])
    assert on_device.dtype == torch.float32
    torch.testing.assert_close(on_device, expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("resize_mode", ["shortest", "longest", "squash"])
def test_every_open_clip_resize_mode_splits_to_the_same_tensors(resize_mode: str, pictures: list[str]) -> None:
    import torch
    from open_clip.transform import image_transform
    from torchvision.transforms.functional import pil_to_tensor

    preprocess = image_transform((32, 24), is_train=False, resize_mode=resize_mode)
    split = split_preprocess(preprocess)
    assert split is not None
    for path in pictures[:4]:
        with Image.open(path) as image:
            picture = image.convert("RGB")
        ours = normalize_on_device(pil_to_tensor(split.cpu_part(picture))[None], torch.device("cpu"), split)[0]
        torch.testing.assert_close(ours, preprocess(picture), atol=1e-6, rtol=0)


def _plain_function() -> Any:
    return lambda image: image


def _lambda_tail() -> Any:
    from torchvision.transforms import Compose, Lambda, Normalize, Resize, ToTensor

    return Compose([Resize(32), ToTensor(), Normalize((0.5,) * 3, (0.5,) * 3), Lambda(lambda t: t)])


def _no_to_tensor() -> Any:
    from torchvision.transforms import Compose, Normalize, PILToTensor

    return Compose([PILToTensor(), Normalize((0.5,) * 3, (0.5,) * 3)])


def _zero_std() -> Any:
    from torchvision.transforms import Compose, Normalize, ToTensor

    return Compose([ToTensor(), Normalize((0.5,) * 3, (0.0,) * 3)])


@pytest.mark.parametrize("make", [_plain_function, _lambda_tail, _no_to_tensor, _zero_std])
def test_other_preprocess_shapes_are_not_split(make: Callable[[], Any]) -> None:
    assert split_preprocess(make()) is None


def test_an_unrecognised_preprocess_still_runs_whole_in_the_workers(bundle: ClipBundle, pictures: list[str]) -> None:
    import torch

    plain = with_preprocess(bundle, lambda image: bundle.preprocess(image))  # a function, not a Compose
    dataset = PictureFiles(pictures, plain.preprocess, 32)
    assert dataset.split is None and dataset[0][1].dtype == torch.float32
    fallback, errors = embed_pictures(plain, pictures, batch_size=4, workers=0)
    split, _ = embed_pictures(bundle, pictures, batch_size=4, workers=0)
    assert errors == [""] * len(pictures)
    assert np.abs(fallback - full_preprocess_embeddings(bundle, pictures)).max() < 1e-6
    assert np.abs(fallback - split).max() < 1e-4


@pytest.mark.parametrize(("split", "workers"), [(True, 0), (True, 1), (False, 0)])
def test_broken_pictures_give_an_error_and_a_zeros_row(
    bundle: ClipBundle, pictures: list[str], tmp_path: Path, split: bool, workers: int
) -> None:
    import torch

    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    text = tmp_path / "notes.jpg"
    text.write_text("not a picture")
    paths = [pictures[0], str(truncated), pictures[1], str(text), str(tmp_path / "missing.jpg")]
    chosen = bundle if split else with_preprocess(bundle, lambda image: bundle.preprocess(image))
    dataset = PictureFiles(paths, chosen.preprocess, 32)
    _, zeros, message = dataset[1]
    assert message and tuple(zeros.shape) == (3, 32, 32) and not zeros.any()
    assert zeros.dtype == (torch.uint8 if split else torch.float32) == dataset[0][1].dtype
    embeddings, errors = embed_pictures(chosen, paths, batch_size=2, workers=workers)
    assert [bool(e) for e in errors] == [False, True, False, True, True]
    assert errors[3].startswith(("UnidentifiedImageError", "OSError")) and "FileNotFoundError" in errors[4]
    assert not embeddings[[1, 3, 4]].any()
    np.testing.assert_allclose(np.linalg.norm(embeddings[[0, 2]], axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(embeddings[[0, 2]], full_preprocess_embeddings(bundle, [paths[0], paths[2]]), atol=1e-4)


def test_no_pictures_give_an_empty_array(bundle: ClipBundle) -> None:
    embeddings, errors = embed_pictures(bundle, [], batch_size=4, workers=0)
    assert embeddings.shape == (0, 0) and errors == []
