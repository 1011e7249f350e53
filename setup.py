"""Package discovery (the metadata is in pyproject.toml).

setuptools finds every package under ``dualexpert/``, and every package under the design
card's top-level ``signatures/``, ``optimizers/`` and ``indexes/``, which ship inside the wheel
as ``dualexpert.signatures``, ``dualexpert.optimizers`` and ``dualexpert.indexes``. Nothing is
installed under a generic top-level name.
"""

from setuptools import find_packages, setup

MAPPED = {
    "signatures": "dualexpert.signatures",
    "optimizers": "dualexpert.optimizers",
    "indexes": "dualexpert.indexes",
}

packages = find_packages(include=["dualexpert", "dualexpert.*"])
package_dir = {}
for folder, name in MAPPED.items():
    packages.append(name)
    package_dir[name] = folder
    for sub in find_packages(folder):
        packages.append(f"{name}.{sub}")
        package_dir[f"{name}.{sub}"] = f"{folder}/{sub.replace('.', '/')}"

setup(packages=packages, package_dir=package_dir)
