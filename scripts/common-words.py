#!/usr/bin/env python3
"""Writes src/guard/common_words.txt: the commonest words of English, French, German, Italian
and Spanish, which the guard's lexical evidence does not count as distinctive.

Source: the PyPI wheel wordfreq==3.1.1 (its frequency data is CC BY-SA 4.0, so is this list),
read without installing it (the data is gzip'd msgpack; run with msgpack importable):
    python3 -m pip download --no-deps --dest /tmp/wf wordfreq==3.1.1
    .venv/bin/pip install msgpack && .venv/bin/python scripts/common-words.py /tmp/wf/wordfreq-3.1.1-py3-none-any.whl
"""
import gzip
import hashlib
import io
import sys
import zipfile

import msgpack

WHEEL_SHA256 = "4b1c6ecffc6198be3396d5cf871c4423ca71c907c231348d352dd54d62b97473"
# English is the served model's language: its list is longer. The others keep translations'
# function words and everyday vocabulary from counting as evidence.
TOP = {"en": 1500, "fr": 800, "de": 800, "it": 800, "es": 800}


def main(wheel_path, out_path="src/guard/common_words.txt"):
    data = open(wheel_path, "rb").read()
    if hashlib.sha256(data).hexdigest() != WHEEL_SHA256:
        sys.exit(f"{wheel_path}: sha256 differs from wordfreq 3.1.1's")
    wheel = zipfile.ZipFile(io.BytesIO(data))
    lines = [
        "# The commonest words per language, from wordfreq 3.1.1 (data CC BY-SA 4.0,",
        "# https://github.com/rspeer/wordfreq); written by scripts/common-words.py.",
    ]
    for lang, n in TOP.items():
        buckets = msgpack.unpackb(gzip.decompress(wheel.read(f"wordfreq/data/large_{lang}.msgpack.gz")))
        words = [w for bucket in buckets[1:] for w in bucket if w.isalpha()][:n]
        lines.append(f"# {lang}: top {n}")
        lines.extend(words)
    with open(out_path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main(*sys.argv[1:])
