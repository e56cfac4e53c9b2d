"""The demo CNN shipped in the package."""
