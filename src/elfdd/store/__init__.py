"""The Zarr feature store (schema 1, docs/design.md)."""

import warnings

# Lossy stores use numcodecs' BitRound/Quantize, which zarr flags on every open as outside the v3 spec: documented
# in README (other zarr implementations may not read them), so not repeated on each read.
warnings.filterwarnings("ignore", message="Numcodecs codecs are not in the Zarr version 3 specification")
