"""An example third-party empose plugin (see README.md next to pyproject.toml)."""
