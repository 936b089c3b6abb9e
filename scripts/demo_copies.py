"""Make the demo's synthetic "web" folder behave like the web: some pictures reappear resized, re-compressed or
brightened, and a few are copies of a benchmark's test images (which must never reach training)."""

from __future__ import annotations

import argparse
import io
from pathlib import Path

from PIL import Image, ImageEnhance


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--web", type=Path, required=True, help="folder of synthetic web pictures")
    parser.add_argument("--benchmark", type=Path, required=True, help="labeled dataset whose test split leaks")
    parser.add_argument("--copies", type=int, default=12)
    parser.add_argument("--leaks", type=int, default=3)
    args = parser.parse_args()

    originals = sorted(args.web.glob("synth_*.jpg"))[: args.copies]
    for i, path in enumerate(originals):
        img = Image.open(path).convert("RGB")
        if i % 3 == 0:
            img = img.resize((img.width * 4 // 5, img.height * 4 // 5))
        elif i % 3 == 1:
            img = ImageEnhance.Brightness(img).enhance(1.15)
        img.save(args.web / f"copy_{i:02d}.jpg", quality=60)

    import datasets

    test = datasets.load_from_disk(str(args.benchmark))["test"].cast_column("image", datasets.Image(decode=False))
    for i in range(min(args.leaks, len(test))):
        row = test[i]
        img = Image.open(io.BytesIO(row["image"]["bytes"])).convert("RGB")
        img.resize((img.width * 9 // 10, img.height * 9 // 10)).save(
            args.web / f"found_{row['image_id']}.jpg", quality=70
        )
    print(f"added {len(originals)} near-duplicate copies and {min(args.leaks, len(test))} copies of test images")


if __name__ == "__main__":
    main()
