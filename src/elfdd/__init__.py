"""elfdd: dataset distillation with cached teacher features (ELF) on a Zarr feature store."""

__version__ = "0.1.0"
