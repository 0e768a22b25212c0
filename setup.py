"""Maps the three code folders onto the `headwater` package, and ships the template.

`daemon/`, `runners/` and `web/` install as `headwater.daemon`, `headwater.runners` and
`headwater.web` (DESIGN.md), so nothing installs a top-level `daemon` module. The
sub-packages are found here so that adding one needs no edit to the build files.

`flows-repo-template/` (what `headwater init` copies) installs as the data package
`headwater.template`. Its files are listed one by one rather than by glob, because
package-data globs skip dotfiles and dot folders (`.vscode/`, `.github/`,
`.headwaterignore`), which the template is full of. They are added to the package data
when `build_py` runs, because pyproject.toml's `[tool.setuptools.package-data]` replaces
whatever `package_data` this file would pass to `setup()`.
"""

import glob
from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

CODE_FOLDERS = ("daemon", "runners", "web")
TEMPLATE_FOLDER = "flows-repo-template"
TEMPLATE_PACKAGE = "headwater.template"
NOT_SHIPPED = ("__pycache__", ".pyc", ".DS_Store")  # stray files a local run may leave


def template_files(folder: str) -> list[str]:
    """Every file under `folder`, as package-data patterns that match only itself."""
    root = Path(__file__).resolve().parent / folder
    found = (path for path in sorted(root.rglob("*")) if path.is_file())
    return [
        glob.escape(path.relative_to(root).as_posix())
        for path in found
        if not any(part.endswith(NOT_SHIPPED) for part in path.parts)
    ]


class BuildPy(build_py):
    """`build_py` that also ships every file of the template (wheels, sdists, installs)."""

    def finalize_options(self) -> None:
        super().finalize_options()
        self.package_data = {
            **(self.package_data or {}),
            TEMPLATE_PACKAGE: template_files(TEMPLATE_FOLDER),
        }


package_dir: dict[str, str] = {}
packages: list[str] = []
for folder in CODE_FOLDERS:
    root = f"headwater.{folder}"
    package_dir[root] = folder
    packages.append(root)
    packages.extend(f"{root}.{sub}" for sub in find_packages(folder))

package_dir[TEMPLATE_PACKAGE] = TEMPLATE_FOLDER
packages.append(TEMPLATE_PACKAGE)

setup(package_dir=package_dir, packages=packages, cmdclass={"build_py": BuildPy})
