"""Maps the three code folders onto the `headwater` package.

`daemon/`, `runners/` and `web/` install as `headwater.daemon`, `headwater.runners` and
`headwater.web` (DESIGN.md), so nothing installs a top-level `daemon` module. The
sub-packages are found here so that adding one needs no edit to the build files.
"""

from setuptools import find_packages, setup

CODE_FOLDERS = ("daemon", "runners", "web")

package_dir: dict[str, str] = {}
packages: list[str] = []
for folder in CODE_FOLDERS:
    root = f"headwater.{folder}"
    package_dir[root] = folder
    packages.append(root)
    packages.extend(f"{root}.{sub}" for sub in find_packages(folder))

setup(package_dir=package_dir, packages=packages)
