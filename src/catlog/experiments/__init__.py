"""The paper's experiments, their data loaders and the ``catlog`` command (the ``experiments`` extra).

Nothing here is imported by the library itself; importing this package imports no
third-party module beyond torch (the ``catlog`` command checks for the extra first).
"""
