#!/usr/bin/env python3
"""Write the Fashion-MNIST slice that NormKitData embeds.

Takes the first 10,000 training and the first 2,000 test images and labels, in
their original order, from Debian's dataset-fashion-mnist package and writes
them as gzip-compressed IDX files with the standard names, plus a README.md
with the provenance, the class counts and the licence, into
Sources/NormKitData/Resources/fashion-mnist-slice/.

Standard library only. The output is byte-for-byte reproducible for a given
zlib: gzip headers carry mtime 0 and no file name.

Usage: python3 scripts/make_embedded_slice.py [--source DIR] [--output DIR]
"""

import argparse
import collections
import gzip
import pathlib
import struct
import sys

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
DEFAULT_SOURCE = pathlib.Path("/usr/share/datasets/fashion-mnist")
DEFAULT_OUTPUT = REPO_ROOT / "Sources/NormKitData/Resources/fashion-mnist-slice"

TRAIN_COUNT = 10_000
TEST_COUNT = 2_000

# (images file, labels file, how many to keep) per split, without ".gz".
SPLITS = [
    ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", TRAIN_COUNT),
    ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", TEST_COUNT),
]

CLASS_NAMES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]

UNSIGNED_BYTE = 0x08


def read_idx(path, expected_rank):
    """Return (dimensions, data bytes) of a gzip IDX file of unsigned bytes, checking its header."""
    raw = gzip.decompress(path.read_bytes())
    if len(raw) < 4:
        sys.exit(f"{path}: shorter than an IDX magic number")
    zero0, zero1, type_code, rank = raw[:4]
    if (zero0, zero1, type_code, rank) != (0, 0, UNSIGNED_BYTE, expected_rank):
        sys.exit(f"{path}: magic 0x{raw[:4].hex()}, expected 0x000008{expected_rank:02x}")
    header_size = 4 + 4 * rank
    dimensions = list(struct.unpack(f">{rank}I", raw[4:header_size]))
    element_count = 1
    for dimension in dimensions:
        element_count *= dimension
    data = raw[header_size:]
    if len(data) != element_count:
        sys.exit(f"{path}: header says {element_count} bytes of data, found {len(data)}")
    return dimensions, data


def encode_idx(dimensions, data):
    """The bytes of a plain IDX file of unsigned bytes with these dimensions."""
    header = bytes([0, 0, UNSIGNED_BYTE, len(dimensions)]) + struct.pack(f">{len(dimensions)}I", *dimensions)
    return header + data


def write_gzip(path, payload):
    """Write payload gzip-compressed, with mtime 0 and no file name so reruns are identical."""
    with open(path, "wb") as raw_file:
        with gzip.GzipFile(filename="", mode="wb", compresslevel=9, fileobj=raw_file, mtime=0) as gz:
            gz.write(payload)


def slice_split(source, output, images_name, labels_name, keep):
    """Write the first `keep` images and labels of one split; return (kept labels, source count)."""
    image_dims, pixels = read_idx(source / f"{images_name}.gz", expected_rank=3)
    label_dims, labels = read_idx(source / f"{labels_name}.gz", expected_rank=1)
    count, rows, columns = image_dims
    if label_dims[0] != count:
        sys.exit(f"{images_name}: {count} images but {labels_name} has {label_dims[0]} labels")
    if keep > count:
        sys.exit(f"{images_name}: asked for {keep} images, the source has {count}")
    write_gzip(output / f"{images_name}.gz", encode_idx([keep, rows, columns], pixels[: keep * rows * columns]))
    write_gzip(output / f"{labels_name}.gz", encode_idx([keep], labels[:keep]))
    return labels[:keep], count


# A class holding less than this share of a split would make the slice a poor stand-in
# for the balanced full dataset (exactly 10% per class); the script refuses to write it.
MINIMUM_CLASS_SHARE = 0.075


def class_share_range(labels):
    """(smallest, largest) share of the split held by one class; exits if some class is too rare."""
    counts = collections.Counter(labels)
    shares = [counts[label] / len(labels) for label in range(len(CLASS_NAMES))]
    if min(shares) < MINIMUM_CLASS_SHARE:
        sys.exit(f"slice is unbalanced: a class holds only {min(shares):.1%} of a split")
    return min(shares), max(shares)


