"""The configs, installed as the package ``pyramid_lab.conf`` (pyproject.toml maps this folder into
the wheel); a package so that the import system finds this folder in an editable install too."""
