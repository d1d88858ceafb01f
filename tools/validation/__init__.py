"""Accuracy checks of the motion library on public recordings and synthetic truth, and their dataset loaders."""
