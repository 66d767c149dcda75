"""The package list, which pyproject.toml cannot express: everything under pyramid_lab/ and
hydra_plugins/ (a namespace package: Hydra finds its plugins there), plus pyramid_lab.conf, whose
folder is conf/ at the top of the repository (mapped in pyproject.toml, where all else is declared).
"""

from setuptools import find_namespace_packages, setup

packages = find_namespace_packages(include=["pyramid_lab*", "hydra_plugins*"], exclude=["*.__pycache__"])
setup(packages=[*packages, "pyramid_lab.conf"])
