"""Docstring examples run under pytest (pytest.ini lists the modules) with `np` and `tf` at hand, as the examples
assume."""
import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _doctest_names(doctest_namespace):
    import tensorflow as tf

    doctest_namespace.update(np=np, tf=tf)
