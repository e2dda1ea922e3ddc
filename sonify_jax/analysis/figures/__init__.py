"""Figures of the studies (PNG, atomic writes): multi-panel figures shared by
several studies (``panels``) and the figures of one study each."""
