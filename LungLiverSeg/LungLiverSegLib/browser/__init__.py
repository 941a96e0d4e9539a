"""The browser app (``lunglivseg app``): a second thin front end on the Slicer module's Qt-free
logic, with trame-slicer's viewer and Segment Editor in the page.

``security`` (tokens, confined paths, uploads), ``settings`` and ``command`` (the CLI entry point)
import neither trame nor slicer, so registering the command costs nothing at ``lunglivseg``'s start;
``data_folder``, ``curve`` and ``session`` (the work, testable without a browser) need slicer-core;
``app`` (the page) needs trame and trame-slicer, the ``app`` extra.

May import: every core layer and ``slicer_module``; never Training.
"""
