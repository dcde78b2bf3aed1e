"""Fixtures of the integration tests: loopback webhook receivers, a stub resolver, a connection guard."""

from tests.integrations.receivers import ca, fake_dns, loopback_only, receivers  # noqa: F401  (fixtures)
