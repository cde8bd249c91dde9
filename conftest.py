"""Project-wide test configuration: Hypothesis profiles and the search settings tests rely on."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

# Tests must not depend on what an earlier run left in .hypothesis/: no database unless a test
# brings its own. The ci profile also prints the reproduce blob of any Hypothesis failure.
settings.register_profile("dev", database=None, deadline=None)
settings.register_profile("ci", database=None, deadline=None, print_blob=True, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))

pytest_plugins = ["pytester"]
