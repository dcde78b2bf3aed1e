"""``make loadtest``: locust against ``make run`` (driver, seed, locustfile, content)."""
