"""The fake upstream provider, in parts; tests import it from tests.fake_upstream."""
