"""The worklist of a folder of unlabeled scans (``lunglivseg worklist``, and the Worklist sections
of the Slicer module and the browser app): ``store`` (the crash-safe SQLite list, claiming and
ranking), ``scan`` (the cases of a folder), ``propose`` (proposals with the model loaded once) and
``effort`` (the correction effort, its curve and the retraining advice). No Qt, no MRML.

May import: foundations, formats, work, ``api`` (composition); never the front ends.
"""
