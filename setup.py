"""Packaging for gaussdiff: every setting is read from settings.ini (nbdev 2 convention), which MANIFEST.in puts in the sdist."""
from configparser import ConfigParser
from pathlib import Path
import setuptools

here = Path(__file__).resolve().parent   # not the working directory: a build may run from anywhere
if not (here / "settings.ini").is_file():
    raise SystemExit(f"setup.py: {here / 'settings.ini'} is missing; it holds every package setting (an sdist must carry it: see MANIFEST.in)")
cfg = ConfigParser(delimiters=["="])
cfg.read(here / "settings.ini", encoding="utf-8")
cfg = cfg["DEFAULT"]

def reqs(key): return cfg.get(key, "").split()

setuptools.setup(
    name=cfg["lib_name"], version=cfg["version"], description=cfg["description"],
    author=cfg["author"], author_email=cfg["author_email"], license="Apache-2.0",
    url=cfg["git_url"], packages=setuptools.find_packages(include=["gaussdiff", "gaussdiff.*"]) + ["gaussdiff.assets"],
    # the shipped Sprites cut (assets/, with its attribution) travels in the wheel as gaussdiff/assets/
    package_dir={"gaussdiff.assets": "assets"}, package_data={"gaussdiff.assets": ["*.npz", "README.md"]},
    include_package_data=True, python_requires=">=" + cfg["min_python"],
    install_requires=reqs("requirements"),
    extras_require={"course": reqs("course_requirements"),
                    "dev": reqs("course_requirements") + reqs("dev_requirements")},
    entry_points={"console_scripts": cfg["console_scripts"].split(),
                  "nbdev": [f"{cfg['lib_path']}={cfg['lib_path']}._modidx:d"]},
    long_description=(here / "README.md").read_text(encoding="utf-8"), long_description_content_type="text/markdown",
    zip_safe=False,
)
