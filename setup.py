"""The compiled part of the rules (``rules/_native.c``), built by ``pip install`` with the
machine's C compiler. It is optional: without a compiler the install goes on without it,
and the rules run their Python code (``rules/state_codec.py`` says which is in use)."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("jiancha.rules._native", ["rules/_native.c"], optional=True)])
