"""The digits CNN's definition, shared by make_digits.py (training, export) and
examples/python/prune_digits.py (pruning)."""

import torch
from torch import nn


class DigitsCNN(nn.Module):
    # 8x8 -> conv 16 -> pool -> 4x4 -> conv 32 -> pool -> 2x2 -> dense 10 -> softmax
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(32 * 2 * 2, 10))

    def forward(self, x):
        return self.classifier(self.features(x))


class WithSoftmax(nn.Module):
    # Trained on logits (CrossEntropyLoss); exported with probabilities, what an app wants.
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return torch.softmax(self.net(x), dim=1)
