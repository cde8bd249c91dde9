"""Project-wide test configuration: Hypothesis profiles and the search settings tests rely on, and
the testcontainers settings of the machines the tests run on."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

# testcontainers reads these when it is first imported; the library never sets them (a user's
# process keeps its reaper and its own host). On these machines no registry is reachable, so the
# reaper's image (Ryuk) cannot be pulled: the tests remove what they start by its session label.
# A /.dockerenv file makes testcontainers think it runs inside a container, so it is told that the
# engine's host (here: this machine) is where published ports are. Settings given from outside win.
for _name, _value in {
    "TESTCONTAINERS_RYUK_DISABLED": "true",
    "TESTCONTAINERS_CONNECTION_MODE": "docker_host",
    "TC_HOST": "127.0.0.1",
}.items():
    os.environ.setdefault(_name, _value)

# Tests must not depend on what an earlier run left in .hypothesis/: no database unless a test
# brings its own. The ci profile also prints the reproduce blob of any Hypothesis failure.
settings.register_profile("dev", database=None, deadline=None)
settings.register_profile("ci", database=None, deadline=None, print_blob=True, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))

pytest_plugins = ["pytester"]
