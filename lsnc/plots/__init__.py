"""Figure functions that the book's notebooks call; each returns a matplotlib Figure.

- :mod:`lsnc.plots.training`: figures of the training runs (book/fig1 ... fig9, the explorer).
- :mod:`lsnc.plots.theory`: figures of the UFM theory (book/theory).
"""
