"""Development-only tooling: the local stack launcher and test fault injection.

A workspace member of the root dev dependency group; no service depends on it, so production
images (which install one service's closure) never contain it.
"""
