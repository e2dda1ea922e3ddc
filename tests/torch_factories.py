"""Module factories for ``python -m sonify_jax.convert --source=factory:``
in the tests (imported by the convert CLI, as a user's own module would
be)."""
import torch


def small_net():
  torch.manual_seed(0)
  return torch.nn.Sequential(torch.nn.Conv1d(1, 4, 32, stride=2),
                             torch.nn.ReLU(), torch.nn.MaxPool1d(2),
                             torch.nn.Conv1d(4, 3, 5), torch.nn.ReLU())


def with_lstm():
  return torch.nn.Sequential(torch.nn.Conv1d(1, 4, 3), torch.nn.LSTM(4, 4))


def raises():
  raise RuntimeError("factory failed")
