"""Module factories for ``python -m sonify_jax.convert --source=factory:``
in the tests (imported by the convert CLI, as a user's own module would
be)."""
import torch


def small_net():
  torch.manual_seed(0)
  return torch.nn.Sequential(torch.nn.Conv1d(1, 4, 32, stride=2),
                             torch.nn.ReLU(), torch.nn.MaxPool1d(2),
                             torch.nn.Conv1d(4, 3, 5), torch.nn.ReLU())


class _Functional(torch.nn.Module):
  """Its own forward: functional ReLU and pooling between two convs."""

  def __init__(self):
    super().__init__()
    torch.manual_seed(0)
    self.conv2 = torch.nn.Conv1d(4, 3, 5)   # registered first, called last
    self.conv1 = torch.nn.Conv1d(1, 4, 32, stride=2)

  def forward(self, x):
    x = torch.nn.functional.relu(self.conv1(x))
    return torch.relu(self.conv2(torch.nn.functional.max_pool1d(x, 2)))


def functional_net():
  return _Functional()


def returns_none():
  return None


def two_channels():
  return torch.nn.Sequential(torch.nn.Conv1d(2, 4, 3), torch.nn.ReLU())


def with_lstm():
  return torch.nn.Sequential(torch.nn.Conv1d(1, 4, 3), torch.nn.LSTM(4, 4))


def raises():
  raise RuntimeError("factory failed")
