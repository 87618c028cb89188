"""Packaging for gaussdiff: every setting is read from settings.ini (nbdev 2 convention)."""
from configparser import ConfigParser
import setuptools

cfg = ConfigParser(delimiters=["="])
cfg.read("settings.ini", encoding="utf-8")
cfg = cfg["DEFAULT"]

def reqs(key): return cfg.get(key, "").split()

setuptools.setup(
    name=cfg["lib_name"], version=cfg["version"], description=cfg["description"],
    author=cfg["author"], author_email=cfg["author_email"], license="Apache-2.0",
    url=cfg["git_url"], packages=setuptools.find_packages(include=["gaussdiff", "gaussdiff.*"]),
    include_package_data=True, python_requires=">=" + cfg["min_python"],
    install_requires=reqs("requirements"),
    extras_require={"course": reqs("course_requirements"),
                    "dev": reqs("course_requirements") + reqs("dev_requirements")},
    entry_points={"console_scripts": cfg["console_scripts"].split(),
                  "nbdev": [f"{cfg['lib_path']}={cfg['lib_path']}._modidx:d"]},
    long_description=open("README.md", encoding="utf-8").read(), long_description_content_type="text/markdown",
    zip_safe=False,
)
