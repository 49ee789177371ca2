"""The package list, found from the layout.

pyproject.toml holds the project's metadata; this file only says which packages the wheel
holds: every package under smp_model/ and smp_gui/, and the top-level resources/ folder
(the data files the product ships) installed as smp_model.resources.  pyproject's
``packages.find`` cannot add a package that lives outside the tree it searches.
"""
from setuptools import find_packages, setup

PACKAGES = find_packages(include=["smp_model", "smp_model.*", "smp_gui", "smp_gui.*"])

setup(packages=[*PACKAGES, "smp_model.resources"],
      package_dir={"smp_model.resources": "resources"})
