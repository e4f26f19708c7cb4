"""Chunk codecs of the store, chosen per store.

Lossless: Blosc zstd with bit-shuffle, then a CRC32C checksum so a damaged chunk fails loudly. Lossy, optional, in
front of those: numcodecs' BitRound (keep k mantissa bits) and/or Quantize (keep d decimal digits). numcodecs is a
dependency of zarr, so plain ``zarr`` decodes every one of these without elfdd.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

from zarr.codecs import BloscCodec, Crc32cCodec

# Mantissa bits of each float type: BitRound keeps at most this many.
MANTISSA_BITS = {"float16": 10, "float32": 23}


@dataclass(frozen=True)
class CodecSpec:
    """How a feature array is encoded: lossless by default, BitRound and/or Quantize when set."""

    clevel: int = 5
    bitround_keepbits: int | None = None
    quantize_digits: int | None = None

    @property
    def lossy(self) -> bool:
        return self.bitround_keepbits is not None or self.quantize_digits is not None

    def check(self, dtype: str) -> None:
        limit = MANTISSA_BITS.get(dtype)
        if limit is None:
            if self.lossy:
                raise ValueError(f"lossy codecs need a float array, not {dtype}")
            return
        if self.bitround_keepbits is not None and not 1 <= self.bitround_keepbits <= limit:
            raise ValueError(
                f"bitround keepbits must be within 1..{limit} for {dtype}, got {self.bitround_keepbits}"
            )
        if self.quantize_digits is not None and not 0 <= self.quantize_digits <= 10:
            raise ValueError(f"quantize digits must be within 0..10, got {self.quantize_digits}")

    def filters(self, dtype: str) -> list:
        """The lossy array-to-array codecs (numcodecs, through zarr's wrappers) for an array of ``dtype``."""
        self.check(dtype)
        from zarr.codecs.numcodecs import BitRound, Quantize

        filters: list[Any] = []
        with (
            warnings.catch_warnings()
        ):  # "numcodecs codecs are not in the Zarr v3 specification": known, documented
            warnings.simplefilter("ignore")
            if self.quantize_digits is not None:
                filters.append(Quantize(digits=self.quantize_digits, dtype=dtype))
            if self.bitround_keepbits is not None:
                filters.append(BitRound(keepbits=self.bitround_keepbits))
        return filters

    def compressors(self) -> list:
        return [BloscCodec(cname="zstd", clevel=self.clevel, shuffle="bitshuffle"), Crc32cCodec()]

    def describe(self) -> str:
        lossy = []
        if self.quantize_digits is not None:
            lossy.append(f"quantize{self.quantize_digits}")
        if self.bitround_keepbits is not None:
            lossy.append(f"bitround{self.bitround_keepbits}")
        return "+".join([*lossy, f"blosc-zstd{self.clevel}-bitshuffle", "crc32c"])


LOSSLESS = CodecSpec()
