"""The posted training loop, as users run it, bugs included (argmax "accuracy", sigmoid + BCELoss,
an epoch scheduler stepped per batch), logging a CSV history. Deliberately NOT binclass's way.

This is the system binclass replaces, kept runnable for: `binclass bench` (timing it against
`binclass train` on the same data), a real history of the argmax bug for `binclass doctor`, and the
`binclass lint` acceptance test. Run: python -m binclass.devtools.posted DATA_DIR --csv history.csv
[--epochs 15 --lr 0.001 --seed 0] (DATA_DIR holds train/ and validation/).
"""

import argparse
import csv
import time

import torch
import torch.nn as nn
from torch.utils.data import DataLoader
from torchvision import datasets, transforms


class Network(nn.Module):
    def __init__(self):
        super(Network, self).__init__()
        self.layer1 = nn.Sequential(nn.Conv2d(3, 16, kernel_size=3), nn.ReLU(), nn.MaxPool2d(2))
        self.layer2 = nn.Sequential(nn.Conv2d(16, 32, kernel_size=3), nn.ReLU(), nn.MaxPool2d(2))
        self.layer3 = nn.Sequential(nn.Conv2d(32, 64, kernel_size=3), nn.ReLU(), nn.MaxPool2d(2))
        self.fc1 = nn.Linear(17 * 17 * 64, 512)
        self.fc2 = nn.Linear(512, 1)
        self.relu = nn.ReLU()
        self.sigmoid = nn.Sigmoid()

    def forward(self, x):
        out = self.layer1(x)
        out = self.layer2(out)
        out = self.layer3(out)
        out = out.view(out.size(0), -1)
        out = self.relu(self.fc1(out))
        out = self.fc2(out)
        out = torch.sigmoid(out)
        return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("data_dir")
    parser.add_argument("--csv", required=True)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--lr", type=float, default=0.001)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    tf = transforms.Compose([transforms.Resize((150, 150)), transforms.ToTensor()])
    train_data = datasets.ImageFolder(f"{args.data_dir}/train", transform=tf)
    val_data = datasets.ImageFolder(f"{args.data_dir}/validation", transform=tf)
    train_loader = DataLoader(train_data, batch_size=20, shuffle=True, num_workers=args.workers)
    val_loader = DataLoader(val_data, batch_size=20, shuffle=False, num_workers=args.workers)

    model = Network().to(device)
    criterion = nn.BCELoss()
    optimizer = torch.optim.RMSprop(model.parameters(), lr=args.lr)
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=0.999)

    log = open(args.csv, "w", newline="")
    writer = csv.writer(log)
    writer.writerow(["epoch", "iteration", "loss", "acc", "val_loss", "val_acc", "seconds"])
    epochs = args.epochs
    itr = 1
    p_itr = 100
    model.train()
    total_loss = 0
    loss_list = []
    acc_list = []
    for epoch in range(epochs):
        start = time.perf_counter()
        for samples, labels in train_loader:
            samples, labels = samples.to(device), labels.to(device)
            optimizer.zero_grad()
            output = model(samples)
            labels = labels.unsqueeze(-1)
            labels = labels.float()
            loss = criterion(output, labels)
            loss.backward()
            optimizer.step()
            total_loss += loss.item()
            scheduler.step()

            if itr % p_itr == 0:
                pred = torch.argmax(output, dim=1)
                correct = pred.eq(labels)
                acc = torch.mean(correct.float())
                print(
                    "[Epoch {}/{}] Iteration {} -> Train Loss: {:.4f}, Accuracy: {:.3f}".format(
                        epoch + 1, epochs, itr, total_loss / p_itr, acc
                    )
                )
                loss_list.append(total_loss / p_itr)
                acc_list.append(acc)
                writer.writerow([epoch + 1, itr, total_loss / p_itr, float(acc), "", "", ""])
                total_loss = 0
            itr += 1
        # Validation the same way (the same argmax metric), once per epoch.
        model.eval()
        val_loss, val_correct, val_n = 0.0, 0.0, 0
        with torch.no_grad():
            for samples, labels in val_loader:
                samples, labels = samples.to(device), labels.to(device).unsqueeze(-1).float()
                output = model(samples)
                val_loss += criterion(output, labels).item() * len(labels)
                pred = torch.argmax(output, dim=1)
                val_correct += torch.mean(pred.eq(labels).float()).item() * len(labels)
                val_n += len(labels)
        model.train()
        seconds = time.perf_counter() - start
        writer.writerow([epoch + 1, itr - 1, "", "", val_loss / val_n, val_correct / val_n, seconds])
        log.flush()
        print(
            f"[Epoch {epoch + 1}/{epochs}] val loss {val_loss / val_n:.4f} val acc {val_correct / val_n:.3f} ({seconds:.1f}s)"
        )
    log.close()


if __name__ == "__main__":
    main()
