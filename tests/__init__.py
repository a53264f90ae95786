"""The test suite. What the tests share with each other and with bench/ (services, fakes,
sample speech) is the top-level `harness` package; a test module imports `harness.*`, never
another test module or conftest."""

import pytest

# Plain `assert`s in the harness (the fakes' waits, the soak) explain themselves like the tests'.
pytest.register_assert_rewrite("harness")
