"""Chunk codecs: Blosc zstd with bit-shuffle, then a CRC32C checksum so damaged chunks fail loudly."""

from __future__ import annotations

from zarr.codecs import BloscCodec, Crc32cCodec


def lossless_codecs(clevel: int = 5) -> list:
    return [BloscCodec(cname="zstd", clevel=clevel, shuffle="bitshuffle"), Crc32cCodec()]


def describe_codecs(clevel: int = 5) -> str:
    return f"blosc-zstd{clevel}-bitshuffle+crc32c"
