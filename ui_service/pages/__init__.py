"""The pages: a page is a function; each keeps its state in one small object."""
