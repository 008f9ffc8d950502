"""Figure functions that the book's notebooks call; each returns a matplotlib Figure.

- :mod:`lsnc.book.plots.training`: figures of the training runs (book/fig1 ... fig9, the explorer).
- :mod:`lsnc.book.plots.theory`: every figure of the UFM theory (book/theory, the explorer): closed form,
  condition numbers, gradient-descent convergence.
- :mod:`lsnc.book.plots.scale`: the LS / CE ratio of one setting trained at several lengths, widths or
  training-set sizes (book/claims).
- :mod:`lsnc.book.plots.nc3`: NC3 taken apart, CE against LS over training (book/claims) and across δ (book/fig6).
- :mod:`lsnc.book.plots.style`: what they share: loss colours, axis labels of the NC metrics, panel grids, group
  labels, and seeds drawn as a mean line with a min-max band or as dots against δ.
"""
