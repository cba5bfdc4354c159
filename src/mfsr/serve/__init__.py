"""``mfsr serve``: the analyst's local web page (docs/serve.md).

:mod:`.analysis` (tracking, windows, methods, sheet and record; no web), :mod:`.workspace`
(uploaded clips and their background analysis), :mod:`.app` (the Starlette app), ``static/``
(the page).
"""