def class_count_table(train_labels, test_labels):
    """A Markdown table of how many images of each class each split holds."""
    train_counts = collections.Counter(train_labels)
    test_counts = collections.Counter(test_labels)
    lines = [
        "| label | class | train | test |",
        "|---:|---|---:|---:|",
    ]
    for label, name in enumerate(CLASS_NAMES):
        lines.append(f"| {label} | {name} | {train_counts[label]:,} | {test_counts[label]:,} |")
    lines.append(f"| | total | {len(train_labels):,} | {len(test_labels):,} |")
    return "\n".join(lines)


MIT_LICENCE = """\
The MIT License (MIT)

Copyright (c) 2017 Zalando SE

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
"""


def readme_text(train_labels, test_labels, train_source_count, test_source_count):
    train_low, train_high = class_share_range(train_labels)
    test_low, test_high = class_share_range(test_labels)
    return f"""\
# Fashion-MNIST slice

The data behind `MNISTDataset.embeddedFashionMNIST()`: a slice of
[Fashion-MNIST](https://github.com/zalandoresearch/fashion-mnist) by Zalando
Research, small enough to ship inside NormKit so that examples and tests run
without downloading anything.

## What it is

| file | content |
|---|---|
| `train-images-idx3-ubyte.gz` | the first {len(train_labels):,} of the {train_source_count:,} training \
images, 28×28, unsigned bytes |
| `train-labels-idx1-ubyte.gz` | their labels |
| `t10k-images-idx3-ubyte.gz` | the first {len(test_labels):,} of the {test_source_count:,} test images |
| `t10k-labels-idx1-ubyte.gz` | their labels |

The images and labels are unchanged and in their original order: image *i*
here is image *i* of the full dataset. Each file is a gzip-compressed IDX file
with the standard header, so any MNIST reader opens it.

Images per class. The slice is close to balanced, as the full dataset is
(exactly 10% per class): each class holds {train_low:.1%}–{train_high:.1%} of
the training slice and {test_low:.1%}–{test_high:.1%} of the test slice (the
script refuses to write a slice where any class falls below
{MINIMUM_CLASS_SHARE:.1%}).

{class_count_table(train_labels, test_labels)}

## Source

Copied from the files of Debian's `dataset-fashion-mnist` package
(`/usr/share/datasets/fashion-mnist/`), which packages Zalando Research's
Fashion-MNIST as published.

## Licence

Fashion-MNIST is Copyright (c) 2017 Zalando SE and is distributed under the
MIT licence, which applies to these files too:

```
{MIT_LICENCE}```

## Regenerating

With `dataset-fashion-mnist` installed (`apt-get install dataset-fashion-mnist`),
from the repository root:

```
python3 scripts/make_embedded_slice.py
```

The script uses only Python's standard library and writes the gzip files with
mtime 0 and no stored file name, so a rerun reproduces them byte for byte
(given the same zlib). Use `--source DIR` to read the full dataset from
elsewhere.
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=pathlib.Path, default=DEFAULT_SOURCE,
                        help="folder with the full Fashion-MNIST .gz files (default: %(default)s)")
    parser.add_argument("--output", type=pathlib.Path, default=DEFAULT_OUTPUT,
                        help="folder to write the slice into (default: %(default)s)")
    arguments = parser.parse_args()
    arguments.output.mkdir(parents=True, exist_ok=True)

    results = [slice_split(arguments.source, arguments.output, *split) for split in SPLITS]
    (train_labels, train_source_count), (test_labels, test_source_count) = results
    readme = readme_text(train_labels, test_labels, train_source_count, test_source_count)
    (arguments.output / "README.md").write_text(readme, encoding="utf-8")

    print(class_count_table(train_labels, test_labels))
    written = sorted(arguments.output.iterdir())
    total = sum(path.stat().st_size for path in written)
    print(f"wrote {len(written)} files, {total:,} bytes, to {arguments.output}")


if __name__ == "__main__":
    main()
