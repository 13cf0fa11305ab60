from pathlib import Path

from setuptools import find_namespace_packages, setup


def requirements() -> list[str]:
    lines = Path(__file__).with_name("requirements.txt").read_text().splitlines()
    return [line for line in lines if line.strip() and not line.startswith("#")]


setup(
    name="specstore",
    version="0.1.0",
    description="A registry of source specs for a data hub, and the pipelines they become",
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.11",
    # The DPP plugin (dpp-plugin/, its own distribution for DPP's virtualenv) is part
    # of specstore too: the embedded runner runs the same processors.
    packages=[
        *find_namespace_packages(include=["specstore", "specstore.*"], exclude=["*.__pycache__"]),
        "datapackage_pipelines_specstore",
        "datapackage_pipelines_specstore.processors",
    ],
    package_dir={"datapackage_pipelines_specstore": "dpp-plugin/datapackage_pipelines_specstore"},
    package_data={
        "specstore": [
            "schemas/*.json",
            "web/templates/*.html",
            "store/migrations/*.py",
            "store/migrations/*.mako",
            "store/migrations/versions/*.py",
        ]
    },
    include_package_data=True,
    install_requires=requirements(),
    entry_points={"console_scripts": ["specstore=specstore.cli:main"]},
)
