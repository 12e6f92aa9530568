"""The desktop GUI: the only package that imports PySide6.

Widgets call services; long work runs on a QThreadPool and reports back on the GUI thread
through queued signals (see :mod:`clinic_app.gui.workers`). Nothing here imports torch, monai
or transformers at module level, so the first window opens fast.
"""
