"""Fuzzing harness for protocolcheck's readers: DICOM headers, classifier/audit, protocol library,
recommender rules and context CSV.

Run ``python -m fuzz.run --minutes 10 --target all`` (see :mod:`fuzz.run`). Inputs come from seeds
(``sample_dicom/``, pydicom's bundled test files, :mod:`protocolcheck.synth` studies, the shipped
protocols and ``fuzz/corpus/``) through DICOM-aware mutators (:mod:`fuzz.dicom_mutators`) and text
mutators (:mod:`fuzz.text_mutators`); each target (:mod:`fuzz.targets`) checks the contract "a result
or a clear per-file problem, never an uncaught exception, never unbounded time or memory".
"""
