"""Offline HTML pages over study outputs: the listening gallery and the atlas
browser."""
