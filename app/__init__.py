"""The app layer: the ``streamfit`` CLI, the demo, the predictions HTTP server and the local stack.

It sits on top of the stages (``ingest``, ``features``, ``training``, ``scoring``) and the core
(``streamfit``); nothing below imports it (the import contract in ``pyproject.toml`` says so).
"""
