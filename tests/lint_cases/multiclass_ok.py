"""A correct multi-class script: argmax over ten outputs is right here (must get no error)."""
import torch
from torch import nn
import torch.nn.functional as F


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3)
        self.head = nn.LazyLinear(10)

    def forward(self, x):
        return self.head(torch.flatten(F.relu(self.conv(x)), 1))


net = Net()
criterion = nn.CrossEntropyLoss()
opt = torch.optim.SGD(net.parameters(), lr=0.1)
sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=1000)


def train(loader, test_loader):
    for x, y in loader:
        opt.zero_grad()
        out = net(x)
        loss = criterion(out, y)
        loss.backward()
        opt.step()
        sched.step()
    net.eval()
    correct = 0
    with torch.inference_mode():
        for x, y in test_loader:
            correct += (net(x).argmax(dim=1) == y).sum().item()
    return correct
