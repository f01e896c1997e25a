"""Kept in a separate module to show that a pack's relative imports work when loaded from a folder."""


def invert(images):
    return 1.0 - images
