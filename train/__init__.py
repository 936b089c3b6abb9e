"""train: density networks trained on labeled and ranked sets together, driven by TOML manifests."""

__version__ = "0.1.0"
