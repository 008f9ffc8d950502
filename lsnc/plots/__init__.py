"""Figure functions that the book's notebooks call; each returns a matplotlib Figure."""
