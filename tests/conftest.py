"""Shared pytest set-up: fixtures that start real components live in tests/plugins/."""

pytest_plugins: list[str] = ["tests.plugins.sandbox", "tests.plugins.testcluster"]
