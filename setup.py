"""Build hook for the optional compiled skimmer; everything else is declared in setup.cfg.

``protocolcheck.dicom._skim`` speeds up the lean header reader. It is optional: without a C compiler the
install still succeeds and the reader walks every element in Python, with the same results.
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("protocolcheck.dicom._skim", ["protocolcheck/dicom/_skim.c"], optional=True)])
