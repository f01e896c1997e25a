"""Browser tests of the editor (a package, so that its conftest does not shadow tests/conftest.py)."""
